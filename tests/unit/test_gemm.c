// test_gemm.c — the GEMM door (gemm.h) against a naive double-precision loop,
// on the device this process selected. Random shapes, all four transpose
// combinations, row strides above the minimum, beta 0 (C starts as NaN: it
// must not be read) and 1, alpha != 1, and gemm_batched with padded and shared
// (stride 0) operands. Every result is within 1e-5 of the reference's largest
// magnitude, and nothing outside the M x N blocks (row padding, gaps) is touched.
//
// Built twice in an LD_CUDA_GEMM build, which links both backends:
// - test_gemm selects runtime.device "cpu" and checks that the door really runs
//   OpenBLAS: every result bit-identical to cblas_sgemm on the same operands.
//   It also checks that "cuda" is refused with a clear message where it cannot
//   run (a CPU build; a CUDA build on a machine without a CUDA device).
// - test_gemm_gpu (LD_TEST_ON_GPU, ctest label gpu): tests/gpu/on_gpu.c has
//   selected "cuda" before main, or skipped the test (exit 77) where there is no
//   CUDA device; here every result must also agree with cblas_sgemm within 1e-5.
// - test_gemm_onednn (LD_TEST_ONEDNN) selects runtime.cpu_gemm "onednn": the
//   products of at least 2^21 multiply-adds must agree with cblas_sgemm within
//   1e-5 and, taken together, differ from its bits (they ran elsewhere); the
//   smaller ones and gemm_batched stay bit-identical to it. Without oneDNN in
//   the build it checks that "onednn" is refused and reports SKIPPED.
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "kernels/gemm.h"
#include "kernels/runtime.h"
#include "testutil.h"
#ifdef LD_HAVE_CUDA_GEMM
#include "cuda/gemm_cublas.h"
#endif

#ifdef LD_TEST_ON_GPU
#define ON_GPU 1
#else
#define ON_GPU 0
#endif

#ifdef LD_TEST_ONEDNN
#define ON_ONEDNN 1
#else
#define ON_ONEDNN 0
#endif

#define TOL 1e-5
#define PAD_VALUE 12345.0f  // what padding and gaps hold before and must hold after

static double worst = 0;      // largest relative error against the naive loop, for the report line
static double worst_blas = 0; // largest relative difference from cblas_sgemm
static int n_large = 0, n_large_differ = 0;  // ON_ONEDNN: large products, and those not bit-identical to OpenBLAS

// Element (i, j) of op(X) for a row-major X with row stride ld.
static double at(const float *X, int ld, int trans, int i, int j) {
    return trans ? X[(size_t)j * ld + i] : X[(size_t)i * ld + j];
}

typedef struct {
    int tA, tB, M, N, K, lda, ldb, ldc, batch;
    long sA, sB, sC;  // batch strides (floats)
    float alpha, beta;
} Case;

// Stored extent of `count` matrices of `rows` rows at row stride ld, batch stride s.
static size_t extent(int rows, int ld, long s, int count) {
    size_t one = (size_t)rows * ld;
    return count > 1 ? (size_t)s * (count - 1) + one : one;
}

