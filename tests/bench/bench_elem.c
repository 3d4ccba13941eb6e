// bench_elem.c — the non-GEMM kernels of issue #13 against the code they
// replaced, interleaved in one run (old, new, old, new, ...; best of REPEATS),
// so the ratio holds on a loaded machine where the absolute times do not:
//  * SiLU forward/backward: libm expf vs vecmath.h's ld_expf;
//  * GEGLU forward/backward: libm erff/expf vs ld_phif/ld_normal_pdf;
//  * GroupNorm then SiLU: the old scalar-double GroupNorm + libm SiLU as two
//    kernels (a normalised tensor written and read back) vs groupnorm_silu_*;
//  * the feed-forward's first linear layer (into GEGLU) with its bias, forward
//    and backward: the bias loops on the SSE2 baseline (f2ec810) vs cloned.
// The "old" loops below are copies of src/kernels/{activations,groupnorm}.c at
// c1e873d (before this change), kept here only to be timed.
// usage: bench_elem [THREADS] [REPEATS]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "kernels/runtime.h"

// ---- the replaced code (c1e873d)
static inline float old_sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
static void old_silu_forward(float *out, const float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = x[i] * old_sigmoidf(x[i]);
}
static void old_silu_backward(float *dx, const float *dout, const float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float s = old_sigmoidf(x[i]);
        dx[i] += dout[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}
static inline float old_gelu1(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f)); }
static inline float old_gelu_grad1(float x) {
    return 0.5f * (1.0f + erff(x * 0.70710678118654752440f)) + x * 0.39894228040143267794f * expf(-0.5f * x * x);
}
static void old_geglu_forward(float *out, const float *x, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *hid = x + (size_t)n * 2 * H, *gate = hid + H;
        float *o = out + (size_t)n * H;
        for (int j = 0; j < H; j++) o[j] = hid[j] * old_gelu1(gate[j]);
    }
}
static void old_geglu_backward(float *dx, const float *dout, const float *x, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *hid = x + (size_t)n * 2 * H, *gate = hid + H;
        const float *d = dout + (size_t)n * H;
        float *dh = dx + (size_t)n * 2 * H, *dg = dh + H;
        for (int j = 0; j < H; j++) {
            dh[j] += d[j] * old_gelu1(gate[j]);
            dg[j] += d[j] * hid[j] * old_gelu_grad1(gate[j]);
        }
    }
}
static void old_groupnorm_forward(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                              const float *beta, int B, int C, int HW, int G, float eps) {
    int cg = C / G;
    size_t gsize = (size_t)cg * HW;
#pragma omp parallel for schedule(static)
    for (int bg = 0; bg < B * G; bg++) {
        // Groups are contiguous in NCHW: channels g*cg .. g*cg+cg-1 of sample b.
        const float *xg = x + (size_t)bg * gsize;
        float *og = out + (size_t)bg * gsize;
        double s = 0.0;
        for (size_t i = 0; i < gsize; i++) s += xg[i];
        double m = s / (double)gsize;
        double v = 0.0;  // two-pass variance: no cancellation for large means
        for (size_t i = 0; i < gsize; i++) {
            double d = xg[i] - m;
            v += d * d;
        }
        v /= (double)gsize;
        double r = 1.0 / sqrt(v + eps);
        mean[bg] = (float)m;
        rstd[bg] = (float)r;
        int g = bg % G;
        for (int j = 0; j < cg; j++) {
            int c = g * cg + j;
            // Centre before scaling: folding the mean into a shift would cancel
            // badly when |mean| >> std.
            float mf = (float)m, sc = (float)r * gamma[c], sh = beta[c];
            const float *xc = xg + (size_t)j * HW;
            float *oc = og + (size_t)j * HW;
            for (int i = 0; i < HW; i++) oc[i] = (xc[i] - mf) * sc + sh;
        }
    }
}

