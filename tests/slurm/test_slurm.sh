#!/usr/bin/env bash
# The slurm/ scripts on a real one-node Slurm (Debian's slurm-wlm + munge, started
# here in a temp dir by tests/slurm/cluster.sh, stopped on exit even on failure):
#  - slurm/pipeline.sh on the tiny Fashion-MNIST job (teacher from init_model):
#    four jobs chained with afterok, each stage's outputs (scores and plan in run.h5,
#    student_init, student + checkpoints, the eval grid and /eval), all COMPLETED, each
#    started after the one before ended; LAUNCHER=auto picks srun; a pipeline whose
#    score fails: the later stages end CANCELLED without running
#  - preemption, with each launcher (srun --mpi=pmix|pmi2 and mpirun): a distill job
#    gets `scancel --signal=USR1 --batch` (srun) or `--signal=TERM` (mpirun) after its
#    first checkpoint; the batch shell forwards it as USR1, the ranks checkpoint and exit
#    3, the job requeues itself (Restarts=1), resumes from the checkpoint (--resume=auto,
#    step 1 not rerun) and finishes with a
#    student bit-identical to the pipeline's uninterrupted distill (2 ranks, 1 thread)
#  - a lost node: the distill step SIGKILLed mid-run, the failed job requeued: it resumes
#    from the newest checkpoint (taking over the dead job's lock) and ends bit-identical
#  - the requeue bounds (tests/slurm/fake_step.sh always exits 3): no new checkpoint ->
#    one requeue, then a stop; a new one every time -> at most LD_MAX_RESTARTS requeues;
#    both exit 3 with a message
#  - grid.sbatch: a 2-index array, each index's variant in its own run directory
# Args: BINARY SOURCE_DIR; $STDIFF compares tensors, $INIT_MODEL writes a seeded model.
# SKIPPED (77) where slurm-wlm/munge are not installed or we are not root (munged
# must run as the munge user, the Slurm daemons as root).
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
for c in slurmctld slurmd munged sbatch scontrol scancel squeue sinfo srun runuser; do
  command -v "$c" >/dev/null || skip "$c not found (scripts/setup.sh installs slurm-wlm and munge)"
done
[ "$(id -u)" -eq 0 ] || skip "the test's own Slurm needs root (SlurmUser=root, munged as the munge user)"
id munge >/dev/null 2>&1 || skip "no munge user (the munge package creates it)"
. "$SRC/tests/slurm/cluster.sh"
trap 'cluster_stop; [ -n "${LD_KEEP:-}" ] && cp -r "$T" "$LD_KEEP"; rm -rf "$T"' EXIT
chmod 755 "$T"  # munged (the munge user) must reach its files under it
cluster_start "$T/slurm" || { echo "FAIL: could not start Slurm"; exit 1; }
echo "slurm up after ${SECONDS}s"

JOB="$SRC/jobs/fmnist_tiny.cfg"
"$INIT_MODEL" "$JOB" "$T/teacher.safetensors" 5 || { echo "init_model failed"; exit 1; }
# 150 distill steps (about 7 s on 2 ranks) with a checkpoint every 10: long enough
# to be preempted well before the end
SETS=(--set model.weights="$T/teacher.safetensors" --set prune.calib_samples=6 --set prune.batch=3
      --set prune.additivity_sets=0 --set train.steps=150 --set train.checkpoint_interval=10
      --set eval.samples=8 --set sample.per_class=1)
export LD_BIN=$BIN LD_SLURM_DIR=$SRC/slurm
# 2 cores: every job fits on the node (2 ranks x 1 thread, or 1 rank x 2 threads)
TWO="--nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --time=00:10:00"
ONE="--nodes=1 --ntasks-per-node=1 --cpus-per-task=2 --time=00:10:00"

jstate() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
jfield() { scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -1 | cut -d= -f2; }
done_state() { case $(jstate "$1") in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE) return 0 ;; esac; return 1; }

# --- the staged pipeline ------------------------------------------------------
P=$T/pipe
t0=$SECONDS
( cd "$T" && OUT=$P SCORE_OPTS=$TWO PLAN_OPTS=$ONE DISTILL_OPTS=$TWO EVAL_OPTS=$ONE \
    bash "$SRC/slurm/pipeline.sh" "$JOB" "${SETS[@]}" ) >"$T/pipeline.txt" 2>&1 \
  || { echo "FAIL: pipeline.sh: $(cat "$T/pipeline.txt")"; exit 1; }
cat "$T/pipeline.txt"
declare -A JID
while read -r stage id; do JID[$stage]=$id; done <"$T/pipeline.txt"
for s in score plan distill eval; do
  [[ "${JID[$s]:-}" =~ ^[0-9]+$ ]] || { echo "FAIL: pipeline.sh printed no job id for $s"; exit 1; }