static void run_case(TuRng *rng, const Case *c) {
    int rA = c->tA ? c->K : c->M, rB = c->tB ? c->N : c->K;
    size_t nA = extent(rA, c->lda, c->sA, c->batch), nB = extent(rB, c->ldb, c->sB, c->batch);
    size_t nC = extent(c->M, c->ldc, c->sC, c->batch);
    float *A = xmalloc((nA ? nA : 1) * sizeof(float)), *B = xmalloc((nB ? nB : 1) * sizeof(float));
    float *C = xmalloc(nC * sizeof(float)), *C0 = xmalloc(nC * sizeof(float));
    tu_fill(rng, A, nA, -1, 1);
    tu_fill(rng, B, nB, -1, 1);
    for (size_t i = 0; i < nC; i++) C0[i] = PAD_VALUE;
    for (int b = 0; b < c->batch; b++)
        for (int i = 0; i < c->M; i++)
            for (int j = 0; j < c->N; j++)
                C0[b * c->sC + (size_t)i * c->ldc + j] = c->beta == 0.0f ? NAN : tu_uniform(rng, -1, 1);
    memcpy(C, C0, nC * sizeof(float));

    if (c->batch == 1)
        gemm(c->tA, c->tB, c->M, c->N, c->K, c->alpha, A, c->lda, B, c->ldb, c->beta, C, c->ldc);
    else
        gemm_batched(c->tA, c->tB, c->M, c->N, c->K, c->alpha, A, c->lda, c->sA, B, c->ldb, c->sB, c->beta,
                     C, c->ldc, c->sC, c->batch);
    // OpenBLAS itself on the same operands, one matrix at a time.
    float *Cb = xmalloc(nC * sizeof(float));
    memcpy(Cb, C0, nC * sizeof(float));
    for (int b = 0; b < c->batch; b++)
        cblas_sgemm(CblasRowMajor, c->tA ? CblasTrans : CblasNoTrans, c->tB ? CblasTrans : CblasNoTrans, c->M, c->N,
                    c->K, c->alpha, A + b * c->sA, c->lda, B + b * c->sB, c->ldb, c->beta, Cb + b * c->sC, c->ldc);
    // Bit patterns, so NaN padding or a -0 compare as stored.
    int same_as_blas = memcmp(C, Cb, nC * sizeof(float)) == 0;

    size_t nout = (size_t)c->batch * c->M * c->N;
    float *got = xmalloc((nout ? nout : 1) * sizeof(float)), *want = xmalloc((nout ? nout : 1) * sizeof(float));
    float *blas = xmalloc((nout ? nout : 1) * sizeof(float));
    int pad_ok = 1;
    for (int b = 0; b < c->batch; b++) {
        const float *a = A + b * c->sA, *bb = B + b * c->sB;
        for (int i = 0; i < c->M; i++)
            for (int j = 0; j < c->N; j++) {
                double s = 0;
                for (int k = 0; k < c->K; k++) s += at(a, c->lda, c->tA, i, k) * at(bb, c->ldb, c->tB, k, j);
                size_t ci = b * c->sC + (size_t)i * c->ldc + j, o = ((size_t)b * c->M + i) * c->N + j;
                double r = c->alpha * s + (c->beta == 0.0f ? 0.0 : (double)c->beta * C0[ci]);
                want[o] = (float)r;
                got[o] = C[ci];
                blas[o] = Cb[ci];
                C[ci] = PAD_VALUE;  // so the scan below sees only what lies outside the blocks
            }
    }
    for (size_t i = 0; i < nC; i++) pad_ok &= C[i] == PAD_VALUE;
    double err = tu_max_rel_err(got, want, nout, 1e-6), blas_diff = tu_max_rel_err(got, blas, nout, 1e-6);
    if (err > worst) worst = err;
    if (blas_diff > worst_blas) worst_blas = blas_diff;
    char tag[320];  // room for every field at its widest (-Wformat-truncation in Release)
    snprintf(tag, sizeof tag, "%s%s M%d N%d K%d lda%d ldb%d ldc%d alpha %g beta %g batch %d sA %ld sB %ld sC %ld",
             c->tA ? "T" : "N", c->tB ? "T" : "N", c->M, c->N, c->K, c->lda, c->ldb, c->ldc, c->alpha, c->beta,
             c->batch, c->sA, c->sB, c->sC);
    EXPECT(err <= TOL, "%s: relative error %.3g > %g", tag, err, TOL);
    EXPECT(pad_ok, "%s: wrote outside the M x N blocks", tag);
    int large = c->batch == 1 && (double)c->M * c->N * c->K >= GEMM_ONEDNN_MIN_MACS;
    if (ON_GPU) {
        EXPECT(blas_diff <= TOL, "%s: cuBLAS and OpenBLAS differ by %.3g (relative) > %g", tag, blas_diff, TOL);
    } else if (ON_ONEDNN && large) {
        EXPECT(blas_diff <= TOL, "%s: oneDNN and OpenBLAS differ by %.3g (relative) > %g", tag, blas_diff, TOL);
        n_large++, n_large_differ += !same_as_blas;  // on oneDNN: the K = 5000 products at least, by blocking
    } else
        EXPECT(same_as_blas, "%s: runtime.device \"cpu\", but not bit-identical to cblas_sgemm (largest "
               "relative difference %.3g): the product did not run on OpenBLAS", tag, blas_diff);
    free(A), free(B), free(C), free(C0), free(Cb), free(got), free(want), free(blas);
}