static void old_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                        const float *mean, const float *rstd, const float *gamma, int B, int C,
                        int HW, int G) {
    int cg = C / G;
    size_t gsize = (size_t)cg * HW;
    if (dgamma || dbeta) {
        // One channel per iteration, samples in order: deterministic.
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            double sg = 0.0, sb = 0.0;
            for (int b = 0; b < B; b++) {
                int bg = b * G + c / cg;
                double m = mean[bg], r = rstd[bg];
                const float *xc = x + ((size_t)b * C + c) * HW;
                const float *dc = dout + ((size_t)b * C + c) * HW;
                for (int i = 0; i < HW; i++) {
                    sg += dc[i] * ((xc[i] - m) * r);
                    sb += dc[i];
                }
            }
            if (dgamma) dgamma[c] += (float)sg;
            if (dbeta) dbeta[c] += (float)sb;
        }
    }
    if (!dx) return;
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * gamma, over the group.
#pragma omp parallel for schedule(static)
    for (int bg = 0; bg < B * G; bg++) {
        int g0 = (bg % G) * cg;
        double m = mean[bg], r = rstd[bg];
        const float *xg = x + (size_t)bg * gsize;
        const float *dg = dout + (size_t)bg * gsize;
        float *dxg = dx + (size_t)bg * gsize;
        double sum_g = 0.0, sum_gx = 0.0;
        for (int j = 0; j < cg; j++) {
            double gm = gamma[g0 + j];
            for (int i = 0; i < HW; i++) {
                size_t t = (size_t)j * HW + i;
                double gv = dg[t] * gm;
                sum_g += gv;
                sum_gx += gv * ((xg[t] - m) * r);
            }
        }
        double a = sum_g / (double)gsize, bcoef = sum_gx / (double)gsize;
        for (int j = 0; j < cg; j++) {
            float gm = gamma[g0 + j];
            for (int i = 0; i < HW; i++) {
                size_t t = (size_t)j * HW + i;
                double xh = (xg[t] - m) * r;
                dxg[t] += (float)(r * (dg[t] * gm - a - xh * bcoef));
            }
        }
    }
}

// linear.c at f2ec810: the bias seeding and the bias gradient, uncloned
static void old_linear_forward(float *out, const float *x, const float *w, const float *b, int N, int C, int OC) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] = b[o];
    gemm(0, 1, N, OC, C, 1.0f, x, C, w, C, 1.0f, out, OC);
}
static void old_linear_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                                int N, int C, int OC) {
    gemm(0, 0, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dx, C);
    gemm(1, 0, OC, C, N, 1.0f, dout, OC, x, C, 1.0f, dw, C);
    int nblk = (OC + 63) / 64;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int o0 = blk * 64, o1 = o0 + 64 < OC ? o0 + 64 : OC;
        double sum[64] = {0};
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * OC;
            for (int o = o0; o < o1; o++) sum[o - o0] += d[o];
        }
        for (int o = o0; o < o1; o++) db[o] += (float)sum[o - o0];
    }
}

// ---- timing
static void fill(float *p, size_t n, float lo, float hi, unsigned long long *s) {
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = lo + (hi - lo) * (float)((*s >> 40) / 16777216.0);
    }
}

typedef struct {
    int B, C, HW, G, N, H;  // GroupNorm [B,C,HW] / G groups; GEGLU [N, 2H]
    float *x, *y, *t, *dy, *dx, *gamma, *beta, *mean, *rstd, *dg, *db;
    float *w, *dw, *lb, *ldb;  // the linear layer [N, H/4] -> [N, 2H] (GEGLU's input)
} Bufs;

typedef enum { K_SILU_F, K_SILU_B, K_GEGLU_F, K_GEGLU_B, K_GNSILU_F, K_GNSILU_B, K_LIN_F, K_LIN_B, K_COUNT } Kernel;
static const char *kname[K_COUNT] = {"silu_forward", "silu_backward", "geglu_forward", "geglu_backward",
                                     "groupnorm+silu forward", "groupnorm+silu backward", "linear+bias forward",
                                     "linear+bias backward"};

static void run(Kernel k, int fresh, Bufs *b) {
    size_t n = (size_t)b->B * b->C * b->HW;
    switch (k) {
    case K_SILU_F: (fresh ? silu_forward : old_silu_forward)(b->y, b->x, n); break;
    case K_SILU_B: (fresh ? silu_backward : old_silu_backward)(b->dx, b->dy, b->x, n); break;
    case K_GEGLU_F: (fresh ? geglu_forward : old_geglu_forward)(b->y, b->x, b->N, b->H); break;
    case K_GEGLU_B: (fresh ? geglu_backward : old_geglu_backward)(b->dx, b->dy, b->x, b->N, b->H); break;
    case K_GNSILU_F:
        if (fresh) {
            groupnorm_silu_forward(b->y, b->mean, b->rstd, b->x, b->gamma, b->beta, b->B, b->C, b->HW, b->G, 1e-5f);
        } else {  // as resnet.c did: normalised tensor t, then SiLU into y
            old_groupnorm_forward(b->t, b->mean, b->rstd, b->x, b->gamma, b->beta, b->B, b->C, b->HW, b->G, 1e-5f);
            old_silu_forward(b->y, b->t, n);
        }
        break;
    case K_GNSILU_B:
        if (fresh) {
            groupnorm_silu_backward(b->dx, b->dg, b->db, b->dy, b->x, b->mean, b->rstd, b->gamma, b->beta, b->B, b->C,
                                    b->HW, b->G);
        } else {  // SiLU's gradient into a zeroed buffer, then GroupNorm's (t = saved normalised x)
            memset(b->y, 0, n * sizeof(float));
            old_silu_backward(b->y, b->dy, b->t, n);
            old_groupnorm_backward(b->dx, b->dg, b->db, b->y, b->x, b->mean, b->rstd, b->gamma, b->B, b->C, b->HW,
                                   b->G);
        }
        break;
    case K_LIN_F: (fresh ? linear_forward : old_linear_forward)(b->y, b->x, b->w, b->lb, b->N, b->H / 4, 2 * b->H); break;
    case K_LIN_B:
        (fresh ? linear_backward : old_linear_backward)(b->dx, b->dw, b->ldb, b->dy, b->x, b->w, b->N, b->H / 4,
                                                        2 * b->H);
        break;
    default: break;
    }
}