done
wait_for 180 "the pipeline's eval job to end" done_state "${JID[eval]}" || bad "pipeline did not end"
# afterok: each stage started after the one before it ended
epoch() { date -d "$(jfield "$1" "$2")" +%s 2>/dev/null || echo x; }
prev=""
for s in score plan distill eval; do
  if [ -n "$prev" ]; then
    a=$(epoch "${JID[$prev]}" EndTime) b=$(epoch "${JID[$s]}" StartTime)
    [ "$a" != x ] && [ "$b" != x ] && [ "$b" -ge "$a" ] && ok || bad "$s started ($b) before $prev ended ($a)"
  fi
  prev=$s
done
for s in score plan distill eval; do
  st=$(jstate "${JID[$s]}")
  [ "$st" = COMPLETED ] && ok || bad "$s job ${JID[$s]}: $st: $(tail -5 "$P/slurm-$s-${JID[$s]}.out" 2>/dev/null)"
done
echo "pipeline: 4 jobs in $((SECONDS - t0))s"
for f in student_init.safetensors student.safetensors teacher_vs_student.png run.h5; do
  [ -s "$P/$f" ] && ok || bad "pipeline: no $f"
done
ls "$P/checkpoints/"ckpt_00000150.safetensors >/dev/null 2>&1 && ok || bad "pipeline: no final checkpoint: $(ls "$P/checkpoints")"
grep -q "launcher: srun --mpi=pmi" "$P/slurm-score-${JID[score]}.out" && ok \
  || bad "LAUNCHER=auto did not pick srun on a Slurm with PMIx/PMI2: $(grep launcher: "$P/slurm-score-${JID[score]}.out")"
grep -q "on 2 ranks x 1 threads" "$P/slurm-score-${JID[score]}.out" && ok || bad "score's ranks x threads: $(grep ' ranks ' "$P/slurm-score-${JID[score]}.out")"
grep -q "on 1 ranks x 2 threads" "$P/slurm-plan-${JID[plan]}.out" && ok || bad "plan's ranks x threads: $(grep ' ranks ' "$P/slurm-plan-${JID[plan]}.out")"
if /usr/bin/python3 -c "import h5py" 2>/dev/null; then
  /usr/bin/python3 - "$P/run.h5" <<'PY' && ok || bad "pipeline run.h5"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    for k in ("/prune/candidates", "/prune/scores", "/prune/plan", "/train/step", "/train/loss", "/eval/teacher", "/eval/student"):
        assert k in f, k
    assert list(f["/train/step"][()])[-1] == 150, f["/train/step"][()]
print("pipeline run.h5: /prune, /train (150 steps), /eval")
PY
fi

# a failing stage: the later ones never run (afterok + --kill-on-invalid-dep)
( cd "$T" && OUT=$T/pipefail SCORE_OPTS=$ONE PLAN_OPTS=$ONE DISTILL_OPTS=$ONE EVAL_OPTS=$ONE \
    bash "$SRC/slurm/pipeline.sh" "$JOB" --set model.weights="$T/no_such_teacher.safetensors" ) >"$T/pipefail.txt" 2>&1 \
  || bad "pipeline.sh (failing score): $(cat "$T/pipefail.txt")"
declare -A FID
while read -r stage id; do FID[$stage]=$id; done <"$T/pipefail.txt"
wait_for 60 "the failing pipeline to end" sh -c "! squeue -h | grep -q ." || bad "the failing pipeline did not end: $(squeue)"
[ "$(jstate "${FID[score]}")" = FAILED ] && ok || bad "failing score: $(jstate "${FID[score]}")"
for s in plan distill eval; do
  [ "$(jstate "${FID[$s]}")" = CANCELLED ] && [ ! -e "$T/pipefail/slurm-$s-${FID[$s]}.out" ] && ok \
    || bad "after a failed score, $s: $(jstate "${FID[$s]}") $(ls "$T/pipefail")"
done

