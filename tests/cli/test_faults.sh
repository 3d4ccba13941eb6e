#!/usr/bin/env bash
# Faults a cluster or a hostile user produces (issue #10), each a clean error or a clean stop:
#  - SIGTERM, SIGINT and SIGUSR1 to the ranks (as srun / slurmstepd deliver them; SIGINT to one
#    rank only): every rank
#    stops after the same step, checkpoints, exits 3, and --resume finishes the run; SIGTERM to
#    mpirun (Open MPI's own abort: exit 1, SIGKILL 1 s later) still leaves a newest checkpoint
#    that loads; scripts/mpirun.sh turns SIGTERM and Ctrl-C into a clean stop (exit 3) instead
#  - SIGUSR1 during score (alone and inside run): all ranks stop, exit 3, nothing written
#  - NaN/Inf teacher weights: info and score refuse them, naming the file and the tensor
#  - a NaN at step 1 says no checkpoint was written yet (not "the last checkpoint is intact")
#  - model.sample_size = 2^30: the MAC count's overflow is an error naming the key
#  - an empty output.dir, a job file that is a directory, an integer beyond 64 bits (or 32 bits without L) in a job
#    file, and a 1000-character output.dir whose error keeps its reason
# Args: BINARY SOURCE_DIR; $INIT_MODEL writes a seeded model.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py
JOB="$SRC/jobs/fmnist_tiny.cfg"

# expect RC PATTERN -- command...: exit code and a fixed string in stdout+stderr
expect() {
  local want_rc=$1 pat=$2; shift 3
  "$@" >"$T/out" 2>&1; local rc=$?
  if [ "$rc" -ne "$want_rc" ]; then bad "exit $rc (wanted $want_rc): $*"; grep -v '^ *$' "$T/out" | tail -3 | sed 's/^/    /'; return; fi
  if ! grep -qF -- "$pat" "$T/out"; then bad "no '$pat' in output of: $*"; tail -3 "$T/out" | sed 's/^/    /'; return; fi
  ok
}

# ---- signals: SIG to the ranks themselves (mpirun's children, by parent id), as a scheduler
# that signals every task does; the run must stop on both ranks after the same step K (one
# message, checkpoint K written), exit 3, and resume from K to the end.
sig_run() {  # sig_run NAME: mpirun -np 2 train in the background; $pid = mpirun
  rm -rf "$T/$1"
  mpirun --oversubscribe -np 2 "$BIN" train "$JOB" --set output.dir="$T/$1" --set train.steps=300 \
    --set train.checkpoint_interval=1000 >"$T/$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do grep -q "train step 5/300" "$T/$1.log" && break; sleep 0.1; done
}
stopped() {  # stopped: wait for mpirun ($pid) at most 60 s (ranks that stop at different steps hang); rc
  for _ in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  if kill -0 $pid 2>/dev/null; then
    echo "mpirun still running 60 s after the signal: killed"; pkill -KILL -P $pid; kill -KILL $pid
  fi
  wait $pid
}
resumes() {  # resumes NAME K: --resume starts at step K and finishes one step later
  local n=$(($2 + 1))
  mpirun_n 2 "$BIN" train "$JOB" --set output.dir="$T/$1" --set train.steps=$n --set train.checkpoint_interval=1000 \
    --resume >"$T/$1.resume.log" 2>&1 && grep -q "resumed from .* at step $2/$n" "$T/$1.resume.log" &&
    grep -q "train step $n/$n" "$T/$1.resume.log"
}
# SIGINT goes to one rank only (the oldest): the reduction must still stop both.
for sig in TERM INT USR1; do
  sig_run "r$sig"
  if [ $sig = INT ]; then pkill -INT -o -P $pid; else pkill -"$sig" -P $pid; fi
  stopped; rc=$?
  k=$(sed -n 's/^train: stopped by a signal after step \([0-9]*\);.*/\1/p' "$T/r$sig.log")
  n=$(grep -c "stopped by a signal" "$T/r$sig.log")
  if [ $rc -eq 3 ] && [ -n "$k" ] && [ "$n" -eq 1 ] && [ -f "$T/r$sig/checkpoints/ckpt_$(printf %08d "$k").safetensors" ]; then
    ok; echo "SIG$sig to the ranks: exit 3 after step $k"
  else
    bad "SIG$sig to the ranks: rc $rc, step '$k', $n stop messages: $(tail -2 "$T/r$sig.log")"
  fi
  [ -n "$k" ] && resumes "r$sig" "$k" && ok || bad "SIG$sig: no resume from step '$k': $(tail -2 "$T/r$sig.resume.log" 2>/dev/null)"
