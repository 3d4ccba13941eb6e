# Sourced by the batch scripts of slurm/ (Slurm runs a copy of the batch script
# from its spool dir, so they find this file at $LD_SLURM_DIR, default
# $SLURM_SUBMIT_DIR/slurm: submit from the repository root or set LD_SLURM_DIR): how a laptop-diff step is launched
# inside an allocation, and what happens when Slurm warns the job.
#
# Environment a user may set (sbatch --export=ALL,NAME=VALUE or export before sbatch):
#   LD_BIN        the laptop-diff binary (default: laptop-diff on PATH, else
#                 $SLURM_SUBMIT_DIR/build/laptop-diff)
#   OUT           the run directory, passed as --set output.dir=$OUT (default
#                 runs/slurm-$SLURM_JOB_ID under the submit dir)
#   LAUNCHER      srun | mpirun | auto (default auto: srun when this Slurm has a
#                 PMIx or PMI2 plugin, `srun --mpi=list`; mpirun otherwise)
#   LD_MPI        srun's --mpi= value (default: pmix if listed, else pmi2)
#   LD_SRUN_OPTS  extra srun options
#   LD_MPIRUN_OPTS extra mpirun options (e.g. "--mca btl_tcp_if_include ib0")
#   LD_MAX_RESTARTS how often a job may requeue itself (default 5)
#
# Preemption and time limits. Every long script asks for
#   #SBATCH --signal=B:USR1@300 --requeue --open-mode=append
# Slurm then sends SIGUSR1 to this batch shell (B:) 300 s before the time limit
# (or whenever `scancel --signal=USR1 --batch JOBID` says so). The shell runs the
# step in the background, so its trap can fire: the trap forwards the signal to
# the launcher (mpirun and srun both pass it on to every rank), the ranks stop at
# the same step, write a checkpoint and exit 3; the shell then calls
# `scontrol requeue`, and the requeued job (same id, same OUT) continues from the
# newest checkpoint (--resume=auto). SIGTERM or SIGINT to this shell (`scancel
# --batch --signal=TERM`, a site's preemption signal) is forwarded as SIGUSR1,
# because Open MPI's mpirun aborts the job on its own SIGTERM/SIGINT (exit 1)
# instead of passing them on. A job requeues itself at most LD_MAX_RESTARTS
# times, and stops when its newest checkpoint (or the lack of one: score and plan
# stop without one) is the same as at its last requeue: it failed the same way
# twice and would again.
#
# laptop-diff's exit codes: 0 done, 1 error, 2 usage, 3 stopped by a signal
# (train/distill: checkpointed; score/plan: nothing written): requeue me.

ld_log() {
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "[laptop-diff slurm job $SLURM_JOB_ID${SLURM_ARRAY_TASK_ID:+ index $SLURM_ARRAY_TASK_ID} $(date -u +%T)] $*"
  else
    echo "[laptop-diff launcher $(date -u +%T)] $*"
  fi
}

# The binary, the run directory and the threads per rank.
ld_setup() {
  if [ -z "${LD_BIN:-}" ]; then
    LD_BIN=$(command -v laptop-diff || echo "${SLURM_SUBMIT_DIR:-.}/build/laptop-diff")
  fi
  [ -x "$LD_BIN" ] || { ld_log "no laptop-diff binary at $LD_BIN (set LD_BIN)"; exit 2; }
  OUT=${OUT:-${SLURM_SUBMIT_DIR:-.}/runs/slurm-${SLURM_JOB_ID:-0}}
  mkdir -p "$OUT"
  LD_NTASKS=${SLURM_NTASKS:-1}
  # One OpenMP thread per CPU Slurm gave each rank (--cpus-per-task).
  LD_THREADS=${SLURM_CPUS_PER_TASK:-1}
  export OMP_NUM_THREADS=$LD_THREADS OPENBLAS_NUM_THREADS=1
}

