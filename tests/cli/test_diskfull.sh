#!/usr/bin/env bash
# A full disk under an existing run directory (a 3 MiB tmpfs, filled but for the lock file's
# page): score, plan and train
# end with a clean error and exit 1 (they crashed with exit 139 in HDF5's shutdown, on a run
# file whose flush had failed), and run.h5 and student_init.safetensors keep what they held.
# Needs to mount a tmpfs (root with CAP_SYS_ADMIN); SKIPPED otherwise.
# Args: BINARY SOURCE_DIR; $INIT_MODEL writes a seeded model.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py
JOB="$SRC/jobs/fmnist_tiny.cfg"
mkdir -p "$T/full"
mount -t tmpfs -o size=3m tmpfs "$T/full" 2>/dev/null || skip "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)"
trap 'umount "$T/full"; rm -rf "$T"' EXIT

"$INIT_MODEL" "$JOB" "$T/teacher.safetensors" 5 || { echo "init_model failed"; exit 1; }
D="$T/full/run"
P=(--set model.weights="$T/teacher.safetensors" --set output.dir="$D" --set prune.calib_samples=6
   --set prune.batch=3 --set prune.additivity_sets=0)
mpirun_n 1 "$BIN" score "$JOB" "${P[@]}" >"$T/score.log" 2>&1 || bad "score on free space failed: $(tail -2 "$T/score.log")"
mpirun_n 1 "$BIN" plan "$JOB" "${P[@]}" >"$T/plan.log" 2>&1 || bad "plan on free space failed: $(tail -2 "$T/plan.log")"
cp "$D/run.h5" "$T/run_before.h5"
cp "$D/student_init.safetensors" "$T/student_before.safetensors"
# Full but for one page: each command's lock file (output.dir/.lock, a few bytes) takes it while
# the command runs and gives it back at exit, so what meets the full disk is run.h5.
dd if=/dev/zero of="$T/full/reserve" bs=4k count=1 >/dev/null 2>&1
dd if=/dev/zero of="$T/full/fill" bs=4k >/dev/null 2>&1   # until the disk is full
rm -f "$T/full/reserve"
[ "$(df --output=avail "$T/full" | tail -1)" -le 4 ] || bad "the tmpfs is not full: $(df "$T/full" | tail -1)"

for c in score plan train; do
  for np in 1 2; do
    mpirun_n $np "$BIN" $c "$JOB" "${P[@]}" --set train.steps=2 >"$T/$c$np.log" 2>&1; rc=$?
    if [ $rc -eq 1 ] && grep -q "^laptop-diff: $D/run.h5: .*No space left on device" "$T/$c$np.log" &&
       ! grep -qi "segmentation\|signal 11\|HDF5-DIAG" "$T/$c$np.log"; then
      ok
    else
      bad "$c on $np rank(s), disk full: rc $rc: $(grep -i "laptop-diff:\|signal\|HDF5-DIAG" "$T/$c$np.log" | head -3)"
    fi
  done
done
cmp -s "$D/student_init.safetensors" "$T/student_before.safetensors" && ok || bad "student_init.safetensors changed"
ls "$D" | grep -q "tmp" && bad "temporary files left: $(ls "$D")" || ok
/usr/bin/python3 - "$T/run_before.h5" "$D/run.h5" <<'PY' && ok || bad "run.h5 lost what it held"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    names = []
    a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    assert names and "prune/scores/output_loss" in names, names
    for n in names:
        assert np.array_equal(a[n][()], b[n][()]), n
    print(f"run.h5 after the full-disk runs: {len(names)} datasets as before")
PY
finish test_diskfull