// gemm() called from the threads of a parallel region, as the attention
// kernel calls it per (sample, head): each thread's large product (2^21+
// multiply-adds, oneDNN's under "onednn") against cblas_sgemm on the same
// operands, called the same way, within 1e-5; on the CPU device with
// OpenBLAS, bit for bit. The reference runs in a parallel region too: there
// OpenBLAS's OpenMP build multiplies on one thread, and outside it on two,
// which on its Haswell kernels rounds differently (seen on a Zen 5 EPYC).
static void concurrent_products(TuRng *rng) {
    enum { NT = 4, M = 96, N = 80, K = 300 };  // 2.3 M multiply-adds each
    size_t nA = (size_t)M * K, nB = (size_t)K * N, nC = (size_t)M * N;
    float *A = xmalloc(NT * nA * sizeof(float)), *B = xmalloc(NT * nB * sizeof(float));
    float *C = xmalloc(NT * nC * sizeof(float)), *Cb = xmalloc(NT * nC * sizeof(float));
    tu_fill(rng, A, NT * nA, -1, 1);
    tu_fill(rng, B, NT * nB, -1, 1);
#pragma omp parallel for num_threads(2) schedule(static, 1)
    for (int t = 0; t < NT; t++)
        gemm(0, t % 2, M, N, K, 1.0f, A + t * nA, K, B + t * nB, t % 2 ? K : N, 0.0f, C + t * nC, N);
#pragma omp parallel for num_threads(2) schedule(static, 1)
    for (int t = 0; t < NT; t++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, t % 2 ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A + t * nA, K,
                    B + t * nB, t % 2 ? K : N, 0.0f, Cb + t * nC, N);
    double diff = tu_max_rel_err(C, Cb, NT * nC, 1e-6);
    if (ON_GPU || ON_ONEDNN)
        EXPECT(diff <= TOL, "products from a parallel region differ from cblas_sgemm by %.3g > %g", diff, TOL);
    else
        EXPECT(memcmp(C, Cb, NT * nC * sizeof(float)) == 0, "products from a parallel region are not "
               "bit-identical to cblas_sgemm (largest relative difference %.3g)", diff);
    free(A), free(B), free(C), free(Cb);
}

// Row strides of op(A), op(B), C: the minimum plus `pad` (max(1, cols) as BLAS asks).
static void set_lds(Case *c, int pad) {
    int cA = c->tA ? c->M : c->K, cB = c->tB ? c->K : c->N;
    c->lda = (cA > 1 ? cA : 1) + pad;
    c->ldb = (cB > 1 ? cB : 1) + pad;
    c->ldc = (c->N > 1 ? c->N : 1) + pad;
}

#if !ON_GPU && !ON_ONEDNN
// Where runtime.device = "cuda" cannot run, it is refused with a message
// naming the key and the way out, and the door stays on the CPU.
static void cuda_refused_here(void) {
#ifdef LD_HAVE_CUDA_GEMM
    Error ce;
    int ndev = gpu_device_count(&ce);
    if (ndev > 0) return;  // it can run here: test_gemm_gpu covers it
    const char *why = ndev == 0 ? "no CUDA device found" : "CUDA does not work here";
#else
    const char *why = "this build has no GPU backend (configure with -DLD_CUDA_GEMM=ON";
#endif
    Error e = {0};
    char what[320] = "untouched";
    int rc = runtime_select_device(DEVICE_CUDA, PRECISION_FP32, GPU_CONV_AUTO, GPU_ATTN_AUTO, CPU_GEMM_OPENBLAS, 0, NULL, NULL, what,
                                   sizeof what, &e);
    EXPECT(rc < 0, "runtime.device \"cuda\" accepted where it cannot run");
    EXPECT(strstr(e.msg, "runtime.device = \"cuda\": ") == e.msg && strstr(e.msg, why) &&
               strstr(e.msg, "use runtime.device = \"cpu\""),
           "message for \"cuda\" here: \"%s\" (want it to name the key, say \"%s\" and the way out)", e.msg, why);
    EXPECT(runtime_check_device(DEVICE_CUDA, &e) < 0, "runtime_check_device accepts \"cuda\" here");
    EXPECT(!strcmp(what, "untouched"), "start-up description written on failure: %s", what);
    EXPECT(!strcmp(gemm_backend_name(), "OpenBLAS"), "backend after the refusal: %s", gemm_backend_name());
    printf("test_gemm: runtime.device \"cuda\" refused here: %s\n", e.msg);
}
#endif

