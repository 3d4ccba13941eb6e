#!/usr/bin/env bash
# Comm.isum, the non-blocking deterministic sum the trainer overlaps with
# backward (mpi/comm_mpi.c), under mpirun on 1, 2 and 3 ranks
# (tests/tools/isum_check): sums of 0, 1, fewer-than-ranks, odd and large
# sizes, all in flight at once, equal the rank-order serial sum bit for bit on
# every rank; at 2 ranks they also equal MPI_Allreduce's bit for bit (a + b is
# commutative); at 3 ranks whether they do is printed, not required.
# Args: BINARY SOURCE_DIR; $ISUM_CHECK is tests/tools/isum_check (else it is
# looked for beside BINARY).
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
TOOL=${ISUM_CHECK:-$(dirname "$BIN")/isum_check}
[ -x "$TOOL" ] || { echo "FAIL: $TOOL not built (CMake target isum_check)"; exit 1; }
for np in 1 2 3; do
  timeout 120 bash -c ". '$SRC/tests/cli/mpi.sh'; mpirun_n $np '$TOOL'" >"$T/np$np.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] && [ "$(grep -c "^rank [0-9]*: ok" "$T/np$np.log")" -eq $np ] && ok \
    || bad "isum on $np ranks (rc $rc): $(grep -m3 FAIL "$T/np$np.log" || tail -3 "$T/np$np.log")"
  grep "^allreduce:" "$T/np$np.log"
done
grep -q "^allreduce: equal" "$T/np2.log" && ok || bad "at 2 ranks isum differs from MPI_Allreduce: $(cat "$T/np2.log")"
finish test_isum
