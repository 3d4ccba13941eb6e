// gemm_cublas.c — GEMMs on cuBLAS, for host pointers (see gemm_cublas.h).
// Each call copies the parts of A, B (and C when beta != 0) it reads into a
// device workspace, runs one SGEMM, and copies C back. That round trip is the
// price of keeping every caller unchanged; device-resident tensors come later.
//
// Row-major to cuBLAS's column-major: a row-major X with row stride ld is the
// column-major X^T with the same ld, so C = op(A) op(B) is computed as
// C^T = op(B)^T op(A)^T: the same op flags, operands and M/N swapped.
#include "cuda/gemm_cublas.h"
#include "kernels/gemm.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <threads.h>

struct GpuContext {
    int device;
    cudaStream_t stream;
    cublasHandle_t handle;
    float *ws;         // device workspace, grown on demand, never shrunk
    size_t ws_floats;
};

// ---- checked calls: file, line, the call's text and CUDA's own words ----

static void cuda_ok_at(cudaError_t r, const char *call, const char *file, int line) {
    if (r != cudaSuccess)
        fatal_at(file, line, "CUDA call %s failed: %s: %s", call, cudaGetErrorName(r), cudaGetErrorString(r));
}
static void cublas_ok_at(cublasStatus_t s, const char *call, const char *file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS)
        fatal_at(file, line, "cuBLAS call %s failed: %s: %s", call, cublasGetStatusName(s), cublasGetStatusString(s));
}
#define CUDA_OK(call) cuda_ok_at((call), #call, __FILE__, __LINE__)
#define CUBLAS_OK(call) cublas_ok_at((call), #call, __FILE__, __LINE__)

// The recoverable flavour, for gpu_init: fill e and jump to `fail`.
#define CUDA_TRY(call)                                                                          \
    do {                                                                                        \
        cudaError_t r_ = (call);                                                                \
        if (r_ != cudaSuccess) {                                                                \
            errorf(e, "%s:%d: CUDA call %s failed: %s: %s", __FILE__, __LINE__, #call,          \
                   cudaGetErrorName(r_), cudaGetErrorString(r_));                               \
            goto fail;                                                                          \
        }                                                                                       \
    } while (0)
#define CUBLAS_TRY(call)                                                                        \
    do {                                                                                        \
        cublasStatus_t s_ = (call);                                                             \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                      \
            errorf(e, "%s:%d: cuBLAS call %s failed: %s: %s", __FILE__, __LINE__, #call,        \
                   cublasGetStatusName(s_), cublasGetStatusString(s_));                         \
            goto fail;                                                                          \
        }                                                                                       \
    } while (0)

// ---- context ----

int gpu_device_count(Error *e) {
    int n = 0;
    cudaError_t r = cudaGetDeviceCount(&n);
    if (r == cudaSuccess && n > 0) return n;
    if (r == cudaSuccess || r == cudaErrorNoDevice) {
        errorf(e, "cudaGetDeviceCount: %s", r == cudaSuccess ? "0 devices" : cudaGetErrorString(r));
        return 0;
    }
    // "Driver too old" is also what the runtime says when there is no driver at
    // all; driver version 0 tells the two apart (no driver: no GPU to use).
    int driver = -1;
    if (r == cudaErrorInsufficientDriver && cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0) {
        errorf(e, "cudaGetDeviceCount: %s; no CUDA driver is installed", cudaGetErrorString(r));
        return 0;
    }
    errorf(e, "cudaGetDeviceCount: %s: %s", cudaGetErrorName(r), cudaGetErrorString(r));
    return -1;
}

GpuContext *gpu_init(int device, Error *e) {
    int n = gpu_device_count(e);
    if (n <= 0) return NULL;
    GpuContext *g = NULL;
    if (device < 0) CUDA_TRY(cudaGetDevice(&device));
    if (device >= n) {
        errorf(e, "CUDA device %d asked for, but only %d visible", device, n);
        return NULL;
    }
    CUDA_TRY(cudaSetDevice(device));
    g = xcalloc(1, sizeof *g);
    g->device = device;
    CUDA_TRY(cudaStreamCreate(&g->stream));
    CUBLAS_TRY(cublasCreate(&g->handle));
    CUBLAS_TRY(cublasSetStream(g->handle, g->stream));
    // Plain fp32 products so results match the CPU path within fp32 rounding.
    // CUBLAS_TF32_TENSOR_OP_MATH is the later speed option (about 1e-3 relative).
    CUBLAS_TRY(cublasSetMathMode(g->handle, CUBLAS_DEFAULT_MATH));
    return g;
fail:
    gpu_free(g);
    return NULL;
}

