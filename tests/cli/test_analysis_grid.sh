#!/usr/bin/env bash
# analysis/grid.sh, analysis/grid_table.py and the metric-vs-ratio figure (analysis/figures.py ratio)
# on a tiny real grid: the tiny Fashion-MNIST job with a seeded teacher, 3 distill steps, one seed,
# criteria output_loss and random at ratios 0.25 and 0.5, one handcrafted plan, the task-only KD cell.
#  - grid.sh: --list / --print-variants name the cells of the knobs (2 seeds: twice as many, one
#    --set line per cell as slurm/grid.sbatch reads them); every cell's run.h5 holds its settings
#    (criterion, ratio, seed, KD weights), its plan and the seed's copied scores; a failing cell
#    (a layer name that does not exist) is reported, the others finish, exit 1; a rerun skips the
#    complete cells, redoes one whose marker is gone, and refuses (exit 1) cells complete with
#    other settings (a changed STEPS)
#  - grid_table.py on the real grid: one row per cell, the one-shot loss = /prune/plan actual_loss,
#    the budget line (steps x batch); the paths this eval does not write are notes, not numbers
#  - a fake grid, clearly fake: the real cells copied as a second seed, then /prune/plan actual_loss
#    and /eval/*/fid, alignment overwritten by h5py with chosen values, so the table's mean +- sd
#    and the Spearman rho over the plans (with a tie in the loss) equal hand-computed numbers
#  - Spearman and the tie-averaged ranks on small hand-computed cases (and against scipy if installed)
#  - figures.py ratio on the fake grid: a PNG of the asked size; a metric no run has is left out
#    with a note; none at all is an error with no file written
# Args: BINARY SOURCE_DIR; $INIT_MODEL writes a seeded model.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py matplotlib PIL
PY=/usr/bin/python3
JOB="$SRC/jobs/fmnist_tiny.cfg"
"$INIT_MODEL" "$JOB" "$T/teacher.safetensors" 5 || { echo "init_model failed"; exit 1; }
G=$T/grid
# good: three attention layers of the tiny U-Net; bad: a name it does not have
printf '# tiny U-Net handcrafted plans\ntiny_attn up_blocks.0.attentions.0,up_blocks.0.attentions.1,down_blocks.1.attentions.0\n' >"$T/hand.txt"
{ cat "$T/hand.txt"; echo "tiny_bad up_blocks.9.resnets.0"; } >"$T/hand_bad.txt"
grid() {  # grid.sh with the tiny knobs; extra VAR=value words first
  env JOB="$JOB" GRID_OUT="$G" BIN="$BIN" NP=1 STEPS=3 SEEDS=1 CRITERIA="output_loss random" RATIOS="0.25 0.5" \
    KD=task KD_RATIO=0.5 ADDITIVITY=3 HANDCRAFTED="$T/hand.txt" PY=$PY \
    GRID_SET="--set model.weights=$T/teacher.safetensors --set runtime.threads=1 --set prune.calib_samples=6 --set prune.batch=3 --set eval.samples=8 --set sample.per_class=1" \
    "$@" bash "$SRC/analysis/grid.sh" ${GRID_ARGS:-}
}
CELLS="output_loss_r0.25_s1 random_r0.25_s1 output_loss_r0.5_s1 random_r0.5_s1 tiny_attn_s1 output_loss_r0.5_kd-task_s1"

# the cell lists (nothing run)
[ "$(GRID_ARGS=--list grid | tr '\n' ' ')" = "$CELLS " ] && ok || bad "--list: $(GRID_ARGS=--list grid | tr '\n' ' ')"
GRID_ARGS=--print-variants grid SEEDS="1 2" >"$T/variants.txt" || bad "--print-variants failed"
[ "$(grep -cvE '^[[:space:]]*(#|$)' "$T/variants.txt")" = 12 ] && ok || bad "variants: $(grep -cv '^#' "$T/variants.txt") lines, want 12 (6 cells x 2 seeds)"
grep -vE '^[[:space:]]*(#|$)' "$T/variants.txt" | grep -qv '^--set ' && bad "a variant line does not start with --set" || ok
grep -q -- '--set runtime.seed=2 --set train.steps=3 --set prune.criterion=output_loss --set prune.ratio=0.5 --set prune.additivity_sets=0 --set distill.lambda_out=0 --set distill.lambda_feat=0 --set model.weights=' "$T/variants.txt" \
  && ok || bad "no task-only KD variant for seed 2: $(grep kd "$T/variants.txt")"
