// cuda_emu.cpp — see cuda_emu.h.
#include "cuda_emu.h"

#include <cblas.h>
#include <pthread.h>

#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace {
struct Launch {
    pthread_barrier_t bar;
    std::vector<float> xf;
    std::vector<double> xd;
};
thread_local Launch *cur = nullptr;
thread_local unsigned cur_tid = 0;

template <class T> T exchange(std::vector<T> &buf, T v, int lane_mask) {
    buf[cur_tid] = v;
    pthread_barrier_wait(&cur->bar);
    T r = buf[cur_tid ^ (unsigned)lane_mask];
    pthread_barrier_wait(&cur->bar);
    return r;
}
}  // namespace

void __syncthreads() { pthread_barrier_wait(&cur->bar); }
float __shfl_xor_sync(unsigned, float v, int m) { return exchange(cur->xf, v, m); }
double __shfl_xor_sync(unsigned, double v, int m) { return exchange(cur->xd, v, m); }

void emu_launch(dim3 grid, dim3 block, const std::function<void()> &f) {
    unsigned nt = block.x * block.y * block.z;
    if (nt == 0 || nt > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
        fprintf(stderr, "cuda_emu: invalid launch (grid %u,%u,%u block %u,%u,%u)\n", grid.x, grid.y, grid.z,
                block.x, block.y, block.z);
        abort();
    }
    Launch L;
    pthread_barrier_init(&L.bar, nullptr, nt);
    L.xf.resize(nt), L.xd.resize(nt);
    std::vector<std::thread> th;
    th.reserve(nt);
    for (unsigned t = 0; t < nt; t++)
        th.emplace_back([&, t] {
            cur = &L, cur_tid = t;
            blockDim = block, gridDim = grid;
            threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            for (unsigned bz = 0; bz < grid.z; bz++)
                for (unsigned by = 0; by < grid.y; by++)
                    for (unsigned bx = 0; bx < grid.x; bx++) {
                        blockIdx = dim3(bx, by, bz);
                        f();
                        // the block's static "__shared__" memory is reused by the next block
                        pthread_barrier_wait(&L.bar);
                    }
        });
    for (auto &t : th) t.join();
    pthread_barrier_destroy(&L.bar);
}

// ---- runtime API: host memory stands in for device memory ----
const char *cudaGetErrorName(cudaError_t r) { return r == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated"; }
const char *cudaGetErrorString(cudaError_t r) { return r == cudaSuccess ? "no error" : "emulated CUDA error"; }
cudaError_t cudaGetDeviceCount(int *n) { return *n = 1, cudaSuccess; }
cudaError_t cudaDriverGetVersion(int *v) { return *v = 13000, cudaSuccess; }
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDevice(int *d) { return *d = 0, cudaSuccess; }
cudaError_t cudaMalloc(void **p, size_t n) {
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) { return free(p), cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind, cudaStream_t) {
    if (n) memmove(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
    return cudaMemcpyAsync(dst, src, n, k, nullptr);
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
    if (n) memset(p, v, n);
    return cudaSuccess;
}
struct EmuStream {
    int unused;
};
cudaError_t cudaStreamCreate(cudaStream_t *s) { return *s = new EmuStream(), cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t s) { return delete s, cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { return *f = *t = (size_t)1 << 34, cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CUDA emulator on the host (cuda_emu)");
    p->major = 9, p->multiProcessorCount = 1, p->totalGlobalMem = (size_t)1 << 34;
    return cudaSuccess;
}

// ---- cuBLAS on OpenBLAS ----
struct EmuBlas {
    cublasMath_t math;
};
const char *cublasGetStatusName(cublasStatus_t s) { return s ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_SUCCESS"; }
const char *cublasGetStatusString(cublasStatus_t s) { return s ? "invalid value (emulated)" : "success"; }
cublasStatus_t cublasCreate(cublasHandle_t *h) { return *h = new EmuBlas{CUBLAS_DEFAULT_MATH}, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { return delete h, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) { return h->math = m, CUBLAS_STATUS_SUCCESS; }

namespace {
// Round-to-nearest-even to `keep` mantissa bits (TF32: 10, BF16: 7).
float round_mantissa(float x, int keep) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;  // inf/nan unchanged
    int drop = 23 - keep;
    uint32_t half = (1u << (drop - 1)) - 1, lsb = (u >> drop) & 1u;
    u = (u + half + lsb) & ~((1u << drop) - 1);
    memcpy(&x, &u, 4);
    return x;
}
const float *rounded(const float *X, size_t n, int keep, std::vector<float> &buf) {
    if (keep >= 23) return X;
    buf.assign(X, X + n);
    for (float &v : buf) v = round_mantissa(v, keep);
    return buf.data();
}
}  // namespace

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType, int lda,
                                          long long sa, const void *B, cudaDataType, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType, int ldc, long long sc,
                                          int batch, cublasComputeType_t comp, cublasGemmAlgo_t) {
    if (m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    int keep = comp == CUBLAS_COMPUTE_32F_FAST_TF32 ? 10 : comp == CUBLAS_COMPUTE_32F_FAST_16BF ? 7 : 23;
    size_t na = (size_t)lda * (ta == CUBLAS_OP_N ? k : m), nb = (size_t)ldb * (tb == CUBLAS_OP_N ? n : k);
    std::vector<float> ba, bb;
    for (int i = 0; i < batch; i++) {
        const float *a = rounded((const float *)A + i * sa, na, keep, ba);
        const float *b = rounded((const float *)B + i * sb, nb, keep, bb);
        cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *(const float *)alpha, a, lda, b, ldb,
                    *(const float *)beta, (float *)C + i * sc, ldc);
    }
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
                            cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                            cublasComputeType_t comp, cublasGemmAlgo_t algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0,
                                      1, comp, algo);
}