void gpu_free(GpuContext *g) {
    if (!g) return;
    // Errors ignored on purpose: this also runs at exit, where stopping again
    // (exit inside atexit) is undefined and the driver reclaims everything anyway.
    if (cudaSetDevice(g->device) == cudaSuccess) {
        if (g->ws) cudaFree(g->ws);
        if (g->handle) cublasDestroy(g->handle);
        if (g->stream) cudaStreamDestroy(g->stream);
    }
    free(g);
}

// ---- the products ----

// Start of each operand in the workspace, in floats: 256-byte aligned for cuBLAS.
static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static float *workspace(GpuContext *g, size_t floats) {
    if (floats > g->ws_floats) {
        if (g->ws) CUDA_OK(cudaFree(g->ws));
        g->ws = NULL;
        g->ws_floats = 0;
        size_t n = (floats + ((size_t)1 << 18) - 1) & ~(((size_t)1 << 18) - 1);  // 1 MiB steps
        cudaError_t r = cudaMalloc((void **)&g->ws, n * sizeof(float));
        if (r != cudaSuccess)
            FATAL("cudaMalloc of a %.1f MiB GEMM workspace on CUDA device %d failed: %s", n * 4.0 / (1 << 20),
                  g->device, cudaGetErrorString(r));
        g->ws_floats = n;
    }
    return g->ws;
}

// `count` row-major host matrices (rows x cols, row stride ld, matrix i at
// host + i*stride) to the device, packed back to back (row stride cols), and
// back. Matrices that tile the host rows evenly go in one 2D copy.
static int one_copy(int rows, int ld, long stride, int count) { return count == 1 || stride == (long)rows * ld; }

static void put_mats(GpuContext *g, float *dev, const float *host, int rows, int cols, int ld, long stride, int count) {
    size_t w = (size_t)cols * sizeof(float), hp = (size_t)ld * sizeof(float);
    if (one_copy(rows, ld, stride, count)) {
        CUDA_OK(cudaMemcpy2DAsync(dev, w, host, hp, w, (size_t)rows * count, cudaMemcpyHostToDevice, g->stream));
        return;
    }
    for (int i = 0; i < count; i++)
        CUDA_OK(cudaMemcpy2DAsync(dev + (size_t)i * rows * cols, w, host + i * stride, hp, w, rows,
                                  cudaMemcpyHostToDevice, g->stream));
}

static void get_mats(GpuContext *g, float *host, const float *dev, int rows, int cols, int ld, long stride, int count) {
    size_t w = (size_t)cols * sizeof(float), hp = (size_t)ld * sizeof(float);
    if (one_copy(rows, ld, stride, count)) {
        CUDA_OK(cudaMemcpy2DAsync(host, hp, dev, w, w, (size_t)rows * count, cudaMemcpyDeviceToHost, g->stream));
        return;
    }
    for (int i = 0; i < count; i++)
        CUDA_OK(cudaMemcpy2DAsync(host + i * stride, hp, dev + (size_t)i * rows * cols, w, w, rows,
                                  cudaMemcpyDeviceToHost, g->stream));
}

// K = 0: no product, C = beta * C (beta 0 writes zeros without reading C, as BLAS does).
static void scale_c(int M, int N, float beta, float *C, int ldc, long strideC, int batch) {
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < M; i++) {
            float *r = C + b * strideC + (size_t)i * ldc;
            for (int j = 0; j < N; j++) r[j] = beta == 0.0f ? 0.0f : beta * r[j];
        }
}

