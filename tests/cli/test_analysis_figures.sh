#!/usr/bin/env bash
# analysis/figures.py on a tiny real run: `laptop-diff run` on the tiny Fashion-MNIST job with a
# seeded teacher (all five criteria scored, 3 additivity sets, 3 distill steps with activation
# snapshots, eval) and `sample` of the teacher into the same directory; then every figure of one
# run (losses, imbalance, scores, additivity, samples; the grid figure `ratio` is in
# cli_test_analysis_grid):
#  - each writes a valid PNG (magic, IHDR, PIL decodes it) of exactly the asked --size, and the
#    default size when none is asked
#  - missing data: a criterion the file lacks is a panel left out with a note; a run without
#    /prune/additivity or /train/* is an error (exit 1) that names the path and leaves no file
#  - bad arguments (--size, --out not .png, two inputs) are usage errors
#  - samples: the teacher half and the student half of teacher_vs_student.png, cut at eval's layout,
#    are those pixels of the file (checked against a rebuild of the panels)
# Args: BINARY SOURCE_DIR; $INIT_MODEL writes a seeded model.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py matplotlib PIL
PY=/usr/bin/python3
FIG="$SRC/analysis/figures.py"
JOB="$SRC/jobs/fmnist_tiny.cfg"
"$INIT_MODEL" "$JOB" "$T/teacher.safetensors" 5 || { echo "init_model failed"; exit 1; }
R=$T/run
mpirun_n 1 "$BIN" run "$JOB" --set model.weights="$T/teacher.safetensors" --set runtime.threads=1 \
  --set prune.calib_samples=6 --set prune.batch=3 --set prune.additivity_sets=3 --set train.steps=3 \
  --set distill.activation_interval=3 --set distill.probe_samples=2 --set eval.samples=8 --set sample.per_class=1 \
  --set "prune.criterion=[output_loss,random,magnitude,feature_loss,taylor]" --set output.dir="$R" >"$T/run.log" 2>&1 \
  || { echo "tiny run failed: $(tail -3 "$T/run.log")"; exit 1; }
mpirun_n 1 "$BIN" sample "$JOB" --set sample.model="$T/teacher.safetensors" --set runtime.threads=1 --set sample.per_class=2 \
  --set output.dir="$R" >"$T/sample.log" 2>&1 || { echo "sample failed: $(tail -3 "$T/sample.log")"; exit 1; }
# a run with no distillation and no additivity: score only
mpirun_n 1 "$BIN" score "$JOB" --set model.weights="$T/teacher.safetensors" --set runtime.threads=1 \
  --set prune.calib_samples=6 --set prune.batch=3 --set output.dir="$T/scoreonly" >"$T/score.log" 2>&1 \
  || { echo "score failed: $(tail -3 "$T/score.log")"; exit 1; }

fig() {  # NAME W H ARGS...: the figure at --size WxH
  local name=$1 w=$2 h=$3; shift 3
  if $PY "$FIG" "$name" "$@" --out "$T/$name.png" --size "${w}x$h" >"$T/$name.log" 2>&1 && png_is "$T/$name.png" "$w" "$h"; then
    ok
  else
    bad "figure $name: $(tail -3 "$T/$name.log")"
  fi
}
fig losses 640 400 "$R/run.h5"
fig imbalance 1000 420 "$R/run.h5"
fig scores 900 1100 "$R/run.h5"
fig additivity 500 500 "$R/run.h5"
fig samples 700 600 "$R"
# the default sizes
$PY "$FIG" losses "$R/run.h5" --out "$T/default.png" >/dev/null 2>&1 && png_is "$T/default.png" 900 560 && ok || bad "losses at the default size"
$PY "$FIG" scores "$R/run.h5" --criteria output_loss,taylor --out "$T/default2.png" >/dev/null 2>&1 && png_is "$T/default2.png" 1200 680 \
  && ok || bad "scores (2 panels) at the default size"
grep -q "wrote $T/samples.png" "$T/samples.log" && ok || bad "samples: no 'wrote' line"

# missing data
$PY "$FIG" scores "$R/run.h5" --criteria output_loss,nope --out "$T/s2.png" --size 800x600 >"$T/s2.log" 2>&1 \
  && png_is "$T/s2.png" 800 600 && grep -q "no /prune/scores/nope: panel left out" "$T/s2.log" && ok || bad "scores with a missing criterion: $(cat "$T/s2.log")"
for f in additivity losses imbalance; do
  $PY "$FIG" $f "$T/scoreonly/run.h5" --out "$T/none_$f.png" >"$T/none_$f.log" 2>&1
  rc=$?
  [ $rc = 1 ] && [ ! -e "$T/none_$f.png" ] && ! ls "$T"/none_$f.png.tmp* >/dev/null 2>&1 && grep -q "/train/\|/prune/additivity" "$T/none_$f.log" \
    && ok || bad "$f of a score-only run: exit $rc, $(cat "$T/none_$f.log")"
done
# a score-only run has scores but no plan: drawn, with a note that nothing is marked
$PY "$FIG" scores "$T/scoreonly/run.h5" --out "$T/s3.png" --size 600x500 >"$T/s3.log" 2>&1 && png_is "$T/s3.png" 600 500 \
  && grep -q "no /prune/plan: no layer marked" "$T/s3.log" && ok || bad "scores without a plan: $(cat "$T/s3.log")"
$PY "$FIG" losses "$T/nonexistent.h5" --out "$T/x.png" >"$T/x.log" 2>&1; [ $? = 1 ] && grep -q "cannot open as HDF5" "$T/x.log" && ok || bad "a missing file: $(cat "$T/x.log")"
for args in "losses $R/run.h5 --out $T/x.png --size 10x10" "losses $R/run.h5 --out $T/x.jpg" "losses $R/run.h5 $R/run.h5 --out $T/x.png" "nofigure $R/run.h5 --out $T/x.png"; do
  $PY "$FIG" $args >/dev/null 2>&1; [ $? = 2 ] && ok || bad "not a usage error: $args"
done
[ ! -e "$T/x.png" ] && ok || bad "a failed figure left $T/x.png"

# samples: the panels are the halves of eval's grid (teacher columns, then student columns)
$PY - "$SRC/analysis" "$R" <<'PY' && ok || bad "samples: the teacher and student halves"
import sys, numpy as np, h5py
sys.path.insert(0, sys.argv[1])
import matplotlib
matplotlib.use("Agg")
import matplotlib.image as mpimg
import figures, grid_table
R = sys.argv[2]
img = mpimg.imread(f"{R}/teacher_vs_student.png")
cfg = grid_table.parse_config(h5py.File(f"{R}/run.h5", "r").attrs["config"])
pc, size = cfg["sample.per_class"], cfg["model.sample_size"]
t, s = figures.split_pairs(img, pc, size)
cw = size * 2
assert t.shape[1] == s.shape[1] == 2 + pc * (cw + 2), (t.shape, s.shape)
assert np.array_equal(np.concatenate([t, s[:, 2:]], axis=1), img)  # together they are the file
assert figures.split_pairs(img, pc + 1, size) is None  # another layout: not cut
# the student half is the student's samples: eval drew them with the student, so they differ from the teacher's
assert not np.array_equal(t, s)
PY
finish test_analysis_figures
