#!/usr/bin/env bash
# device_check.sh — checks the cuBLAS GEMM backend on a GPU machine against
# the CPU one, in one run of a few minutes:
#   nvidia-smi; one LD_CUDA=ON build, build-gpu, which links both GEMM
#   backends (runtime.device picks one at run time); the unit tests test_gemm,
#   test_reference, test_kernel_{conv,linear,attention} on the CPU device and
#   their _gpu copies on the GPU (tests/gpu/on_gpu.c selects "cuda"); bench_step
#   jobs/fmnist_teacher.cfg 64 with runtime.device "cpu" and "cuda", step times
#   side by side; test_gpu_ops (LD_CUDA=ON): every device op of src/cuda/ops.h
#   against its CPU kernel, on the GPU; test_gpu_unet, test_gpu_distill; and
#   tests/cli/device_run.sh: train and distill device-resident (runtime.device
#   "cuda") on 1 and 2 ranks against the CPU (needs mpirun and h5py there).
# Everything printed also goes to $OUT/device_check.log ($OUT unset: /tmp).
# Exit status: 0 all passed; 1 a test or bench failed; 2 build dependencies
# missing (named); 3 configure or build failed.
#
# Such a machine may lack this project's Debian build packages and have no
# network. Missing ones are tried with apt-get (bounded in time); if that
# fails, and no prebuilt bundle was carried, the script names them and stops.
# The bundle: run `scripts/device_check.sh --bundle` HERE (where the build
# works) first; it writes build-devcheck/ (ignored by git: the build's test and
# bench binaries and the non-system libraries they load, not CUDA's) and the
# same as build-devcheck.tar.xz (~24 MB: the directory itself, ~128 MB with
# oneDNN and OpenBLAS, is over the device tool's 64 MiB carry), which the run
# takes along (carry: ["build-devcheck.tar.xz"]) and unpacks. It needs the
# same CUDA major version there (libcublas.so.13, libnccl.so.2 and libcudnn.so.9 from /usr/local/cuda).
# `--prebuilt` uses a carried bundle even where the build would work (saves
# the build's minute or two of device time).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 3
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NP=$(nproc)
TESTS=(test_gemm test_reference test_kernel_conv test_kernel_linear test_kernel_attention)
# Each test on the CPU device and, as NAME_gpu, on the GPU; then the benchmark.
TARGETS=(); for t in "${TESTS[@]}"; do TARGETS+=("$t" "${t}_gpu"); done
TARGETS+=(bench_step test_gpu_ops test_gpu_unet test_gpu_distill bench_gpu laptop-diff stdiff init_model)
BUNDLE=build-devcheck
BUNDLE_SRC=/tmp/ld-devcheck-src  # the bundle's compiled-in source dir (fixtures), a link to the repo both here and there

say() { printf '\n=== %s\n' "$*"; }

