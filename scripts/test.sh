#!/usr/bin/env bash
# Builds laptop-diff and runs every test: the full suite on an optimised
# build, then the unit tests again under AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
# Debian 12's OpenBLAS may not know this CPU and fall back to generic SSE3
# kernels (several times slower). laptop-diff restarts itself with the right
# OPENBLAS_CORETYPE (src/kernels/runtime.h); the unit-test executables get it here.
. scripts/blas_coretype.sh
blas_default_coretype
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLD_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
# -O3 sees more (-Wformat-truncation): a user's Release build must stay warning-free too
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DLD_WERROR=ON >/dev/null
cmake --build build-release -j"$JOBS"
(cd build && ctest --output-on-failure -j"$JOBS")
# The CUDA build, where the toolkit is (it is on CI's machine kind): it must
# build warning-free, and without a GPU its tests (ctest label gpu) report
# SKIPPED, never pass.
CUDA_ROOT=${CUDA_HOME:-/usr/local/cuda}
if [ -x "$CUDA_ROOT/bin/nvcc" ]; then
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLD_WERROR=ON -DLD_CUDA=ON \
    -DCUDAToolkit_ROOT="$CUDA_ROOT" >/dev/null
  cmake --build build-cuda -j"$JOBS"
  (cd build-cuda && ctest --output-on-failure -j"$JOBS" -L gpu)
else
  echo "test.sh: no CUDA toolkit at $CUDA_ROOT (CUDA_HOME): the CUDA build is not checked"
fi
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLD_SANITIZE=ON -DLD_WERROR=ON >/dev/null
cmake --build build-asan -j"$JOBS"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$JOBS" -L unit)
