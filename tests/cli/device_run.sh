#!/usr/bin/env bash
# train and distill with runtime.device = "cuda": the device-resident stage path
# (weights, optimizer state, batches, activations on the device; the host sees
# checkpoints, snapshots and the final files) against the same job on the CPU.
# Run twice by ctest: on laptop-diff-emu (the CUDA backend on the host emulator,
# label emu) and, in an LD_CUDA build, on laptop-diff with a GPU (label gpu;
# SKIPPED without one, failing under LD_REQUIRE_GPU=1).
#  - distill on 1 rank and on 2 ranks == the CPU's 1-rank run: every /train series and the
#    activation snapshots within 1e-5 relative, student and its EMA within 1e-3 (AdamW's first
#    steps magnify last-bit differences of near-zero gradients; test_distill.sh says more)
#  - a NaN loss at step 2 stops the device run naming the intact step-1 checkpoint; --resume
#    from it ends bit for bit where the uninterrupted device run ended (state round-trips
#    through the host exactly)
#  - train (the denoising task from a seeded init) on the device == on the CPU
#  - sample (DDIM with guidance, the U-Net passes on the device) == the CPU's within 1e-4 of the range
#  - score's output_loss and plan's measured losses with their forwards on the device (1 and 2
#    ranks) == the CPU's within 1e-5 relative, and the same plan
# Args: DEVICE_BINARY SOURCE_DIR; $CPU_BIN is the CPU reference binary, $STDIFF, $INIT_MODEL.
set -u
DEV=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py
command -v mpirun >/dev/null || skip "no mpirun on PATH (Open MPI)"
JOB="$SRC/jobs/fmnist_tiny.cfg"
CPU=${CPU_BIN:?CPU_BIN: the laptop-diff that runs the CPU reference}

"$INIT_MODEL" "$JOB" "$T/teacher.safetensors" 5 >/dev/null || { echo "init_model failed"; exit 1; }
PRUNE=(--set model.weights="$T/teacher.safetensors" --set output.dir="$T/prune" --set prune.calib_samples=6
       --set prune.batch=3 --set prune.additivity_sets=0)
mpirun_n 1 "$CPU" score "$JOB" "${PRUNE[@]}" >"$T/score.log" 2>&1 || { echo "score failed: $(tail -3 "$T/score.log")"; exit 1; }
mpirun_n 1 "$CPU" plan "$JOB" "${PRUNE[@]}" >"$T/plan.log" 2>&1 || { echo "plan failed: $(tail -3 "$T/plan.log")"; exit 1; }

# small enough for the emulator (about 10 s per sample-step there)
COMMON=(--set model.weights="$T/teacher.safetensors" --set train.batch=2 --set train.steps=2
        --set train.checkpoint_interval=1 --set train.ema_decay=0.9 --set distill.activation_interval=2
        --set distill.probe_samples=2 --set distill.lambda_out=1.3)
run() {  # run NAME BINARY NP DEVICE args...: a fresh output dir holding the student; logs to $T/NAME.log
  local name=$1 bin=$2 np=$3 device=$4; shift 4
  mkdir -p "$T/$name" && cp "$T/prune/student_init.safetensors" "$T/$name/"
  mpirun_n "$np" "$bin" distill "$JOB" "${COMMON[@]}" --set output.dir="$T/$name" --set runtime.device="\"$device\"" \
    "$@" >"$T/$name.log" 2>&1
}

run cpu "$CPU" 1 cpu || { echo "CPU reference failed: $(tail -3 "$T/cpu.log")"; exit 1; }
if ! run dev1 "$DEV" 1 cuda; then
  if grep -q 'no CUDA device found\|CUDA does not work here' "$T/dev1.log"; then
    [ "${LD_REQUIRE_GPU:-0}" = 1 ] && { echo "FAIL: LD_REQUIRE_GPU=1 but: $(grep -m1 laptop-diff: "$T/dev1.log")"; exit 1; }
    skip "$(grep -m1 'laptop-diff:' "$T/dev1.log")"
  fi
  bad "device run failed: $(tail -3 "$T/dev1.log")"
