#!/usr/bin/env bash
# prune.granularity = "block" end to end on the tiny Fashion-MNIST job with stacks of 2
# BasicTransformerBlocks (4 stacks: 8 block candidates, 14 in all; 10 at layer granularity):
#  - info counts candidates at both granularities and lists blocks
#  - score (every criterion) on 1 and 2 ranks: the same scores bit for bit; /prune/candidates
#    lists blocks (kind "block", granularity attribute) and no whole 2-block Transformer2DModel
#  - plan (params and MACs budgets): same plan on 1 and 2 ranks; the student's "removed"
#    metadata is exactly the plan's candidates; a handcrafted plan of blocks gives a student
#    without those blocks' tensors, which distill trains and eval evaluates
#  - bad input: an unknown granularity names file, line and key; a block student as teacher
#    at layer granularity, and a whole stack named at block granularity, are clear errors
# Args: BINARY SOURCE_DIR; $INIT_MODEL writes a seeded model.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py
JOB="$SRC/jobs/fmnist_tiny.cfg"
ARCH=(--set model.transformer_layers_per_block=2)
"$INIT_MODEL" "$JOB" "$T/teacher.safetensors" 5 "${ARCH[@]}" || { echo "init_model failed"; exit 1; }
COMMON=("${ARCH[@]}" --set model.weights="$T/teacher.safetensors" --set prune.granularity=\"block\"
        --set prune.calib_samples=6 --set prune.batch=3 --set prune.ratio=0.3 --set prune.additivity_sets=4
        --set runtime.threads=1)

"$BIN" info "$JOB" "${ARCH[@]}" >"$T/info_layer.log" 2>&1 || bad "info: $(tail -2 "$T/info_layer.log")"
"$BIN" info "$JOB" "${ARCH[@]}" --set prune.granularity=\"block\" >"$T/info_block.log" 2>&1 || bad "info block: $(tail -2 "$T/info_block.log")"
grep -q "Candidates by prune.granularity: 10 (layer), 14 (block)" "$T/info_layer.log" && ok || bad "info counts: $(grep 'by prune' "$T/info_layer.log")"
grep -q "mid_block.attentions.0.transformer_blocks.1 *block *mid" "$T/info_block.log" && grep -q "^Candidates: 14 (6 resnets, 0 attentions, 8 transformer blocks)" "$T/info_block.log" \
  && ok || bad "info at block granularity does not list the blocks: $(grep '^Candidates' "$T/info_block.log")"

for np in 1 2; do
  mpirun_n $np "$BIN" score "$JOB" "${COMMON[@]}" --set 'prune.criterion=[output_loss, magnitude, feature_loss, taylor, random]' \
    --set output.dir="$T/np$np" >"$T/score$np.log" 2>&1 || bad "score -np $np: $(tail -2 "$T/score$np.log")"
  mpirun_n $np "$BIN" plan "$JOB" "${COMMON[@]}" --set output.dir="$T/np$np" >"$T/plan$np.log" 2>&1 || bad "plan -np $np: $(tail -2 "$T/plan$np.log")"
  mpirun_n $np "$BIN" plan "$JOB" "${COMMON[@]}" --set prune.budget=\"macs\" --set prune.scores_from="$T/np1/run.h5" \
    --set output.dir="$T/macs$np" >"$T/macs$np.log" 2>&1 || bad "plan macs -np $np: $(tail -2 "$T/macs$np.log")"
done
grep -q "^score: 14 candidates (granularity block)" "$T/score2.log" && ok || bad "score header: $(grep '^score:' "$T/score2.log" | head -1)"
/usr/bin/python3 - "$T" "$SRC" <<'PY' && ok || bad "block scores, plans or students"
import sys, json, struct, h5py, numpy as np
T, SRC = sys.argv[1], sys.argv[2]
def meta(path):  # safetensors header: tensor names and __metadata__
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return h.pop("__metadata__", {}), set(h)
f1, f2 = (h5py.File(f"{T}/np{n}/run.h5", "r") for n in (1, 2))
for crit in ["output_loss", "magnitude", "feature_loss", "taylor", "random"]:
    a, b = f1[f"/prune/scores/{crit}"][:], f2[f"/prune/scores/{crit}"][:]
    assert np.array_equal(a, b), (crit, a, b)
    assert np.all(np.isfinite(a)) and np.all(a >= 0), (crit, a)
c = f1["/prune/candidates"]
names = [x.decode() for x in c["name"]]
kinds = [x.decode() for x in c["kind"]]
assert c.attrs["granularity"] in (b"block", "block"), c.attrs["granularity"]
blocks = [n for n, k in zip(names, kinds) if k == "block"]
assert len(names) == 14 and len(blocks) == 8, (names, kinds)
assert "mid_block.attentions.0" not in names and "mid_block.attentions.0.transformer_blocks.1" in names, names
assert all(k != "attention" for k in kinds), kinds  # every stack has 2 blocks here
for d in ("np", "macs"):
    p1, p2 = (list(h5py.File(f"{T}/{d}{n}/run.h5", "r")["/prune/plan"][:]) for n in (1, 2))
    assert p1 == p2, (d, p1, p2)
    plan = h5py.File(f"{T}/{d}1/run.h5", "r")["/prune/plan"]
    assert plan.attrs["granularity"] in (b"block", "block") and plan.attrs["removed"] >= plan.attrs["required"]
    m, tensors = meta(f"{T}/{d}1/student_init.safetensors")
    removed = m["removed"].split(",") if m["removed"] else []
    assert removed == [names[i] for i in p1], (removed, p1)
    assert m["laptop_diff.granularity"] == "block", m
    for r in removed:  # no tensor of a removed candidate is in the student
        assert not any(t.startswith(r + ".") for t in tensors), r
