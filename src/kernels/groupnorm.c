// groupnorm.c — GroupNorm over [B, C, HW] with G groups and a per-channel
// affine, as torch.nn.GroupNorm (biased variance), alone or fused with the
// SiLU that follows it in every ResNet block and in the U-Net's output head.
// Forward saves each group's mean and 1/sqrt(var + eps); backward is the
// analytic normalisation gradient. Forward's statistics (group_sum) and
// backward's sums (row_sums) run in float blocks gathered in double, each
// combined in a fixed order: the result does not depend on the thread count
// or on alignment.
//
// The fused pair saves less: forward writes only silu(gn(x)) (the next conv
// needs it) and mean/rstd; backward recomputes gn(x) from x, mean and rstd
// instead of reading a saved copy, so no normalised tensor is kept.
#include <math.h>

#include "core/common.h"
#include "kernels/kernels.h"
#include "kernels/vecmath.h"

// Sums run in float over RLANES lanes for RBLOCK elements at a time, then go
// into double lanes: float lanes as wide as an AVX-512 register keep a loop at
// full vector width (double lanes with a conversion per element run at half of
// it), and a block of 8 adds per float lane loses no accuracy that shows
// against a double reference. The order is fixed, so a sum does not depend on
// the thread count.
#define RLANES 16
#define RBLOCK (8 * RLANES)

// Forward's statistics of one group, x[0..n): sum of x (sq 0) or of (x - m)^2
// (sq 1; m is the group mean rounded to float, which adds (mean - m)^2, a float
// rounding of the mean squared, to the variance).
LD_INLINE double group_sum(const float *x, size_t n, float m, int sq) {
    double acc[RLANES] = {0};
    size_t i = 0, vec_end = n - n % RLANES;
    while (i < vec_end) {
        float a[RLANES] = {0};
        size_t end = i + RBLOCK < vec_end ? i + RBLOCK : vec_end;
        if (sq) {
            for (; i < end; i += RLANES) {
#pragma omp simd
                for (int l = 0; l < RLANES; l++) {
                    float d = x[i + l] - m;
                    a[l] += d * d;
                }
            }
        } else {
            for (; i < end; i += RLANES) {
#pragma omp simd
                for (int l = 0; l < RLANES; l++) a[l] += x[i + l];
            }
        }
#pragma omp simd
        for (int l = 0; l < RLANES; l++) acc[l] += a[l];
    }
    for (; i < n; i++) {
        double d = sq ? (double)x[i] - m : (double)x[i];
        acc[0] += sq ? d * d : d;
    }
    double t = 0.0;
    for (int l = 0; l < RLANES; l++) t += acc[l];
    return t;
}

// One (sample, group) of forward. The parallel loops live in the public
// entries, which carry the target clones: an OpenMP region inside an inlined
// helper is outlined before inlining and would get only the baseline ISA
// (measured: the SSE2 body made groupnorm_silu 39% of the teacher's forward).
LD_INLINE void gn_forward_group(int bg, float *out, float *mean, float *rstd, const float *x, const float *gamma,
                       const float *beta, int C, int HW, int G, float eps, int silu) {
    int cg = C / G;
    size_t gsize = (size_t)cg * HW;
    // Groups are contiguous in NCHW: channels g*cg .. g*cg+cg-1 of sample b.
    const float *xg = x + (size_t)bg * gsize;
    float *og = out + (size_t)bg * gsize;
    float mf = (float)(group_sum(xg, gsize, 0.0f, 0) / (double)gsize);
    double v = group_sum(xg, gsize, mf, 1) / (double)gsize;
    double r = 1.0 / sqrt(v + eps);
    mean[bg] = mf;
    rstd[bg] = (float)r;
    int g = bg % G;
    for (int j = 0; j < cg; j++) {
        int c = g * cg + j;
        // Centre before scaling: folding the mean into a shift would cancel
        // badly when |mean| >> std.
        float sc = (float)r * gamma[c], sh = beta[c];
        const float *xc = xg + (size_t)j * HW;
        float *oc = og + (size_t)j * HW;
        if (silu) {
#pragma omp simd
            for (int i = 0; i < HW; i++) {
                float n = (xc[i] - mf) * sc + sh;
                oc[i] = n * ld_sigmoidf(n);
            }
        } else {
#pragma omp simd
            for (int i = 0; i < HW; i++) oc[i] = (xc[i] - mf) * sc + sh;
        }
    }
}

LD_VEC_CLONES void groupnorm_forward(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                       const float *beta, int B, int C, int HW, int G, float eps) {
#pragma omp parallel for schedule(static)
    for (int bg = 0; bg < B * G; bg++) gn_forward_group(bg, out, mean, rstd, x, gamma, beta, C, HW, G, eps, 0);
}

LD_VEC_CLONES void groupnorm_silu_forward(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                            const float *beta, int B, int C, int HW, int G, float eps) {
#pragma omp parallel for schedule(static)
    for (int bg = 0; bg < B * G; bg++) gn_forward_group(bg, out, mean, rstd, x, gamma, beta, C, HW, G, eps, 1);
}

