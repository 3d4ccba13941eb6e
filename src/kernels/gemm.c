// gemm.c — CPU GEMM through OpenBLAS's CBLAS interface.
#include "kernels/gemm.h"

#include <cblas.h>

void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_batched(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                  int lda, long strideA, const float *B, int ldb, long strideB, float beta,
                  float *C, int ldc, long strideC, int batch) {
    for (int i = 0; i < batch; i++)
        gemm(transA, transB, M, N, K, alpha, A + i * strideA, lda, B + i * strideB, ldb, beta,
             C + i * strideC, ldc);
}