print("scores identical on 1/2 ranks; MACs plan", [names[i] for i in p1], "= student removed", removed)
PY

# a handcrafted plan of blocks (and one resnet): the student lacks exactly those; distill and eval run on it
HAND=(--set 'prune.layers=["mid_block.attentions.0.transformer_blocks.1", "up_blocks.0.attentions.1.transformer_blocks.0", "down_blocks.1.attentions.0.transformer_blocks.0"]')
mpirun_n 2 "$BIN" plan "$JOB" "${COMMON[@]}" "${HAND[@]}" --set output.dir="$T/hand" >"$T/hand.log" 2>&1 || bad "handcrafted block plan: $(tail -2 "$T/hand.log")"
grep -q "remove 3 of 14 candidates (granularity block)" "$T/hand.log" && ok || bad "handcrafted plan table: $(grep '^plan' "$T/hand.log")"
"$BIN" info "$T/hand/student_init.safetensors" >"$T/info_student.log" 2>&1 || bad "info student: $(tail -2 "$T/info_student.log")"
grep -q "mid_block.attentions.0.transformer_blocks.1 *block *mid *(removed)" "$T/info_student.log" \
  && grep -q "3 already removed" "$T/info_student.log" && ok || bad "info on the block student: $(grep -E 'removed|^Candidates' "$T/info_student.log" | head -4)"
DIST=("${COMMON[@]}" --set output.dir="$T/hand" --set train.steps=2 --set train.batch=4 --set eval.samples=4
      --set eval.fid_samples=10 --set eval.speed_batch=2 --set sample.per_class=1 --set sample.steps=2)
mpirun_n 2 "$BIN" distill "$JOB" "${DIST[@]}" >"$T/distill.log" 2>&1 || bad "distill on the block student: $(tail -3 "$T/distill.log")"
mpirun_n 1 "$BIN" eval "$JOB" "${DIST[@]}" >"$T/eval.log" 2>&1 || bad "eval of the block student: $(tail -3 "$T/eval.log")"
/usr/bin/python3 - "$T" <<'PY' && ok || bad "distilled block student"
import sys, json, struct, h5py, numpy as np
T = sys.argv[1]
with open(f"{T}/hand/student.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
m = h.pop("__metadata__")
want = ["down_blocks.1.attentions.0.transformer_blocks.0", "mid_block.attentions.0.transformer_blocks.1",
        "up_blocks.0.attentions.1.transformer_blocks.0"]
assert m["removed"].split(",") == want, m["removed"]
assert not any(t.startswith(w + ".") for w in want for t in h)
assert "mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight" in h and "mid_block.attentions.0.proj_out.weight" in h
r = h5py.File(f"{T}/hand/run.h5", "r")
loss = r["/train/loss"][:]
assert len(loss) == 2 and np.all(np.isfinite(loss)), loss
ev = r["/eval"]
ps, pt = float(ev["student/params"][()]), float(ev["teacher/params"][()])
ms, mt = float(ev["student/macs"][()]), float(ev["teacher/macs"][()])
assert ps < pt and ms < mt, (ps, pt, ms, mt)
print("distilled block student: loss", loss, "params", ps / pt, "MACs", ms / mt)
PY

# bad input
printf 'prune = {\n  granularity = "blocks";\n};\n' > "$T/badgran.cfg"
"$BIN" info "$T/badgran.cfg" >"$T/badgran.log" 2>&1 && bad "an unknown granularity was accepted" \
  || { grep -q "badgran.cfg:2: prune.granularity" "$T/badgran.log" && ok || bad "unknown granularity error: $(cat "$T/badgran.log")"; }
mpirun_n 1 "$BIN" score "$JOB" "${COMMON[@]}" --set prune.granularity=\"layer\" --set model.weights="$T/hand/student_init.safetensors" \
  --set output.dir="$T/badteacher" >"$T/badteacher.log" 2>&1 && bad "a block student scored at layer granularity" \
  || { grep -q 'was removed as a single block: this model can be pruned further only at prune.granularity = "block"' "$T/badteacher.log" \
       && ok || bad "block teacher at layer granularity: $(tail -2 "$T/badteacher.log")"; }
mpirun_n 1 "$BIN" plan "$JOB" "${COMMON[@]}" --set 'prune.layers=["mid_block.attentions.0"]' --set output.dir="$T/badlayers" \
  >"$T/badlayers.log" 2>&1 && bad "a whole stack of 2 accepted at block granularity" \
  || { grep -q 'prune.layers: "mid_block.attentions.0" is not a removable layer of this architecture at prune.granularity = "block"' "$T/badlayers.log" \
       && ok || bad "whole stack at block granularity: $(tail -2 "$T/badlayers.log")"; }
[ ! -e "$T/badlayers/student_init.safetensors" ] && ok || bad "a failed plan left a student behind"

finish test_block
