#!/usr/bin/env bash
# LAPTOP scoring and planning at the SD-1.5 scale (jobs/sd15_smoke.cfg) on NP
# ranks (default 2): makes seeded random SD-1.5 weights (3.4 GB, F32) and a
# random latents/context file once, then runs `score` and `plan`, each under
# /usr/bin/time, and prints their wall time and every rank's peak memory.
# Results in runs/sd15_smoke/ (run.h5, student_init.safetensors, timing.txt).
#   MODE=run bash scripts/sd15_smoke.sh   # the whole `run` instead (1 distill
#     step, 4 eval samples, 1 rank): the peak memory of the pipeline in one job
set -euo pipefail
cd "$(dirname "$0")/.."
# `run` holds teacher + student + gradients + AdamW moments per rank (~13 GB):
# one rank by default, so it fits a 24 GB machine
if [ "${MODE:-stages}" = run ]; then NP=${NP:-1}; else NP=${NP:-2}; fi
BUILD=${BUILD:-build}
OUT=runs/sd15_smoke
if [ ! -x "$BUILD/laptop-diff" ] || [ ! -x "$BUILD/init_model" ] || [ ! -x "$BUILD/make_latents" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target laptop-diff init_model make_latents
fi
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mkdir -p "$OUT"
[ -f "$OUT/sd15_random.safetensors" ] || "$BUILD/init_model" jobs/sd15_smoke.cfg "$OUT/sd15_random.safetensors" 1234
# 8 training rows (calibration draws from them) and 4 test rows, SD-1.5's shapes at 16x16.
[ -f "$OUT/latents.h5" ] || "$BUILD/make_latents" "$OUT/latents.h5" 8 4 4 16 16 77 768 1234
: >"$OUT/timing.txt"
if [ "${MODE:-stages}" = run ]; then
  set -- --set train.steps=1 --set train.batch="$NP" --set eval.samples=4 --set sample.per_class=1 "$@"
  CMDS=(run)
else
  CMDS=(score plan)
fi
for cmd in "${CMDS[@]}"; do
  # Outer time: the whole job's wall clock; inner time: each rank's peak resident memory.
  /usr/bin/time -f "$cmd: %e s wall on $NP ranks" -a -o "$OUT/timing.txt" \
    mpirun --oversubscribe -np "$NP" /usr/bin/time -f "$cmd: rank peak RSS %M KiB" -a -o "$OUT/timing.txt" \
    "$BUILD/laptop-diff" "$cmd" jobs/sd15_smoke.cfg "$@"
done
cat "$OUT/timing.txt"