done
# SIGTERM to mpirun: Open MPI aborts the job itself (exit 1, its SIGTERM to the ranks, SIGKILL
# odls_base_sigkill_timeout = 1 s later), whatever the ranks do; what must hold is that the
# checkpoint the ranks wrote, or none, is complete: a resume loads the newest one.
sig_run mterm
kill -TERM $pid; stopped; rc=$?
k=$(sed -n 's/^train: stopped by a signal after step \([0-9]*\);.*/\1/p' "$T/mterm.log")
echo "SIGTERM to mpirun: exit $rc (Open MPI's), ranks stopped after step '${k}'"
if [ -n "$k" ]; then resumes mterm "$k" && ok || bad "SIGTERM to mpirun: no resume from step $k: $(tail -2 "$T/mterm.resume.log")"; fi

# scripts/mpirun.sh, the stop-safe launcher: SIGTERM to it, and a Ctrl-C (SIGINT to its whole
# process group, as a terminal sends it), reach the ranks as SIGUSR1: exit 3 from the launcher
# too, a checkpoint, a resume. It runs in its own group (setsid) with SIGINT at its default
# (a background job of a script starts with SIGINT ignored, which no trap can undo).
for how in term ctrlc; do
  rm -rf "$T/w$how"
  setsid env --default-signal=INT "$SRC/scripts/mpirun.sh" --oversubscribe -np 2 "$BIN" train "$JOB" \
    --set output.dir="$T/w$how" --set train.steps=300 --set train.checkpoint_interval=1000 >"$T/w$how.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do grep -q "train step 5/300" "$T/w$how.log" && break; sleep 0.1; done
  if [ $how = term ]; then kill -TERM $pid; else kill -INT -- -$pid; fi
  stopped; rc=$?
  k=$(sed -n 's/^train: stopped by a signal after step \([0-9]*\);.*/\1/p' "$T/w$how.log")
  if [ $rc -eq 3 ] && [ -n "$k" ] && [ -f "$T/w$how/checkpoints/ckpt_$(printf %08d "$k").safetensors" ]; then
    ok; echo "scripts/mpirun.sh, $how: exit 3 after step $k"
  else
    bad "scripts/mpirun.sh, $how: rc $rc, step '$k': $(tail -3 "$T/w$how.log")"
  fi
  [ -n "$k" ] && resumes "w$how" "$k" && ok || bad "scripts/mpirun.sh, $how: no resume from step '$k'"
done

# ---- a signal during score or plan: every rank stops between work items (comm_run_jobs), exit
# 3, nothing written (a run.h5 from before is untouched); `run --resume=auto` then does the stage.
SJOB="$SRC/jobs/fmnist_laptop.cfg"
SSETS=(--set model.weights="$SRC/models/fmnist_teacher.safetensors" --set prune.calib_samples=64 --set prune.batch=1 --set prune.additivity_sets=0 --set runtime.threads=1)
for stage in score run; do
  rm -rf "$T/s$stage"
  mpirun --oversubscribe -np 2 "$BIN" $stage "$SJOB" --set output.dir="$T/s$stage" "${SSETS[@]}" \
    --set train.steps=2 --set eval.samples=8 >"$T/s$stage.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do grep -q "^score output_loss: .* jobs" "$T/s$stage.log" && break; sleep 0.1; done
  sleep 1; pkill -USR1 -P $pid
  stopped; rc=$?
  if [ $rc -eq 3 ] && grep -q "^score: stopped by SIGUSR1 before the end; nothing was written" "$T/s$stage.log" &&
     ! grep -q "^score: output_loss took" "$T/s$stage.log" && [ ! -e "$T/s$stage/run.h5" ]; then
    ok; echo "SIGUSR1 during $stage's scoring: exit 3, nothing written"
  else
    bad "SIGUSR1 during $stage's scoring: rc $rc: $(tail -3 "$T/s$stage.log"); $(ls "$T/s$stage")"
  fi
done
mpirun_n 2 "$BIN" run "$SJOB" --set output.dir="$T/srun" "${SSETS[@]}" --set prune.calib_samples=8 \
  --set train.steps=2 --set eval.samples=8 --set 'eval.classifier=""' --resume=auto >"$T/srun2.log" 2>&1 && grep -q "== run: done" "$T/srun2.log" && ok \
  || bad "run --resume=auto after a stopped score: $(tail -3 "$T/srun2.log")"

