#!/usr/bin/env bash
# One run, three numbers: laptop-diff's training step (bench_step) next to
# PyTorch/diffusers' on the same U-Net, batch and thread count, and both next to
# this machine's SGEMM rate (bench_step measures it in the same run).
# usage: tests/bench/compare_torch.sh [BATCH] [THREADS] [REPEATS]   (repo root; BUILD=build)
# Defaults: the shipped teacher's architecture, batch 32, 1 thread, 3 repeats.
set -euo pipefail
B=${1:-32}; NT=${2:-1}; R=${3:-3}
BUILD=${BUILD:-build}
VPY=${LD_VENV:-.venv}/bin/python   # diffusers lives in the venv scripts/setup.sh makes
[ -x "$VPY" ] || { echo "no $VPY: run scripts/setup.sh first" >&2; exit 1; }
[ -x "$BUILD/bench_step" ] || cmake --build "$BUILD" --target bench_step
. tests/bench/blas_env.sh
tmp_err=$(mktemp); trap 'rm -f "$tmp_err"' EXIT
ours=$(OMP_NUM_THREADS=$NT OPENBLAS_NUM_THREADS=$NT "$BUILD/bench_step" jobs/fmnist_teacher.cfg "$B" "$R" \
       --set runtime.threads="$NT")
echo "$ours"
theirs=$(env "${TORCH_ENV[@]}" OMP_NUM_THREADS=$NT "$VPY" tests/bench/bench_torch.py models/fmnist_teacher.safetensors "$B" "$R" "$NT" 2>"$tmp_err") || { echo "bench_torch.py failed:" >&2; cat "$tmp_err" >&2; exit 1; }
echo "$theirs"
s_ours=$(echo "$ours" | awk '/^step/ {print $2}')
s_torch=$(echo "$theirs" | awk '{print $9}')
f_ours=$(echo "$ours" | awk '/^forward/ {print $2}'); f_torch=$(echo "$theirs" | awk '{print $3}')
b_ours=$(echo "$ours" | awk '/^backward/ {print $2}'); b_torch=$(echo "$theirs" | awk '{print $6}')
awk -v fo="$f_ours" -v ft="$f_torch" -v bo="$b_ours" -v bt="$b_torch" -v so="$s_ours" -v st="$s_torch" \
  'BEGIN { printf "laptop-diff / PyTorch time: forward %.2f, backward %.2f, step %.2f (below 1: laptop-diff faster)\n", fo/ft, bo/bt, so/st }'
