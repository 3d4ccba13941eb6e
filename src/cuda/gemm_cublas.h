// gemm_cublas.h — the cuBLAS backend of an LD_CUDA_GEMM build: gemm.h's
// products, with their row-major semantics on host pointers, on an explicit
// GPU context. src/kernels/gemm.c calls it when runtime.device is "cuda".
// It includes no CUDA header, so tests and runtime.c need no CUDA include path.
#ifndef LD_GEMM_CUBLAS_H
#define LD_GEMM_CUBLAS_H
#include "core/common.h"

#ifdef __cplusplus
extern "C" {  // dev.cu asks gpu_device_count
#endif

// A cuBLAS handle, its stream and a growable device workspace on one device.
typedef struct GpuContext GpuContext;

// CUDA devices this process can use: > 0; 0 when there is none (CUDA reports
// no device, or no CUDA driver is installed at all); -1 for any other CUDA
// failure (say, a driver too old for this runtime). For 0 and -1, e says why.
int gpu_device_count(Error *e);

// device < 0: the thread's current CUDA device (cudaGetDevice), so a rank that
// picked its GPU with cudaSetDevice keeps it. NULL with e set on failure.
GpuContext *gpu_init(int device, Error *e);
// Best effort, never exits (it runs from atexit too). NULL is fine.
void gpu_free(GpuContext *g);

// gemm() / gemm_batched() of gemm.h on an explicit context. A, B, C are host
// pointers; the call returns when C is written. A failing CUDA or cuBLAS call
// stops the process with a message naming file, line and the call.
void gpu_gemm(GpuContext *g, int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void gpu_gemm_batched(GpuContext *g, int transA, int transB, int M, int N, int K, float alpha,
                      const float *A, int lda, long strideA, const float *B, int ldb, long strideB,
                      float beta, float *C, int ldc, long strideC, int batch);

// The calling thread's context on `device`, made on first use and released at
// exit (see gemm_cublas.c for why one per thread). NULL with e set when cuBLAS
// cannot start there. Asking for another device later stops the process.
GpuContext *gpu_thread_context(int device, Error *e);

// The device's name ("NVIDIA H200") into name; -1 when CUDA cannot say.
int gpu_device_name(int device, char *name, size_t size);

#ifdef __cplusplus
}
#endif
#endif
