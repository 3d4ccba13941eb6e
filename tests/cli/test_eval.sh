#!/usr/bin/env bash
# `laptop-diff eval` end to end on the tiny Fashion-MNIST job (teacher from init_model,
# student from score + plan), on 1 and 2 ranks at 1 thread each:
#  - run.h5 /eval/{teacher,student}/{task_loss,output_mse,params,macs,seconds_per_sample},
#    scalars with units and description; the teacher's output_mse is 0, the student's > 0;
#    params equal what `info` counts; the student is smaller; /prune/* from earlier stays
#  - 2 ranks == 1 rank: every metric but the wall time bit for bit, the same PNG pixels
#  - teacher_vs_student.png is, pixel for pixel, each class's teacher samples then student
#    samples, the same images `sample` gives for each model (same seeds)
#  - image quality with the shipped evaluator (models/fmnist_classifier.safetensors):
#    /eval/<model>/alignment in [0,1], alignment_per_class [10] in [0,1] averaging to it,
#    fid finite and >= 0, kid finite, the seconds_per_{step,image}_{b1,bN} timings > 0
#    (bN with its batch attribute); 1 and 2 ranks give the same alignment, FID and KID
#    (the samples' noise is keyed by their global index); the table is printed
#  - eval.classifier empty, or a latent model (in_channels 4): the image metrics are
#    skipped with a printed line, not an error; a wrong evaluator file is an error
#  - no teacher or no student fails with a message naming what is missing
# Args: BINARY SOURCE_DIR; $INIT_MODEL writes a seeded model.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py PIL
JOB="$SRC/jobs/fmnist_tiny.cfg"
h5_has() { /usr/bin/python3 -c "import sys, h5py; sys.exit(0 if sys.argv[2] in h5py.File(sys.argv[1], 'r') else 1)" "$1" "$2"; }
"$INIT_MODEL" "$JOB" "$T/teacher.safetensors" 5 || { echo "init_model failed"; exit 1; }
CLF="$SRC/models/fmnist_classifier.safetensors"
COMMON=(--set model.weights="$T/teacher.safetensors" --set runtime.threads=1 --set prune.calib_samples=6
        --set prune.batch=3 --set prune.additivity_sets=0 --set eval.samples=8 --set sample.per_class=1
        --set eval.classifier="$CLF" --set eval.fid_samples=20 --set eval.speed_batch=2)
mpirun_n 1 "$BIN" score "$JOB" "${COMMON[@]}" --set output.dir="$T/prune" >"$T/score.log" 2>&1 || { echo "score failed: $(tail -3 "$T/score.log")"; exit 1; }
mpirun_n 1 "$BIN" plan "$JOB" "${COMMON[@]}" --set output.dir="$T/prune" >"$T/plan.log" 2>&1 || { echo "plan failed: $(tail -3 "$T/plan.log")"; exit 1; }
# eval reads OUTPUT_DIR/student.safetensors (distill's output); the pruned student stands in for it
for np in 1 2; do
  mkdir -p "$T/np$np" && cp "$T/prune/run.h5" "$T/np$np/" && cp "$T/prune/student_init.safetensors" "$T/np$np/student.safetensors"
  mpirun_n $np "$BIN" eval "$JOB" "${COMMON[@]}" --set output.dir="$T/np$np" >"$T/eval$np.log" 2>&1 || bad "eval -np $np: $(tail -3 "$T/eval$np.log")"
done
grep -q "eval on 8 held-out samples" "$T/eval2.log" && grep -q "teacher_vs_student.png" "$T/eval2.log" && ok || bad "eval summary: $(tail -4 "$T/eval2.log")"
grep -q "eval image quality: 20 class-balanced samples per model" "$T/eval2.log" && grep -q "alignment per class" "$T/eval2.log" &&
  grep -q "student vs teacher: alignment" "$T/eval2.log" && ok || bad "eval quality table: $(grep -A6 "image quality" "$T/eval2.log")"
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
quality = ["alignment", "fid", "kid", "seconds_per_step_b1", "seconds_per_image_b1", "seconds_per_step_bN",
           "seconds_per_image_bN"]
m, pc = {}, {}
for np_ in (1, 2):
    with h5py.File(f"{T}/np{np_}/run.h5", "r") as f:
        assert "/prune/plan" in f and "/prune/scores/output_loss" in f, "eval dropped the earlier stages"
        for who in ("teacher", "student"):
            want = names + quality + ["alignment_per_class"]
            assert sorted(f[f"/eval/{who}"]) == sorted(want), (who, sorted(f[f"/eval/{who}"]))
            for n in names + quality:
                d = f[f"/eval/{who}/{n}"]
                assert d.shape == () and "units" in d.attrs and "description" in d.attrs, (who, n)
                m[np_, who, n] = float(d[()])
            for n in ("seconds_per_step_bN", "seconds_per_image_bN"):
                b = f[f"/eval/{who}/{n}"].attrs["batch"]
                assert (b.decode() if isinstance(b, bytes) else b) == "2", (who, n, b)
            d = f[f"/eval/{who}/alignment_per_class"]
            assert d.shape == (10,) and "units" in d.attrs, (who, d.shape)
            pc[np_, who] = d[()]
