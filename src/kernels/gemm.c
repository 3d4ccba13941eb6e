// gemm.c — the GEMM door: OpenBLAS's CBLAS on the CPU (or oneDNN's sgemm for
// the large products), and in an LD_CUDA_GEMM build also cuBLAS
// (src/cuda/gemm_cublas.c), chosen at run time.
#include "kernels/gemm.h"

#include <cblas.h>
#ifdef LD_HAVE_DNNL
#include <dnnl.h>
#endif

#ifdef LD_HAVE_CUDA_GEMM
#include "cuda/gemm_cublas.h"
#endif

// The process's one backend selection, the only mutable state here. It is a
// static rather than an argument because gemm() is called from every kernel,
// none of which carries a context. It is written once, by gemm_set_device and
// gemm_set_cpu_library on the main thread before any compute, and only read
// after that, so threads need no lock.
static struct {
    int set;
    Device device;
    int gpu;  // CUDA device index (DEVICE_CUDA)
    int cpu_set;
    CpuGemm cpu;  // OPENBLAS or ONEDNN, never AUTO
} sel = {0, DEVICE_CPU, -1, 0, CPU_GEMM_OPENBLAS};

int gemm_cpu_prefers_onednn(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") && __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

int gemm_set_cpu_library(CpuGemm lib, Error *e) {
#ifdef LD_HAVE_DNNL
    if (lib == CPU_GEMM_AUTO) lib = gemm_cpu_prefers_onednn() ? CPU_GEMM_ONEDNN : CPU_GEMM_OPENBLAS;
#else
    if (lib == CPU_GEMM_ONEDNN)
        return errorf(e, "runtime.cpu_gemm = \"onednn\": this build has no oneDNN (install libdnnl-dev and "
                         "configure without -DLD_DNNL=OFF), use \"openblas\" or \"auto\"");
    if (lib == CPU_GEMM_AUTO) lib = CPU_GEMM_OPENBLAS;
#endif
    if (lib != CPU_GEMM_OPENBLAS && lib != CPU_GEMM_ONEDNN)
        return errorf(e, "gemm: unknown CPU GEMM library %d", (int)lib);
    // a retry after a failed device selection asks again for the same library
    if (sel.cpu_set && sel.cpu != lib)
        FATAL("gemm_set_cpu_library: the CPU's GEMM library is chosen once per process, and was already");
    sel.cpu_set = 1, sel.cpu = lib;
    return 0;
}

int gemm_set_device(Device device, int gpu, Error *e) {
    if (sel.set) FATAL("gemm_set_device: the GEMM device is chosen once per process, and was already");
    if (device == DEVICE_CUDA) {
#ifdef LD_HAVE_CUDA_GEMM
        if (!gpu_thread_context(gpu, e)) return -1;
#else
        (void)gpu;
        return errorf(e, "gemm: no GPU backend in this build (configure with -DLD_CUDA_GEMM=ON)");
#endif
    } else if (device != DEVICE_CPU) {
        return errorf(e, "gemm: unknown device %d", (int)device);
    }
    sel.set = 1, sel.device = device, sel.gpu = gpu;
    return 0;
}

const char *gemm_cpu_library_name(void) {
    return sel.cpu == CPU_GEMM_ONEDNN ? "oneDNN sgemm + OpenBLAS" : "OpenBLAS";
}

const char *gemm_backend_name(void) { return sel.device == DEVICE_CUDA ? "cuBLAS" : gemm_cpu_library_name(); }

#ifdef LD_HAVE_CUDA_GEMM
// This thread's cuBLAS context on the selected device (made on first use in a
// thread other than the one that selected it).
static GpuContext *cuda_ctx(void) {
    Error e;
    GpuContext *g = gpu_thread_context(sel.gpu, &e);
    if (!g) FATAL("gemm: runtime.device = \"cuda\", but cuBLAS could not start on CUDA device %d: %s", sel.gpu, e.msg);
    return g;
}
#endif

void gemm_check_args(const char *who, int transA, int transB, int M, int N, int K, int lda, int ldb, int ldc) {
    int colsA = transA ? M : K, colsB = transB ? K : N;
    if (M < 0 || N < 0 || K < 0 || lda < (colsA > 1 ? colsA : 1) || ldb < (colsB > 1 ? colsB : 1) ||
        ldc < (N > 1 ? N : 1))
        FATAL("%s: bad arguments: transA %d transB %d M %d N %d K %d lda %d ldb %d ldc %d", who, transA, transB, M,
              N, K, lda, ldb, ldc);
}

void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
#ifdef LD_HAVE_CUDA_GEMM
    if (sel.device == DEVICE_CUDA) {
        gpu_gemm(cuda_ctx(), transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
#ifdef LD_HAVE_DNNL
    if (sel.cpu == CPU_GEMM_ONEDNN && (double)M * N * K >= GEMM_ONEDNN_MIN_MACS) {
        // row-major, as CBLAS here; beta 0 writes C without reading it, as CBLAS does
        dnnl_status_t st = dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta,
                                      C, ldc);
        if (st != dnnl_success)
            FATAL("gemm: dnnl_sgemm failed (status %d): transA %d transB %d M %d N %d K %d lda %d ldb %d ldc %d",
                  (int)st, transA, transB, M, N, K, lda, ldb, ldc);
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_batched(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                  int lda, long strideA, const float *B, int ldb, long strideB, float beta,
                  float *C, int ldc, long strideC, int batch) {
#ifdef LD_HAVE_CUDA_GEMM
    if (sel.device == DEVICE_CUDA) {
        gpu_gemm_batched(cuda_ctx(), transA, transB, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C,
                         ldc, strideC, batch);
        return;
    }
#endif
    for (int i = 0; i < batch; i++)
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K,
                    alpha, A + i * strideA, lda, B + i * strideB, ldb, beta, C + i * strideC, ldc);
}
