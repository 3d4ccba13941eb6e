// runtime.c — see runtime.h.
#define _GNU_SOURCE  // sched_getaffinity, CPU_COUNT
#include "kernels/runtime.h"

#include <sched.h>

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kernels/conv2d_dnnl.h"
#include "kernels/gemm.h"

#ifdef LD_HAVE_CUDA_GEMM
#include "cuda/gemm_cublas.h"
#endif

// Convolutions cut a batch into chunks of at most this many floats of
// activation (or columns): 32 MiB unless a test makes it small to exercise the cut.
static size_t conv_chunk = (size_t)8 << 20;

size_t runtime_conv_chunk_floats(void) { return conv_chunk; }
void runtime_set_conv_chunk_floats(size_t floats) { conv_chunk = floats ? floats : 1; }

#ifdef LD_HAVE_DNNL
// The process's oneDNN state (conv2d_dnnl.h), the only other mutable state of
// the compute runtime besides gemm.c's device choice: made on the first
// convolution, kept for the process's life (its primitives are the cache), so
// it is reachable, not leaked, at exit.
static DnnlCtx *dnnl_ctx;

DnnlCtx *runtime_dnnl(void) {
    if (dnnl_ctx) return dnnl_ctx;
    DnnlCtx *c = xcalloc(1, sizeof *c);
    dnnl_status_t st = dnnl_engine_create(&c->engine, dnnl_cpu, 0);
    if (st == dnnl_success) st = dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags);
    if (st != dnnl_success) FATAL("oneDNN: no CPU engine/stream (status %d)", (int)st);
    dnnl_ctx = c;
    return c;
}
#endif

int runtime_online_cores(void) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores < 1 ? 1 : (int)cores;
}

int runtime_allowed_cores(void) {
    cpu_set_t set;
    int online = runtime_online_cores();
    if (sched_getaffinity(0, sizeof set, &set) != 0) return online;
    int n = CPU_COUNT(&set);
    return n < 1 ? 1 : n > online ? online : n;
}

int runtime_default_threads(int ranks_on_node, int allowed, int online) {
    // Bound to fewer cores than the node has: the launcher (mpirun binds each
    // rank to one core by default, srun to its --cpus-per-task) chose this
    // rank's cores; more threads than that would share them.
    if (allowed < online) return allowed;
    int t = online / (ranks_on_node > 0 ? ranks_on_node : 1);
    return t < 1 ? 1 : t;
}

int runtime_set_threads(int threads, int ranks_on_node) {
    if (threads <= 0) threads = runtime_default_threads(ranks_on_node, runtime_allowed_cores(), runtime_online_cores());
    omp_set_num_threads(threads);
    // GEMMs are called outside OpenMP regions, so OpenBLAS may use the same count
    openblas_set_num_threads(threads);
    return threads;
}

const char *runtime_blas_core_wanted(const char *core, int avx512, int avx2_fma) {
    // OpenBLAS's names of the kernels that already use AVX-512, or AVX2 and up
    static const char *const fast512[] = {"skylakex", "cooperlake", "sapphirerapids"};
    static const char *const fast2[] = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"};
    const char *const *fast = NULL;
    size_t n = 0;
    const char *want = NULL;
    if (!core) return NULL;
    if (avx512)
        fast = fast512, n = sizeof fast512 / sizeof *fast512, want = "SkylakeX";
    else if (avx2_fma)
        fast = fast2, n = sizeof fast2 / sizeof *fast2, want = "Haswell";
    if (!want) return NULL;
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(core, fast[i])) return NULL;
    return want;
}

