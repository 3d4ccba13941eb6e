#!/usr/bin/env bash
# One run, three numbers: laptop-diff's training step (bench_step) next to
# PyTorch/diffusers' on the same U-Net, batch and thread count, and both next to
# this machine's SGEMM rate (bench_step measures it in the same run).
# usage: tests/bench/compare_torch.sh [BATCH] [THREADS] [REPEATS]   (repo root; BUILD=build)
# Defaults: the shipped teacher's architecture, batch 32, 1 thread, 3 repeats.
# ROUNDS=n (default 1) runs the pair n times, alternating, and keeps each side's
# best round: on a shared VM a slow spell then hits both sides, not one. Each
# round's ratio is printed too, and their median: each round's two runs are
# back to back, so that paired ratio moves less than the two sides' bests do
# when the machine's speed drifts by 20-30% between rounds.
set -euo pipefail
B=${1:-32}; NT=${2:-1}; R=${3:-3}; ROUNDS=${ROUNDS:-1}
BUILD=${BUILD:-build}
VPY=${LD_VENV:-.venv}/bin/python   # diffusers lives in the venv scripts/setup.sh makes
[ -x "$VPY" ] || { echo "no $VPY: run scripts/setup.sh first" >&2; exit 1; }
[ -x "$BUILD/bench_step" ] || cmake --build "$BUILD" --target bench_step
. tests/bench/blas_env.sh
tmp_err=$(mktemp); trap 'rm -f "$tmp_err"' EXIT
less() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
ours=""; theirs=""; s_ours=""; s_torch=""; per_round=""
for ((i = 1; i <= ROUNDS; i++)); do
  o=$(OMP_NUM_THREADS=$NT OPENBLAS_NUM_THREADS=$NT "$BUILD/bench_step" jobs/fmnist_teacher.cfg "$B" "$R" \
      --set runtime.threads="$NT")
  t=$(env "${TORCH_ENV[@]}" OMP_NUM_THREADS=$NT "$VPY" tests/bench/bench_torch.py models/fmnist_teacher.safetensors "$B" "$R" "$NT" 2>"$tmp_err") || { echo "bench_torch.py failed:" >&2; cat "$tmp_err" >&2; exit 1; }
  so=$(echo "$o" | awk '/^step/ {print $2}'); st=$(echo "$t" | awk '{print $9}')
  per_round+=" $(awk -v a="$so" -v b="$st" 'BEGIN { printf "%.2f", a / b }')"
  if [ -z "$s_ours" ] || less "$so" "$s_ours"; then ours=$o s_ours=$so; fi
  if [ -z "$s_torch" ] || less "$st" "$s_torch"; then theirs=$t s_torch=$st; fi
done
echo "$ours"
echo "$theirs"
if [ "$ROUNDS" -gt 1 ]; then
  echo "rounds: $ROUNDS, alternating; above: each side's best round; step ratio of each round:$per_round"
  median=$(echo "$per_round" | tr ' ' '\n' | sed '/^$/d' | sort -g |
           awk '{v[NR] = $1} END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
  echo "median of the rounds' step ratios: $median"
fi
f_ours=$(echo "$ours" | awk '/^forward/ {print $2}'); f_torch=$(echo "$theirs" | awk '{print $3}')
b_ours=$(echo "$ours" | awk '/^backward/ {print $2}'); b_torch=$(echo "$theirs" | awk '{print $6}')
awk -v fo="$f_ours" -v ft="$f_torch" -v bo="$b_ours" -v bt="$b_torch" -v so="$s_ours" -v st="$s_torch" \
  'BEGIN { printf "laptop-diff / PyTorch time: forward %.2f, backward %.2f, step %.2f (below 1: laptop-diff faster)\n", fo/ft, bo/bt, so/st }'