void gpu_gemm_batched(GpuContext *g, int transA, int transB, int M, int N, int K, float alpha,
                      const float *A, int lda, long strideA, const float *B, int ldb, long strideB,
                      float beta, float *C, int ldc, long strideC, int batch) {
    gemm_check_args("gemm", transA, transB, M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0 || batch <= 0) return;
    if (K == 0) {
        scale_c(M, N, beta, C, ldc, strideC, batch);
        return;
    }
    // Overlapping outputs make the CPU loop's order part of the result; keep it.
    if (batch > 1 && strideC < (long)(M - 1) * ldc + N) {
        for (int b = 0; b < batch; b++)
            gpu_gemm_batched(g, transA, transB, M, N, K, alpha, A + b * strideA, lda, 0, B + b * strideB, ldb,
                             0, beta, C + b * strideC, ldc, 0, 1);
        return;
    }
    int rowsA = transA ? K : M, colsA = transA ? M : K;
    int rowsB = transB ? N : K, colsB = transB ? K : N;
    // Stride 0 shares one matrix across the batch: copy it once.
    int nA = strideA == 0 ? 1 : batch, nB = strideB == 0 ? 1 : batch;
    size_t sA = (size_t)rowsA * colsA, sB = (size_t)rowsB * colsB, sC = (size_t)M * N;
    size_t offB = align64(sA * nA), offC = offB + align64(sB * nB);
    CUDA_OK(cudaSetDevice(g->device));
    float *dA = workspace(g, offC + sC * batch), *dB = dA + offB, *dC = dA + offC;
    put_mats(g, dA, A, rowsA, colsA, lda, strideA, nA);
    put_mats(g, dB, B, rowsB, colsB, ldb, strideB, nB);
    if (beta != 0.0f) put_mats(g, dC, C, M, N, ldc, strideC, batch);  // beta 0: C is not read
    cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N, opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batch == 1)
        CUBLAS_OK(cublasSgemm(g->handle, opB, opA, N, M, K, &alpha, dB, colsB, dA, colsA, &beta, dC, N));
    else
        CUBLAS_OK(cublasSgemmStridedBatched(g->handle, opB, opA, N, M, K, &alpha, dB, colsB,
                                            strideB == 0 ? 0 : (long long)sB, dA, colsA,
                                            strideA == 0 ? 0 : (long long)sA, &beta, dC, N, (long long)sC, batch));
    get_mats(g, C, dC, M, N, ldc, strideC, batch);
    // Also where a failed kernel or copy shows up.
    CUDA_OK(cudaStreamSynchronize(g->stream));
}

void gpu_gemm(GpuContext *g, int transA, int transB, int M, int N, int K, float alpha, const float *A,
              int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    gpu_gemm_batched(g, transA, transB, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

// ---- one context per thread, for gemm.h's door (src/kernels/gemm.c) ----
//
// gemm() has no context argument and its callers (linear, attention, conv2d)
// should not change, so each thread that multiplies gets its own context on
// first use: thread-local rather than one global because a cuBLAS handle must
// not be used by two threads at once, and per-thread state needs no lock.
// Today only the main thread multiplies (GEMMs run between OpenMP regions).
// The exiting thread's context is released from atexit; a context left in
// another thread is reclaimed with the process.
static _Thread_local GpuContext *thread_ctx;
static once_flag release_once = ONCE_FLAG_INIT;

static void release_thread_ctx(void) {
    gpu_free(thread_ctx);
    thread_ctx = NULL;
}
static void register_release(void) { atexit(release_thread_ctx); }

GpuContext *gpu_thread_context(int device, Error *e) {
    if (thread_ctx) {
        // The device is chosen once per process (gemm_set_device); another one here is a programmer error.
        if (thread_ctx->device != device)
            FATAL("gpu_thread_context: this thread's cuBLAS context is on CUDA device %d, not %d", thread_ctx->device,
                  device);
        return thread_ctx;
    }
    thread_ctx = gpu_init(device, e);
    if (thread_ctx) call_once(&release_once, register_release);
    return thread_ctx;
}

int gpu_device_name(int device, char *name, size_t size) {
    struct cudaDeviceProp p;
    if (size == 0 || cudaGetDeviceProperties(&p, device) != cudaSuccess) return -1;
    snprintf(name, size, "%s", p.name);
    return 0;
}