# The launcher: LD_LAUNCH (an array) is the command that starts SLURM_NTASKS ranks.
ld_launcher() {
  local want=${LAUNCHER:-auto} list
  if [ "$want" = auto ]; then
    list=$(srun --mpi=list 2>&1 || true)
    if [ -n "${LD_MPI:-}" ] || grep -qwE 'pmix|pmi2' <<<"$list"; then want=srun; else want=mpirun; fi
  fi
  local ntasks=$LD_NTASKS cpus=${SLURM_CPUS_PER_TASK:-1}
  case $want in
    srun)
      if [ -z "${LD_MPI:-}" ]; then
        LD_MPI=pmi2; grep -qw pmix <<<"${list:-$(srun --mpi=list 2>&1)}" && LD_MPI=pmix
      fi
      # --kill-on-bad-exit: a rank that fails ends the step instead of leaving the
      # others waiting in a collective until the time limit.
      # shellcheck disable=SC2206  # LD_SRUN_OPTS is a word list by design
      LD_LAUNCH=(srun --mpi="$LD_MPI" --ntasks="$ntasks" --cpus-per-task="$cpus" --kill-on-bad-exit=1 ${LD_SRUN_OPTS:-}) ;;
    mpirun)
      # Open MPI reads the allocation (nodes, tasks per node) from Slurm itself;
      # PE= gives each rank its --cpus-per-task cores.
      local ppn=${SLURM_NTASKS_PER_NODE:-}
      ppn=${ppn%%(*}; ppn=${ppn%%,*}
      local map=(--map-by "slot:PE=$cpus")
      [ -n "$ppn" ] && map=(--map-by "ppr:$ppn:node:PE=$cpus")
      # shellcheck disable=SC2206  # LD_MPIRUN_OPTS is a word list by design
      LD_LAUNCH=(mpirun -np "$ntasks" "${map[@]}" --bind-to core ${LD_MPIRUN_OPTS:-}) ;;
    *) ld_log "LAUNCHER=$want: expected srun, mpirun or auto"; exit 2 ;;
  esac
  ld_log "launcher: ${LD_LAUNCH[*]}"
}

# ld_resume_args CMD: --resume=auto for the commands that checkpoint (train,
# distill, run): laptop-diff resumes from the newest complete checkpoint in OUT
# (falling back past a corrupt one) and starts fresh when there is none; `run`
# also skips the stages run.h5 says are complete.
ld_resume_args() {
  case $1 in train|distill|run) echo --resume=auto ;; esac
}

# The newest checkpoint's file name (ckpt_<8-digit step>: the glob's order is the step order).
ld_newest_ckpt() {
  local f last=""
  for f in "$OUT"/checkpoints/ckpt_*.safetensors; do [ -e "$f" ] && last=${f##*/}; done
  echo "$last"
}

# ld_step CMD...: run CMD in the background, forward SIGUSR1 to it (and SIGTERM
# and SIGINT as SIGUSR1, see above), wait for it, and return its exit code. A
# `wait` interrupted by a trapped signal returns >128 although the step still
# runs, hence the loop.
ld_step() {
  ld_sig=""
  "$@" &
  ld_pid=$!
  local s
  for s in USR1 TERM INT; do
    # shellcheck disable=SC2064  # $s is meant to be expanded now
    trap "ld_sig=$s; ld_log \"SIG$s: forwarding to the step (pid \$ld_pid) as SIGUSR1\"; kill -USR1 \"\$ld_pid\" 2>/dev/null" $s
  done
  local rc prev=""
  while :; do
    ld_sig=""
    wait "$ld_pid"; rc=$?
    if [ -n "$ld_sig" ] && [ "$rc" -gt 128 ]; then prev=$rc; continue; fi
    # the signal came just as the step ended: the status was already collected
    [ "$rc" -eq 127 ] && [ -n "$prev" ] && ! kill -0 "$ld_pid" 2>/dev/null && rc=$prev
    break
  done
  trap - USR1 TERM INT
  return "$rc"
}

# ld_finish RC: the end of a batch script. Exit 3 (checkpointed) requeues the
# job, within the bounds above; every other code ends the job with it.
ld_finish() {
  local rc=$1 max=${LD_MAX_RESTARTS:-5} n=${SLURM_RESTART_COUNT:-0} ck mark
  if [ "$rc" -ne 3 ]; then
    ld_log "step exited $rc"
    exit "$rc"
  fi
  ck=$(ld_newest_ckpt)
  mark="$OUT/.slurm_requeue_${SLURM_JOB_ID:-0}"
  if [ "$n" -ge "$max" ]; then
    ld_log "checkpointed ($ck), but this job was requeued $n times already (LD_MAX_RESTARTS=$max): not requeueing; continue by submitting again with OUT=$OUT"
    exit 3
  fi
  ck=${ck:-none}
  if [ -f "$mark" ] && [ "$(cat "$mark")" = "$ck" ]; then
    ld_log "exit 3 but the newest checkpoint ($ck) did not advance since the last requeue: not requeueing (it would stop the same way again)"
    exit 3
  fi
  echo "$ck" >"$mark"
  ld_log "stopped by a signal (newest checkpoint: $ck): requeueing (restart $((n + 1)) of at most $max)"
  # `scontrol requeue` ends this shell at once on success.
  scontrol requeue "$SLURM_JOB_ID" || { ld_log "scontrol requeue failed: resubmit with OUT=$OUT"; exit 3; }
  exit 3
}