// One channel row of backward's first pass: sums over i of d * xhat and of d,
// where d is dc (plain GroupNorm) or, with silu, dc * silu'(xhat * gamma + beta),
// also stored into dn for the second pass, in RLANES float lanes as above
// (double lanes with a conversion per element ran it at 2 ns per element,
// twice this).
LD_INLINE void row_sums(double *ps, double *pb, const float *xc, const float *dc, float *dn, int HW, float m,
                        float r, float gm, float bt, int silu) {
    double ds[RLANES] = {0}, db[RLANES] = {0};
    float sc = r * gm;
    int i = 0, vec_end = HW - HW % RLANES;
    while (i < vec_end) {
        float as[RLANES] = {0}, ab[RLANES] = {0};
        int end = i + RBLOCK < vec_end ? i + RBLOCK : vec_end;
        if (silu) {
            for (; i < end; i += RLANES) {
#pragma omp simd
                for (int l = 0; l < RLANES; l++) {
                    float xh = (xc[i + l] - m) * r, n = (xc[i + l] - m) * sc + bt, s = ld_sigmoidf(n);
                    float dv = dc[i + l] * s * (1.0f + n * (1.0f - s));
                    dn[i + l] = dv;
                    as[l] += dv * xh;
                    ab[l] += dv;
                }
            }
        } else {
            for (; i < end; i += RLANES) {
#pragma omp simd
                for (int l = 0; l < RLANES; l++) {
                    float dv = dc[i + l], xh = (xc[i + l] - m) * r;
                    as[l] += dv * xh;
                    ab[l] += dv;
                }
            }
        }
#pragma omp simd
        for (int l = 0; l < RLANES; l++) ds[l] += as[l], db[l] += ab[l];
    }
    for (; i < HW; i++) {
        float xh = (xc[i] - m) * r, dv = dc[i];
        if (silu) {
            float n = (xc[i] - m) * sc + bt, s = ld_sigmoidf(n);
            dv = dv * s * (1.0f + n * (1.0f - s));
            dn[i] = dv;
        }
        ds[0] += dv * xh;
        db[0] += dv;
    }
    double ts = 0.0, tb = 0.0;
    for (int l = 0; l < RLANES; l++) ts += ds[l], tb += db[l];
    *ps = ts, *pb = tb;
}

// beta == NULL: plain GroupNorm, dout is the gradient of its output. Otherwise
// dout is the gradient of silu(gn(x)), and the gradient of gn(x), dn = dout *
// silu'(gn(x)), is recomputed into a group-sized buffer that stays in cache.
// One group per iteration with the samples in order inside it: each channel's
// dgamma/dbeta and each (sample, group)'s sums come out the same whatever the
// thread count.
LD_INLINE void gn_backward_group(int g, float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                        const float *mean, const float *rstd, const float *gamma, const float *beta, int B,
                        int C, int HW, int G) {
    int cg = C / G;
    size_t gsize = (size_t)cg * HW;
    // per channel of the group: sums over the samples (sg, sb) and over one sample (ps, pb)
    double *sg = xcalloc((size_t)4 * cg, sizeof(double)), *sb = sg + cg, *ps = sb + cg, *pb = ps + cg;
    float *dn = beta ? xmalloc(gsize * sizeof(float)) : NULL;
    for (int b = 0; b < B; b++) {
        size_t off = ((size_t)b * G + g) * gsize;
        const float *xg = x + off, *dg = dout + off;
        float m = mean[b * G + g], r = rstd[b * G + g];
        double sum_g = 0.0, sum_gx = 0.0;  // over the group: gamma * d and gamma * d * xhat
        for (int j = 0; j < cg; j++) {
            int c = g * cg + j;
            row_sums(&ps[j], &pb[j], xg + (size_t)j * HW, dg + (size_t)j * HW, dn ? dn + (size_t)j * HW : NULL,
                     HW, m, r, gamma[c], beta ? beta[c] : 0.0f, beta != NULL);
            sum_g += gamma[c] * pb[j];
            sum_gx += gamma[c] * ps[j];
            sg[j] += ps[j], sb[j] += pb[j];
        }
        if (!dx) continue;
        // dx = rstd * (gamma d - mean(gamma d) - xhat * mean(gamma d xhat)) over the group
        const float *d = beta ? dn : dg;  // gradient of the normalised (affine) output
        float a = (float)(sum_g / (double)gsize), bc = (float)(sum_gx / (double)gsize);
        float *dxg = dx + off;
        for (int j = 0; j < cg; j++) {
            float gm = gamma[g * cg + j];
            const float *xc = xg + (size_t)j * HW, *dc = d + (size_t)j * HW;
            float *dxc = dxg + (size_t)j * HW;
#pragma omp simd
            for (int i = 0; i < HW; i++) {
                float xh = (xc[i] - m) * r;
                dxc[i] += r * (dc[i] * gm - a - xh * bc);
            }
        }
    }
    for (int j = 0; j < cg; j++) {
        if (dgamma) dgamma[g * cg + j] += (float)sg[j];
        if (dbeta) dbeta[g * cg + j] += (float)sb[j];
    }
    free(sg);
    free(dn);
}

LD_VEC_CLONES void groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                        const float *mean, const float *rstd, const float *gamma, int B, int C,
                        int HW, int G) {
    if (!dx && !dgamma && !dbeta) return;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < G; g++) gn_backward_group(g, dx, dgamma, dbeta, dout, x, mean, rstd, gamma, NULL, B, C, HW, G);
}

LD_VEC_CLONES void groupnorm_silu_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                             const float *mean, const float *rstd, const float *gamma, const float *beta,
                             int B, int C, int HW, int G) {
    if (!dx && !dgamma && !dbeta) return;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < G; g++) gn_backward_group(g, dx, dgamma, dbeta, dout, x, mean, rstd, gamma, beta, B, C, HW, G);
}
