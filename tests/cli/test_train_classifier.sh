#!/usr/bin/env bash
# `laptop-diff train-classifier` end to end on a small Fashion-MNIST subset (the first
# 512 train and 200 test images of Debian's split, rewritten as gzip'd IDX files):
#  - 1 rank: progress lines, one accuracy line per epoch, the file written (no temp
#    left), its metadata (format, architecture, test_accuracy = the printed value,
#    epochs, seed) and tensors as the architecture says; it learned (accuracy > 0.3,
#    chance is 0.1)
#  - the same job again: the same weights bit for bit (seeded order and init)
#  - 2 ranks: the same weights to float tolerance (gradients summed in two parts)
#  - the file is an evaluator eval accepts (test_eval uses the shipped one)
#  - errors: no dataset (names the file), a batch the ranks do not divide, an output
#    directory that does not exist (named; nothing written)
# Args: BINARY SOURCE_DIR.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py
FM=/usr/share/datasets/fashion-mnist
[ -f "$FM/train-images-idx3-ubyte.gz" ] || skip "no Fashion-MNIST in $FM (Debian's dataset-fashion-mnist)"
mkdir -p "$T/fm"
/usr/bin/python3 - "$FM" "$T/fm" <<'PY' || { echo "subset failed"; exit 1; }
import gzip, struct, sys
src, dst = sys.argv[1], sys.argv[2]
for split, n in (("train", 512), ("t10k", 200)):
    for kind, hdr in (("images-idx3", 16), ("labels-idx1", 8)):
        with gzip.open(f"{src}/{split}-{kind}-ubyte.gz") as f:
            data = f.read()
        item = 784 if kind.startswith("images") else 1
        head = bytearray(data[:hdr]); head[4:8] = struct.pack(">I", n)
        with gzip.open(f"{dst}/{split}-{kind}-ubyte.gz", "wb") as f:
            f.write(bytes(head) + data[hdr:hdr + n * item])
PY
JOB="$SRC/jobs/fmnist_classifier.cfg"
SMALL=(--set data.path="$T/fm" --set runtime.threads=1 --set 'classifier.channels=[8, 16, 16]'
       --set 'classifier.strides=[2, 2, 2]' --set classifier.groups=4 --set classifier.epochs=3
       --set classifier.batch=32 --set classifier.lr=5e-3 --set classifier.warmup_steps=4
       --set classifier.log_interval=8 --set classifier.test_samples=200)
run() {  # run NP NAME [--set ...]: output.dir and classifier.out under $T/NAME
  local np=$1 name=$2; shift 2
  mkdir -p "$T/$name"
  mpirun_n "$np" "$BIN" train-classifier "$JOB" "${SMALL[@]}" --set output.dir="$T/$name/run" \
    --set classifier.out="$T/$name/clf.safetensors" "$@" >"$T/$name.log" 2>&1
}
run 1 a || bad "1 rank: $(tail -3 "$T/a.log")"
run 1 b || bad "1 rank again: $(tail -3 "$T/b.log")"
run 2 c || bad "2 ranks: $(tail -3 "$T/c.log")"
grep -q "classifier step 8/48" "$T/a.log" && [ "$(grep -c "test accuracy .* on 200 images" "$T/a.log")" -eq 3 ] &&
  grep -q -- "-> $T/a/clf.safetensors" "$T/a.log" && ok || bad "progress / epoch lines: $(tail -5 "$T/a.log")"
ls "$T/a" | grep -q tmp && bad "a temporary file was left: $(ls "$T/a")" || ok
acc=$(sed -n 's/^train-classifier: test accuracy \([0-9.]*\) .*/\1/p' "$T/a.log")
/usr/bin/python3 - "$T" "${acc:-x}" <<'PY' && ok || bad "the classifier files"
import json, struct, sys
import numpy as np
T, acc = sys.argv[1], sys.argv[2]
def load(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n)); data = f.read()
    meta = h.pop("__metadata__")
    t = {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], "<f4").reshape(v["shape"]) for k, v in h.items()}
    return meta, t
ma, ta = load(f"{T}/a/clf.safetensors")
mb, tb = load(f"{T}/b/clf.safetensors")
mc, tc = load(f"{T}/c/clf.safetensors")
assert ma["format"] == "laptop-diff-classifier", ma
arch = json.loads(ma["architecture"])
assert arch == {"in_channels": 1, "side": 32, "classes": 10, "channels": [8, 16, 16], "strides": [2, 2, 2], "groups": 4}, arch
assert ma["test_accuracy"].startswith(acc) and float(acc) > 0.3, (ma["test_accuracy"], acc)
assert ma["epochs"] == "3" and ma["seed"] == "1234" and ma["test_images"] == "200" and mc["ranks"] == "2", (ma, mc)
want = {"conv0.weight": (8, 1, 3, 3), "conv2.weight": (16, 16, 3, 3), "norm1.bias": (16,), "fc.weight": (10, 16), "fc.bias": (10,)}
for k, s in want.items():
    assert ta[k].shape == s, (k, ta[k].shape)
assert len(ta) == 3 * 4 + 2, sorted(ta)
for k in ta:
    assert np.array_equal(ta[k], tb[k]), ("rerun differs", k)
    d = np.abs(ta[k] - tc[k]).max()
    assert d <= 1e-3 * max(1.0, np.abs(ta[k]).max()), ("2 ranks vs 1", k, d)
print(f"train-classifier: accuracy {acc} on 200 test images after 3 epochs of 512; 2 ranks within "
      f"{max(np.abs(ta[k] - tc[k]).max() for k in ta):.2e} of 1")
PY
# errors
run 1 nodata --set data.path="$T/none"; rc=$?
[ $rc -eq 1 ] && grep -q "$T/none/train-images-idx3-ubyte.gz: cannot open" "$T/nodata.log" && ok || bad "no dataset: rc $rc $(tail -2 "$T/nodata.log")"
run 2 odd --set classifier.batch=33; rc=$?
[ $rc -eq 1 ] && grep -q "classifier.batch = 33 is not divisible by the 2 ranks" "$T/odd.log" && ok || bad "odd batch: rc $rc $(tail -2 "$T/odd.log")"
run 1 nodir --set classifier.out="$T/nodir/missing/clf.safetensors"; rc=$?
[ $rc -eq 1 ] && grep -q "$T/nodir/missing/clf.safetensors" "$T/nodir.log" && [ ! -e "$T/nodir/missing" ] && ok ||
  bad "missing output directory: rc $rc $(tail -2 "$T/nodir.log")"
finish test_train_classifier