int main(void) {
    char what[320] = "";
#if ON_ONEDNN
    Error e = {0};
#ifndef LD_HAVE_DNNL
    EXPECT(runtime_select_device(DEVICE_CPU, PRECISION_FP32, GPU_CONV_AUTO, GPU_ATTN_AUTO, CPU_GEMM_ONEDNN, 0, NULL, NULL, what,
                                 sizeof what, &e) < 0 &&
               strstr(e.msg, "runtime.cpu_gemm = \"onednn\": this build has no oneDNN"),
           "runtime.cpu_gemm \"onednn\" without oneDNN: \"%s\"", e.msg);
    if (tu_report("test_gemm_onednn")) return 1;
    printf("SKIPPED: this build has no oneDNN (runtime.cpu_gemm \"onednn\" refused: %s)\n", e.msg);
    return 77;
#endif
    EXPECT(runtime_select_device(DEVICE_CPU, PRECISION_FP32, GPU_CONV_AUTO, GPU_ATTN_AUTO, CPU_GEMM_ONEDNN, 0, NULL, NULL, what,
                                 sizeof what, &e) == 0,
           "runtime.cpu_gemm \"onednn\": %s", e.msg);
    EXPECT(!strcmp(gemm_backend_name(), "oneDNN sgemm + OpenBLAS"), "runtime.cpu_gemm \"onednn\" runs on %s",
           gemm_backend_name());
#elif ON_GPU
    // tests/gpu/on_gpu.c selected "cuda" before main (or skipped).
    EXPECT(!strcmp(gemm_backend_name(), "cuBLAS"), "test_gemm_gpu runs on %s, not cuBLAS", gemm_backend_name());
    snprintf(what, sizeof what, "cuBLAS");
#else
    cuda_refused_here();
    Error e = {0};
    EXPECT(runtime_select_device(DEVICE_CPU, PRECISION_FP32, GPU_CONV_AUTO, GPU_ATTN_AUTO, CPU_GEMM_OPENBLAS, 0, NULL, NULL, what,
                                 sizeof what, &e) == 0,
           "runtime.device \"cpu\": %s", e.msg);
    EXPECT(!strcmp(gemm_backend_name(), "OpenBLAS"), "runtime.device \"cpu\" runs on %s", gemm_backend_name());
#endif
    printf("test_gemm: %s\n", what);
    TuRng rng;
    tu_rng_seed(&rng, 20240611);
    // Edge shapes, odd shapes, attention-like and conv-like shapes, one larger.
    static const int shapes[][3] = {{1, 1, 1}, {1, 7, 3},   {5, 1, 9},     {3, 4, 0},     {17, 13, 29},
                                    {64, 8, 64}, {16, 1024, 144}, {33, 65, 257}, {128, 96, 200},
                                    // 2^21 multiply-adds and more (oneDNN's under runtime.cpu_gemm "onednn"):
                                    // square-ish, a weight gradient's long K, many rows of a linear layer
                                    {160, 130, 110}, {64, 64, 600}, {520, 70, 64}, {8, 64, 5000}};
    static const float alphas[] = {1.0f, 0.5f, -1.25f};
    int ns = (int)(sizeof shapes / sizeof shapes[0]), ncase = 0;
    for (int s = 0; s < ns; s++)
        for (int t = 0; t < 4; t++)
            for (int beta = 0; beta <= 1; beta++) {
                Case c = {.tA = t & 1, .tB = t >> 1, .M = shapes[s][0], .N = shapes[s][1], .K = shapes[s][2],
                          .batch = 1, .alpha = alphas[(s + t) % 3], .beta = (float)beta};
                // Alternate minimal and padded strides; a wide pad like a head's slice of a C-wide row.
                set_lds(&c, (s + t + beta) % 3 == 0 ? 0 : (s % 2 ? 3 : 40));
                run_case(&rng, &c);
                ncase++;
            }
    // Batched: tight strides, gaps between matrices, and a shared A or B.
    static const int bshapes[][4] = {{2, 3, 4, 2}, {17, 13, 29, 3}, {64, 8, 64, 5}, {31, 40, 9, 4}};
    int nb = (int)(sizeof bshapes / sizeof bshapes[0]);
    for (int s = 0; s < nb; s++)
        for (int t = 0; t < 4; t++)
            for (int beta = 0; beta <= 1; beta++)
                for (int layout = 0; layout < 3; layout++) {
                    Case c = {.tA = t & 1, .tB = t >> 1, .M = bshapes[s][0], .N = bshapes[s][1], .K = bshapes[s][2],
                              .batch = bshapes[s][3], .alpha = alphas[(s + layout) % 3], .beta = (float)beta};
                    set_lds(&c, layout == 0 ? 0 : 2);
                    int rA = c.tA ? c.K : c.M, rB = c.tB ? c.N : c.K, gap = layout == 0 ? 0 : 5;
                    c.sA = (long)rA * c.lda + gap;
                    c.sB = (long)rB * c.ldb + gap;
                    c.sC = (long)c.M * c.ldc + gap;
                    if (layout == 2) {  // one operand shared by the whole batch
                        if (s % 2) c.sA = 0;
                        else c.sB = 0;
                    }
                    run_case(&rng, &c);
                    ncase++;
                }
    concurrent_products(&rng);
    printf("test_gemm: %d cases on %s, largest relative error %.3g (tolerance %g), largest difference from "
           "cblas_sgemm %.3g (%s)\n", ncase, gemm_backend_name(), worst, TOL, worst_blas,
           ON_GPU || ON_ONEDNN ? "tolerance 1e-05" : "must be 0");
    if (ON_ONEDNN) {
        printf("test_gemm_onednn: %d of the %d products of 2^21+ multiply-adds differ from OpenBLAS's bits\n",
               n_large_differ, n_large);
        EXPECT(n_large > 0 && n_large_differ > 0, "none of the %d large products differs from OpenBLAS's bits: "
               "they did not run on oneDNN", n_large);
    }
    return tu_report(ON_GPU ? "test_gemm_gpu" : ON_ONEDNN ? "test_gemm_onednn" : "test_gemm");
}
