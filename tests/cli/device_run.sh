#!/usr/bin/env bash
# the stages with runtime.device = "cuda": the device-resident stage path
# (weights, optimizer state, batches, activations on the device; the host sees
# checkpoints, snapshots and the final files) against the same job on the CPU.
# Run twice by ctest: on laptop-diff-emu (the CUDA backend on the host emulator,
# label emu) and, in an LD_CUDA build, on laptop-diff with a GPU (label gpu;
# SKIPPED without one, failing under LD_REQUIRE_GPU=1).
#  - distill on 1 rank (convolutions on cuDNN, and with runtime.gpu_conv = "gemm" on im2col +
#    cuBLAS; at runtime.precision "bf16" with attention fused, its losses within 1e-2 of the
#    CPU's) and on 2 ranks == the CPU's 1-rank run; the 2 ranks' gradients summed over
#    NCCL (buckets started during backward) == summed through host memory (runtime.gpu_comm = "mpi"): every /train series and the
#    activation snapshots within 1e-5 relative, student and its EMA within 1e-3 (AdamW's first
#    steps magnify last-bit differences of near-zero gradients; test_distill.sh says more)
#  - a NaN loss at step 2 stops the device run naming the intact step-1 checkpoint; --resume
#    from it ends bit for bit where the uninterrupted device run ended (state round-trips
#    through the host exactly)
#  - train (the denoising task from a seeded init) on the device == on the CPU
#  - sample (DDIM with guidance, the U-Net passes on the device) == the CPU's within 1e-4 of the range
#  - score's output_loss and plan's measured losses with their forwards (and the calibration
#    set's teacher pass) on the device (1 and 2 ranks) == the CPU's within 1e-5 relative, the same plan
#  - a text_time (SDXL-style) model at 8x8 on HDF5 data with random /pooled and /time_ids: `run`
#    (score, plan, 1 distill step, eval) on the device == on the CPU (scores, plan losses, /train
#    series, the teacher's eval within 1e-5 relative); eval of the same teacher and student on the
#    device, 1 and 2 ranks: task_loss and output_mse within 1e-5 relative, the PNG samples within
#    one gray level on under 1% of the pixels
# Args: DEVICE_BINARY SOURCE_DIR; $CPU_BIN is the CPU reference binary, $STDIFF, $INIT_MODEL.
set -u
DEV=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py PIL  # PIL: eval's PNG samples
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

# pair NAME COMMAND args...: COMMAND on 1 rank on the CPU (output.dir $T/NAMEcpu, log
# $T/NAMEcpu.log) and on the device ($T/NAMEdev)
pair() {
  local name=$1 cmd=$2; shift 2
  mpirun_n 1 "$CPU" "$cmd" "$JOB" "$@" --set output.dir="$T/${name}cpu" >"$T/${name}cpu.log" 2>&1 \
    || bad "CPU $cmd ($name) failed: $(tail -3 "$T/${name}cpu.log")"
  mpirun_n 1 "$DEV" "$cmd" "$JOB" "$@" --set output.dir="$T/${name}dev" --set runtime.device='"cuda"' \
    >"$T/${name}dev.log" 2>&1 || bad "device $cmd ($name) failed: $(tail -3 "$T/${name}dev.log")"
}

run cpu "$CPU" 1 cpu || { echo "CPU reference failed: $(tail -3 "$T/cpu.log")"; exit 1; }
if ! run dev1 "$DEV" 1 cuda; then
  if grep -q 'no CUDA device found\|CUDA does not work here' "$T/dev1.log"; then
    [ "${LD_REQUIRE_GPU:-0}" = 1 ] && { echo "FAIL: LD_REQUIRE_GPU=1 but: $(grep -m1 laptop-diff: "$T/dev1.log")"; exit 1; }
    skip "$(grep -m1 'laptop-diff:' "$T/dev1.log")"
  fi
  bad "device run failed: $(tail -3 "$T/dev1.log")"
fi
grep -q "rank 0 (node-local rank 0): GPU 0 of [0-9]* (.*): the U-Net passes of train, distill, sample, forward, eval, score and plan on it" "$T/dev1.log" && ok \
  || bad "no start-up line saying the stages run on the GPU: $(grep -m1 'rank 0 (' "$T/dev1.log")"
