// bench_sgemm.c — gemm() (OpenBLAS, what every product runs on the CPU) against
// oneDNN's dnnl_sgemm, which this build links for its convolutions anyway, at
// the linear layers' shapes: per shape the forward Y = X W^T, backward-data
// dX = dY W and backward-weights dW = dY^T X (rows N tokens, C in, OC out),
// for the default teacher's transformers (batch 32: 8x8 and 4x4 latents, the
// feed-forward's 64 -> 512 and 256 -> 64, cross-attention's 8 context tokens of
// 32) and SD-1.5's at 32x32 latents, batch 2, plus the 1024^3 square the other
// benches quote; then ("tiny") the teacher's per-tile attention products (head
// dim 4: S = Q K^T, O = P V for 64 and 16 queries) and per-sample 1x1
// convolutions, where a call's fixed cost shows. Both results are checked
// against each other, then the two are interleaved per repeat and the best
// repeat counts. A measurement for choosing the GEMM library, not a test.
// usage: bench_sgemm [REPEATS (5)] [THREADS (1)] [teacher|sd15|all]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/gemm.h"
#include "kernels/runtime.h"

#include "bench_args.h"

#ifdef LD_HAVE_DNNL
#include <dnnl.h>

typedef struct {
    const char *set;
    int N, C, OC;
} Shape;

static const Shape shapes[] = {
    {"square", 1024, 1024, 1024},
    {"teacher", 2048, 64, 64},   {"teacher", 2048, 64, 512}, {"teacher", 2048, 256, 64},
    {"teacher", 512, 64, 64},    {"teacher", 512, 64, 512},  {"teacher", 512, 256, 64},
    {"teacher", 256, 32, 64},
    {"sd15", 2048, 320, 320},    {"sd15", 2048, 320, 2560},  {"sd15", 2048, 1280, 320},
    {"sd15", 512, 640, 640},     {"sd15", 512, 640, 5120},   {"sd15", 512, 2560, 640},
    {"sd15", 128, 1280, 1280},   {"sd15", 128, 1280, 10240}, {"sd15", 128, 5120, 1280},
    {"sd15", 154, 768, 320},
};

// Tiny products, as C[M,N] = A[M,K] op(B): (M, N, K, transB).
static const int tiny[][4] = {{64, 64, 4, 1}, {64, 4, 64, 0}, {16, 16, 4, 1}, {16, 4, 16, 0},
                              {32, 1024, 16, 0}, {32, 256, 48, 0}, {64, 64, 96, 0}, {128, 256, 128, 0}};

static float *rand_buf(size_t n, uint64_t stream) {
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = rng_uniform(7, stream, i) - 0.5f;
    return p;
}

// One of the three products of a shape: C[M,N] = op(A) op(B), row-major.
typedef struct {
    int ta, tb, M, N, K, lda, ldb;
    const float *A, *B;
} Prod;

static void run(int lib, const Prod *p, float *C) {
    if (lib == 0) {
        gemm(p->ta, p->tb, p->M, p->N, p->K, 1.0f, p->A, p->lda, p->B, p->ldb, 0.0f, C, p->N);
    } else {
        dnnl_status_t st = dnnl_sgemm(p->ta ? 'T' : 'N', p->tb ? 'T' : 'N', p->M, p->N, p->K, 1.0f, p->A, p->lda,
                                      p->B, p->ldb, 0.0f, C, p->N);
        if (st != dnnl_success) FATAL("dnnl_sgemm failed: status %d", (int)st);
    }
}

