#!/usr/bin/env bash
# Where a training step goes, per kernel: bench_step under `perf record`
# (cpu-clock sampling, DWARF call chains), attributed by profile_attr.py.
# usage: tests/bench/profile_step.sh JOB.cfg BATCH THREADS [REPEATS] [--set key=value ...]   (repo root; BUILD=build)
#   tests/bench/profile_step.sh jobs/fmnist_teacher.cfg 32 1    # the default teacher, as compare_torch.sh
#   tests/bench/profile_step.sh jobs/sd15_smoke.cfg 2 1 1       # SD-1.5 U-Net at 16x16 (random init)
# Needs perf with a working cpu-clock event (hardware counters are not required).
# With THREADS > 1 the samples of OpenMP/OpenBLAS worker threads lose their
# caller (it is on the master thread's stack), so only the master's are charged to kernels.
set -euo pipefail
JOB=$1; B=$2; NT=$3; R=${4:-4}  # profile_attr.py leaves out the first two rounds
BUILD=${BUILD:-build}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$(grep -qw avx512f /proc/cpuinfo && echo SkylakeX || echo Haswell)}
[ -x "$BUILD/bench_step" ] || cmake --build "$BUILD" --target bench_step
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
OMP_NUM_THREADS=$NT OPENBLAS_NUM_THREADS=$NT perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 \
  -o "$D/perf.data" "$BUILD/bench_step" "$JOB" "$B" "$R" --set runtime.threads="$NT" "${@:5}" | tee "$D/bench.txt"
# with runtime.cpu_gemm on oneDNN its sgemm runs JIT code too, indistinguishable from the convolutions'
JIT_LABEL="conv2d (oneDNN JIT)"
grep -q 'oneDNN sgemm' "$D/bench.txt" && JIT_LABEL="oneDNN JIT (conv2d, and sgemm of 2^21+ MACs)"
perf script -i "$D/perf.data" -F comm,tid,period,ip,sym 2>/dev/null >"$D/chains.txt"
echo "threads (samples): $(awk 'BEGIN{RS=""} {split($0,a," "); n[a[2]]++} END{for (t in n) printf "%s:%d ", t, n[t]}' "$D/chains.txt")"
/usr/bin/python3 "$(dirname "$0")/profile_attr.py" . "$JIT_LABEL" <"$D/chains.txt"