fi
grep -q "rank 0 (node-local rank 0): GPU 0 of [0-9]* (.*): train, distill, sample, eval's U-Net passes and score/plan's teacher pass and output-loss forwards on it" "$T/dev1.log" && ok \
  || bad "no start-up line saying the stages run on the GPU: $(grep -m1 'rank 0 (' "$T/dev1.log")"
run dev2 "$DEV" 2 cuda || bad "2-rank device run failed: $(tail -3 "$T/dev2.log")"
for r in dev1 dev2; do
  for f in student student_ema; do
    "$STDIFF" "$T/$r/$f.safetensors" "$T/cpu/$f.safetensors" 1e-3 >"$T/d.txt" && ok \
      || bad "$r: $f differs from the CPU's: $(cat "$T/d.txt")"
  done
done
/usr/bin/python3 - "$T" <<'PY' && ok || bad "run.h5 of the device runs vs the CPU's"
import sys, h5py, numpy as np
T = sys.argv[1]
def acts(f):
    out = {}
    f["/activations"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out
with h5py.File(f"{T}/cpu/run.h5", "r") as c:
    ca, worst = acts(c), {}
    assert ca, "no snapshots in the CPU run"
    for r in ("dev1", "dev2"):
        with h5py.File(f"{T}/{r}/run.h5", "r") as d:
            for s in ("loss", "loss_task", "loss_out", "loss_feat", "feat_raw", "feat_norm", "grad_norm"):
                x, y = d[f"/train/{s}"][()], c[f"/train/{s}"][()]
                assert x.shape == y.shape and np.all(np.isfinite(x)), (r, s, x, y)
                rel = np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-30))
                assert rel <= 1e-5, (r, s, rel, x, y)
                worst[r] = max(worst.get(r, 0), rel)
            da = acts(d)
            assert sorted(da) == sorted(ca), (r, sorted(da), sorted(ca))
            for k in ca:
                rel = np.max(np.abs(da[k] - ca[k])) / np.max(np.abs(ca[k]))
                assert rel <= 1e-5, (r, k, rel)
                worst[r] = max(worst[r], rel)
print("device vs CPU: worst relative difference of series and snapshots", {k: f"{v:.1e}" for k, v in worst.items()})
PY

# a NaN at step 2 on the device: stops, names the step-1 checkpoint; --resume finishes bit for bit
LAPTOP_DIFF_FAULT=nan@2 run nan "$DEV" 1 cuda && bad "the NaN run succeeded"
grep -q "stopped at step 2: the loss is not finite (NaN); the last checkpoint (step 1) in .* is intact" "$T/nan.log" \
  && ok || bad "NaN stop message: $(grep -m1 laptop-diff: "$T/nan.log")"
[ ! -f "$T/nan/student.safetensors" ] && ok || bad "the stopped run wrote a student"
mpirun_n 1 "$DEV" distill "$JOB" "${COMMON[@]}" --set output.dir="$T/nan" --set runtime.device='"cuda"' --resume \
  >"$T/resume.log" 2>&1 || bad "device resume failed: $(tail -3 "$T/resume.log")"
grep -q "resumed from .* at step 1/2" "$T/resume.log" && ok || bad "did not resume at step 1: $(tail -2 "$T/resume.log")"
for f in student student_ema; do
  "$STDIFF" "$T/nan/$f.safetensors" "$T/dev1/$f.safetensors" 0 >"$T/r.txt" && ok \
    || bad "resumed device run's $f is not the uninterrupted one's: $(cat "$T/r.txt")"
done

# the train stage on the device: seeded init, denoising loss
TR=(--set train.batch=2 --set train.steps=2 --set train.ema_decay=0.9)
mpirun_n 1 "$CPU" train "$JOB" "${TR[@]}" --set output.dir="$T/trcpu" >"$T/trcpu.log" 2>&1 \
  || bad "CPU train failed: $(tail -3 "$T/trcpu.log")"
mpirun_n 1 "$DEV" train "$JOB" "${TR[@]}" --set output.dir="$T/trdev" --set runtime.device='"cuda"' >"$T/trdev.log" 2>&1 \
  || bad "device train failed: $(tail -3 "$T/trdev.log")"
