#!/usr/bin/env bash
# Peak memory of `score` with the teacher shared per node and loaded per rank
# (runtime.share_teacher = true / false), NP ranks on this node (default 2):
# runs score twice and prints a Markdown table from run.h5 /memory/score
# (every rank's VmHWM, the teacher pages each maps with another rank, the
# node's peak with those counted once) and each rank's peak RSS from
# /usr/bin/time as a cross-check. Results in $OUT/{shared,per_rank}/.
#   bash scripts/teacher_memory.sh                       # SD-1.5 shape, jobs/sd15_smoke.cfg
#   JOB=jobs/sdxl_smoke.cfg bash scripts/teacher_memory.sh --set prune.calib_samples=2
# JOB's model.weights (and data.path) must exist, except for the default job,
# whose random weights and latents are made here as scripts/sd15_smoke.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
JOB=${JOB:-jobs/sd15_smoke.cfg}
NP=${NP:-2}
BUILD=${BUILD:-build}
OUT=${OUT:-runs/teacher_memory}
PY=${PY:-/usr/bin/python3}
if [ ! -x "$BUILD/laptop-diff" ] || [ ! -x "$BUILD/init_model" ] || [ ! -x "$BUILD/make_latents" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target laptop-diff init_model make_latents
fi
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
if [ "$JOB" = jobs/sd15_smoke.cfg ]; then
  mkdir -p runs/sd15_smoke
  [ -f runs/sd15_smoke/sd15_random.safetensors ] || "$BUILD/init_model" "$JOB" runs/sd15_smoke/sd15_random.safetensors 1234
  [ -f runs/sd15_smoke/latents.h5 ] || "$BUILD/make_latents" runs/sd15_smoke/latents.h5 8 4 4 16 16 77 768 1234
fi
for mode in shared per_rank; do
  share=true; [ $mode = per_rank ] && share=false
  mkdir -p "$OUT/$mode"
  : >"$OUT/$mode/time.txt"
  /usr/bin/time -f "wall %e s" -a -o "$OUT/$mode/time.txt" \
    mpirun --oversubscribe -np "$NP" /usr/bin/time -f "rank peak RSS %M KiB" -a -o "$OUT/$mode/time.txt" \
    "$BUILD/laptop-diff" score "$JOB" --set runtime.share_teacher=$share --set output.dir="$OUT/$mode" "$@" \
    >"$OUT/$mode/score.log" 2>&1 || { tail -5 "$OUT/$mode/score.log"; exit 1; }
  sed -n '/^memory (score)/,$p' "$OUT/$mode/score.log"
done
"$PY" - "$OUT" <<'PY'
import sys, re, h5py
out = sys.argv[1]
G = 1024 ** 3
print("\n| teacher | rank peak RSS (VmHWM) | of it teacher pages shared with another rank | node peak (shared pages once) | /usr/bin/time per rank | wall |")
print("| --- | --- | --- | --- | --- | --- |")
for mode, label in (("shared", "one per node"), ("per_rank", "one per rank")):
    g = h5py.File(f"{out}/{mode}/run.h5", "r")["/memory/score"]
    t = open(f"{out}/{mode}/time.txt").read()
    kib = [int(x) for x in re.findall(r"rank peak RSS (\d+) KiB", t)]
    wall = re.findall(r"wall ([\d.]+) s", t)
    f = lambda a: ", ".join(f"{v / G:.2f}" for v in a)
    print(f"| {label} | {f(g['peak_rss_bytes'][:])} GiB | {f(g['teacher_shared_bytes'][:])} GiB | "
          f"{f(g['node_peak_bytes'][:])} GiB | {', '.join(f'{k * 1024 / G:.2f}' for k in kib)} GiB | {wall[0]} s |")
print(f"\nteacher: {g.attrs['teacher_bytes'] / G:.2f} GiB of F32 parameters")
PY
