// gemm.h — the one door to matrix multiplication. Everything that is a GEMM
// (convolutions via im2col, linears, attention) calls these, so a GPU backend
// replaces them in one place. Row-major, like the rest of the core.
#ifndef LD_GEMM_H
#define LD_GEMM_H

// C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, op(X) = X^T when transX.
// lda/ldb/ldc are row strides of A, B, C as stored.
void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);

// `batch` independent GEMMs, matrix i at A + i*strideA (likewise B, C).
void gemm_batched(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                  int lda, long strideA, const float *B, int ldb, long strideB, float beta,
                  float *C, int ldc, long strideC, int batch);
#endif
