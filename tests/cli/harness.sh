# Sourced by every CLI test: pass/fail counters (ok, bad "why"), a temp dir $T
# removed on exit, `finish NAME` to print the tally and set the exit status,
# and mpirun_n (mpi.sh).
. "$(dirname "${BASH_SOURCE[0]}")/mpi.sh"
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
finish() {
  echo "$1: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
