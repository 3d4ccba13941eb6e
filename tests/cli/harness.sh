# Sourced by every CLI test: pass/fail counters (ok, bad "why"), a temp dir $T
# removed on exit, `finish NAME` to print the tally and set the exit status,
# `skip WHY` / `require_h5py` / `require_venv` to end as SKIPPED, mpirun_n (mpi.sh) and
# blas_fit_coretype (scripts/blas_coretype.sh).
. "$(dirname "${BASH_SOURCE[0]}")/mpi.sh"
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
finish() {
  echo "$1: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
# A test that cannot run here exits 77, which ctest reports as SKIPPED
# (SKIP_RETURN_CODE in CMakeLists.txt), never as a pass.
SKIP_RC=77
skip() { echo "SKIPPED: $*"; exit $SKIP_RC; }
# The checks of run.h5 and samples.h5 read them with h5py, as a user would (and
# the sample grids with PIL, matplotlib's PNG reader): require_h5py [MODULE...].
require_h5py() {
  local m
  for m in h5py numpy "$@"; do
    /usr/bin/python3 -c "import $m" 2>/dev/null || skip "Python module $m not installed for /usr/bin/python3 (scripts/setup.sh installs it)"
  done
}
png_is() {  # FILE W H: a PNG (magic, IHDR) of that many pixels that PIL decodes (the figure tests)
  /usr/bin/python3 - "$@" <<'PY'
import sys, struct
from PIL import Image
p, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
b = open(p, "rb").read()
assert len(b) > 1000 and b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", p
assert struct.unpack(">II", b[16:24]) == (w, h), (p, struct.unpack(">II", b[16:24]), (w, h))
with Image.open(p) as im:
    im.load()
    assert im.size == (w, h)
PY
}
# The Python bridges in scripts/ (prepare_data.py, diffusers_student.py) run in the venv that
# scripts/setup.sh makes (diffusers, transformers on Debian's torch), at ${LD_VENV:-$SRC/.venv}:
# require_venv [MODULE...] sets $VPY to its interpreter, or ends as SKIPPED naming what is missing.
require_venv() {
  local venv=${LD_VENV:-$SRC/.venv} m
  VPY=$venv/bin/python
  [ -x "$VPY" ] || skip "no Python venv at $venv (scripts/setup.sh makes it; LD_VENV=DIR points elsewhere)"
  local mods=(torch diffusers transformers safetensors h5py numpy "$@")
  "$VPY" -c "import $(IFS=,; echo "${mods[*]}")" 2>/dev/null && return 0
  for m in "${mods[@]}"; do  # one import failed: name it
    "$VPY" -c "import $m" 2>/dev/null || skip "Python module $m missing in the venv $venv (run scripts/setup.sh)"
  done
  echo "FAIL: the venv $venv imports ${mods[*]} one by one but not together"; exit 1
}
# blas_fit_coretype, for the checks of the OPENBLAS_CORETYPE start-up warning
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/blas_coretype.sh"
