#!/usr/bin/env bash
# perf_table.sh — every timed row of the README's Performance table in one
# sitting (issue #13 item 5), as a markdown table, with the raw outputs kept:
#   the default teacher's training step vs PyTorch at 1 and 2 threads (compare_torch.sh),
#   the SD-1.5 U-Net's forward at 32x32, batch 2, vs PyTorch at 1 and 2 threads (compare_forward.sh),
#   2-rank data-parallel efficiency (scaling.sh, the teacher's `train`).
# Ratios are measured within one run of each script; the rows run one after
# another, so run it on a quiet machine. Memory rows: tests/bench/memory_step.sh.
# The teacher rows alternate laptop-diff and PyTorch ROUNDS times (default 3)
# and keep each side's best round (compare_torch.sh); the ratio cell also has
# each round's paired ratio and their median.
# usage: tests/bench/perf_table.sh [REPEATS]   (repo root; BUILD=build, OUT=runs/perf_table, ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${1:-10}
BUILD=${BUILD:-build}
OUT=${OUT:-runs/perf_table}
ROUNDS=${ROUNDS:-3}
mkdir -p "$OUT"
export BUILD ROUNDS
row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }
{
  echo "perf_table.sh $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
       "(family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs), model $(grep -m1 '^model\s*:' /proc/cpuinfo | cut -d: -f2 | xargs)), $(nproc) cores"
  echo
  echo "| row | laptop-diff | PyTorch (same run) | ratio | command |"
  echo "| --- | --- | --- | --- | --- |"
} >"$OUT/table.md"
for NT in 1 2; do
  bash tests/bench/compare_torch.sh 32 "$NT" "$R" >"$OUT/teacher_$NT.txt" 2>&1
  f=$OUT/teacher_$NT.txt
  ours=$(awk '/^step/ {print $2}' "$f"); theirs=$(awk '/^torch:/ {print $9}' "$f")
  ratio=$(sed -n 's/.*step \([0-9.]*\) (below.*/\1/p' "$f"); sg=$(sed -n 's/.*step reaches \([0-9]*%\).*/\1/p' "$f")
  rounds=$(sed -n 's/.*step ratio of each round: *//p' "$f"); med=$(sed -n "s/^median of the rounds' step ratios: //p" "$f")
  row "teacher training step, batch 32, $NT thread(s)" "$ours s ($sg of SGEMM)" "$theirs s" \
      "$ratio${rounds:+ (rounds: $rounds; median $med)}" "\`ROUNDS=$ROUNDS tests/bench/compare_torch.sh 32 $NT $R\`" >>"$OUT/table.md"
done
for NT in 1 2; do
  bash tests/bench/compare_forward.sh jobs/sd15_smoke.cfg 32 2 "$NT" 3 >"$OUT/sd15_forward_$NT.txt" 2>&1
  f=$OUT/sd15_forward_$NT.txt
  ours=$(awk '$1 == "forward" && $3 == "s" {print $2}' "$f"); theirs=$(awk '/^torch:/ {print $3}' "$f")
  ratio=$(sed -n 's/.*forward \([0-9.]*\) (below.*/\1/p' "$f"); sg=$(sed -n 's/.*reaches \([0-9]*%\).*/\1/p' "$f")
  row "SD-1.5 U-Net forward, 32x32 latents, batch 2, $NT thread(s)" "$ours s ($sg of SGEMM)" "$theirs s" "$ratio" \
      "\`tests/bench/compare_forward.sh jobs/sd15_smoke.cfg 32 2 $NT 3\`" >>"$OUT/table.md"
done
bash tests/bench/scaling.sh 32 8 >"$OUT/scaling.txt" 2>&1
f=$OUT/scaling.txt
t12=$(awk '/1 rank  x 2 threads/ {print $(NF-1)}' "$f"); t11=$(awk '/1 rank  x 1 thread:/ {print $(NF-1)}' "$f")
ton=$(awk '/overlap_comm on:/ {print $(NF-1)}' "$f"); toff=$(awk '/overlap_comm off:/ {print $(NF-1)}' "$f")
eff=$(sed -n 's/^2-rank efficiency.*overlap on \([0-9.]*\), off \([0-9.]*\).*/\1 (overlap off: \2)/p' "$f")
per=$(sed -n 's/^per-rank efficiency.*overlap on \([0-9.]*\), off.*/\1/p' "$f")
row "2-rank data-parallel efficiency, teacher \`train\`, global batch 32" \
    "1 rank x 2 threads $t12 s, 2 ranks x 1 thread $ton s (overlap off: $toff s) per batch" \
    "-" "$eff; per rank t(1x1)/(2 t(2x1)) = $per (1x1: $t11 s)" "\`tests/bench/scaling.sh 32 8\`" >>"$OUT/table.md"
cat "$OUT/table.md"
echo "raw outputs in $OUT/"