grep -q 'submit: sbatch --array=0-11 slurm/grid.sbatch run' "$T/variants.txt" && ok || bad "variants: no submit line: $(tail -1 "$T/variants.txt")"
GRID_ARGS=--bogus grid >/dev/null 2>&1; [ $? = 2 ] && ok || bad "an unknown argument is not a usage error"
grid CRITERIA=nope >"$T/bad.log" 2>&1; [ $? = 2 ] && grep -q "unknown criterion 'nope'" "$T/bad.log" && ok || bad "unknown criterion: $(cat "$T/bad.log")"

# the grid, with one handcrafted plan that cannot be made
t0=$(date +%s)
grid HANDCRAFTED="$T/hand_bad.txt" >"$T/grid1.log" 2>&1; rc=$?
echo "grid (7 cells, 1 rank): $(($(date +%s) - t0)) s"
[ $rc = 1 ] && ok || bad "grid with a failing cell: exit $rc, want 1: $(tail -3 "$T/grid1.log")"
grep -q "FAILED tiny_bad_s1 (exit 1)" "$T/grid1.log" && ok || bad "the failing cell is not reported: $(grep -i fail "$T/grid1.log")"
grep -q "up_blocks.9.resnets.0" "$G/tiny_bad_s1/log.txt" && ok || bad "the failing cell's log does not name the layer: $(tail -2 "$G/tiny_bad_s1/log.txt")"
for c in score_s1 $CELLS; do
  [ -f "$G/$c/grid_cell.done" ] && [ -s "$G/$c/log.txt" ] || bad "$c: not complete after the first run"
done
[ -f "$G/tiny_bad_s1/grid_cell.done" ] && bad "the failed cell has a done marker" || ok
[ -s "$G/table.md" ] && [ -s "$G/table.csv" ] && ok || bad "grid.sh wrote no table"

$PY - "$G" <<'PY' && ok || bad "the cells' run.h5 do not hold their settings, plans and scores"
import sys, h5py, numpy as np
G = sys.argv[1]
def cfg(f):
    t = f.attrs["config"]
    return t.decode() if isinstance(t, bytes) else t
sc = h5py.File(f"{G}/score_s1/run.h5", "r")
assert sorted(sc["/prune/scores"]) == ["output_loss", "random"], sorted(sc["/prune/scores"])
want = {"output_loss_r0.25_s1": ("output_loss", 0.25), "random_r0.25_s1": ("random", 0.25),
        "output_loss_r0.5_s1": ("output_loss", 0.5), "random_r0.5_s1": ("random", 0.5),
        "tiny_attn_s1": ("handcrafted", None), "output_loss_r0.5_kd-task_s1": ("output_loss", 0.5)}
for cell, (crit, ratio) in want.items():
    f = h5py.File(f"{G}/{cell}/run.h5", "r")
    t = cfg(f)
    assert "seed = 1;" in t and "steps = 3;" in t, cell
    a = f["/prune/plan"].attrs
    assert a["criterion"] == crit, (cell, a["criterion"])
    if ratio is not None:
        assert a["ratio"] == ratio and a["removed"] >= a["required"], (cell, a["ratio"])
    for c in ("output_loss", "random"):  # the copied scores, bit for bit
        assert np.array_equal(f[f"/prune/scores/{c}"][()], sc[f"/prune/scores/{c}"][()]), (cell, c)
    assert list(f["/train/step"][()]) == [1, 2, 3], cell
    assert "/eval/student/task_loss" in f, cell
    kd = "kd-task" in cell
    assert ("lambda_out = 0.0;" in t and "lambda_feat = 0.0;" in t) == kd, cell
    # additivity sets only in the output_loss plan cells (ADDITIVITY=3), not in the KD ablation
    assert ("/prune/additivity" in f) == (cell.startswith("output_loss") and not kd), cell