static void bench_shape(const char *tag, int B, int C, int HW, int G, int N, int H, int reps) {
    Bufs b = {.B = B, .C = C, .HW = HW, .G = G, .N = N, .H = H};
    size_t n = (size_t)B * C * HW, ng = (size_t)N * 2 * H;
    if (ng > n) n = ng;
    unsigned long long s = 1;
    float **all[] = {&b.x, &b.y, &b.t, &b.dy, &b.dx};
    for (int i = 0; i < 5; i++) {
        *all[i] = xmalloc(n * sizeof(float));
        fill(*all[i], n, -4, 4, &s);
    }
    b.gamma = xmalloc(C * sizeof(float)), b.beta = xmalloc(C * sizeof(float));
    b.dg = xcalloc(C, sizeof(float)), b.db = xcalloc(C, sizeof(float));
    fill(b.gamma, C, 0.5f, 1.5f, &s), fill(b.beta, C, -1, 1, &s);
    b.mean = xmalloc((size_t)B * G * sizeof(float)), b.rstd = xmalloc((size_t)B * G * sizeof(float));
    size_t nw = (size_t)2 * H * (H / 4);
    b.w = xmalloc(nw * sizeof(float)), b.dw = xcalloc(nw, sizeof(float));
    b.lb = xmalloc((size_t)2 * H * sizeof(float)), b.ldb = xcalloc((size_t)2 * H, sizeof(float));
    fill(b.w, nw, -0.1f, 0.1f, &s), fill(b.lb, (size_t)2 * H, -1, 1, &s);
    printf("%s: GroupNorm [%d,%d,%d] G %d, SiLU over it; GEGLU [%d, 2x%d], after linear [%d, %d] -> [%d, %d]\n", tag,
           B, C, HW, G, N, H, N, H / 4, N, 2 * H);
    for (int k = 0; k < K_COUNT; k++) {
        double best[2] = {1e30, 1e30};
        for (int f = 0; f < 2; f++) run(k, f, &b);  // warm: first touch, caches
        for (int r = 0; r < reps; r++)
            for (int f = 0; f < 2; f++) {
                double t0 = now_s();
                run(k, f, &b);
                double dt = now_s() - t0;
                if (dt < best[f]) best[f] = dt;
            }
        printf("  %-24s old %8.3f ms  new %8.3f ms  new/old %.2f\n", kname[k], best[0] * 1e3, best[1] * 1e3,
               best[1] / best[0]);
    }
    for (int i = 0; i < 5; i++) free(*all[i]);
    free(b.gamma), free(b.beta), free(b.dg), free(b.db), free(b.mean), free(b.rstd);
    free(b.w), free(b.dw), free(b.lb), free(b.ldb);
}

int main(int argc, char **argv) {
    runtime_fix_blas_kernels(argv);
    int threads = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 5;
    if (threads < 1 || reps < 1) {
        fprintf(stderr, "bench_elem: THREADS and REPEATS must be positive\n");
        return 2;
    }
    threads = runtime_set_threads(threads, 1);
    printf("bench_elem: %d thread(s), best of %d, old and new interleaved\n", threads, reps);
    // the default teacher at batch 32: level 0 (16 ch, 32x32), GEGLU of level 2 (64 ch at 8x8 -> 4*64 hidden)
    bench_shape("teacher b32", 32, 16, 1024, 8, 32 * 64, 256, reps);
    // SD-1.5's first level at 32x32 latents, batch 2: 320 channels, 32 groups, GEGLU 1280 hidden
    bench_shape("sd15 32x32 b2", 2, 320, 1024, 32, 2 * 1024, 1280, reps);
    return 0;
}