# runtime.gpu_conv "auto": cuDNN where the build has it (the emulator has its own); "gemm":
# im2col + cuBLAS, the same run within the float bounds below
line=$(grep -m1 'rank 0 (node-local rank 0): GPU' "$T/dev1.log")
case "$line" in
  *"left cuDNN out"*) bad "gpu_conv auto: cuDNN did not start: $line" ;;
  *"convolutions cuDNN"*) ok ;;
  *"convolutions im2col + cuBLAS)"*) [ "$(basename "$DEV")" = laptop-diff-emu ] && bad "the emulator's convolutions are not on its cuDNN: $line" || ok ;;
  *) bad "the start-up line does not name the convolutions: $line" ;;
esac
run dev1gemm "$DEV" 1 cuda --set runtime.gpu_conv='"gemm"' || bad "device run with gpu_conv gemm failed: $(tail -3 "$T/dev1gemm.log")"
grep -q 'rank 0 (node-local rank 0): GPU .*convolutions im2col + cuBLAS)' "$T/dev1gemm.log" && ok \
  || bad "gpu_conv gemm: $(grep -m1 'rank 0 (' "$T/dev1gemm.log")"
# runtime.precision "bf16": the GEMMs in BF16 and attention on the fused tensor-core kernel
# (runtime.gpu_attention "auto"); its losses near the CPU's fp32 ones, not equal to them
run dev1bf16 "$DEV" 1 cuda --set runtime.precision='"bf16"' || bad "device run at bf16 failed: $(tail -3 "$T/dev1bf16.log")"
grep -q 'rank 0 (node-local rank 0): GPU .*GEMMs bf16, attention fused (tensor cores), ' "$T/dev1bf16.log" && ok \
  || bad "bf16: the start-up line does not say attention is fused: $(grep -m1 'rank 0 (' "$T/dev1bf16.log")"
/usr/bin/python3 - "$T" <<'PY' && ok || bad "the bf16 device run's losses vs the CPU's"
import sys, h5py, numpy as np
T = sys.argv[1]
with h5py.File(f"{T}/cpu/run.h5", "r") as c, h5py.File(f"{T}/dev1bf16/run.h5", "r") as d:
    worst = 0
    for s in ("loss", "loss_task", "loss_out", "loss_feat"):
        x, y = d[f"/train/{s}"][()], c[f"/train/{s}"][()]
        assert x.shape == y.shape and np.all(np.isfinite(x)), (s, x, y)
        worst = max(worst, np.max(np.abs(x - y) / np.abs(y)))
    assert 1e-5 < worst <= 1e-2, ("bf16 losses vs fp32", worst)
print(f"bf16 device run vs the CPU's fp32: worst relative loss difference {worst:.1e}")
PY
# "fused" by name at fp32 stops at start-up, saying why
run fused32 "$DEV" 1 cuda --set runtime.gpu_attention='"fused"' && bad "gpu_attention = fused at fp32 ran"
grep -q 'runtime.gpu_attention = "fused" runs on tensor cores: it needs runtime.precision "tf32" or "bf16"' "$T/fused32.log" \
  && ok || bad "gpu_attention fused at fp32: $(grep -m1 'laptop-diff:' "$T/fused32.log")"
run dev2 "$DEV" 2 cuda --set train.bucket_mb=0.05 || bad "2-rank device run failed: $(tail -3 "$T/dev2.log")"
# the gradient sums between the GPUs: NCCL (runtime.gpu_comm = "auto"), buckets started while
# backward runs; on the emulator its NCCL (shared memory) stands in, and sums in rank order, so
# the host path ("mpi") must give the same bits. A GPU machine with one GPU falls back to "mpi".
if grep -q "gradients: the 2 GPUs sum them over" "$T/dev2.log"; then
  # small buckets: all but the last (the first parameters') must start before backward ends
  line=$(grep -m1 "distill: gradient sums over the GPUs (NCCL): " "$T/dev2.log")
  nb=$(sed -n 's/.*(NCCL): \([0-9]*\) buckets of 0.05 MiB per step, \([0-9]*\) started while backward ran/\1/p' <<<"$line")
  ne=$(sed -n 's/.*(NCCL): \([0-9]*\) buckets of 0.05 MiB per step, \([0-9]*\) started while backward ran/\2/p' <<<"$line")
  [ -n "$nb" ] && [ "$nb" -ge 3 ] && [ "$ne" = "$nb" ] && ok || bad "NCCL sums did not overlap backward: $line"
