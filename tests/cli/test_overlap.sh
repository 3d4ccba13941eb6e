#!/usr/bin/env bash
# train.overlap_comm: the gradient sums started from backward's hook while it
# runs (true) give the same bits as the same sums started after it (false),
# for `train` and `distill` (feature-KD tap gradients entering the student's
# backward) on 2 and 3 ranks: /train/loss and /train/grad_norm of every step
# identical, the final weights and the last checkpoint (weights, AdamW moments)
# identical. Small buckets (train.bucket_mb = 0.01) so the tiny model has many.
# Args: BINARY SOURCE_DIR; $STDIFF compares tensors, $INIT_MODEL writes a seeded model.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py
JOB="$SRC/jobs/fmnist_tiny.cfg"
COMMON=(--set train.steps=3 --set train.batch=6 --set runtime.threads=1 --set train.bucket_mb=0.01)

same() {  # same A B WHAT OUT: two runs' outputs and logs bit-identical
  local a=$1 b=$2 what=$3 out=$4
  "$STDIFF" "$T/$a/$out" "$T/$b/$out" 0 >"$T/d.txt" && ok || bad "$what: $out differs: $(cat "$T/d.txt")"
  "$STDIFF" "$T/$a/checkpoints/ckpt_00000003.safetensors" "$T/$b/checkpoints/ckpt_00000003.safetensors" 0 >"$T/d.txt" \
    && ok || bad "$what: the step-3 checkpoint differs: $(cat "$T/d.txt")"
  /usr/bin/python3 - "$T/$a/run.h5" "$T/$b/run.h5" "$what" <<'PY' && ok || bad "$what: /train series differ"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    for k in ("loss", "grad_norm"):
        x, y = a["/train/" + k][()], b["/train/" + k][()]
        assert len(x) == 3 and np.array_equal(x, y), (k, x, y)
    print(f"{sys.argv[3]}: loss {a['/train/loss'][()]}, grad_norm {a['/train/grad_norm'][()]} identical")
PY
}

for np in 2 3; do
  for ov in true false; do
    mpirun_n "$np" "$BIN" train "$JOB" "${COMMON[@]}" --set output.dir="$T/train$np$ov" --set train.overlap_comm=$ov \
      >"$T/train$np$ov.log" 2>&1 || bad "train np$np overlap $ov failed: $(tail -3 "$T/train$np$ov.log")"
  done
  same "train${np}true" "train${np}false" "train, $np ranks, overlap on vs off" model.safetensors
done

"$INIT_MODEL" "$JOB" "$T/teacher.safetensors" 5 || { echo "init_model failed"; exit 1; }
PRUNE=(--set model.weights="$T/teacher.safetensors" --set output.dir="$T/prune" --set prune.calib_samples=6
       --set prune.batch=3 --set prune.additivity_sets=0)
mpirun_n 1 "$BIN" score "$JOB" "${PRUNE[@]}" >"$T/score.log" 2>&1 || { echo "score failed: $(tail -3 "$T/score.log")"; exit 1; }
mpirun_n 1 "$BIN" plan "$JOB" "${PRUNE[@]}" >"$T/plan.log" 2>&1 || { echo "plan failed: $(tail -3 "$T/plan.log")"; exit 1; }
for np in 2 3; do
  for ov in true false; do
    d=$T/distill$np$ov
    mkdir -p "$d" && cp "$T/prune/student_init.safetensors" "$d/"
    mpirun_n "$np" "$BIN" distill "$JOB" "${COMMON[@]}" --set model.weights="$T/teacher.safetensors" \
      --set output.dir="$d" --set distill.activation_interval=0 --set train.overlap_comm=$ov \
      >"$d.log" 2>&1 || bad "distill np$np overlap $ov failed: $(tail -3 "$d.log")"
  done
  same "distill${np}true" "distill${np}false" "distill, $np ranks, overlap on vs off" student.safetensors
done
finish test_overlap
