# blas_env.sh — sourced by the compare_*.sh benchmarks: both sides of a
# comparison run on the same OpenBLAS, so the ratio measures the two programs,
# not two BLAS set-ups.
# - Kernels: one OPENBLAS_CORETYPE for both, the environment's if set, else the
#   one laptop-diff would pick (src/kernels/runtime.c: AVX-512 -> SkylakeX,
#   AVX2+FMA -> Haswell). OpenBLAS 0.3.21 does not recognise every CPU and then
#   runs generic kernels (on one machine here: 4-9x slower SGEMM).
# - Threads: laptop-diff links OpenBLAS's OpenMP build. PyTorch (Debian's,
#   BLAS_INFO=generic) loads whatever libblas.so.3 alternative is selected,
#   by default the pthread build, whose thread pool spins against PyTorch's
#   OpenMP pool: measured here, PyTorch's teacher step at 2 threads took 0.67 s
#   on it against 0.34 s on the OpenMP build (slower than its 1-thread step).
#   So PyTorch gets the OpenMP build too (LD_LIBRARY_PATH), unless
#   TORCH_BLAS=system asks for the machine's alternative as it is.
. scripts/blas_coretype.sh
blas_default_coretype
TORCH_ENV=()
omp_blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
if [ "${TORCH_BLAS:-openmp}" = openmp ] && [ -e "$omp_blas/libblas.so.3" ]; then
  TORCH_ENV=(LD_LIBRARY_PATH="$omp_blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  echo "blas: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; PyTorch on OpenBLAS's OpenMP build ($omp_blas), as laptop-diff"
else
  echo "blas: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; PyTorch on the system's libblas.so.3 alternative"
fi
