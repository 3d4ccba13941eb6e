#!/usr/bin/env bash
# `laptop-diff train` end to end on the tiny Fashion-MNIST job:
#  - data parallel: 2 ranks == 1 rank at the same global batch and 1 thread per rank, and 1
#    thread == 2 threads (3 steps: loss and grad_norm within 1e-6, weights within 1e-3)
#  - resume: 6 steps straight == 3 steps + --resume 3 steps, bit for bit
#  - the loss falls and run.h5 holds every /train/* series, one entry per logged step (read with h5py)
#  - SIGKILL at several points after a logged step (checkpoint every step) never leaves an
#    unloadable newest checkpoint, nor one older than the step before the logged one
#  - a NaN stops the run with a message naming the step; the last checkpoint stays
#  - SIGUSR1 checkpoints and exits 3; --resume then finishes the run
# Args: BINARY SOURCE_DIR; $STDIFF is the tensor comparison tool.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py
JOB="$SRC/jobs/fmnist_tiny.cfg"

run() {  # run NAME NP args...: logs to $T/NAME.log, returns the exit code
  local name=$1 np=$2; shift 2
  mpirun_n "$np" "$BIN" train "$JOB" --set output.dir="$T/$name" "$@" >"$T/$name.log" 2>&1
}

# data parallel equivalence, at a fixed thread count (runtime.threads = 0 would give
# 1 rank two threads and 2 ranks one each on 2 cores); then a thread-count change on
# 1 rank. Not bit for bit: 2 ranks sum each gradient in two halves and all-reduce
# them, and AdamW's first steps (update ~ lr * g / |g|) magnify the last-bit
# differences of near-zero gradient elements. The per-step loss and gradient norm,
# which see every sample and every gradient, must agree to 1e-6 (measured <= 9e-8
# with OpenBLAS's SkylakeX, Cooperlake, Haswell and Zen kernels); the weights after
# 3 steps to 1e-3 of each tensor's largest value (measured: 1.4e-5 on the AVX-512
# kernels, 1.1e-4 (ranks) and 3.4e-4 (threads) on the Haswell/Zen ones; a wrong
# gradient moves weights by ~lr, 1e-2 of them).
run np1 1 --set train.steps=3 --set runtime.threads=1 || bad "np1 run failed: $(tail -3 "$T/np1.log")"
run np2 2 --set train.steps=3 --set runtime.threads=1 || bad "np2 run failed: $(tail -3 "$T/np2.log")"
run np1t2 1 --set train.steps=3 --set runtime.threads=2 || bad "np1 x 2 threads run failed: $(tail -3 "$T/np1t2.log")"
grep -q "1 rank x 2 threads" "$T/np1t2.log" && ok || bad "runtime.threads=2 did not give 2 threads: $(head -1 "$T/np1t2.log")"
for other in np2 np1t2; do
  if "$STDIFF" "$T/$other/model.safetensors" "$T/np1/model.safetensors" 1e-3 >"$T/dp.txt"; then ok; else bad "$other differs from np1: $(cat "$T/dp.txt")"; fi
  echo "$other vs np1 weights: $(cat "$T/dp.txt")"
  /usr/bin/python3 - "$T/np1/run.h5" "$T/$other/run.h5" "$other" <<'PY' && ok || bad "$other: loss or grad_norm differ from np1"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    for s in ("loss", "grad_norm"):
        x, y = a[f"/train/{s}"][()], b[f"/train/{s}"][()]
        assert x.shape == y.shape == (3,), (s, x.shape, y.shape)
        rel = np.max(np.abs(y - x) / np.abs(x))
        print(f"{sys.argv[3]} vs np1 {s}: max relative difference {rel:.1e}")
        assert rel <= 1e-6, (s, x, y)
PY
done

# resume, bit for bit: drop the final state, resume from step 3
run straight 1 || bad "straight run failed"
cp -r "$T/straight" "$T/resumed"
rm -f "$T/resumed/model.safetensors" "$T/resumed/checkpoints/"*00006*
ls "$T/resumed/checkpoints" > "$T/ck.txt"
mpirun_n 1 "$BIN" train "$JOB" --set output.dir="$T/resumed" --resume >"$T/resumed.log" 2>&1 || bad "resume failed: $(tail -3 "$T/resumed.log")"
grep -q "resumed from .* at step 3/6" "$T/resumed.log" && ok || bad "did not resume at step 3 ($(cat "$T/ck.txt"))"
"$STDIFF" "$T/resumed/model.safetensors" "$T/straight/model.safetensors" 0 >"$T/rs.txt" && ok || bad "resume is not bit-exact: $(cat "$T/rs.txt")"