# --- preemption: signal, checkpoint, requeue, resume ---------------------------
# preempt NAME LAUNCHER SIG: a distill job on 2 ranks from the pipeline's student_init,
# preempted once after its first checkpoint by SIG to the batch shell (USR1: Slurm's
# --signal=B:USR1 warning; TERM: `scancel --batch`'s default signal, which the shell must
# pass on as USR1 since mpirun aborts on TERM); must end bit-identical to the pipeline's.
preempt() {
  local name=$1 launcher=$2 sig=$3 out=$T/$1 id log n st
  mkdir -p "$out" && cp "$P/student_init.safetensors" "$out/"
  # shellcheck disable=SC2086
  id=$(cd "$T" && OUT=$out LAUNCHER=$launcher sbatch --parsable $TWO --output="$out/slurm.out" \
         "$SRC/slurm/cpu.sbatch" distill "$JOB" "${SETS[@]}") || { bad "$name: sbatch failed"; return; }
  log=$out/slurm.out
  # preempt once a step after the first checkpoint (step 10) is logged
  wait_for 60 "$name's step 11" grep -q "distill step 1[1-9]/150" "$log" \
    || { bad "$name: never reached step 11: $(tail -3 "$log")"; return; }
  scancel --signal="$sig" --batch "$id" || bad "$name: scancel --signal=$sig failed"
  wait_for 60 "$name to requeue" grep -q "requeueing (restart 1" "$log" \
    || { bad "$name: did not requeue: $(tail -5 "$log")"; return; }
  wait_for 150 "$name to end" done_state "$id" || { bad "$name: did not end: $(tail -3 "$log")"; return; }
  st=$(jstate "$id"); n=$(jfield "$id" Restarts)
  [ "$st" = COMPLETED ] && ok || bad "$name: job ended $st: $(tail -5 "$log")"
  [ "$n" = 1 ] && ok || bad "$name: Restarts=$n, expected 1"
  grep -q "SIG$sig: forwarding to the step (pid [0-9]*) as SIGUSR1" "$log" && ok || bad "$name: the batch shell did not forward SIG$sig"
  # the first run stopped short of 150, wrote a checkpoint there, and the second resumed from it
  grep -Eq "resumed from .* at step [0-9]+/150" "$log" && ok || bad "$name: no resume: $(grep -i resum "$log")"
  grep -q "distill --resume=auto on 2 ranks" "$log" && ok || bad "$name: the job did not pass --resume=auto"
  # a fresh restart would also end bit-identical (training is deterministic): step 1 ran once only
  [ "$(grep -c "distill step 1/150 " "$log")" = 1 ] && ok || bad "$name: step 1 ran $(grep -c "distill step 1/150 " "$log") times"
  grep -q "step exited 0" "$log" && ok || bad "$name: the resumed step did not finish: $(tail -3 "$log")"
  "$STDIFF" "$out/student.safetensors" "$P/student.safetensors" 0 >"$T/$name.diff" && ok \
    || bad "$name: the preempted student differs from the uninterrupted one: $(cat "$T/$name.diff")"
  echo "$name: requeued, resumed at step $(grep -o 'resumed from .* at step [0-9]*' "$log" | grep -o '[0-9]*$'); $(head -1 "$T/$name.diff")"
}
t0=$SECONDS
preempt pre_srun srun USR1
preempt pre_mpirun mpirun TERM
echo "preemption: 2 jobs in $((SECONDS - t0))s"

# --- a lost node: the whole step SIGKILLed (no checkpoint on the way out), then a requeue
# (what Slurm does for a --requeue job on NODE_FAIL; here `scontrol requeue` of the failed
# job): --resume=auto continues from the newest checkpoint; the student is bit-identical.
t0=$SECONDS
lost=$T/lost
mkdir -p "$lost" && cp "$P/student_init.safetensors" "$lost/"
# shellcheck disable=SC2086
id=$(cd "$T" && OUT=$lost LAUNCHER=mpirun sbatch --parsable $TWO --output="$lost/slurm.out" \
       "$SRC/slurm/cpu.sbatch" distill "$JOB" "${SETS[@]}") || bad "lost: sbatch failed"
if wait_for 60 "lost's step 21" grep -q "distill step 2[1-9]/150" "$lost/slurm.out"; then
  # mpirun and both ranks carry output.dir=$lost on their command lines; the batch shell does not
  pkill -KILL -f "output.dir=$lost" || bad "lost: nothing to kill"
  wait_for 60 "lost to fail" done_state "$id" || bad "lost: did not end after the SIGKILL"
  st=$(jstate "$id")
  [ "$st" = FAILED ] && ok || bad "lost: after the SIGKILL the job is $st, expected FAILED"
  # the newest complete one: a SIGKILL during a save leaves ckpt_N.safetensors.tmp.PID (removed on resume)
  ck=$(ls "$lost/checkpoints" | grep -E '^ckpt_[0-9]+\.safetensors$' | tail -1)
  scontrol requeue "$id" || bad "lost: scontrol requeue failed"
  wait_for 150 "lost to end after the requeue" sh -c "[ \"\$(scontrol show job $id | grep -o 'Restarts=[0-9]*')\" = Restarts=1 ] && scontrol show job $id | grep -q JobState=COMPLETED" \
    || bad "lost: did not complete after the requeue: $(jstate "$id"): $(tail -3 "$lost/slurm.out")"
  grep -q "resumed from $lost/checkpoints/$ck at step" "$lost/slurm.out" && ok \
    || bad "lost: did not resume from the newest checkpoint $ck: $(grep -i resum "$lost/slurm.out")"
  grep -q "took over the lock .* an earlier run (restart 0) of this Slurm job" "$lost/slurm.out" && ok \
    || bad "lost: the dead job's lock was not taken over: $(grep -i lock "$lost/slurm.out")"
  "$STDIFF" "$lost/student.safetensors" "$P/student.safetensors" 0 >"$T/lost.diff" && ok \
    || bad "lost: the student differs from the uninterrupted one: $(cat "$T/lost.diff")"
  echo "lost node: SIGKILL after step 21, requeued, resumed from $ck; $(head -1 "$T/lost.diff") ($((SECONDS - t0))s)"
