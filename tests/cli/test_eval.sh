#!/usr/bin/env bash
# `laptop-diff eval` end to end on the tiny Fashion-MNIST job (teacher from init_model,
# student from score + plan), on 1 and 2 ranks at 1 thread each:
#  - run.h5 /eval/{teacher,student}/{task_loss,output_mse,params,macs,seconds_per_sample},
#    scalars with units and description; the teacher's output_mse is 0, the student's > 0;
#    params equal what `info` counts; the student is smaller; /prune/* from earlier stays
#  - 2 ranks == 1 rank: every metric but the wall time bit for bit, the same PNG pixels
#  - teacher_vs_student.png is, pixel for pixel, each class's teacher samples then student
#    samples, the same images `sample` gives for each model (same seeds)
#  - no teacher or no student fails with a message naming what is missing
# Args: BINARY SOURCE_DIR; $INIT_MODEL writes a seeded model.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py PIL
JOB="$SRC/jobs/fmnist_tiny.cfg"
"$INIT_MODEL" "$JOB" "$T/teacher.safetensors" 5 || { echo "init_model failed"; exit 1; }
COMMON=(--set model.weights="$T/teacher.safetensors" --set runtime.threads=1 --set prune.calib_samples=6
        --set prune.batch=3 --set prune.additivity_sets=0 --set eval.samples=8 --set sample.per_class=1)
mpirun_n 1 "$BIN" score "$JOB" "${COMMON[@]}" --set output.dir="$T/prune" >"$T/score.log" 2>&1 || { echo "score failed: $(tail -3 "$T/score.log")"; exit 1; }
mpirun_n 1 "$BIN" plan "$JOB" "${COMMON[@]}" --set output.dir="$T/prune" >"$T/plan.log" 2>&1 || { echo "plan failed: $(tail -3 "$T/plan.log")"; exit 1; }
# eval reads OUTPUT_DIR/student.safetensors (distill's output); the pruned student stands in for it
for np in 1 2; do
  mkdir -p "$T/np$np" && cp "$T/prune/run.h5" "$T/np$np/" && cp "$T/prune/student_init.safetensors" "$T/np$np/student.safetensors"
  mpirun_n $np "$BIN" eval "$JOB" "${COMMON[@]}" --set output.dir="$T/np$np" >"$T/eval$np.log" 2>&1 || bad "eval -np $np: $(tail -3 "$T/eval$np.log")"
done
grep -q "eval on 8 held-out samples" "$T/eval2.log" && grep -q "teacher_vs_student.png" "$T/eval2.log" && ok || bad "eval summary: $(tail -4 "$T/eval2.log")"
# the samples of each model alone, from the same seeds
for who in teacher:"$T/teacher.safetensors" student:"$T/np1/student.safetensors"; do
  mpirun_n 1 "$BIN" sample "$JOB" "${COMMON[@]}" --set sample.model="${who#*:}" --set output.dir="$T/s_${who%%:*}" \
    >"$T/s_${who%%:*}.log" 2>&1 || bad "sample of the ${who%%:*}: $(tail -3 "$T/s_${who%%:*}.log")"
done
"$BIN" info "$T/teacher.safetensors" >"$T/info_t.log" 2>&1 || bad "info teacher"
"$BIN" info "$T/np1/student.safetensors" >"$T/info_s.log" 2>&1 || bad "info student"
pt=$(sed -n 's/^Parameters: \([0-9,]*\) .*/\1/p' "$T/info_t.log" | tr -d ,)
ps=$(sed -n 's/^Parameters: \([0-9,]*\) .*/\1/p' "$T/info_s.log" | tr -d ,)

/usr/bin/python3 - "$T" "$SRC/tests/cli" "${pt:-0}" "${ps:-0}" <<'PY' && ok || bad "run.h5 /eval/* or teacher_vs_student.png"
import sys, h5py, numpy as np
T, pt, ps = sys.argv[1], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, sys.argv[2])
import grid
names = ["task_loss", "output_mse", "params", "macs", "seconds_per_sample"]
m = {}
for np_ in (1, 2):
    with h5py.File(f"{T}/np{np_}/run.h5", "r") as f:
        assert "/prune/plan" in f and "/prune/scores/output_loss" in f, "eval dropped the earlier stages"
        for who in ("teacher", "student"):
            assert sorted(f[f"/eval/{who}"]) == sorted(names), (who, sorted(f[f"/eval/{who}"]))
            for n in names:
                d = f[f"/eval/{who}/{n}"]
                assert d.size == 1 and "units" in d.attrs and "description" in d.attrs, (who, n)
                m[np_, who, n] = float(d[()])
for np_ in (1, 2):
    t = {n: m[np_, "teacher", n] for n in names}
    s = {n: m[np_, "student", n] for n in names}
    assert t["output_mse"] == 0.0, t            # the teacher against its own outputs
    assert np.isfinite(s["output_mse"]) and s["output_mse"] > 0, s
    for d in (t, s):
        assert np.isfinite(d["task_loss"]) and d["task_loss"] > 0 and d["seconds_per_sample"] > 0, d
    assert t["params"] == pt and s["params"] == ps and 0 < ps < pt, (t["params"], s["params"], pt, ps)
    assert 0 < s["macs"] < t["macs"], (s["macs"], t["macs"])
for who in ("teacher", "student"):
    for n in names[:-1]:  # computed on rank 0 either way: bit for bit
        assert m[1, who, n] == m[2, who, n], (who, n, m[1, who, n], m[2, who, n])
# the grid: per class row, the teacher's sample then the student's (per_class 1: 2 columns)
with h5py.File(f"{T}/s_teacher/samples.h5", "r") as a, h5py.File(f"{T}/s_student/samples.h5", "r") as b:
    xt, xs = a["/samples"][()], b["/samples"][()]
assert not np.array_equal(xt, xs), "teacher and student sample alike: the student is not the pruned model"
x = np.stack([xt, xs], axis=1).reshape((-1,) + xt.shape[1:])
for np_ in (1, 2):
    shape = grid.check_grid(f"{T}/np{np_}/teacher_vs_student.png", x, 10, 2)
print(f"eval: teacher task_loss {m[1,'teacher','task_loss']:.4f}, student {m[1,'student','task_loss']:.4f}, "
      f"output_mse {m[1,'student','output_mse']:.4g}; params {pt} -> {ps}; grid {shape} = sample's images")
PY

# errors: no teacher, no student
mkdir -p "$T/nos"
mpirun_n 2 "$BIN" eval "$JOB" --set output.dir="$T/nos" --set model.weights= >"$T/now.log" 2>&1
[ $? -eq 1 ] && [ "$(grep -c "model.weights is empty" "$T/now.log")" -eq 1 ] && ok || bad "no teacher: $(tail -2 "$T/now.log")"
mpirun_n 2 "$BIN" eval "$JOB" "${COMMON[@]}" --set output.dir="$T/nos" >"$T/nos.log" 2>&1
[ $? -eq 1 ] && grep -q "$T/nos/student.safetensors" "$T/nos.log" && ok || bad "no student: $(tail -2 "$T/nos.log")"

finish test_eval
