#!/usr/bin/env bash
# Installs every Debian package laptop-diff needs to build, test and run.
# Idempotent; run as root (or with sudo) on a fresh Debian 12 machine.
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
      libconfig-dev libopenblas-dev libopenblas-openmp-dev zlib1g-dev libpng-dev libcjson-dev
      libdnnl-dev ocl-icd-opencl-dev  # oneDNN: the convolutions (its CMake config also wants OpenCL's
                                      # headers, only a Recommends); without it CMake falls back to im2col + GEMM
      dataset-fashion-mnist
      python3 python3-numpy python3-h5py python3-matplotlib
      python3-torch python3-venv python3-pip python3-tqdm python3-pil  # scripts/ bridges + their tests
      slurm-wlm munge)  # the Slurm test (tests/slurm/) starts its own one-node cluster
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: all ${#PKGS[@]} packages present"

# The Python bridges in scripts/ (prepare_data.py, diffusers_student.py) and
# their tests need diffusers and transformers, which Debian 12 lacks: a venv
# on top of Debian's interpreter (torch, numpy, h5py stay Debian's), with the
# versions pinned. Never used inside a job. LD_VENV moves it.
VENV=${LD_VENV:-$(cd "$(dirname "$0")/.." && pwd)/.venv}
PIP_PINS=(diffusers==0.27.2 huggingface_hub==0.23.5 transformers==4.41.2 tokenizers==0.19.1
          safetensors==0.8.0)  # imported by scripts/diffusers_student.py itself
if ! "$VENV/bin/python" - "${PIP_PINS[@]}" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
sys.exit(any(version(p.split("==")[0]) != p.split("==")[1] for p in sys.argv[1:]))
PY
then
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PINS[@]}"
fi
echo "setup: python bridges in $VENV (${PIP_PINS[*]})"