elif [ "$(basename "$DEV")" = laptop-diff-emu ]; then
  bad "the emulator's 2 ranks did not sum over (emulated) NCCL: $(grep -m1 '^gradients' "$T/dev2.log")"
else
  grep -q 'gradients: the GPUs sum them through host memory over MPI (runtime.gpu_comm = "auto": ranks 0 and 1 share the GPU at ' \
    "$T/dev2.log" && ok || bad "no NCCL and no reason why: $(grep -m1 '^gradients' "$T/dev2.log")"
  # asked for by name, NCCL on a shared GPU is an error saying so
  run nccl2 "$DEV" 2 cuda --set runtime.gpu_comm='"nccl"' && bad "gpu_comm = nccl on one GPU for 2 ranks succeeded"
  grep -q 'runtime.gpu_comm = "nccl": ranks 0 and 1 share the GPU at .*, and NCCL needs a GPU of its own per rank' \
    "$T/nccl2.log" && ok || bad "gpu_comm = nccl on a shared GPU: $(grep -m1 'laptop-diff:' "$T/nccl2.log")"
fi
run dev2mpi "$DEV" 2 cuda --set train.bucket_mb=0.05 --set runtime.gpu_comm='"mpi"' || bad "2-rank device run over MPI failed: $(tail -3 "$T/dev2mpi.log")"
grep -q 'distill: gradient sums over MPI from a host copy: [0-9]* buckets of 0.05 MiB per step, 0 started while backward ran' \
  "$T/dev2mpi.log" && ok || bad "gpu_comm = mpi: $(grep -m1 'gradient sums' "$T/dev2mpi.log")"
for f in student student_ema; do
  "$STDIFF" "$T/dev2mpi/$f.safetensors" "$T/dev2/$f.safetensors" 0 >"$T/d.txt" && ok \
    || bad "2 ranks: $f over MPI is not bit for bit the one over NCCL: $(cat "$T/d.txt")"
done
for r in dev1 dev1gemm dev2; do
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
pair tr train "${TR[@]}"
# the tight check: losses and gradient norms (measured 1e-8 apart). The weights get a looser bound:
# from a fresh init AdamW's first steps move each weight by about lr whatever its gradient's size,
# so float-level differences of near-zero gradients show in the zero-initialised biases (measured
# 7.0e-4 on the model, 1.0e-3 on its EMA, on AMD EPYC; it moves with the CPU's OpenBLAS kernels)
/usr/bin/python3 - "$T" <<'PY' && ok || bad "train on the device: losses or gradient norms differ from the CPU's"
import sys, h5py, numpy as np
T = sys.argv[1]
with h5py.File(f"{T}/trcpu/run.h5", "r") as c, h5py.File(f"{T}/trdev/run.h5", "r") as d:
    for s in ("loss", "grad_norm"):
        x, y = d[f"/train/{s}"][()], c[f"/train/{s}"][()]
        assert x.shape == y.shape == (2,) and np.max(np.abs(x - y) / np.abs(y)) <= 1e-6, (s, x, y)
PY
for f in model model_ema; do
  "$STDIFF" "$T/trdev/$f.safetensors" "$T/trcpu/$f.safetensors" 3e-3 >"$T/t.txt" && ok \
    || bad "train on the device: $f differs from the CPU's: $(cat "$T/t.txt")"
done
# sample: the teacher's DDIM samples with guidance, U-Net passes on the device
S=(--set sample.model="$T/teacher.safetensors" --set sample.per_class=1 --set sample.steps=2)
pair s sample "${S[@]}"
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

# the other criteria that run the U-Net (feature_loss: one forward, each candidate's two sums per
# sample on the device; taylor: forward + backward there, the gradient and weights back once) against
# the CPU's; magnitude reads the host weights. taylor is |sum g*w|, whose cancellation magnifies the
# gradients' float differences (measured 1.9e-5; feature_loss 2.8e-8)
CR=(--set model.weights="$T/teacher.safetensors" --set prune.calib_samples=6 --set prune.batch=3
    --set 'prune.criterion=["output_loss","feature_loss","taylor","magnitude"]')