else
  bad "lost: never reached step 21: $(tail -3 "$lost/slurm.out")"
fi

# --- the requeue bound ----------------------------------------------------------
# tests/slurm/fake_step.sh stands in for laptop-diff and always exits 3.
# bound JOBNAME [ENV=VALUE...]: submit it on 1 rank, wait for the end, leave $id and $log
bound() {
  local name=$1; shift
  mkdir -p "$T/$name"; log=$T/$name/slurm.out
  # shellcheck disable=SC2086
  id=$(cd "$T" && env OUT="$T/$name" LAUNCHER=mpirun LD_BIN="$SRC/tests/slurm/fake_step.sh" "$@" \
         sbatch --parsable $ONE --output="$log" "$SRC/slurm/cpu.sbatch" distill "$JOB") || { bad "$name: sbatch failed"; return; }
  wait_for 90 "$name to end" done_state "$id" || bad "$name did not end: $(tail -3 "$log")"
  [ "$(jstate "$id")" = FAILED ] && [ "$(jfield "$id" ExitCode)" = "3:0" ] && ok \
    || bad "$name: $(jstate "$id") $(jfield "$id" ExitCode), expected FAILED 3:0: $(tail -3 "$log")"
}
# exit 3 with no checkpoint behind it (a stopped score): requeued once; stopping the same
# way again ends it
bound noprogress
grep -q "newest checkpoint (none) did not advance since the last requeue: not requeueing" "$log" && ok || bad "noprogress: no message: $(tail -3 "$log")"
[ "$(jfield "$id" Restarts)" = 1 ] && ok || bad "noprogress: requeued $(jfield "$id" Restarts) times, expected 1"
# a new checkpoint every time, at most LD_MAX_RESTARTS=1 requeue
bound maxrestarts FAKE_NEW_CKPT=1 LD_MAX_RESTARTS=1
grep -q "requeued 1 times already (LD_MAX_RESTARTS=1): not requeueing" "$log" && ok || bad "maxrestarts: no message: $(tail -3 "$log")"
[ "$(jfield "$id" Restarts)" = 1 ] && ok || bad "maxrestarts: requeued $(jfield "$id" Restarts) times, expected 1"

# --- an array job: one variant per index ---------------------------------------
G=$T/grid
printf '# two feature terms\n--set distill.feat_norm=none\n\n--set distill.feat_norm=l2sq --set distill.lambda_feat=0.5\n' >"$T/variants.txt"
mkdir -p "$G/0" "$G/1" && cp "$P/student_init.safetensors" "$G/0/" && cp "$P/student_init.safetensors" "$G/1/"
# shellcheck disable=SC2086
id=$(cd "$T" && GRID_OUT=$G sbatch --parsable --array=0-1 $ONE --output="$G/slurm-%a.out" "$SRC/slurm/grid.sbatch" \
       distill "$JOB" "$T/variants.txt" "${SETS[@]/train.steps=150/train.steps=5}") || bad "grid: sbatch failed"
wait_for 120 "the array job to end" sh -c "! squeue -h -j $id | grep -q ." || bad "grid did not end"
for i in 0 1; do
  [ -s "$G/$i/student.safetensors" ] && ok || bad "grid $i: no student: $(tail -3 "$G/slurm-$i.out")"
done
grep -q 'feature KD "none"' "$G/slurm-0.out" && ! grep -q 'feature KD "none"' "$G/slurm-1.out" && ok \
  || bad "grid: index 0 should run feat_norm none, index 1 l2sq: $(grep -h 'feature KD' "$G"/slurm-*.out)"
[ "$(cat "$G/1/variant.txt")" = "--set distill.feat_norm=l2sq --set distill.lambda_feat=0.5" ] && ok || bad "grid 1 variant.txt: $(cat "$G/1/variant.txt")"

echo "slurm test: ${SECONDS}s in all"
[ "$fail" -eq 0 ] || { echo "--- slurmctld log (tail)"; tail -20 "$SL/log/slurmctld.log"; }
finish test_slurm