names = [c["name"].decode() for c in h5py.File(f"{G}/tiny_attn_s1/run.h5", "r")["/prune/candidates"][()]]
plan = sorted(names[i] for i in h5py.File(f"{G}/tiny_attn_s1/run.h5", "r")["/prune/plan"][()])
assert plan == sorted("up_blocks.0.attentions.0,up_blocks.0.attentions.1,down_blocks.1.attentions.0".split(",")), plan
# the task-only cell trained with the output and feature terms off
f = h5py.File(f"{G}/output_loss_r0.5_kd-task_s1/run.h5", "r")
assert np.allclose(f["/train/loss"][()], f["/train/loss_task"][()], rtol=1e-6), "kd-task: loss != loss_task"
PY

# restart: the complete cells are skipped (their logs not touched), a cell without its marker is redone
sum_before=$(cat "$G"/*/log.txt | md5sum)
grid >"$T/grid2.log" 2>&1 && ok || bad "rerun of a complete grid: $(tail -3 "$T/grid2.log")"
[ "$(grep -c 'skip .*: complete' "$T/grid2.log")" = 7 ] && ok || bad "rerun skipped $(grep -c 'skip' "$T/grid2.log") of 7 steps"
[ "$(cat "$G"/*/log.txt | md5sum)" = "$sum_before" ] && ok || bad "a complete cell ran again"
rm "$G/random_r0.5_s1/grid_cell.done"
grid >"$T/grid3.log" 2>&1 && ok || bad "rerun with one marker gone: $(tail -3 "$T/grid3.log")"
grep -q "done random_r0.5_s1" "$T/grid3.log" && [ -f "$G/random_r0.5_s1/grid_cell.done" ] && ok || bad "the unmarked cell was not redone: $(cat "$T/grid3.log")"
[ "$(grep -c 'skip .*: complete' "$T/grid3.log")" = 6 ] && ok || bad "rerun with one marker gone skipped $(grep -c skip "$T/grid3.log")"
grep -q "resume: skipping score" "$G/random_r0.5_s1/log.txt" && ok || bad "a cell scored again instead of using the copied scores"
grid STEPS=4 >"$T/grid4.log" 2>&1; rc=$?
[ $rc = 1 ] && [ "$(grep -c 'complete with other settings' "$T/grid4.log")" = 6 ] && ok || bad "changed STEPS: exit $rc, $(grep -c 'other settings' "$T/grid4.log") cells refused (want 1, 6)"

# the table of the real grid
$PY "$SRC/analysis/grid_table.py" "$G" --handcrafted "$T/hand.txt" --md "$T/real.md" --csv "$T/real.csv" >"$T/real.out" 2>&1 \
  && ok || bad "grid_table.py on the real grid: $(tail -3 "$T/real.out")"
cmp -s "$T/real.out" "$T/real.md" && ok || bad "--md differs from stdout"
grep -q "3 steps × batch 4 = 12 samples per cell" "$T/real.md" && ok || bad "no budget line: $(head -3 "$T/real.md")"
$PY - "$G" "$T/real.md" "$T/real.csv" <<'PY' && ok || bad "the real grid's table"
import sys, csv, h5py
G, md, cs = sys.argv[1], open(sys.argv[2]).read(), list(csv.DictReader(open(sys.argv[3])))
rows = [l for l in md.splitlines() if l.startswith("| ") and "---" not in l]
head, body = rows[0], rows[1:]
assert len(cs) == 6, len(cs)
assert sum(1 for l in body if l.split("|")[1].strip() in ("output_loss", "random", "tiny_attn")) >= 6, body
by = {(r["plan"], r["ratio"], r["kd"]): r for r in cs}
for cell, key in (("output_loss_r0.25_s1", ("output_loss", "0.25", "task+out+feat(l2sq)")),
                  ("random_r0.5_s1", ("random", "0.5", "task+out+feat(l2sq)")),
                  ("tiny_attn_s1", ("tiny_attn", "-", "task+out+feat(l2sq)")),
                  ("output_loss_r0.5_kd-task_s1", ("output_loss", "0.5", "task"))):
    f = h5py.File(f"{G}/{cell}/run.h5", "r")
    r = by[key]
    assert float(r["oneshot_loss_mean"]) == float(f["/prune/plan"].attrs["actual_loss"]), cell
    pr = 1 - f["/eval/student/params"][()] / f["/eval/teacher/params"][()]
    assert abs(float(r["params_removed_mean"]) - pr) < 1e-12, cell
    assert r["seeds"] == "1" and r["oneshot_loss_n"] == "1", r