for f in model model_ema; do
  "$STDIFF" "$T/trdev/$f.safetensors" "$T/trcpu/$f.safetensors" 1e-3 >"$T/t.txt" && ok \
    || bad "train on the device: $f differs from the CPU's: $(cat "$T/t.txt")"
done
# sample: the teacher's DDIM samples with guidance, U-Net passes on the device
S=(--set sample.model="$T/teacher.safetensors" --set sample.per_class=1 --set sample.steps=2)
mpirun_n 1 "$CPU" sample "$JOB" "${S[@]}" --set output.dir="$T/scpu" >"$T/scpu.log" 2>&1 \
  || bad "CPU sample failed: $(tail -3 "$T/scpu.log")"
mpirun_n 1 "$DEV" sample "$JOB" "${S[@]}" --set output.dir="$T/sdev" --set runtime.device='"cuda"' >"$T/sdev.log" 2>&1 \
  || bad "device sample failed: $(tail -3 "$T/sdev.log")"
/usr/bin/python3 - "$T" <<'PY' && ok || bad "device samples vs the CPU's"
import sys, h5py, numpy as np
T = sys.argv[1]
with h5py.File(f"{T}/scpu/samples.h5", "r") as c, h5py.File(f"{T}/sdev/samples.h5", "r") as d:
    x, y = d["/samples"][()], c["/samples"][()]
    assert x.shape == y.shape == (10, 1, 32, 32) and np.array_equal(d["/labels"][()], c["/labels"][()]), x.shape
    rel = np.max(np.abs(x - y)) / np.max(np.abs(y))
    assert np.max(np.abs(y)) > 0.1 and rel <= 1e-4, rel
print(f"samples on the device within {rel:.1e} of the CPU's")
PY

# score and plan with the output-loss forwards on the device, 1 and 2 ranks, against the CPU's (in $T/prune)
for np in 1 2; do
  P=(--set model.weights="$T/teacher.safetensors" --set output.dir="$T/pdev$np" --set prune.calib_samples=6
     --set prune.batch=3 --set prune.additivity_sets=1 --set runtime.device='"cuda"')
  { mpirun_n $np "$DEV" score "$JOB" "${P[@]}" && mpirun_n $np "$DEV" plan "$JOB" "${P[@]}"; } >"$T/pdev$np.log" 2>&1 \
    || bad "score + plan on the device ($np ranks) failed: $(tail -3 "$T/pdev$np.log")"
done
mpirun_n 1 "$CPU" plan "$JOB" "${PRUNE[@]}" --set prune.additivity_sets=1 >"$T/plan1.log" 2>&1 \
  || bad "CPU plan with one additivity set failed: $(tail -3 "$T/plan1.log")"
/usr/bin/python3 - "$T" <<'PY' && ok || bad "score and plan on the device vs the CPU"
import sys, h5py, numpy as np
T = sys.argv[1]
with h5py.File(f"{T}/prune/run.h5", "r") as c:
    cs, cp = c["/prune/scores/output_loss"][()], c["/prune/plan"]
    for np_ in (1, 2):
        with h5py.File(f"{T}/pdev{np_}/run.h5", "r") as d:
            ds, dp = d["/prune/scores/output_loss"][()], d["/prune/plan"]
            ok = ~np.isnan(cs)
            assert np.array_equal(ok, ~np.isnan(ds)) and ok.sum() > 3, (cs, ds)
            rel = np.max(np.abs(ds[ok] - cs[ok]) / cs[ok])
            assert rel <= 1e-5, (np_, rel, cs, ds)
            assert np.array_equal(dp[()], cp[()]), (np_, dp[()], cp[()])
            for a in ("removed", "actual_loss", "predicted_loss"):
                x, y = dp.attrs[a], cp.attrs[a]
                if isinstance(x, (bytes, str)) or np.asarray(x).dtype.kind in "SUO":
                    assert x == y, (np_, a, x, y)
                else:
                    assert np.allclose(x, y, rtol=1e-5, atol=0), (np_, a, x, y)
            print(f"score on the device, {np_} rank(s): output_loss within {rel:.1e} of the CPU's; plan {dp.attrs['removed']!r}")
PY
finish device_run
