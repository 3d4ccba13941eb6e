#!/usr/bin/env bash
# One-shot comparison of pruning criteria on a teacher (no retraining): score
# every criterion once, then for each criterion and ratio let `plan` pick the
# layers and measure the plan's actual output loss on the calibration set; the
# BK-SDM-style handcrafted plan next to them. Prints a Markdown table.
# usage: analysis/one_shot.sh JOB.cfg OUT_DIR [NP]      (run from the repo root)
set -euo pipefail
JOB=$1; OUT=$2; NP=${3:-2}
BIN=${BIN:-build/laptop-diff}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun --oversubscribe -np "$NP")
CRITS=(output_loss feature_loss taylor magnitude random)
"${MPI[@]}" "$BIN" score "$JOB" --set output.dir="$OUT" --set "prune.criterion=[$(IFS=,; echo "${CRITS[*]}")]" > "$OUT.score.log"
# BK-SDM "Base" on this U-Net: one (resnet, attention) pair less per down stage, the middle pair of every up stage
BKSDM="[$(awk '$1 == "bksdm_base" {print $2}' "$(dirname "$0")/bksdm_layers.txt")]"
[ "$BKSDM" != "[]" ] || { echo "no bksdm_base line in $(dirname "$0")/bksdm_layers.txt"; exit 1; }
echo "| plan | ratio asked | params removed | layers | output loss (measured) | sum of scores |"
echo "| --- | --- | --- | --- | --- | --- |"
for ratio in 0.25 0.5; do
  for c in "${CRITS[@]}"; do
    "${MPI[@]}" "$BIN" plan "$JOB" --set output.dir="$OUT" --set prune.criterion="$c" --set prune.ratio=$ratio \
      --set prune.additivity_sets=0 > "$OUT.plan.$c.$ratio.log"
    /usr/bin/python3 - "$OUT/run.h5" "$c" "$ratio" <<'PY'
import sys, h5py
p = h5py.File(sys.argv[1], "r")["/prune/plan"]
a = p.attrs
print(f"| {sys.argv[2]} | {sys.argv[3]} | {a['removed'] / a['total']:.3f} | {len(p)} | {a['actual_loss']:.3g} | {a['predicted_loss']:.3g} |")
PY
  done
done
"${MPI[@]}" "$BIN" plan "$JOB" --set output.dir="$OUT" --set prune.criterion=output_loss --set "prune.layers=$BKSDM" \
  --set prune.additivity_sets=0 > "$OUT.plan.bksdm.log"
/usr/bin/python3 - "$OUT/run.h5" <<'PY'
import sys, h5py
p = h5py.File(sys.argv[1], "r")["/prune/plan"]
a = p.attrs
print(f"| BK-SDM-style handcrafted | - | {a['removed'] / a['total']:.3f} | {len(p)} | {a['actual_loss']:.3g} | {a['predicted_loss']:.3g} |")
PY
