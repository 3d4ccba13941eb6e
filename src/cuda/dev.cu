// dev.cu — see dev.h. Row-major to cuBLAS's column-major as gemm_cublas.c
// does: a row-major X (row stride ld) is the column-major X^T, so C = op(A)
// op(B) runs as C^T = op(B)^T op(A)^T, operands and M/N swapped.
#include <string.h>

#include "cuda/conv_cudnn.h"
#include "cuda/cu_common.cuh"
#include "cuda/gemm_cublas.h"
#include "kernels/gemm.h"

struct DevCtx {
    int device;
    GemmPrecision precision;
    cudaStream_t stream;
    cublasHandle_t blas;
    float *scratch;
    size_t scratch_floats;
    size_t attn_tile_floats;
    DevConv conv;
    DnnConvs *dnn;  // cuDNN's handle and plans, while conv is DEV_CONV_CUDNN
    long conv_fallbacks;
    DevAttn attn;
    long attn_fused_calls;
    int smem_optin;  // bytes of shared memory a block may opt in to
};

cudaStream_t dev_stream(DevCtx *d) { return d->stream; }
cublasHandle_t dev_blas(DevCtx *d) { return d->blas; }
DnnConvs *dev_dnn(DevCtx *d) { return d->conv == DEV_CONV_CUDNN ? d->dnn : NULL; }
void dev_conv_fell_back(DevCtx *d) { d->conv_fallbacks++; }
long dev_conv_fallbacks(const DevCtx *d) { return d->conv_fallbacks; }
DevConv dev_conv(const DevCtx *d) { return d->conv; }
void dev_set_attention(DevCtx *d, DevAttn a) { d->attn = a; }
DevAttn dev_attention(const DevCtx *d) { return d->attn; }
void dev_attention_fused_ran(DevCtx *d) { d->attn_fused_calls++; }
long dev_attention_fused_calls(const DevCtx *d) { return d->attn_fused_calls; }
int dev_smem_optin(const DevCtx *d) { return d->smem_optin; }

int dev_has_cudnn(void) {
#ifdef LD_HAVE_CUDNN
    return 1;
#else
    return 0;
#endif
}

int dev_set_conv(DevCtx *d, DevConv c, Error *e) {
    if (c == DEV_CONV_CUDNN && !d->dnn) {
#ifdef LD_HAVE_CUDNN
        d->dnn = dnn_convs_open(d, e);
        if (!d->dnn) return -1;
#else
        return errorf(e, "this build has no cuDNN (configure with the CUDA toolkit's cuDNN found, LD_CUDNN=ON)");
#endif
    }
    d->conv = c;
    return 0;
}

void dev_conv_describe(const DevCtx *d, char *buf, size_t n) {
#ifdef LD_HAVE_CUDNN
    if (d->conv == DEV_CONV_CUDNN) {
        dnn_convs_version(buf, n);
        return;
    }
#else
    (void)d;
#endif
    snprintf(buf, n, "im2col + cuBLAS");
}
int dev_index(const DevCtx *d) { return d->device; }
void dev_pci_id(DevCtx *d, char *buf, size_t n) {
    if (cudaDeviceGetPCIBusId(buf, (int)n, d->device) != cudaSuccess) snprintf(buf, n, "CUDA device %d", d->device);
}

const char *gemm_precision_name(GemmPrecision p) {
    return p == GEMM_TF32 ? "tf32" : p == GEMM_BF16 ? "bf16" : "fp32";
}

int dev_is_emulated(void) {
#ifdef LD_CUDA_EMU
    return 1;
#else
    return 0;
#endif
}

int dev_count(Error *e) {
#ifdef LD_CUDA_EMU
    (void)e;
    return 1;  // the emulator is one device
#else
    return gpu_device_count(e);  // gemm_cublas.c (LD_CUDA implies LD_CUDA_GEMM): no device vs no driver
#endif
}

