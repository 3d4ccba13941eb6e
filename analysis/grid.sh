#!/usr/bin/env bash
# The paper's experiment on a workstation, one command: every pruning criterion's
# plan at every ratio, the BK-SDM-style handcrafted plans, and the distillation
# (KD) ablation, each retrained with the same distillation budget and evaluated,
# for several seeds; then the table (analysis/grid_table.py).
#
#   analysis/grid.sh                   run the grid (cells already complete are skipped)
#   analysis/grid.sh --list            the cells it would run, one name a line
#   analysis/grid.sh --print-variants  the same cells as a variant list for slurm/grid.sbatch
#
# Run from the repository root. Knobs (environment):
#   JOB=jobs/fmnist_laptop.cfg   the job every cell starts from (teacher, data, distill settings)
#   GRID_OUT=runs/grid           one directory per cell: $GRID_OUT/<cell>/ (run.h5, log.txt, ...)
#   NP=2                         MPI ranks per cell (train.batch must be divisible by it)
#   STEPS=150                    distillation steps (train.steps); the batch is the job's train.batch
#   SEEDS="1 2"                  runtime.seed of each repetition (calibration set, random plan, data order, noise)
#   CRITERIA="output_loss random magnitude feature_loss taylor"
#   RATIOS="0.25 0.5"            prune.ratio of the criteria's plans
#   HANDCRAFTED=analysis/bksdm_layers.txt  handcrafted plans ("NAME LAYER,LAYER,..." lines); empty: none
#   KD="task out none"           KD ablation cells, output_loss plan at KD_RATIO: task = task loss only,
#                                out = + output KD, none = + plain feature KD; the full normalized (l2sq)
#                                cell is the main output_loss cell at KD_RATIO (run once, not again)
#   KD_RATIO=0.5
#   ADDITIVITY=                  prune.additivity_sets of the output_loss cells (empty: the job's);
#                                the other cells skip the additivity check (it does not depend on the plan)
#   GRID_SET=                    more "--set key=value" words for every cell and the scoring
#   BIN=build/laptop-diff, MPIRUN="bash scripts/mpirun.sh --oversubscribe -np $NP" (plain mpirun
#                                where the checkout has no scripts/mpirun.sh)
#
# Scoring runs once per seed (all criteria, into $GRID_OUT/score_s<seed>/); each cell
# starts from a copy of that run.h5 and runs `laptop-diff run --resume=auto`, which
# skips score (the scores are there), makes the cell's plan, distils and evaluates.
# A cell is complete when its directory holds grid_cell.done (written after `run`
# exited 0, holding the cell's settings); a restarted grid skips those and continues
# an interrupted cell from its distill checkpoint. A complete cell whose settings
# differ from the current ones is reported as failed, never silently reused.
# A failed cell is reported and the grid goes on; the exit status is 1 if any failed.
# SIGINT/SIGTERM (Ctrl-C) stops the grid after the running command (exit 3); run it again to continue.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOB=${JOB:-jobs/fmnist_laptop.cfg}
GRID_OUT=${GRID_OUT:-runs/grid}
NP=${NP:-2}
STEPS=${STEPS:-150}
SEEDS=${SEEDS:-1 2}
CRITERIA=${CRITERIA:-output_loss random magnitude feature_loss taylor}
RATIOS=${RATIOS:-0.25 0.5}
HANDCRAFTED=${HANDCRAFTED-$ROOT/analysis/bksdm_layers.txt}
KD=${KD-task out none}
KD_RATIO=${KD_RATIO:-0.5}
ADDITIVITY=${ADDITIVITY:-}
GRID_SET=${GRID_SET:-}
BIN=${BIN:-build/laptop-diff}
PY=${PY:-/usr/bin/python3}
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
# scripts/mpirun.sh (where the checkout has it) turns Ctrl-C and SIGTERM into SIGUSR1 for the ranks, so a
# stopped cell checkpoints (exit 3) and continues on the next run; a plain mpirun aborts the cell instead
if [ -z "${MPIRUN+set}" ]; then
  MPIRUN="mpirun --oversubscribe -np $NP"
  [ -f "$ROOT/scripts/mpirun.sh" ] && MPIRUN="bash $ROOT/scripts/mpirun.sh --oversubscribe -np $NP"
fi
read -ra MPI <<<"$MPIRUN"
read -ra EXTRA <<<"$GRID_SET"