# what this build's eval writes or not: a column with numbers, or a note; never both
f = h5py.File(f"{G}/output_loss_r0.25_s1/run.h5", "r")
for key, col in (("fid", "FID student"), ("alignment", "alignment student"), ("seconds_per_image_b1", "student ms/image b1")):
    have = f"/eval/student/{key}" in f
    assert (col in head) == have, (key, have, head)
    assert (f"no `/eval/student/{key}` in 6 of 6 runs" in md) == (not have), (key, have)
assert "2 run.h5 without /prune/plan (scoring runs, or cells stopped before their plan): score_s1, tiny_bad_s1" in md, md
PY

# a fake grid: the real cells, and copies of them as seed 2, with chosen one-shot losses and metrics
# (overwritten by h5py below; nothing here is a measurement)
F=$T/fake
mkdir -p "$F"
for c in $CELLS; do
  cp -r "$G/$c" "$F/$c"
  cp -r "$G/$c" "$F/${c%_s1}_s2"
done
$PY - "$F" <<'PY' && ok || bad "making the fake grid"
import sys, h5py, numpy as np
F = sys.argv[1]
# plan cells (main KD): one-shot loss x (a tie at 2) and FID y; seed 1 gets y-1, seed 2 y+1
vals = {"output_loss_r0.25": (1, 10), "random_r0.25": (2, 30), "output_loss_r0.5": (2, 20),
        "random_r0.5": (3, 40), "tiny_attn": (4, 35), "output_loss_r0.5_kd-task": (2.5, 99)}
for cell, (x, y) in vals.items():
    for seed, dy in ((1, -1.0), (2, 1.0)):
        with h5py.File(f"{F}/{cell}_s{seed}/run.h5", "r+") as f:
            t = f.attrs["config"]
            t = t.decode() if isinstance(t, bytes) else t
            if seed == 2:
                assert "  seed = 1;\n  device" in t
                f.attrs["config"] = t.replace("  seed = 1;\n  device", "  seed = 2;\n  device")
            f["/prune/plan"].attrs["actual_loss"] = float(x)
            for m, fid, al in (("student", y + dy, 1 - (y + dy) / 100), ("teacher", 5.0 + dy, 0.95)):
                for k, v in (("fid", fid), ("alignment", al)):
                    p = f"/eval/{m}/{k}"
                    if p in f:
                        del f[p]
                    f[p] = float(v)
PY
$PY "$SRC/analysis/grid_table.py" "$F" --handcrafted "$T/hand.txt" --csv "$T/fake.csv" >"$T/fake.md" 2>&1 \
  && ok || bad "grid_table.py on the fake grid: $(tail -3 "$T/fake.md")"
$PY - "$T/fake.md" "$T/fake.csv" <<'PY' && ok || bad "the fake grid's table: mean, sd, Spearman"
import sys, csv, math
md, cs = open(sys.argv[1]).read(), list(csv.DictReader(open(sys.argv[2])))
by = {(r["plan"], r["ratio"], r["kd"]): r for r in cs}
r = by[("random", "0.25", "task+out+feat(l2sq)")]
assert r["seeds"] == "1 2" and float(r["student_fid_mean"]) == 30 and abs(float(r["student_fid_sd"]) - math.sqrt(2)) < 1e-12, r
assert abs(float(r["student_alignment_mean"]) - 0.7) < 1e-12 and float(r["oneshot_loss_sd"]) == 0, r
assert abs(float(r["alignment_change_mean"]) - (0.7 / 0.95 - 1)) < 1e-12, r  # per seed 0.71/0.95 - 1, 0.69/0.95 - 1
assert "| random | 0.25 | task+out+feat(l2sq) | 1,2 | 2 ± 0 |" in md, [l for l in md.splitlines() if l.startswith("| random | 0.25")]
assert "30 ± 1.41" in md and "seeds 1, 2" in md
# Spearman over the 5 plan cells (the kd-task cell is not a plan): losses x = [1, 2, 2, 3, 4] (tie),
# FID y = [10, 30, 20, 40, 35]: ranks rx = [1, 2.5, 2.5, 4, 5], ry = [1, 3, 2, 5, 4];
# rho = sum(dx dy) / sqrt(sum dx^2 sum dy^2) = 8.5 / sqrt(9.5 * 10) = 0.872 (alignment = 1 - FID/100: -0.872)
rho = 8.5 / math.sqrt(9.5 * 10)
line = [l for l in md.splitlines() if l.startswith("| FID (student) | all plans |")]
assert line == [f"| FID (student) | all plans | 5 | {rho:.3f} |"], (line, rho)
line = [l for l in md.splitlines() if l.startswith("| alignment (student) | all plans |")]
assert line == [f"| alignment (student) | all plans | 5 | {-rho:.3f} |"], line
assert "| FID (student) | ratio 0.25 | 2 | - (undefined: fewer than 3 plans with both values) |" in md
PY