pair cr score "${CR[@]}"
/usr/bin/python3 - "$T" <<'PY' && ok || bad "feature_loss / taylor / magnitude on the device vs the CPU"
import sys, h5py, numpy as np
T = sys.argv[1]
with h5py.File(f"{T}/crcpu/run.h5", "r") as c, h5py.File(f"{T}/crdev/run.h5", "r") as d:
    for crit, tol in (("output_loss", 1e-5), ("feature_loss", 1e-5), ("taylor", 1e-3), ("magnitude", 0)):
        x, y = d[f"/prune/scores/{crit}"][()], c[f"/prune/scores/{crit}"][()]
        ok = ~np.isnan(y)
        assert np.array_equal(ok, ~np.isnan(x)) and ok.sum() > 3 and np.all(y[ok] > 0), (crit, x, y)
        rel = np.max(np.abs(x[ok] - y[ok]) / y[ok])
        assert rel <= tol, (crit, rel, x, y)
        print(f"score on the device, {crit}: within {rel:.1e} of the CPU's")
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

# An SDXL-style model through the device: fmnist_tiny's layout with text_time conditioning
# (add_embedding, 2-deep transformer stacks) at 8x8 on HDF5 data with random /pooled and
# /time_ids (so the added conditioning's uploads matter), small enough for the emulator.
# `run` (score, plan, distill, eval on one context: plan's measured losses use the teacher
# outputs score's device pass brought back) on the device == on the CPU; then eval alone of
# the same teacher and student on the device, 1 and 2 ranks == the CPU's, with its samples
/usr/bin/python3 - "$T/tt.h5" <<'PY'
import h5py, numpy as np, sys
r = np.random.default_rng(7)
with h5py.File(sys.argv[1], "w") as f:
    for g in ("", "test/"):
        f[g + "latents"] = r.standard_normal((8, 1, 8, 8)).astype(np.float32)
        f[g + "context"] = r.standard_normal((8, 8, 16)).astype(np.float32)
        f[g + "pooled"] = r.standard_normal((8, 6)).astype(np.float32)
        f[g + "time_ids"] = r.uniform(0, 16, (8, 6)).round().astype(np.float32)
PY
TT=(--set 'model.addition_embed_type="text_time"' --set model.addition_time_embed_dim=4
    --set model.projection_class_embeddings_input_dim=30 --set model.transformer_layers_per_block=2
    --set model.sample_size=8 --set 'data.source="hdf5"' --set data.path="$T/tt.h5")
"$INIT_MODEL" "$JOB" "$T/tt_teacher.safetensors" 5 "${TT[@]}" >/dev/null || bad "init_model of the text_time teacher failed"
TR=("${TT[@]}" --set model.weights="$T/tt_teacher.safetensors" --set prune.calib_samples=4 --set prune.batch=2
    --set prune.additivity_sets=1 --set train.batch=2 --set train.steps=1 --set distill.probe_samples=2
    --set distill.activation_interval=1 --set eval.samples=6 --set sample.per_class=1 --set sample.steps=2)
mpirun_n 1 "$CPU" run "$JOB" "${TR[@]}" --set output.dir="$T/ttcpu" >"$T/ttcpu.log" 2>&1 \
  || bad "CPU run of the text_time model failed: $(tail -3 "$T/ttcpu.log")"
mpirun_n 1 "$DEV" run "$JOB" "${TR[@]}" --set output.dir="$T/ttdev" --set runtime.device='"cuda"' >"$T/ttdev.log" 2>&1 \
  || bad "device run of the text_time model failed: $(tail -3 "$T/ttdev.log")"
for np in 1 2; do
  mkdir -p "$T/ttev$np" && cp "$T/ttcpu/student.safetensors" "$T/ttev$np/"
  mpirun_n $np "$DEV" eval "$JOB" "${TR[@]}" --set output.dir="$T/ttev$np" --set runtime.device='"cuda"' \
    >"$T/ttev$np.log" 2>&1 || bad "device eval ($np ranks) failed: $(tail -3 "$T/ttev$np.log")"
done
/usr/bin/python3 - "$T" <<'PY' && ok || bad "the text_time model's run and eval on the device vs the CPU"
import sys, h5py, numpy as np
from PIL import Image
T = sys.argv[1]
def rel(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-30)))
worst, png = {}, 0.0
def within(what, x, y, tol=1e-5):
    r = rel(x, y)
    assert np.all(np.isfinite(x)) and r <= tol, (what, r, x, y)
    worst[what.split(":")[0]] = max(worst.get(what.split(":")[0], 0), r)