# ---- build dependencies: sets MISSING (what) and PKGS (Debian packages) ----
check_deps() {
  MISSING=(); PKGS=()
  need() { MISSING+=("$1"); PKGS+=("$2"); }
  command -v cmake >/dev/null || need "cmake" cmake
  command -v cc >/dev/null || command -v gcc >/dev/null || need "C compiler (cc/gcc)" gcc
  command -v c++ >/dev/null || command -v g++ >/dev/null || need "C++ compiler (g++: the CUDA emulator build, nvcc's host compiler)" g++
  command -v make >/dev/null || command -v ninja >/dev/null || need "make or ninja" make
  command -v mpicc >/dev/null || need "MPI C compiler wrapper mpicc (Open MPI)" libopenmpi-dev
  if command -v cc >/dev/null; then
    echo '#include <omp.h>
int main(void){return omp_get_max_threads()<1;}' | cc -fopenmp -x c - -o /tmp/ld_omp_probe 2>/dev/null ||
      need "OpenMP for C (omp.h, libgomp)" libgomp1
  fi
  if command -v pkg-config >/dev/null; then
    local m p
    for mp in libconfig:libconfig-dev openblas:libopenblas-dev libcjson:libcjson-dev \
              hdf5-openmpi:libhdf5-openmpi-dev zlib:zlib1g-dev libpng:libpng-dev; do
      m=${mp%%:*}; p=${mp#*:}
      pkg-config --exists "$m" || need "pkg-config module $m" "$p"
    done
  else
    need "pkg-config (and so every pkg-config module: libconfig openblas libcjson hdf5-openmpi zlib libpng, unchecked)" \
         "pkg-config libconfig-dev libopenblas-dev libcjson-dev libhdf5-openmpi-dev zlib1g-dev libpng-dev"
  fi
}

try_apt() {
  local sudo=() pk=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || { echo "apt-get: not root and no sudo; not tried"; return 1; }
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null || { echo "apt-get: not on this machine; not tried"; return 1; }
  mapfile -t pk < <(printf '%s\n' "${PKGS[@]}" | tr ' ' '\n' | sort -u)
  local o=(-o Acquire::Retries=0 -o Acquire::http::Timeout=10 -o Acquire::https::Timeout=10)
  echo "apt-get install ${pk[*]} (update bounded to 60 s, install to 240 s)"
  timeout 60 "${sudo[@]}" apt-get "${o[@]}" update -qq || echo "apt-get update failed (no network?)"
  timeout 240 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${o[@]}" install -y -qq \
    --no-install-recommends "${pk[@]}" || { echo "apt-get install failed"; return 1; }
}

# ---- configure + build one variant: build_one DIR [cmake args...] ----
build_one() {
  local dir=$1; shift
  local gen=()
  command -v make >/dev/null || gen=(-G Ninja)
  echo "--- configure $dir: cmake ${gen[*]} $*"
  cmake -S "$SRC" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$dir.configure.txt" 2>&1 ||
    { tail -30 "$dir.configure.txt"; echo "STOP: configure of $dir failed"; return 1; }
  grep -E "CUDA|OpenMP" "$dir.configure.txt"
  echo "--- build $dir: ${TARGETS[*]}"
  cmake --build "$dir" -j"$NP" --target "${TARGETS[@]}" >"$dir.build.txt" 2>&1 ||
    { grep -E "error|Error" "$dir.build.txt" | head -30; echo "STOP: build of $dir failed"; return 1; }
}

# ---- --bundle, run where the build works: prebuilt binaries + their libraries ----
bundle() {
  SRC=$BUNDLE_SRC
  ln -sfn "$ROOT" "$SRC"
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/lib" || return 3
  build_one "$ROOT/build-devcheck-work" -DLD_CUDA=ON -DCUDAToolkit_ROOT="$CUDA_HOME" || return 3
  mkdir -p "$BUNDLE/bin"
  for t in "${TARGETS[@]}"; do cp "build-devcheck-work/$t" "$BUNDLE/bin/" || return 3; done
  # Every library they load except the C library's own and CUDA's, NCCL and cuDNN included (too big:
  # libnccl alone is 218 MB against the carry's 64 MiB, cuDNN's engines 245 MB; taken from the machine's toolkit).
  ldd "$BUNDLE"/bin/* | awk '/=> \//{print $3}' | sort -u |
    grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libcuda|libcudart|libcublas|libcublasLt|libnccl|libcudnn)\.so' |
    while read -r f; do cp -L "$f" "$BUNDLE/lib/"; done
  ls -l "$BUNDLE/lib"
  XZ_OPT=-T2 tar -C "$ROOT" -cJf "$BUNDLE.tar.xz" "$BUNDLE" || return 3
  echo "bundle: $(du -sh "$BUNDLE" | cut -f1) in $ROOT/$BUNDLE, packed as $BUNDLE.tar.xz ($(du -sh "$BUNDLE.tar.xz" | cut -f1); carry it: [\"$BUNDLE.tar.xz\"])"
}

# A carried $BUNDLE.tar.xz unpacked where no $BUNDLE/ is (tar's xz, else Python's lzma).
unpack_bundle() {
  [ -d "$BUNDLE" ] || [ ! -f "$BUNDLE.tar.xz" ] && return 0
  echo "unpacking $BUNDLE.tar.xz"
  tar -C "$ROOT" -xJf "$BUNDLE.tar.xz" 2>/dev/null ||
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$BUNDLE.tar.xz" "$ROOT" ||
    echo "could not unpack $BUNDLE.tar.xz (no xz and no Python lzma)"
}

run_timed() {  # run_timed LABEL CMD...: output, then "LABEL rc N, S s" into RESULTS
  local label=$1; shift
  local t0 t1 rc
  t0=$(date +%s.%N)
  "$@" >"/tmp/ld_$label.txt" 2>&1; rc=$?
  t1=$(date +%s.%N)
  RC[$label]=$rc
  SECS[$label]=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  echo "--- $label: rc $rc, ${SECS[$label]} s"
  cat "/tmp/ld_$label.txt"
}

declare -A RC SECS
main() {
  echo "device_check: $(date -u '+%F %T') UTC on $(hostname), $(uname -r), $NP cores, repo $ROOT"
  say "GPU"
  if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi not found"; fi
  say "CUDA toolkit ($CUDA_HOME)"
  export PATH="$CUDA_HOME/bin:$PATH"
  if command -v nvcc >/dev/null; then nvcc --version | tail -2; else echo "nvcc not found under $CUDA_HOME/bin"; fi
  ls "$CUDA_HOME"/lib64/libcublas.so* 2>/dev/null || echo "no libcublas under $CUDA_HOME/lib64"
  ls "$CUDA_HOME"/lib64/libnccl.so* 2>/dev/null || echo "no libnccl under $CUDA_HOME/lib64"
  ls "$CUDA_HOME"/lib64/libcudnn.so* 2>/dev/null || echo "no libcudnn under $CUDA_HOME/lib64"
  command -v cmake >/dev/null && cmake --version | head -1
  command -v cc >/dev/null && cc --version | head -1

  grep -q tests/gpu/on_gpu.c CMakeLists.txt ||
    { echo "STOP: CMakeLists.txt makes no _gpu tests: this script needs both GEMM backends in one build"; return 3; }

  say "build dependencies"
  local mode=build have_bundle=0
  unpack_bundle
  [ -x "$BUNDLE/bin/test_gemm" ] && [ -x "$BUNDLE/bin/test_gemm_gpu" ] && have_bundle=1
  if [ "$PREBUILT" = 1 ]; then
    [ $have_bundle = 1 ] || { echo "STOP: --prebuilt, but no $BUNDLE/ (make it with --bundle and carry it)"; return 2; }
    echo "--prebuilt: using $BUNDLE/, no build here"
    mode=prebuilt
  else
    check_deps
    if [ ${#MISSING[@]} -gt 0 ]; then
      printf 'missing: %s\n' "${MISSING[@]}"
      try_apt && check_deps
    fi
    if [ ${#MISSING[@]} -eq 0 ]; then
      echo "all present"
    elif [ $have_bundle = 1 ]; then
      echo "build dependencies still missing (above); using the prebuilt bundle $BUNDLE/ instead"
      mode=prebuilt
    else
      echo "STOP: missing build dependencies, none could be installed:"
      printf '  - %s\n' "${MISSING[@]}"
      echo "  Debian/Ubuntu packages: $(printf '%s\n' "${PKGS[@]}" | tr ' ' '\n' | sort -u | tr '\n' ' ')"
      echo "  (or run 'scripts/device_check.sh --bundle' where the build works and carry $BUNDLE)"
      return 2
    fi
  fi

  local bin
  RUN=(env)  # the bundle's libraries for our binaries only, not for the tools this script runs
  if [ $mode = build ]; then
    say "build (build-gpu: -DLD_CUDA=ON, OpenBLAS and cuBLAS, src/cuda/ device ops)"
    SRC=$ROOT
    build_one build-gpu -DLD_CUDA=ON -DCUDAToolkit_ROOT="$CUDA_HOME" || return 3
    bin=build-gpu
  else
    say "prebuilt bundle"
    { [ -L "$BUNDLE_SRC" ] || [ ! -e "$BUNDLE_SRC" ]; } && ln -sfn "$ROOT" "$BUNDLE_SRC"
    RUN=(env LD_LIBRARY_PATH="$ROOT/$BUNDLE/lib:$CUDA_HOME/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
    if "${RUN[@]}" ldd "$BUNDLE"/bin/* | grep "not found"; then echo "STOP: libraries above not found"; return 2; fi
    echo "binaries and libraries resolve"
    bin=$BUNDLE/bin
  fi

  say "tests (LD_REQUIRE_GPU=1: a _gpu test fails rather than skips without a GPU)"
  for t in "${TESTS[@]}"; do
    run_timed "${t}_cpu" "${RUN[@]}" LD_REQUIRE_GPU=1 OMP_NUM_THREADS="$NP" OPENBLAS_NUM_THREADS=1 timeout 120 "$bin/$t"
    run_timed "${t}_gpu" "${RUN[@]}" LD_REQUIRE_GPU=1 OMP_NUM_THREADS="$NP" OPENBLAS_NUM_THREADS=1 timeout 120 "$bin/${t}_gpu"
  done

  say "test_gpu_ops, test_gpu_unet, test_gpu_distill: the CUDA backend against the CPU one"
  for g in ops unet distill; do
    run_timed "gpu_$g" "${RUN[@]}" LD_REQUIRE_GPU=1 OMP_NUM_THREADS="$NP" OPENBLAS_NUM_THREADS=1 timeout 300 "$bin/test_gpu_$g"
  done

  say "tests/cli/device_run.sh: train and distill on the GPU (1 and 2 ranks; one GPU: both ranks on it) vs the CPU"
  run_timed cli_device "${RUN[@]}" LD_REQUIRE_GPU=1 CPU_BIN="$ROOT/$bin/laptop-diff" STDIFF="$ROOT/$bin/stdiff" \
    INIT_MODEL="$ROOT/$bin/init_model" OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 timeout 300 \
    bash tests/cli/device_run.sh "$ROOT/$bin/laptop-diff" "$ROOT"

  say "bench_gpu jobs/sd15.cfg 1: SD-1.5 at 64x64 on the CUDA backend (fp32, tf32, bf16); PyTorch on this GPU where the venv is"
  for p in fp32 tf32 bf16; do
    run_timed "gpu_step_$p" "${RUN[@]}" timeout 300 "$bin/bench_gpu" jobs/sd15.cfg 1 3 $p --config-out /tmp/ld_sd15.json
  done
  # the same bf16 step with the convolutions on im2col + cuBLAS instead of cuDNN (runtime.gpu_conv)
  run_timed gpu_step_bf16_gemm "${RUN[@]}" timeout 300 "$bin/bench_gpu" jobs/sd15.cfg 1 3 bf16 --set runtime.gpu_conv='"gemm"'
  # and with attention in cuBLAS query tiles instead of the fused kernel (runtime.gpu_attention)
  run_timed gpu_step_bf16_tiled "${RUN[@]}" timeout 300 "$bin/bench_gpu" jobs/sd15.cfg 1 3 bf16 --set runtime.gpu_attention='"tiled"'
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import sys, torch, diffusers; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    for p in fp32 tf32 bf16; do
      run_timed "torch_step_$p" env LD_TORCH_DEVICE=cuda LD_TORCH_PRECISION=$p timeout 300 .venv/bin/python \
        tests/bench/bench_torch.py /tmp/ld_sd15.json 1 3 "$NP"
    done
  else
    echo "no .venv with torch + diffusers and a CUDA torch here: no PyTorch comparison (scripts/setup.sh makes the venv)"
  fi

  say "bench_step jobs/fmnist_teacher.cfg 64 ($NP threads), runtime.device cpu and cuda"
  for v in cpu gpu; do
    local dev=cpu; [ $v = gpu ] && dev=cuda
    run_timed "bench_$v" "${RUN[@]}" timeout 180 "$bin/bench_step" jobs/fmnist_teacher.cfg 64 3 --set runtime.threads="$NP" \
      --set runtime.device=$dev
  done

  say "summary (cpu: runtime.device \"cpu\", OpenBLAS; gpu: \"cuda\", cuBLAS GEMMs, everything else on the CPU)"
  local fail=0
  printf '%-22s %-22s %-22s\n' "" "cpu" "gpu"
  for t in "${TESTS[@]}" bench; do
    printf '%-22s %-22s %-22s\n' "$t" "rc ${RC[${t}_cpu]}, ${SECS[${t}_cpu]} s" "rc ${RC[${t}_gpu]}, ${SECS[${t}_gpu]} s"
    [ "${RC[${t}_cpu]}" = 0 ] && [ "${RC[${t}_gpu]}" = 0 ] || fail=1
  done
  for g in ops unet distill; do
    printf '%-22s %-22s %s\n' "test_gpu_$g" "" "rc ${RC[gpu_$g]}, ${SECS[gpu_$g]} s: $(tail -1 "/tmp/ld_gpu_$g.txt")"
    [ "${RC[gpu_$g]}" = 0 ] || fail=1
  done
  printf '%-22s %-22s %s\n' "cli device_run" "" "rc ${RC[cli_device]}, ${SECS[cli_device]} s: $(tail -1 /tmp/ld_cli_device.txt)"
  [ "${RC[cli_device]}" = 0 ] || fail=1
  for p in fp32 tf32 bf16; do
    echo "step $p: ours: $(grep '^step' "/tmp/ld_gpu_step_$p.txt" 2>/dev/null); torch: $(grep '^torch' "/tmp/ld_torch_step_$p.txt" 2>/dev/null)"
    grep -E '^(convolutions on|attention )' "/tmp/ld_gpu_step_$p.txt" 2>/dev/null
  done
  echo "step bf16, convolutions on im2col + cuBLAS: $(grep '^step' /tmp/ld_gpu_step_bf16_gemm.txt 2>/dev/null)"
  echo "step bf16, attention in cuBLAS tiles: $(grep '^step' /tmp/ld_gpu_step_bf16_tiled.txt 2>/dev/null)"
  grep -E 'attention.*(fused|tiles)\)' /tmp/ld_gpu_step_bf16.txt 2>/dev/null
  for t in "${TESTS[@]}"; do
    for v in cpu gpu; do printf '%-22s %s: %s\n' "$t" $v "$(tail -1 "/tmp/ld_${t}_$v.txt" | cut -c1-160)"; done
  done
  echo "--- bench_step (best of 3 after a warm-up round)"
  for what in forward backward step; do
    printf '%-9s cpu: %-10s gpu: %s\n' "$what" "$(awk -v w=$what '$1==w{print $2" s"}' /tmp/ld_bench_cpu.txt)" \
      "$(awk -v w=$what '$1==w{print $2" s"}' /tmp/ld_bench_gpu.txt)"
  done
  for v in cpu gpu; do echo "$v: $(grep -o 'SGEMM 1024^3[^;]*GFLOP/s' "/tmp/ld_bench_$v.txt")"; done
  if [ $fail = 0 ]; then echo "device_check: PASS"; else echo "device_check: FAIL"; fi
  return $fail
}

OUT=${OUT:-/tmp}
mkdir -p "$OUT"
PREBUILT=0
case "${1:-}" in
  --bundle) bundle; exit $? ;;
  --prebuilt) PREBUILT=1 ;;
  "") ;;
  *) echo "usage: scripts/device_check.sh [--bundle | --prebuilt]" >&2; exit 2 ;;
esac
main 2>&1 | tee "$OUT/device_check.log"
exit "${PIPESTATUS[0]}"