for (np_, who), p in pc.items():
    a = m[np_, who, "alignment"]
    assert 0 <= a <= 1 and np.all((p >= 0) & (p <= 1)), (np_, who, a, p)
    assert abs(p.mean() - a) < 1e-12, ("per class (2 samples each) averages to the overall", p, a)
    assert np.isfinite(m[np_, who, "fid"]) and m[np_, who, "fid"] >= 0, (np_, who, m[np_, who, "fid"])
    assert np.isfinite(m[np_, who, "kid"]), (np_, who, m[np_, who, "kid"])
    for n in quality[3:]:
        assert m[np_, who, n] > 0, (np_, who, n, m[np_, who, n])
    assert m[np_, who, "seconds_per_image_b1"] >= m[np_, who, "seconds_per_step_b1"], (np_, who)
for who in ("teacher", "student"):  # rank invariance of the image metrics
    for n in ("alignment", "fid", "kid"):
        a, b = m[1, who, n], m[2, who, n]
        assert abs(a - b) <= 1e-6 * max(1.0, abs(a)), ("1 vs 2 ranks", who, n, a, b)
    assert np.array_equal(pc[1, who], pc[2, who]), ("1 vs 2 ranks per class", who, pc[1, who], pc[2, who])
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
print(f"eval: teacher alignment {m[1,'teacher','alignment']:.2f} fid {m[1,'teacher','fid']:.3f}, student "
      f"alignment {m[1,'student','alignment']:.2f} fid {m[1,'student','fid']:.3f} (untrained models, 20 samples)")
print(f"eval: teacher task_loss {m[1,'teacher','task_loss']:.4f}, student {m[1,'student','task_loss']:.4f}, "
      f"output_mse {m[1,'student','output_mse']:.4g}; params {pt} -> {ps}; grid {shape} = sample's images")
PY

# image metrics skipped, with a line saying why: no evaluator; a latent model
mkdir -p "$T/noclf" && cp "$T/prune/run.h5" "$T/noclf/" && cp "$T/prune/student_init.safetensors" "$T/noclf/student.safetensors"
mpirun_n 1 "$BIN" eval "$JOB" "${COMMON[@]}" --set eval.classifier= --set output.dir="$T/noclf" >"$T/noclf.log" 2>&1
[ $? -eq 0 ] && grep -q "eval: no alignment, FID or sampling speed: eval.classifier is empty" "$T/noclf.log" &&
  ! h5_has "$T/noclf/run.h5" /eval/teacher/alignment && ok || bad "no evaluator: $(tail -3 "$T/noclf.log")"
LAT=(--set model.in_channels=4 --set model.out_channels=4)
mkdir -p "$T/lat"
"$INIT_MODEL" "$JOB" "$T/lat/teacher.safetensors" 5 "${LAT[@]}" >/dev/null || bad "init_model latent"
cp "$T/lat/teacher.safetensors" "$T/lat/student.safetensors"
"$MAKE_LATENTS" "$T/lat/lat.h5" 8 8 4 32 32 8 16 >/dev/null || bad "make_latents"
mpirun_n 1 "$BIN" eval "$JOB" "${COMMON[@]}" "${LAT[@]}" --set model.weights="$T/lat/teacher.safetensors" \
  --set data.source=hdf5 --set data.path="$T/lat/lat.h5" --set output.dir="$T/lat" >"$T/lat.log" 2>&1
[ $? -eq 0 ] && grep -q "eval: no alignment, FID or sampling speed: the model's samples are latents" "$T/lat.log" &&
  ! h5_has "$T/lat/run.h5" /eval/teacher/alignment && h5_has "$T/lat/run.h5" /eval/teacher/task_loss && ok ||
  bad "latent model: $(tail -3 "$T/lat.log")"
# a file that is not an evaluator: an error naming it, exit 1
mpirun_n 2 "$BIN" eval "$JOB" "${COMMON[@]}" --set eval.classifier="$T/teacher.safetensors" --set output.dir="$T/noclf" >"$T/badclf.log" 2>&1
[ $? -eq 1 ] && grep -q "$T/teacher.safetensors: not a laptop-diff classifier" "$T/badclf.log" && ok || bad "wrong evaluator: $(tail -2 "$T/badclf.log")"

# errors: no teacher, no student
mkdir -p "$T/nos"
mpirun_n 2 "$BIN" eval "$JOB" --set output.dir="$T/nos" --set model.weights= >"$T/now.log" 2>&1
[ $? -eq 1 ] && [ "$(grep -c "model.weights is empty" "$T/now.log")" -eq 1 ] && ok || bad "no teacher: $(tail -2 "$T/now.log")"
mpirun_n 2 "$BIN" eval "$JOB" "${COMMON[@]}" --set output.dir="$T/nos" >"$T/nos.log" 2>&1
[ $? -eq 1 ] && grep -q "$T/nos/student.safetensors" "$T/nos.log" && ok || bad "no student: $(tail -2 "$T/nos.log")"

finish test_eval
