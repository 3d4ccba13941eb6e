#!/usr/bin/env bash
# memory_step.sh — peak resident memory of one SD-1.5 distillation step on one
# rank, at 16x16, 32x32 and 64x64 latents (512x512 pixels), batch 1, with
# train.recompute off and on (issue #13 item 5's "peak memory at 16/32/64" row).
# The teacher is SD-1.5's U-Net with seeded random weights (tests/tools/
# init_model, 3.4 GB F32); the student is the same unpruned network (the
# largest student a plan can give: an upper bound), so the step holds teacher +
# student + gradients + AdamW's two moments = 5 x 3.44 GB before activations.
# Each case is its own `laptop-diff distill` under /usr/bin/time (its Maximum
# resident set size: the process's VmHWM), one at a time, under `ulimit -v` and
# a timeout; before each, it waits until MemAvailable >= NEED_GIB. A case that
# hits the limit is reported as not fitting, not retried.
#   bash tests/bench/memory_step.sh                 # all six cases
#   SIZES="64" MODES="on" bash tests/bench/memory_step.sh
# Environment: BUILD (build), OUT (runs/memory_step), SIZES ("16 32 64"), MODES
# ("off on"), NEED_GIB (20), LIMIT_GIB (ulimit -v, 23), TIMEOUT_S (3600),
# WAIT_S (longest wait for free memory, 3600), THREADS (runtime.threads, 0 = all).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
OUT=${OUT:-runs/memory_step}
SIZES=${SIZES:-"16 32 64"}
MODES=${MODES:-"off on"}
NEED_GIB=${NEED_GIB:-20}
LIMIT_GIB=${LIMIT_GIB:-23}
TIMEOUT_S=${TIMEOUT_S:-3600}
WAIT_S=${WAIT_S:-3600}
THREADS=${THREADS:-0}
for t in laptop-diff init_model make_latents; do
  [ -x "$BUILD/$t" ] || cmake --build "$BUILD" --target "$t" >/dev/null
done
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mkdir -p "$OUT"
W="$OUT/sd15_random.safetensors"
[ -f "$W" ] || "$BUILD/init_model" jobs/sd15_smoke.cfg "$W" 1234 >/dev/null

avail_gib() { awk '/^MemAvailable:/ {printf "%d", $2 / 1048576}' /proc/meminfo; }
wait_memory() {
  local waited=0
  while [ "$(avail_gib)" -lt "$NEED_GIB" ]; do
    if [ "$waited" -ge "$WAIT_S" ]; then
      echo "memory_step: only $(avail_gib) GiB available after ${waited} s (need $NEED_GIB): giving up" >&2
      exit 1
    fi
    echo "memory_step: $(avail_gib) GiB available, waiting for $NEED_GIB" >&2
    sleep 60
    waited=$((waited + 60))
  done
}

TABLE="$OUT/table.txt"
{
  echo "# memory_step.sh $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo) GiB"
  printf "%-8s %-10s %14s %10s %s\n" latents recompute "peak RSS GiB" "wall s" note
} >"$TABLE"
for S in $SIZES; do
  D="$OUT/latents_$S.h5"
  # 4 training rows, 2 test rows of SD-1.5's latent/context shapes at S x S
  [ -f "$D" ] || "$BUILD/make_latents" "$D" 4 2 4 "$S" "$S" 77 768 1234 >/dev/null
  for M in $MODES; do
    case $M in on) RC=true ;; off) RC=false ;; *) echo "memory_step: MODES takes on/off, not $M" >&2; exit 2 ;; esac
    wait_memory
    R="$OUT/run_${S}_$M"
    rm -rf "$R"
    mkdir -p "$R"
    set +e
    (
      ulimit -v $((LIMIT_GIB * 1024 * 1024))
      exec /usr/bin/time -f "%M %e" -o "$R/time.txt" timeout "$TIMEOUT_S" "$BUILD/laptop-diff" distill jobs/sd15_smoke.cfg \
        --set model.weights="\"$W\"" --set distill.student="\"$W\"" --set data.path="\"$D\"" \
        --set model.sample_size="$S" --set train.steps=1 --set train.batch=1 --set train.recompute="$RC" \
        --set train.checkpoint_interval=0 --set runtime.threads="$THREADS" --set output.dir="\"$R\""
    ) >"$R/log.txt" 2>&1
    rc=$?
    set -e
    read -r kib wall <<<"$(tail -n 1 "$R/time.txt" 2>/dev/null || echo "0 0")"
    note=ok
    if [ "$rc" -ne 0 ]; then
      if grep -qi "out of memory\|cannot allocate\|bad_alloc" "$R/log.txt"; then note="does not fit: out of memory under ulimit -v ${LIMIT_GIB} GiB"
      elif [ "$rc" -eq 124 ]; then note="timed out after ${TIMEOUT_S} s"
      else note="failed (exit $rc): $(grep -m1 -i error "$R/log.txt" || tail -n 1 "$R/log.txt")"; fi
    fi
    printf "%-8s %-10s %14.2f %10s %s\n" "${S}x$S" "$M" "$(awk -v k="$kib" 'BEGIN {print k / 1048576}')" "$wall" "$note" \
      | tee -a "$TABLE"
    # the run's outputs are the student and a checkpoint (GBs each): keep only the logs
    find "$R" -type f \( -name '*.safetensors' -o -name '*.ckpt' -o -name '*.tmp' \) -delete
  done
done
echo "budget per step: teacher + student weights + gradients + AdamW m, v = 5 x $(stat -c %s "$W") bytes" \
  "= $(awk -v b="$(stat -c %s "$W")" 'BEGIN {printf "%.2f", 5 * b / 1073741824}') GiB, plus activations" | tee -a "$TABLE"
cat "$TABLE"
