# blas_coretype.sh — sourced by scripts/test.sh, tests/bench/blas_env.sh and the
# CLI tests' harness: blas_fit_coretype prints the OPENBLAS_CORETYPE this CPU's
# instructions call for (SkylakeX with AVX-512, Haswell with AVX2+FMA; nothing
# without), the rule laptop-diff applies itself (src/kernels/runtime.c).
blas_fit_coretype() {
  if grep -qw avx512f /proc/cpuinfo; then echo SkylakeX
  elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then echo Haswell
  fi
}
# Exports OPENBLAS_CORETYPE=$(blas_fit_coretype) unless the user has set it.
blas_default_coretype() {
  if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    local fit; fit=$(blas_fit_coretype)
    if [ -n "$fit" ]; then export OPENBLAS_CORETYPE=$fit; fi
  fi
}