int main(int argc, char **argv) {
    int reps, threads;
    const char *which;
    bench_args(argc, argv, &reps, &threads, &which);
    const dnnl_version_t *v = dnnl_version();
    printf("bench_sgemm: %d thread(s), best of %d, interleaved; gemm() = %s, oneDNN %d.%d.%d dnnl_sgemm\n", threads,
           reps, gemm_backend_name(), v->major, v->minor, v->patch);
    printf("%-8s %5s %5s %5s  %-4s %10s %8s %10s %8s %7s\n", "set", "N", "C", "OC", "prod", "openblas", "GFLOP/s",
           "dnnl", "GFLOP/s", "d/o");
    double tot[2][2] = {{0, 0}, {0, 0}};  // [teacher, sd15][openblas, dnnl]
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const Shape *sh = &shapes[s];
        if (strcmp(which, "all") && strcmp(which, sh->set) && strcmp(sh->set, "square")) continue;
        int N = sh->N, C = sh->C, OC = sh->OC;
        float *X = rand_buf((size_t)N * C, 1), *W = rand_buf((size_t)OC * C, 2), *dY = rand_buf((size_t)N * OC, 3);
        float *c0 = xmalloc((size_t)(N > OC ? N : OC) * (C > OC ? C : OC) * sizeof(float));
        float *c1 = xmalloc((size_t)(N > OC ? N : OC) * (C > OC ? C : OC) * sizeof(float));
        Prod prods[3] = {
            {0, 1, N, OC, C, C, C, X, W},      // forward: Y = X W^T
            {0, 0, N, C, OC, OC, C, dY, W},    // backward-data: dX = dY W
            {1, 0, OC, C, N, OC, C, dY, X},    // backward-weights: dW = dY^T X
        };
        const char *pn[3] = {"fwd", "bwdd", "bwdw"};
        for (int k = 0; k < 3; k++) {
            const Prod *p = &prods[k];
            size_t nc = (size_t)p->M * p->N;
            run(0, p, c0), run(1, p, c1);
            double err = 0, scale = 1e-30;
            for (size_t i = 0; i < nc; i++) {
                double d = fabs((double)c0[i] - c1[i]);
                if (d > err) err = d;
                if (fabs(c0[i]) > scale) scale = fabs(c0[i]);
            }
            if (err / scale > 1e-5) FATAL("%s N%d C%d OC%d %s: dnnl_sgemm differs from gemm() by %.3g", sh->set, N, C, OC,
                                          pn[k], err / scale);
            double best[2] = {1e30, 1e30};
            for (int r = 0; r < reps; r++)
                for (int lib = 0; lib < 2; lib++) {
                    double t0 = now_s();
                    run(lib, p, lib ? c1 : c0);
                    double dt = now_s() - t0;
                    if (dt < best[lib]) best[lib] = dt;
                }
            double fl = 2.0 * p->M * p->N * (double)p->K / 1e9;
            printf("%-8s %5d %5d %5d  %-4s %8.3f ms %8.1f %8.3f ms %8.1f %7.2f\n", sh->set, N, C, OC, pn[k],
                   best[0] * 1e3, fl / best[0], best[1] * 1e3, fl / best[1], best[1] / best[0]);
            int t = !strcmp(sh->set, "teacher") ? 0 : !strcmp(sh->set, "sd15") ? 1 : -1;
            if (t >= 0) tot[t][0] += best[0], tot[t][1] += best[1];
        }
        free(X), free(W), free(dY), free(c0), free(c1);
    }
    if (!strcmp(which, "all") || !strcmp(which, "teacher")) {
        printf("%-8s %5s %5s %5s  %-4s %10s %10s %7s\n", "tiny", "M", "N", "K", "op", "openblas", "dnnl", "d/o");
        for (size_t s = 0; s < sizeof tiny / sizeof tiny[0]; s++) {
            int M = tiny[s][0], N = tiny[s][1], K = tiny[s][2], tb = tiny[s][3];
            float *A = rand_buf((size_t)M * K, 4), *B = rand_buf((size_t)K * N, 5), *C = xmalloc((size_t)M * N * 4);
            Prod p = {0, tb, M, N, K, K, tb ? K : N, A, B};
            int calls = (long)M * N * K < 100000 ? 2000 : 200;
            double best[2] = {1e30, 1e30};
            for (int r = 0; r < reps; r++)
                for (int lib = 0; lib < 2; lib++) {
                    double t0 = now_s();
                    for (int i = 0; i < calls; i++) run(lib, &p, C);
                    double dt = (now_s() - t0) / calls;
                    if (dt < best[lib]) best[lib] = dt;
                }
            printf("%-8s %5d %5d %5d  %-4s %7.2f us %7.2f us %7.2f\n", "tiny", M, N, K, tb ? "NT" : "NN",
                   best[0] * 1e6, best[1] * 1e6, best[1] / best[0]);
            free(A), free(B), free(C);
        }
    }
    for (int t = 0; t < 2; t++)
        if (tot[t][0] > 0)
            printf("%s, every shape's three products once: openblas %.2f ms, dnnl_sgemm %.2f ms (%.2fx)\n",
                   t ? "sd15" : "teacher", tot[t][0] * 1e3, tot[t][1] * 1e3, tot[t][1] / tot[t][0]);
    return 0;
}
#else
int main(void) {
    printf("bench_sgemm: this build has no oneDNN (LD_HAVE_DNNL), so there is no dnnl_sgemm to compare\n");
    return 0;
}
#endif