// runtime_blas_core_wanted for the kernels OpenBLAS runs now on this CPU.
static const char *core_wanted_here(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return runtime_blas_core_wanted(openblas_get_corename(), __builtin_cpu_supports("avx512f"),
                                    __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
#else
    return NULL;
#endif
}

const char *runtime_blas_coretype_fix(void) { return getenv("OPENBLAS_CORETYPE") ? NULL : core_wanted_here(); }

int runtime_blas_coretype_warning(char *buf, size_t n) {
    const char *set = getenv("OPENBLAS_CORETYPE"), *want = set ? core_wanted_here() : NULL;
    if (!want) return 0;
    snprintf(buf, n, "OPENBLAS_CORETYPE=%s runs OpenBLAS's %s kernels, narrower than this CPU's %s, at a cost in "
             "GEMM speed (measured: half the SGEMM rate with Haswell's on an AVX-512 CPU, 4-9x less with the SSE3 "
             "ones); set OPENBLAS_CORETYPE=%s, or unset it and laptop-diff picks that (README, Build)",
             set, openblas_get_corename(), strcmp(want, "SkylakeX") ? "AVX2" : "AVX-512", want);
    return 1;
}

void runtime_fix_blas_kernels(char **argv) {
    const char *coretype = runtime_blas_coretype_fix();
    if (!coretype) return;
    setenv("OPENBLAS_CORETYPE", coretype, 1);
    execv("/proc/self/exe", argv);
}

// Fills n (CUDA devices here) or fails with the message runtime.device = "cuda" gets.
static int cuda_devices(int *n, Error *e) {
#ifdef LD_HAVE_CUDA_GEMM
    Error ce;
    *n = gpu_device_count(&ce);
    if (*n > 0) return 0;
    if (*n == 0)
        return errorf(e, "runtime.device = \"cuda\": no CUDA device found (%s); run where a GPU is, or use "
                         "runtime.device = \"cpu\"", ce.msg);
    return errorf(e, "runtime.device = \"cuda\": CUDA does not work here (%s); use runtime.device = \"cpu\"", ce.msg);
#else
    *n = 0;
    return errorf(e, "runtime.device = \"cuda\": this build has no GPU backend (configure with -DLD_CUDA_GEMM=ON "
                     "where the CUDA toolkit is); use runtime.device = \"cpu\"");
#endif
}

int runtime_check_device(Device device, Error *e) {
    if (device == DEVICE_CPU) return 0;
    int n;
    return cuda_devices(&n, e);
}

int runtime_select_device(Device device, Precision precision, GpuConv gpu_conv, GpuAttention gpu_attn, CpuGemm cpu_gemm,
                          int local_rank,
                          const DeviceBackend *gpu, Backend **be, char *what, size_t what_size, Error *e) {
    char name[256] = "";
    int gpu_index = -1, n = 0;
    if (be) *be = NULL;
    if (gemm_set_cpu_library(cpu_gemm, e)) return -1;
    if (device != DEVICE_CUDA) {
        if (gemm_set_device(device, -1, e)) return -1;
        if (what && what_size) snprintf(what, what_size, "CPU (%s)", gemm_backend_name());
        return 0;
    }
    Error ge;
    if (gpu) {
        n = gpu->count(&ge);
        if (n == 0)
            return errorf(e, "runtime.device = \"cuda\": no CUDA device found (%s); run where a GPU is, or use "
                             "runtime.device = \"cpu\"", ge.msg);
        if (n < 0)
            return errorf(e, "runtime.device = \"cuda\": CUDA does not work here (%s); use runtime.device = \"cpu\"",
                          ge.msg);
    } else if (cuda_devices(&n, e)) {
        return -1;
    }
    gpu_index = (local_rank > 0 ? local_rank : 0) % n;
#ifdef LD_HAVE_CUDA_GEMM
    // the stages not yet device-resident send their GEMMs to cuBLAS
    if (gpu_device_name(gpu_index, name, sizeof name)) snprintf(name, sizeof name, "name unknown");
    if (gemm_set_device(device, gpu_index, &ge))
        return errorf(e, "runtime.device = \"cuda\": GPU %d of %d (node-local rank %d): %s", gpu_index, n, local_rank,
                      ge.msg);
#else
    if (gemm_set_device(DEVICE_CPU, -1, e)) return -1;  // only a device backend here (gpu): the rest on the CPU
#endif
    if (gpu && be) {
        *be = gpu->create(gpu_index, precision, gpu_conv, gpu_attn, &ge);
        if (!*be)
            return errorf(e, "runtime.device = \"cuda\": GPU %d of %d (node-local rank %d): %s", gpu_index, n,
                          local_rank, ge.msg);
        gpu->describe(*be, name, sizeof name);
    }
    if (what && what_size) {
        if (gpu && be)
            snprintf(what, what_size, "GPU %d of %d (%s): the U-Net passes of train, distill, sample, forward, eval, "
                                        "score and plan on it, the rest %s", gpu_index, n,
                     name, !strcmp(gemm_backend_name(), "cuBLAS") ? "with cuBLAS GEMMs" : "on the CPU");
        else
            snprintf(what, what_size, "GPU %d of %d (%s), %s", gpu_index, n, name, gemm_backend_name());
    }
    return 0;
}
