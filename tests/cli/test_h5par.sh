#!/usr/bin/env bash
# h5rows_write (io/h5rows.h), the collective parallel-HDF5 writer: files written by
# 1, 2 and 3 ranks (and by the serial Comm without MPI) hold the same
# datasets, shapes, values and attributes (read with h5py); existing objects
# are replaced; failures (a path under a dataset, ranks passing different
# shapes, one rank's bad argument, a missing file) make every rank fail with
# one message, no hang.
# Args: BINARY SOURCE_DIR; $H5PAR_CHECK is tests/tools/h5par_check (else it
# is looked for beside BINARY).
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py
TOOL=${H5PAR_CHECK:-$(dirname "$BIN")/h5par_check}
[ -x "$TOOL" ] || { echo "FAIL: $TOOL not built (CMake target h5par_check)"; exit 1; }

timeout 60 "$TOOL" serial "$T/serial.h5" >"$T/serial.log" 2>&1 && ok || bad "serial write: $(tail -2 "$T/serial.log")"
for np in 1 2 3; do
  timeout 60 bash -c ". '$SRC/tests/cli/mpi.sh'; mpirun_n $np '$TOOL' mpi '$T/np$np.h5'" >"$T/np$np.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] && [ "$(grep -c "^rank [0-9]*: ok" "$T/np$np.log")" -eq $np ] && ok || bad "mpi write -np $np (rc $rc): $(tail -3 "$T/np$np.log")"
done
/usr/bin/python3 - "$T" <<'PY' && ok || bad "files differ or hold wrong values"
import sys, h5py, numpy as np
T = sys.argv[1]
def content(name):
    out = {}
    with h5py.File(f"{T}/{name}.h5", "r") as f:
        assert "program" in f.attrs, "the file was recreated instead of opened"
        def visit(p, o):
            if isinstance(o, h5py.Dataset):
                out[p] = (o.dtype.str, o.shape, o[()], dict(o.attrs))
            else:
                out[p] = "group"
        f.visititems(visit)
    return out
names = ["serial", "np1", "np2", "np3"]
files = [content(n) for n in names]
expect = {"activations/000100/a": (5, 3, 4, 4), "activations/000100/b": (5, 8), "activations/000100/c": (5, 2, 3),
          "activations/000200/a": (2, 3, 4, 4), "activations/000200/b": (2, 8), "activations/000200/c": (2, 2, 3)}
ref = files[0]
dsets = {p: v for p, v in ref.items() if v != "group"}
assert set(dsets) == set(expect), sorted(ref)
for p, shape in expect.items():
    dt, sh, val, attrs = dsets[p]
    assert dt == "<f4" and sh == shape, (p, dt, sh)
    s = 1 if "000100" in p else 2
    k = "abc".index(p[-1])
    inner = int(np.prod(shape[1:]))
    want = (np.float32(1000 * s + 100 * k) + np.arange(shape[0], dtype=np.float32)[:, None]
            + np.arange(inner, dtype=np.float32)[None, :] / np.float32(256)).reshape(shape)
    assert np.array_equal(val, want), p
    assert attrs == {"model": "teacher" if s == 1 else "student", "units": "1"}, (p, attrs)
for n, f in zip(names[1:], files[1:]):
    assert f.keys() == ref.keys(), (n, sorted(f))
    for p in ref:
        if ref[p] == "group":
            assert f[p] == "group", (n, p)
            continue
        a, b = ref[p], f[p]
        assert a[0] == b[0] and a[1] == b[1] and np.array_equal(a[2], b[2]) and a[3] == b[3], (n, p)
print(f"identical: {', '.join(names)}; {len(dsets)} datasets, shapes and values as written")
PY

# Failures: every rank fails (nonzero exit, "failed" from each), one message, no hang.
check_fail() {  # np what pattern
  local np=$1 what=$2 pat=$3 f="$T/$2$1"
  timeout 60 bash -c ". '$SRC/tests/cli/mpi.sh'; mpirun_n $np '$TOOL' mpi '$f.h5' $what" >"$f.out" 2>"$f.err"
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$(grep -c "^rank [0-9]*: failed" "$f.out")" -eq "$np" ] \
     && [ "$(grep -c "^h5par_check: " "$f.err")" -eq 1 ] && grep "^h5par_check: " "$f.err" | grep -q -- "$pat"; then
    ok; grep "^h5par_check: " "$f.err" | sed "s|$T/||; s|^|  -np $np $what: |"
  else
    bad "$what -np $np (rc $rc): $(cat "$f.out" "$f.err" | tail -4)"
  fi
}
for np in 1 3; do check_fail $np bad "$np.h5: dataset /blocker/x: /blocker exists and is not a group"; done
check_fail 1 missing "missing1.h5: cannot open for writing"
check_fail 2 mismatch "mismatch2.h5: write_rows_f32: the ranks passed different"
check_fail 3 mismatch "mismatch3.h5: write_rows_f32: the ranks passed different"
check_fail 3 nodata "nodata3.h5: dataset /activations/000100/a: data is NULL"
timeout 60 "$TOOL" serial "$T/sbad.h5" bad >"$T/sbad.out" 2>"$T/sbad.err"
[ $? -eq 1 ] && grep -q "sbad.h5: dataset /blocker/x: /blocker exists and is not a group" "$T/sbad.err" && ok || bad "serial bad path: $(cat "$T/sbad.err")"

finish test_h5par