# ---- NaN/Inf teacher weights: refused at load, naming the file and the first bad tensor
"$INIT_MODEL" "$JOB" "$T/teacher.safetensors" 5 || { echo "init_model failed"; exit 1; }
for v in nan inf; do
  /usr/bin/python3 - "$T/teacher.safetensors" "$T/$v.safetensors" "$v" <<'PY' || bad "could not write the $v teacher"
import sys, json, struct, numpy as np
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
t = json.loads(b[8:8 + n])["mid_block.attentions.0.proj_in.weight"]
at = 8 + n + t["data_offsets"][0] + 4 * 3          # its element 3
b[at:at + 4] = np.float32(sys.argv[3]).tobytes()
open(sys.argv[2], "wb").write(b)
PY
  expect 1 "$T/$v.safetensors: tensor mid_block.attentions.0.proj_in.weight holds a non-finite weight" -- "$BIN" info "$T/$v.safetensors"
  expect 1 "$T/$v.safetensors: tensor mid_block.attentions.0.proj_in.weight holds a non-finite weight" -- \
    mpirun_n 1 "$BIN" score "$JOB" --set model.weights="$T/$v.safetensors" --set output.dir="$T/score_$v" \
    --set prune.calib_samples=6 --set prune.batch=3 --set prune.additivity_sets=0
done
[ ! -e "$T/score_nan/run.h5" ] && ok || bad "score with NaN weights wrote run.h5"
expect 0 "Parameters: 64,361" -- "$BIN" info "$T/teacher.safetensors"

# ---- a NaN at step 1: there is no checkpoint to point to; at step 5, the one of step 3
LAPTOP_DIFF_FAULT=nan@1 expect 1 "train stopped at step 1: the loss is not finite (NaN); no checkpoint was written yet" -- \
  "$BIN" train "$JOB" --set output.dir="$T/nan1"
LAPTOP_DIFF_FAULT=nan@5 expect 1 "train stopped at step 5: the loss is not finite (NaN); the last checkpoint (step 3) in $T/nan5/checkpoints is intact" -- \
  "$BIN" train "$JOB" --set output.dir="$T/nan5"

# ---- configuration a hostile user writes
expect 1 "model.sample_size = 1073741824: the U-Net's MAC count at this size exceeds 2^53" -- \
  "$BIN" info "$JOB" --set model.sample_size=1073741824
expect 0 "MACs: 8,817,131,672,064" -- "$BIN" info "$JOB" --set model.sample_size=1024   # 2^43: still exact
mkdir -p "$T/dir.cfg"
expect 1 "$T/dir.cfg: cannot read the job file: Is a directory" -- "$BIN" score "$T/dir.cfg"
# info also takes a model, and a folder is a diffusers unet/ folder to it
expect 1 "$T/dir.cfg: a folder without diffusion_pytorch_model.safetensors" -- "$BIN" info "$T/dir.cfg"
big() { sed "0,/^\( *steps *=\).*/s//\1 $1;/" "$JOB" > "$T/big.cfg"; }   # train.steps is the first steps
big 99999999999999999999
expect 1 "big.cfg:16: train.steps: got 99999999999999999999, beyond the 64-bit integer range" -- "$BIN" info "$T/big.cfg"
big -99999999999999999999
expect 1 "train.steps: got -99999999999999999999, beyond the 64-bit integer range" -- "$BIN" info "$T/big.cfg"
big 4294967297
expect 1 "train.steps: got 4294967297, which libconfig reads as 1 (beyond 32 bits: add an L suffix)" -- "$BIN" info "$T/big.cfg"
big 7
expect 0 "Parameters: 64,361" -- "$BIN" info "$T/big.cfg"
# output.dir = "" would put run.h5, models and checkpoints/ into /
expect 1 "output.dir is empty" -- "$BIN" train "$JOB" --set 'output.dir=""'
# a 1000-character output.dir under a regular file: the message keeps its reason
touch "$T/file"
long="$T/file/$(printf 'd%.0s' $(seq $((1000 - ${#T} - 6))))"
[ ${#long} -eq 1000 ] || bad "the long output.dir has ${#long} characters"
expect 1 "cannot create directory: Not a directory" -- "$BIN" train "$JOB" --set output.dir="$long" --set train.steps=1

finish test_faults
