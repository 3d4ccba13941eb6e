// dev.h — the GPU device layer: one context per rank (device, stream, cuBLAS
// handle, the GEMM precision, a growable scratch buffer), device memory, host
// transfers and the row-major GEMMs every device op is built on. Everything in
// src/cuda/ops.h runs on a context's stream, in order; the host waits only in
// dev_download and dev_sync.
//
// Built twice: by nvcc for the GPU (LD_CUDA), and by the host C++ compiler on
// the CUDA emulator (src/cuda/emu/, LD_CUDA_EMU), which the tests use where
// there is no GPU. The API is the same; dev_is_emulated() tells which.
#ifndef LD_DEV_H
#define LD_DEV_H
#include <stddef.h>

#include "core/common.h"

#ifdef __cplusplus
extern "C" {
#endif

// How cuBLAS multiplies fp32 tensors: plain FP32, TF32 tensor cores (about
// 1e-3 relative error) or BF16 tensor cores with FP32 accumulation (about
// 1e-2); the tensors and master weights stay fp32 in every case.
typedef enum { GEMM_FP32 = 0, GEMM_TF32 = 1, GEMM_BF16 = 2 } GemmPrecision;
const char *gemm_precision_name(GemmPrecision p);

typedef struct DevCtx DevCtx;

// CUDA devices usable here: > 0; 0 (none, or no driver) and -1 (CUDA fails)
// with e saying why.
int dev_count(Error *e);
// A context on `device` (cudaSetDevice on the calling thread). NULL + e.
DevCtx *dev_open(int device, GemmPrecision precision, Error *e);
void dev_close(DevCtx *d);  // NULL is fine
int dev_is_emulated(void);
int dev_index(const DevCtx *d);  // the CUDA device it runs on
// The physical GPU, as its PCI bus id ("0000:3B:00.0"): what tells whether two
// ranks of a node share one, whatever CUDA_VISIBLE_DEVICES each of them has.
void dev_pci_id(DevCtx *d, char *buf, size_t n);
// "NVIDIA H200, 139.8 GiB, sm_90" (or the emulator's name).
void dev_describe(DevCtx *d, char *buf, size_t n);
void dev_set_precision(DevCtx *d, GemmPrecision p);
GemmPrecision dev_precision(const DevCtx *d);

// Device memory in floats; a failed allocation stops with the size asked for.
float *dev_alloc(DevCtx *d, size_t n);
void dev_free(DevCtx *d, void *p);
void dev_upload(DevCtx *d, float *dst, const float *src, size_t n);    // host -> device
void dev_download(DevCtx *d, float *dst, const float *src, size_t n);  // device -> host, waits
void dev_copy(DevCtx *d, float *dst, const float *src, size_t n);      // device -> device
void dev_zero(DevCtx *d, float *p, size_t n);
void dev_sync(DevCtx *d);
// One device work buffer of at least n floats, valid until the next call
// (the GPU twin of kernels' Scratch: sized by the largest single op).
float *dev_scratch(DevCtx *d, size_t n);
size_t dev_scratch_floats(const DevCtx *d);  // its size now
// The most floats one attention tile's logits ([heads, query rows, keys]) may
// take (attention.cu; backward holds two such tiles). Default 16 Mi (64 MiB);
// tests set it small so that shapes they can afford run in several tiles.
size_t dev_attention_tile_floats(const DevCtx *d);
void dev_set_attention_tile_floats(DevCtx *d, size_t n);

// How a context's 2-D convolutions run (runtime.gpu_conv): through cuDNN
// (conv_cudnn.cu; builds with cuDNN, and the emulator's), or conv.cu's own
// im2col + cuBLAS GEMMs. A new context starts on DEV_CONV_GEMM.
typedef enum { DEV_CONV_GEMM = 0, DEV_CONV_CUDNN = 1 } DevConv;
int dev_has_cudnn(void);  // this build has cuDNN
// Starts cuDNN on the context where c is DEV_CONV_CUDNN: -1 + e where the build
// has none or it does not start (the context keeps its convolutions as they were).
int dev_set_conv(DevCtx *d, DevConv c, Error *e);
DevConv dev_conv(const DevCtx *d);
// "cuDNN 9.19.0" or "im2col + cuBLAS": what dev_describe names.
void dev_conv_describe(const DevCtx *d, char *buf, size_t n);
// Convolution calls on cuDNN that fell back to the GEMM path since the context
// opened (no deterministic cuDNN algorithm within the workspace cap for the
// shape): the tests and bench_gpu report it.
long dev_conv_fallbacks(const DevCtx *d);

// How a context's attention runs (runtime.gpu_attention): DEV_ATTN_FUSED,
// attention_fused.cu's one kernel per direction on tensor cores (wmma), where
// the precision is TF32 or BF16 and the head fits the block's shared memory
// (else, and always at FP32, attention.cu's cuBLAS query tiles, DEV_ATTN_TILED,
// which a new context starts on).
typedef enum { DEV_ATTN_TILED = 0, DEV_ATTN_FUSED = 1 } DevAttn;
void dev_set_attention(DevCtx *d, DevAttn a);
DevAttn dev_attention(const DevCtx *d);
// Attention calls (forward or backward) the fused kernel ran since the context
// opened: the tests and bench_gpu tell by it which path ran.
long dev_attention_fused_calls(const DevCtx *d);
void dev_attention_fused_ran(DevCtx *d);
// Bytes of shared memory one block may opt in to on the context's device.
int dev_smem_optin(const DevCtx *d);

// gemm.h's row-major products on device pointers (same arguments).
void dev_gemm(DevCtx *d, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
void dev_gemm_batched(DevCtx *d, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                      long strideA, const float *B, int ldb, long strideB, float beta, float *C, int ldc,
                      long strideC, int batch);

#ifdef __cplusplus
}
#endif
#endif
