// gemm.h — the one door to matrix multiplication. Everything that is a GEMM
// (convolutions via im2col, linears, attention) calls these, so the backend is
// chosen in one place. Row-major, like the rest of the core.
#ifndef LD_GEMM_H
#define LD_GEMM_H
#include "core/common.h"
#include "kernels/runtime.h"

#ifdef __cplusplus
extern "C" {  // src/cuda/dev.cu asks gemm_check_args
#endif

// C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, op(X) = X^T when transX.
// lda/ldb/ldc are row strides of A, B, C as stored.
void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);

// `batch` independent GEMMs, matrix i at A + i*strideA (likewise B, C).
void gemm_batched(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                  int lda, long strideA, const float *B, int ldb, long strideB, float beta,
                  float *C, int ldc, long strideC, int batch);

// gemm()'s argument rules (the CBLAS ones) for the other doors to the same
// products (the cuBLAS ones): breaking them is a programmer error, so it stops
// the process, naming `who` and the arguments.
void gemm_check_args(const char *who, int transA, int transB, int M, int N, int K, int lda, int ldb, int ldc);

// Where the two run, chosen once per process at start-up, before any compute
// (runtime_select_device does it from runtime.device): DEVICE_CPU, OpenBLAS;
// DEVICE_CUDA, cuBLAS on CUDA device `gpu` (an LD_CUDA_GEMM build only; cuBLAS
// is started here, so a GPU that cannot start fails now, not at the first
// product). Until it is called, the CPU. Calling it twice stops the process: a
// device changed mid-run would mix backends within a step. `gpu` is ignored
// for DEVICE_CPU. Returns -1 with e set when the device cannot be used.
int gemm_set_device(Device device, int gpu, Error *e);

// The CPU's library (runtime.cpu_gemm), chosen once per process at start-up
// (runtime_select_device does it), before any compute: CPU_GEMM_OPENBLAS, or
// CPU_GEMM_ONEDNN, where gemm() sends products of at least 2^21 multiply-adds
// to oneDNN's dnnl_sgemm and the smaller ones (and gemm_batched's) to OpenBLAS;
// CPU_GEMM_AUTO takes oneDNN where gemm_cpu_prefers_onednn (an Intel CPU with
// AVX-512, where it was measured faster; README, Performance), OpenBLAS
// elsewhere. Until it is called, OpenBLAS. Asking again for another library
// stops the process (a product changed mid-run); for the same one is harmless.
// Returns -1 with e set for "onednn" in a build without oneDNN.
int gemm_set_cpu_library(CpuGemm lib, Error *e);
// Products of fewer multiply-adds stay on OpenBLAS under CPU_GEMM_ONEDNN:
// dnnl_sgemm costs ~0.3 us more per call, 3-6x the time of the attention
// tiles' tiny products (tests/bench/bench_sgemm).
#define GEMM_ONEDNN_MIN_MACS 2097152.0
int gemm_cpu_prefers_onednn(void);

// "OpenBLAS", "oneDNN sgemm + OpenBLAS" or "cuBLAS": where gemm() runs now
// (start-up lines, tests); gemm_cpu_library_name: the first two only, the
// library of the products that stay on the CPU.
const char *gemm_backend_name(void);
const char *gemm_cpu_library_name(void);
#ifdef __cplusplus
}
#endif
#endif
