#!/usr/bin/env bash
# One run, two numbers: the forward pass (scoring's pass) of a job's U-Net in
# laptop-diff and in PyTorch/diffusers, same shape, batch and threads, random
# weights on both sides. Default: SD-1.5's U-Net (jobs/sd15_smoke.cfg's shape)
# at 32x32 latents, batch 2, 1 thread — the issue #13 row.
# usage: tests/bench/compare_forward.sh [JOB] [SIZE] [BATCH] [THREADS] [REPEATS]   (repo root; BUILD=build)
set -euo pipefail
JOB=${1:-jobs/sd15_smoke.cfg}; S=${2:-32}; B=${3:-2}; NT=${4:-1}; R=${5:-3}
BUILD=${BUILD:-build}
VPY=${LD_VENV:-.venv}/bin/python   # diffusers lives in the venv scripts/setup.sh makes
[ -x "$VPY" ] || { echo "no $VPY: run scripts/setup.sh first" >&2; exit 1; }
[ -x "$BUILD/bench_step" ] || cmake --build "$BUILD" --target bench_step
. tests/bench/blas_env.sh
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
tmp_err=$tmp/torch.err
ours=$(OMP_NUM_THREADS=$NT OPENBLAS_NUM_THREADS=$NT "$BUILD/bench_step" "$JOB" "$B" "$R" --forward-only \
       --config-out "$tmp/config.json" --set runtime.threads="$NT" --set model.sample_size="$S")
echo "$ours"
theirs=$(env "${TORCH_ENV[@]}" OMP_NUM_THREADS=$NT "$VPY" tests/bench/bench_torch.py "$tmp/config.json" "$B" "$R" "$NT" forward 2>"$tmp_err") || { echo "bench_torch.py failed:" >&2; cat "$tmp_err" >&2; exit 1; }
echo "$theirs"
f_ours=$(echo "$ours" | awk '/^forward / {print $2}'); f_torch=$(echo "$theirs" | awk '{print $3}')
awk -v fo="$f_ours" -v ft="$f_torch" \
  'BEGIN { printf "laptop-diff / PyTorch time: forward %.2f (below 1: laptop-diff faster)\n", fo/ft }'