#define DEV_TRY(call)                                                                                 \
    do {                                                                                              \
        cudaError_t r_ = (call);                                                                      \
        if (r_ != cudaSuccess) {                                                                      \
            errorf(e, "%s:%d: CUDA call %s failed: %s", __FILE__, __LINE__, #call, cudaGetErrorString(r_)); \
            goto fail;                                                                                \
        }                                                                                             \
    } while (0)

DevCtx *dev_open(int device, GemmPrecision precision, Error *e) {
    int n = dev_count(e);
    if (n <= 0) return NULL;
    if (device < 0 || device >= n) {
        errorf(e, "CUDA device %d asked for, but %d visible", device, n);
        return NULL;
    }
    DevCtx *d = (DevCtx *)xcalloc(1, sizeof *d);
    d->device = device;
    d->precision = precision;
    d->attn_tile_floats = (size_t)16 << 20;
    DEV_TRY(cudaSetDevice(device));
    DEV_TRY(cudaStreamCreate(&d->stream));
    DEV_TRY(cudaDeviceGetAttribute(&d->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    if (cublasCreate(&d->blas) != CUBLAS_STATUS_SUCCESS) {
        errorf(e, "cuBLAS could not start on CUDA device %d", device);
        goto fail;
    }
    CUBLAS_CHECK(cublasSetStream(d->blas, d->stream));
    return d;
fail:
    dev_close(d);
    return NULL;
}

void dev_close(DevCtx *d) {
    if (!d) return;
    // best effort: it also runs on error paths and at exit
#ifdef LD_HAVE_CUDNN
    dnn_convs_free(d->dnn);
#endif
    if (d->scratch) cudaFree(d->scratch);
    if (d->blas) cublasDestroy(d->blas);
    if (d->stream) cudaStreamDestroy(d->stream);
    free(d);
}

void dev_describe(DevCtx *d, char *buf, size_t n) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, d->device) != cudaSuccess) {
        snprintf(buf, n, "CUDA device %d", d->device);
        return;
    }
    char conv[64];
    dev_conv_describe(d, conv, sizeof conv);
    // fused names what runs where it can: at fp32 every call takes the tiles
    const char *attn = d->attn == DEV_ATTN_FUSED && d->precision != GEMM_FP32 ? "fused (tensor cores)" : "cuBLAS tiles";
    snprintf(buf, n, "%s, %.1f GiB, sm_%d%d, GEMMs %s, attention %s, convolutions %s", p.name,
             p.totalGlobalMem / 1073741824.0, p.major, p.minor, gemm_precision_name(d->precision), attn, conv);
}

void dev_set_precision(DevCtx *d, GemmPrecision p) { d->precision = p; }
GemmPrecision dev_precision(const DevCtx *d) { return d->precision; }

float *dev_alloc(DevCtx *d, size_t n) {
    void *p = NULL;
    if (n == 0) n = 1;
    cudaError_t r = cudaMalloc(&p, n * sizeof(float));
    if (r != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        FATAL("cudaMalloc of %.1f MiB on CUDA device %d failed (%s; %.1f of %.1f GiB free)", n * 4.0 / 1048576.0,
              d->device, cudaGetErrorString(r), fr / 1073741824.0, tot / 1073741824.0);
    }
    return (float *)p;
}
void dev_free(DevCtx *d, void *p) {
    (void)d;
    if (p) CU_OK(cudaFree(p));
}
void dev_upload(DevCtx *d, float *dst, const float *src, size_t n) {
    CU_OK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, d->stream));
    // the host buffer may be reused as soon as this returns
    CU_OK(cudaStreamSynchronize(d->stream));
}
void dev_download(DevCtx *d, float *dst, const float *src, size_t n) {
    CU_OK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, d->stream));
    CU_OK(cudaStreamSynchronize(d->stream));
}
void dev_copy(DevCtx *d, float *dst, const float *src, size_t n) {
    CU_OK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, d->stream));
}
void dev_zero(DevCtx *d, float *p, size_t n) { CU_OK(cudaMemsetAsync(p, 0, n * sizeof(float), d->stream)); }
void dev_sync(DevCtx *d) { CU_OK(cudaStreamSynchronize(d->stream)); }

float *dev_scratch(DevCtx *d, size_t n) {
    if (n > d->scratch_floats) {
        CU_OK(cudaStreamSynchronize(d->stream));  // the old buffer may still be in use
        dev_free(d, d->scratch);
        size_t grow = (n + ((size_t)1 << 18) - 1) & ~(((size_t)1 << 18) - 1);  // 1 MiB steps
        d->scratch = dev_alloc(d, grow);
        d->scratch_floats = grow;
    }
    return d->scratch;
}

size_t dev_scratch_floats(const DevCtx *d) { return d->scratch_floats; }
size_t dev_attention_tile_floats(const DevCtx *d) { return d->attn_tile_floats; }
void dev_set_attention_tile_floats(DevCtx *d, size_t n) { d->attn_tile_floats = n ? n : 1; }

static cublasComputeType_t compute_type(GemmPrecision p) {
    return p == GEMM_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : p == GEMM_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                                                         : CUBLAS_COMPUTE_32F;
}

void dev_gemm_batched(DevCtx *d, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                      long strideA, const float *B, int ldb, long strideB, float beta, float *C, int ldc,
                      long strideC, int batch) {
    gemm_check_args("dev_gemm", transA, transB, M, N, K, lda, ldb, ldc);
    if (batch < 0) FATAL("dev_gemm: batch %d < 0", batch);
    if (M == 0 || N == 0 || batch == 0) return;
    // K = 0 is handled by cuBLAS as C = beta * C.
    cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N, opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(d->blas, opB, opA, N, M, K, &alpha, B, CUDA_R_32F, ldb, strideB, A,
                                            CUDA_R_32F, lda, strideA, &beta, C, CUDA_R_32F, ldc, strideC, batch,
                                            compute_type(d->precision), CUBLAS_GEMM_DEFAULT));
}

void dev_gemm(DevCtx *d, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    dev_gemm_batched(d, transA, transB, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}
