#!/usr/bin/env bash
# `laptop-diff train` end to end on the tiny Fashion-MNIST job:
#  - data parallel: 2 ranks == 1 rank at the same global batch (3 steps, weights within 1e-5)
#  - resume: 6 steps straight == 3 steps + --resume 3 steps, bit for bit
#  - the loss falls and run.h5 holds every /train/* series, one entry per logged step (read with h5py)
#  - SIGKILL at random moments (checkpoint every step) never leaves an unloadable newest checkpoint
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

# data parallel equivalence
run np1 1 --set train.steps=3 || bad "np1 run failed: $(tail -3 "$T/np1.log")"
run np2 2 --set train.steps=3 || bad "np2 run failed: $(tail -3 "$T/np2.log")"
if "$STDIFF" "$T/np2/model.safetensors" "$T/np1/model.safetensors" 1e-5 >"$T/dp.txt"; then ok; else bad "2 ranks differ from 1: $(cat "$T/dp.txt")"; fi
cat "$T/dp.txt"

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

# SIGKILL at random moments with a checkpoint every step: the newest checkpoint always loads
for delay in 1.3 2.1 2.9; do
  rm -rf "$T/kill"
  mpirun --oversubscribe -np 1 "$BIN" train "$JOB" --set output.dir="$T/kill" --set train.steps=200 --set train.checkpoint_interval=1 >"$T/kill.log" 2>&1 &
  pid=$!; sleep $delay; pkill -KILL -f "output.dir=$T/kill" ; wait $pid 2>/dev/null
  if ls "$T/kill/checkpoints/"*.safetensors >/dev/null 2>&1; then
    mpirun_n 1 "$BIN" train "$JOB" --set output.dir="$T/kill" --set train.steps=200 --set train.checkpoint_interval=1 --resume --set train.steps=1 >"$T/kill2.log" 2>&1
    # steps=1 < checkpoint step: resuming must load the checkpoint (not fail on it) and finish at once
    grep -q "resumed from" "$T/kill2.log" && ok || bad "checkpoint after SIGKILL at ${delay}s did not load: $(tail -2 "$T/kill2.log")"
  else
    ok  # killed before the first checkpoint: nothing to load, nothing to lose
  fi
done

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