# Spearman and ranks, unit-style
$PY - "$SRC/analysis" <<'PY' && ok || bad "spearman / rankdata"
import sys, math, numpy as np
sys.path.insert(0, sys.argv[1])
from grid_table import rankdata, spearman, parse_config
assert list(rankdata([1, 2, 2, 3])) == [1, 2.5, 2.5, 4]
assert list(rankdata([5, 5, 5])) == [2, 2, 2]
assert list(rankdata([3, 1, 2, 1])) == [4, 1.5, 3, 1.5]
# x = [1, 2, 2, 3], y = [4, 3, 2, 1]: rx - 2.5 = [-1.5, 0, 0, 1.5], ry - 2.5 = [1.5, .5, -.5, -1.5]:
# rho = -4.5 / sqrt(4.5 * 5) = -3 / sqrt(10)
assert abs(spearman([1, 2, 2, 3], [4, 3, 2, 1]) + 3 / math.sqrt(10)) < 1e-12, spearman([1, 2, 2, 3], [4, 3, 2, 1])
assert spearman([1, 2, 3], [10, 20, 30]) == 1.0 and spearman([1, 2, 3], [3, 2, 1]) == -1.0
assert math.isnan(spearman([1, 2], [1, 2])) and math.isnan(spearman([1, 1, 1], [1, 2, 3]))
try:
    from scipy.stats import spearmanr
except ImportError:
    print("scipy not installed: the comparison with scipy.stats.spearmanr is skipped")
else:
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(3, 30))
        x, y = rng.integers(0, 5, n).astype(float), rng.integers(0, 8, n).astype(float)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        assert abs(spearman(x, y) - spearmanr(x, y).correlation) < 1e-12, (x, y)
c = parse_config('# c\nprune = {\n  criterion = ["output_loss", "random"];\n  ratio = 0.5;\n  layers = [];\n};\n'
                 'runtime = {\n  seed = 2;\n  device = "cpu";\n};\n')
assert c == {"prune.criterion": ["output_loss", "random"], "prune.ratio": 0.5, "prune.layers": [],
             "runtime.seed": 2, "runtime.device": "cpu"}, c
PY

# metric vs ratio on the fake grid
$PY "$SRC/analysis/figures.py" ratio "$F" --handcrafted "$T/hand.txt" --out "$T/ratio.png" --size 1000x450 >"$T/ratio.log" 2>&1 \
  && png_is "$T/ratio.png" 1000 450 && ok || bad "ratio figure: $(tail -3 "$T/ratio.log")"
$PY "$SRC/analysis/figures.py" ratio "$F" --metrics fid,kid --out "$T/ratio2.png" --size 600x400 >"$T/ratio2.log" 2>&1 \
  && png_is "$T/ratio2.png" 600 400 && grep -q "no /eval/student/kid in any run .*: panel left out" "$T/ratio2.log" && ok \
  || bad "ratio figure with a missing metric: $(cat "$T/ratio2.log")"
$PY "$SRC/analysis/figures.py" ratio "$F" --metrics kid --out "$T/ratio3.png" >"$T/ratio3.log" 2>&1
[ $? = 1 ] && [ ! -e "$T/ratio3.png" ] && ! ls "$T"/ratio3.png.tmp* >/dev/null 2>&1 && ok || bad "ratio figure with nothing to draw: $(cat "$T/ratio3.log")"
finish test_analysis_grid
