#!/usr/bin/env bash
# The staged LAPTOP pipeline as four dependent Slurm jobs, each sized on its own:
#   score   -> many CPU ranks (the candidate layers are spread over them)
#   plan    -> one rank (the knapsack, the additivity check, student_init)
#   distill -> GPUs (DISTILL=gpu, slurm/gpu.sbatch) or CPU ranks (slurm/cpu.sbatch)
#   eval    -> one rank
# Each starts only when the one before it succeeded (--dependency=afterok); if
# one fails, the later ones are cancelled (--kill-on-invalid-dep=yes) instead of
# pending forever. A preempted distill requeues itself and eval still waits for it.
#
#   OUT=runs/my_run slurm/pipeline.sh JOB.cfg [--set section.key=value ...]
#
# Run from the repository root (or set LD_SLURM_DIR / LD_BIN). Prints one line
# per stage, "STAGE JOBID". Environment:
#   OUT           the run directory every stage shares (default runs/pipeline-DATE)
#   DISTILL       cpu (default) or gpu
#   SCORE_OPTS PLAN_OPTS DISTILL_OPTS EVAL_OPTS
#                 sbatch options of each stage, replacing the defaults below
#                 (resources, --time, --partition, --account, ...)
#   SBATCH_OPTS   sbatch options added to every stage (e.g. "--partition=cpu")
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: OUT=DIR slurm/pipeline.sh JOB.cfg [--set k=v ...]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
export LD_SLURM_DIR=${LD_SLURM_DIR:-$here}
export OUT=${OUT:-$PWD/runs/pipeline-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -n "${LD_BIN:-}" ] && export LD_BIN

# Default sizes: scoring wants ranks (up to the number of candidate layers),
# plan and eval one rank with threads, distillation the nodes of the header
# of cpu.sbatch or gpu.sbatch.
SCORE_OPTS=${SCORE_OPTS:---nodes=1 --ntasks-per-node=16 --cpus-per-task=2 --time=02:00:00}
PLAN_OPTS=${PLAN_OPTS:---nodes=1 --ntasks-per-node=1 --cpus-per-task=8 --time=01:00:00}
DISTILL_OPTS=${DISTILL_OPTS:-}
EVAL_OPTS=${EVAL_OPTS:---nodes=1 --ntasks-per-node=1 --cpus-per-task=8 --time=01:00:00}
case ${DISTILL:-cpu} in
  cpu) distill_script=$here/cpu.sbatch ;;
  gpu) distill_script=$here/gpu.sbatch ;;
  *) echo "DISTILL=${DISTILL}: expected cpu or gpu" >&2; exit 2 ;;
esac

dep=()
submit() {  # submit STAGE SCRIPT "OPTS" ARGS...: prints STAGE JOBID, sets $id
  local stage=$1 script=$2 opts=$3; shift 3
  # shellcheck disable=SC2086  # the option strings are word lists by design
  id=$(sbatch --parsable --job-name="ld-$stage" --output="$OUT/slurm-$stage-%j.out" \
        ${SBATCH_OPTS:-} $opts "${dep[@]}" "$script" "$stage" "$@")
  id=${id%%;*}  # --parsable prints "id;cluster" on multi-cluster sites
  echo "$stage $id"
  dep=(--dependency="afterok:$id" --kill-on-invalid-dep=yes)
}
submit score "$here/cpu.sbatch" "$SCORE_OPTS" "$@"
submit plan "$here/cpu.sbatch" "$PLAN_OPTS" "$@"
submit distill "$distill_script" "$DISTILL_OPTS" "$@"
submit eval "$here/cpu.sbatch" "$EVAL_OPTS" "$@"
