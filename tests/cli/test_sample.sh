#!/usr/bin/env bash
# `laptop-diff sample` end to end on a seeded tiny Fashion-MNIST U-Net (init_model):
#  - samples.h5: /samples [20,1,32,32] float32 in [-1, 1], finite, /labels class-major, attributes
#  - samples.png is a PNG and exactly the grid of /samples (a row per class, png_grid's layout)
#  - the gather across ranks: 2 and 3 ranks (uneven shards 12/8, 8/8/4) give bit-identical samples to
#    1 rank at 1 thread per rank; 1 rank x 2 threads within 1e-4 (measured below)
#  - the default model path (OUTPUT_DIR/model.safetensors); a missing model fails naming it
# Args: BINARY SOURCE_DIR; $INIT_MODEL writes a seeded model.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py PIL
JOB="$SRC/jobs/fmnist_tiny.cfg"   # sample.steps = 4, sample.per_class = 2: 20 samples
"$INIT_MODEL" "$JOB" "$T/model.safetensors" 5 || { echo "init_model failed"; exit 1; }

smp() {  # smp NAME NP THREADS args...: logs to $T/NAME.log
  local name=$1 np=$2 th=$3; shift 3
  mpirun_n "$np" "$BIN" sample "$JOB" --set output.dir="$T/$name" --set runtime.threads="$th" "$@" >"$T/$name.log" 2>&1
}
for r in "1 1" "2 1" "3 1" "1 2"; do
  set -- $r
  smp np$1t$2 $1 $2 --set sample.model="$T/model.safetensors" || bad "sample -np $1 x $2 threads: $(tail -3 "$T/np$1t$2.log")"
done
grep -q "1 rank x 2 threads" "$T/np1t2.log" && ok || bad "runtime.threads=2 did not give 2 threads: $(head -1 "$T/np1t2.log")"
grep -q "sample: 20 samples (2 per class, 4 DDIM steps" "$T/np2t1.log" && ok || bad "no summary line: $(tail -2 "$T/np2t1.log")"
# the default model: OUTPUT_DIR/model.safetensors, as train leaves it
mkdir -p "$T/dflt" && cp "$T/model.safetensors" "$T/dflt/"
smp dflt 2 1 || bad "sample with the default model path: $(tail -3 "$T/dflt.log")"

/usr/bin/python3 - "$T" "$SRC/tests/cli" <<'PY' && ok || bad "samples.h5 / samples.png contents or rank-count invariance"
import sys, h5py, numpy as np
T = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import grid
x = {}
for name in ("np1t1", "np2t1", "np3t1", "np1t2", "dflt"):
    with h5py.File(f"{T}/{name}/samples.h5", "r") as f:
        s, l = f["/samples"], f["/labels"]
        assert s.shape == (20, 1, 32, 32) and s.dtype == np.float32, (name, s.shape, s.dtype)
        assert list(l[()]) == [i // 2 for i in range(20)], (name, l[()])
        for a in ("model", "layout", "value_range"):
            assert a in s.attrs, (name, a)
        x[name] = s[()]
    v = x[name]
    assert np.all(np.isfinite(v)) and v.min() >= -1 and v.max() <= 1, (name, v.min(), v.max())
    # not a constant or saturated image: most values strictly inside (-1, 1), samples differ
    assert np.mean(np.abs(v) < 1) > 0.5 and len(np.unique(v)) > 1000, name
    assert not np.array_equal(v[0], v[1]) and not np.array_equal(v[0], v[2]), name
    assert grid.check_grid(f"{T}/{name}/samples.png", v, 10, 2) == (10 * 64 + 11 * 2, 2 * 64 + 3 * 2), name
for name in ("np2t1", "np3t1", "dflt"):  # the gather: bit for bit at a fixed thread count
    assert np.array_equal(x[name], x["np1t1"]), (name, np.max(np.abs(x[name] - x["np1t1"])))
d = float(np.max(np.abs(x["np1t2"] - x["np1t1"])))  # values in [-1, 1]: absolute = relative to the range
print(f"samples: 2 and 3 ranks bit-identical to 1 rank; 1 vs 2 threads max difference {d:.1e}")
assert d <= 1e-4, d
PY

mpirun_n 1 "$BIN" sample "$JOB" --set output.dir="$T/none" --set sample.model="$T/missing.safetensors" >"$T/none.log" 2>&1
[ $? -eq 1 ] && grep -q "$T/missing.safetensors" "$T/none.log" && ok || bad "missing model: $(tail -2 "$T/none.log")"
[ ! -e "$T/none/samples.h5" ] && ok || bad "a failed sample left samples.h5"

finish test_sample
