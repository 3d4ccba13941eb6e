#!/usr/bin/env bash
# The main job on the embedded default: builds laptop-diff if needed, then runs
# score -> plan -> distill -> eval of jobs/fmnist_laptop.cfg on NP ranks
# (default 2) with the shipped teacher. Results in runs/fmnist_laptop/.
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-2}
if [ ! -x build/laptop-diff ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"$(nproc)"
fi
# Open MPI refuses root unless told; a fresh machine (or a container) is often root.
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
exec mpirun --oversubscribe -np "$NP" build/laptop-diff run jobs/fmnist_laptop.cfg "$@"