metrics = ("task_loss", "output_mse")
with h5py.File(f"{T}/ttcpu/run.h5", "r") as c, h5py.File(f"{T}/ttdev/run.h5", "r") as d:
    cs = c["/prune/scores/output_loss"][()]
    ok = ~np.isnan(cs)
    assert ok.sum() > 3 and np.array_equal(ok, ~np.isnan(d["/prune/scores/output_loss"][()]))
    within("run score", d["/prune/scores/output_loss"][()][ok], cs[ok])
    assert np.array_equal(d["/prune/plan"][()], c["/prune/plan"][()])
    within("run plan", d["/prune/plan"].attrs["actual_loss"], c["/prune/plan"].attrs["actual_loss"])
    within("run plan", d["/prune/additivity"][()], c["/prune/additivity"][()])
    for s in ("loss", "loss_task", "loss_out", "loss_feat", "grad_norm"):
        within("run distill", d[f"/train/{s}"][()], c[f"/train/{s}"][()])
    for m in metrics:  # the run's students differ by the distillation's rounding: the teacher only here
        within("run eval teacher", d[f"/eval/teacher/{m}"][()], c[f"/eval/teacher/{m}"][()])
    for np_ in (1, 2):
        with h5py.File(f"{T}/ttev{np_}/run.h5", "r") as e:
            for who in ("teacher", "student"):
                for m in metrics:
                    within(f"eval {np_} rank(s)", e[f"/eval/{who}/{m}"][()], c[f"/eval/{who}/{m}"][()])
            assert c["/eval/student/output_mse"][()] > 0 and e["/eval/teacher/output_mse"][()] == 0
        # the side-by-side samples (same seeds and classes): within one gray level of the CPU's
        a = np.asarray(Image.open(f"{T}/ttev{np_}/teacher_vs_student.png"), np.int32)
        b = np.asarray(Image.open(f"{T}/ttcpu/teacher_vs_student.png"), np.int32)
        assert a.shape == b.shape and b.std() > 10, (a.shape, b.shape, b.std())
        png = max(png, np.mean(a != b))
        assert np.max(np.abs(a - b)) <= 1 and np.mean(a != b) < 0.01, (np_, np.max(np.abs(a - b)), np.mean(a != b))
print("text_time model, device vs CPU: worst relative difference", {k: f"{v:.1e}" for k, v in worst.items()},
      f"eval's PNG samples: {100 * png:.2f}% of the pixels one gray level off")
PY
# 5e-3: one weight whose step-1 gradient is near AdamW's eps moves by 1e-4 (1.2e-3 of its tensor's largest)
"$STDIFF" "$T/ttdev/student.safetensors" "$T/ttcpu/student.safetensors" 5e-3 >"$T/tt.txt" && ok \
  || bad "text_time run: the distilled student differs from the CPU's: $(cat "$T/tt.txt")"
# forward on the device against diffusers' stored outputs (tests/reference), taps included, 9 rows
# in chunks of 4 (a chunk's inputs not uploaded after the first gives 0.42 on conv)
FX="$SRC/tests/reference/fixtures"
for m in conv linear xl xlt; do
  /usr/bin/python3 "$SRC/tests/cli/forward_io.py" make "$FX/${m}_io.safetensors" "$T/fin_$m.h5" --repeat 3 >/dev/null
  "$DEV" forward "$FX/${m}_weights.safetensors" --inputs "$T/fin_$m.h5" --out "$T/fout_$m.h5" --taps \
    --set runtime.device='"cuda"' --set runtime.threads=1 >"$T/fwd_$m.log" 2>&1 \
    || { bad "$m: forward on the device failed: $(tail -2 "$T/fwd_$m.log")"; continue; }
  grep -q "^forward: GPU 0 of [0-9]* (.*): the U-Net passes of train, distill, sample, forward" "$T/fwd_$m.log" && ok \
    || bad "$m: forward did not say it runs on the GPU: $(head -1 "$T/fwd_$m.log")"
  /usr/bin/python3 "$SRC/tests/cli/forward_io.py" compare "$T/fout_$m.h5" "$FX/${m}_io.safetensors" --taps --repeat 3 \
    >"$T/fcmp_$m.txt" 2>&1 && ok || bad "$m: forward on the device vs diffusers: $(cat "$T/fcmp_$m.txt")"
  echo "forward on the device, $m: $(cat "$T/fcmp_$m.txt")"
done
finish device_run