die() { echo "grid.sh: $*" >&2; exit 2; }
mode=run
case "${1:-}" in
  "") ;;
  --list) mode=list ;;
  --print-variants) mode=variants ;;
  *) die "unknown argument '$1' (usage: analysis/grid.sh [--list | --print-variants]; knobs in the environment, see the header)" ;;
esac
[ -r "$JOB" ] || die "cannot read the job file JOB=$JOB"
[[ $STEPS =~ ^[1-9][0-9]*$ ]] || die "STEPS=$STEPS: expected a positive integer"
[[ $NP =~ ^[1-9][0-9]*$ ]] || die "NP=$NP: expected a positive integer"
[ -n "$SEEDS" ] || die "SEEDS is empty"
for c in $CRITERIA; do
  case $c in output_loss|random|magnitude|feature_loss|taylor) ;; *) die "CRITERIA: unknown criterion '$c'" ;; esac
done
for k in $KD; do
  case $k in task|out|none) ;; *) die "KD: unknown variant '$k' (task, out, none)" ;; esac
done
HC_NAMES=() HC_LAYERS=()
if [ -n "$HANDCRAFTED" ]; then
  [ -r "$HANDCRAFTED" ] || die "cannot read HANDCRAFTED=$HANDCRAFTED"
  while read -r name layers rest; do
    [[ -z $name || $name == \#* ]] && continue
    [[ -n $layers && -z $rest ]] || die "$HANDCRAFTED: line '$name ...': expected NAME LAYER,LAYER,... (no spaces in the list)"
    HC_NAMES+=("$name") HC_LAYERS+=("$layers")
  done <"$HANDCRAFTED"
fi

# Every cell as "NAME ARGS...", ARGS the --set words that make it (GRID_SET last,
# so it can override any of them). The scores a cell needs come from its seed's
# scoring run, so one criterion list serves them all.
cells() { cell_lines | sed 's/[[:space:]]*$//'; }
cell_lines() {
  local s r c k i add
  for s in $SEEDS; do
    local common="--set runtime.seed=$s --set train.steps=$STEPS"
    for r in $RATIOS; do
      for c in $CRITERIA; do
        add="--set prune.additivity_sets=0"
        if [ "$c" = output_loss ]; then add=${ADDITIVITY:+--set prune.additivity_sets=$ADDITIVITY}; fi
        echo "${c}_r${r}_s$s $common --set prune.criterion=$c --set prune.ratio=$r${add:+ $add} $GRID_SET"
      done
    done
    for i in "${!HC_NAMES[@]}"; do
      echo "${HC_NAMES[$i]}_s$s $common --set prune.criterion=output_loss --set prune.layers=[${HC_LAYERS[$i]}] --set prune.additivity_sets=0 $GRID_SET"
    done
    for k in $KD; do
      case $k in
        task) add="--set distill.lambda_out=0 --set distill.lambda_feat=0" ;;
        out) add="--set distill.lambda_feat=0" ;;
        none) add="--set distill.feat_norm=none" ;;
      esac
      echo "output_loss_r${KD_RATIO}_kd-${k}_s$s $common --set prune.criterion=output_loss --set prune.ratio=$KD_RATIO --set prune.additivity_sets=0 $add $GRID_SET"
    done
  done
}

if [ $mode = list ]; then
  cells | cut -d' ' -f1
  exit 0
fi
if [ $mode = variants ]; then
  # grid.sbatch counts only the lines that are not comments: index i = the i-th --set line.
  echo "# analysis/grid.sh variants: JOB=$JOB STEPS=$STEPS SEEDS=\"$SEEDS\" (one cell a line; each index runs"
  echo "# the whole 'run' and scores its own criterion, the same scores as the workstation grid's)"
  n=0
  while read -r name args; do
    echo "# $n: $name"
    echo "$args"
    n=$((n + 1))
  done < <(cells)
  echo "# submit: sbatch --array=0-$((n - 1)) slurm/grid.sbatch run $JOB THIS_FILE"
  exit 0
fi

[ -x "$BIN" ] || die "no laptop-diff binary at BIN=$BIN (build it first: README \"Build\")"
mkdir -p "$GRID_OUT" || die "cannot create GRID_OUT=$GRID_OUT"
stop=0
trap 'stop=1' INT TERM
t_grid=$(date +%s)
failed=()
say() { echo "[grid $(date -u +%T)] $*"; }

