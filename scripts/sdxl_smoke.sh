#!/usr/bin/env bash
# LAPTOP scoring and planning at the SDXL scale (jobs/sdxl_smoke.cfg) on NP
# ranks (default 2): makes seeded random SDXL-base weights (10.3 GB, F32) and a
# random latents/context/pooled/time-ids file once, then
#   1. `score` at granularity "layer" with the teacher loaded once per rank and
#      once per node (scripts/teacher_memory.sh: every rank's and the node's
#      peak memory, before and after the shared teacher);
#   2. `score` and `plan` at granularity "layer" and "block" (shared teacher),
#      each under /usr/bin/time: wall time and every rank's peak RSS.
# Results in runs/sdxl_smoke/ (memory/, layer/, block/, timing.txt, memory.md).
# Peak memory of step 1 "per rank" is about 2 x 10.3 GB: it needs a 24 GB node.
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-2}
BUILD=${BUILD:-build}
OUT=runs/sdxl_smoke
JOB=jobs/sdxl_smoke.cfg
if [ ! -x "$BUILD/laptop-diff" ] || [ ! -x "$BUILD/init_model" ] || [ ! -x "$BUILD/make_latents" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target laptop-diff init_model make_latents
fi
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mkdir -p "$OUT"
[ -f "$OUT/sdxl_random.safetensors" ] || "$BUILD/init_model" "$JOB" "$OUT/sdxl_random.safetensors" 1234
# 8 training rows (calibration draws from them) and 4 test rows, SDXL's shapes at 16x16 (pooled width 1280).
[ -f "$OUT/latents.h5" ] || "$BUILD/make_latents" "$OUT/latents.h5" 8 4 4 16 16 77 2048 1234 1280
JOB=$JOB OUT=$OUT/memory NP=$NP BUILD=$BUILD bash scripts/teacher_memory.sh "$@" | tee "$OUT/memory.md"
: >"$OUT/timing.txt"
for g in layer block; do
  for cmd in score plan; do
    # Outer time: the whole job's wall clock; inner time: each rank's peak resident memory.
    /usr/bin/time -f "$g $cmd: %e s wall on $NP ranks" -a -o "$OUT/timing.txt" \
      mpirun --oversubscribe -np "$NP" /usr/bin/time -f "$g $cmd: rank peak RSS %M KiB" -a -o "$OUT/timing.txt" \
      "$BUILD/laptop-diff" "$cmd" "$JOB" --set prune.granularity="$g" --set output.dir="$OUT/$g" "$@" \
      >"$OUT/$g.$cmd.log" 2>&1 || { tail -5 "$OUT/$g.$cmd.log"; exit 1; }
    grep -E "took|removes|plan:" "$OUT/$g.$cmd.log" || true
  done
done
cat "$OUT/timing.txt"
