#!/usr/bin/env bash
# Installs every Debian package laptop-diff needs to build, test and run.
# Idempotent; run as root (or with sudo) on a fresh Debian 12 machine.
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
      libconfig-dev libopenblas-dev libopenblas-openmp-dev zlib1g-dev libpng-dev libcjson-dev
      dataset-fashion-mnist
      python3 python3-numpy python3-h5py python3-matplotlib
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