# loss falls, run.h5 complete (h5py, as a user would read it)
run longer 2 --set train.steps=40 --set train.batch=8 --set train.log_interval=5 --set train.lr=3e-3 || bad "longer run failed"
/usr/bin/python3 - "$T/longer/run.h5" "$T/resumed/run.h5" <<'PY' && ok || bad "run.h5 check failed"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    names = ["step", "loss", "grad_norm", "lr", "samples_per_s"]
    for n in names:
        assert f"/train/{n}" in f, n
        assert f[f"/train/{n}"].shape == (8,), (n, f[f"/train/{n}"].shape)
        assert "units" in f[f"/train/{n}"].attrs, n
    assert list(f["/train/step"][:]) == list(range(5, 41, 5)), f["/train/step"][:]
    loss = f["/train/loss"][:]
    assert loss[-1] < 0.7 * loss[0], loss
    assert "config" in f["/"].attrs
    print("run.h5: loss", np.round(loss, 4))
with h5py.File(sys.argv[2], "r") as f:   # the resumed run: entries 1..6 once each
    assert list(f["/train/step"][:]) == [1, 2, 3, 4, 5, 6], f["/train/step"][:]
PY

# SIGKILL with a checkpoint every step: the newest checkpoint always loads. Each
# kill waits until step K is logged (the log line of step K comes after step
# K-1's checkpoint was renamed into place, and just before step K's is written),
# then a different delay, so the kills land at different points of a step and of
# a save. Only such kills count; a kill that cannot be shown to have come after a
# checkpoint (the step never logged, no checkpoint >= K-1 loaded) fails.
tested=0
for kd in "2 0" "3 0.05" "4 0.15" "5 0.3"; do
  set -- $kd; K=$1; d=$2
  rm -rf "$T/kill"
  mpirun --oversubscribe -np 1 "$BIN" train "$JOB" --set output.dir="$T/kill" --set train.steps=200 --set train.checkpoint_interval=1 >"$T/kill.log" 2>&1 &
  pid=$!
  for _ in $(seq 1200); do grep -q "train step $K/200" "$T/kill.log" && break; sleep 0.05; done
  if ! grep -q "train step $K/200" "$T/kill.log"; then
    bad "SIGKILL: step $K never logged: $(tail -2 "$T/kill.log")"; kill -KILL $pid; wait $pid 2>/dev/null; continue
  fi
  sleep "$d"
  # the rank (mpirun's child) first, by its parent's id: the SIGKILL the test is about
  pkill -KILL -P $pid; kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
  mpirun_n 1 "$BIN" train "$JOB" --set output.dir="$T/kill" --set train.checkpoint_interval=1 --resume --set train.steps=1 >"$T/kill2.log" 2>&1
  # steps=1 < checkpoint step: resuming must load the checkpoint (not fail on it) and finish at once
  got=$(sed -n 's|^train: resumed from .* at step \([0-9]*\)/1$|\1|p' "$T/kill2.log")
  if [ -n "$got" ] && [ "$got" -ge $((K-1)) ]; then
    ok; tested=$((tested+1)); echo "SIGKILL ${d}s after step $K was logged: resumed at step $got"
  else
    bad "SIGKILL ${d}s after step $K was logged: no checkpoint >= step $((K-1)) loaded (got '${got}'): $(tail -2 "$T/kill2.log")"
  fi
done
[ $tested -ge 1 ] && ok || bad "SIGKILL: no kill landed after a checkpoint"

# NaN: stop, name the step, keep the last checkpoint
LAPTOP_DIFF_FAULT=nan@5 run nan 1 ; rc=$?
[ $rc -eq 1 ] && grep -q "stopped at step 5: the loss is not finite" "$T/nan.log" && ok || bad "NaN stop (rc $rc): $(tail -2 "$T/nan.log")"
ls "$T/nan/checkpoints/" | grep -q 00003 && ok || bad "checkpoint of step 3 missing after the NaN stop"

# SIGUSR1 to mpirun (forwarded to the ranks, as Slurm's --signal=B:USR1 warning is):
# every rank stops at the same step, checkpoints, exits 3; --resume then finishes
# (mpirun itself in the background, not a shell function, so $! is mpirun). The
# signal goes out once step 5 is logged, not after a fixed sleep: on a fast
# machine a fixed sleep can outlast the whole run.
mpirun --oversubscribe -np 2 "$BIN" train "$JOB" --set output.dir="$T/term" --set train.steps=300 >"$T/term.log" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q "train step 5/300" "$T/term.log" && break; sleep 0.1; done
kill -USR1 $pid; wait $pid; rc=$?
[ $rc -eq 3 ] && grep -q "stopped by a signal" "$T/term.log" && ok || bad "SIGUSR1: rc $rc, $(tail -2 "$T/term.log")"
mpirun_n 2 "$BIN" train "$JOB" --set output.dir="$T/term" --set train.steps=300 --resume >"$T/term2.log" 2>&1 \
  && grep -q "train step 300/300" "$T/term2.log" && ok || bad "resume after the signal: $(tail -2 "$T/term2.log")"

finish test_train