# run_step DIR LOG ARGS...: one laptop-diff command into DIR, complete when DIR/grid_cell.done
# holds the same settings. Returns 0 done (now or before), 1 failed.
run_step() {
  local dir=$1 what=$2; shift 2
  local line="$*" t0 rc
  if [ -f "$dir/grid_cell.done" ]; then
    if [ "$(cat "$dir/grid_cell.done")" = "$line" ]; then
      say "skip $(basename "$dir"): complete"
      return 0
    fi
    say "FAILED $(basename "$dir"): complete with other settings than now (see $dir/grid_cell.done); remove the directory or use another GRID_OUT"
    return 1
  fi
  mkdir -p "$dir"
  t0=$(date +%s)
  echo "== $(date -u +%FT%TZ) ${MPI[*]} $BIN $what $JOB $line --set output.dir=$dir" >>"$dir/log.txt"
  # stdin from /dev/null: mpirun would read the cell list the loop below feeds on fd 3
  "${MPI[@]}" "$BIN" $what "$JOB" "$@" --set output.dir="$dir" </dev/null >>"$dir/log.txt" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "$line" >"$dir/grid_cell.done.tmp" && mv "$dir/grid_cell.done.tmp" "$dir/grid_cell.done"
    say "done $(basename "$dir") in $(($(date +%s) - t0)) s"
    return 0
  fi
  if [ $stop -eq 1 ]; then
    say "stopped $(basename "$dir") by a signal (exit $rc): it continues from its checkpoint on the next run"
  else
    say "FAILED $(basename "$dir") (exit $rc): $(tail -2 "$dir/log.txt" | tr '\n' ' ')"
  fi
  return 1
}

ncells=$(cells | wc -l)
say "$ncells cells, $NP ranks, $STEPS distill steps, seeds $SEEDS, into $GRID_OUT"
# the criteria every seed's scoring computes: CRITERIA, plus output_loss for the handcrafted plans
# (their predicted loss) and the KD ablation
need=" $CRITERIA "
if [[ $need != *" output_loss "* ]] && { [ ${#HC_NAMES[@]} -gt 0 ] || [ -n "$KD" ]; }; then need="$need output_loss "; fi
crit_list=$(echo $need | tr ' ' ,)
for s in $SEEDS; do
  [ $stop -eq 1 ] && break
  run_step "$GRID_OUT/score_s$s" score --set runtime.seed="$s" --set "prune.criterion=[$crit_list]" "${EXTRA[@]}" \
    || failed+=("score_s$s")
done
k=0
while read -r -u 3 name args; do
  [ $stop -eq 1 ] && break
  k=$((k + 1))
  seed=$(sed -n 's/.*--set runtime.seed=\([0-9]*\).*/\1/p' <<<"$args")
  score="$GRID_OUT/score_s$seed/run.h5"
  dir="$GRID_OUT/$name"
  if [ ! -f "$GRID_OUT/score_s$seed/grid_cell.done" ]; then
    say "FAILED $name: no complete scoring for seed $seed ($GRID_OUT/score_s$seed)"
    failed+=("$name")
    continue
  fi
  # the cell's run.h5 starts as the scores (a copy, so every cell's file is complete on its own)
  if [ ! -f "$dir/grid_cell.done" ] && [ ! -e "$dir/run.h5" ]; then
    mkdir -p "$dir" && cp "$score" "$dir/run.h5.tmp" && mv "$dir/run.h5.tmp" "$dir/run.h5" \
      || { say "FAILED $name: cannot copy $score"; failed+=("$name"); continue; }
  fi
  say "[$k/$ncells] $name"
  read -ra a <<<"$args"
  run_step "$dir" run --resume=auto "${a[@]}" || failed+=("$name")
done 3< <(cells)
trap - INT TERM
say "grid: $(($(date +%s) - t_grid)) s wall"
if [ $stop -eq 1 ]; then
  say "interrupted: run analysis/grid.sh again with the same knobs to continue"
  exit 3
fi
if "$PY" -c "import h5py, numpy" 2>/dev/null; then
  "$PY" "$ROOT/analysis/grid_table.py" "$GRID_OUT" --md "$GRID_OUT/table.md" --csv "$GRID_OUT/table.csv" \
    ${HANDCRAFTED:+--handcrafted "$HANDCRAFTED"} >/dev/null \
    && say "table: $GRID_OUT/table.md, $GRID_OUT/table.csv" || say "grid_table.py failed"
fi
if [ ${#failed[@]} -gt 0 ]; then
  say "${#failed[@]} failed: ${failed[*]} (logs: $GRID_OUT/<cell>/log.txt); run again to retry them"
  exit 1
fi
say "all $ncells cells complete"
