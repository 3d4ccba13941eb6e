// layernorm.c — LayerNorm over the last dimension of [N, C] with a per-channel
// affine (torch.nn.LayerNorm, biased variance). Forward saves each row's mean
// and 1/sqrt(var + eps); backward is analytic. Reductions run in double in a
// fixed order (a row's sums in vecmath.h's 8 lanes, so they vectorise), so
// results do not depend on the thread count or the vector width.
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/vecmath.h"

#define LANES 8

LD_VEC_CLONES void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                                     const float *beta, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double m = ld_sum8(xr, (size_t)C) / C;
        double r = 1.0 / sqrt(ld_sumsq_dev8(xr, (size_t)C, m) / C + eps);
        mean[n] = (float)m;
        rstd[n] = (float)r;
        float mf = (float)m, rf = (float)r;
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = (xr[c] - mf) * rf * gamma[c] + beta[c];
    }
}

// Column block for the dgamma/dbeta reduction: each thread owns whole columns
// and walks the rows in order, reading a contiguous strip per row.
#define LN_COLS 64

LD_VEC_CLONES void layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                                      const float *mean, const float *rstd, const float *gamma, int N, int C) {
    if (dgamma || dbeta) {
        int nblk = (C + LN_COLS - 1) / LN_COLS;
#pragma omp parallel for schedule(static)
        for (int blk = 0; blk < nblk; blk++) {
            int c0 = blk * LN_COLS, c1 = c0 + LN_COLS < C ? c0 + LN_COLS : C;
            double sg[LN_COLS] = {0}, sb[LN_COLS] = {0};
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C, *dr = dout + (size_t)n * C;
                double m = mean[n], r = rstd[n];
#pragma omp simd
                for (int c = c0; c < c1; c++) {
                    sg[c - c0] += dr[c] * ((xr[c] - m) * r);
                    sb[c - c0] += dr[c];
                }
            }
            for (int c = c0; c < c1; c++) {
                if (dgamma) dgamma[c] += (float)sg[c - c0];
                if (dbeta) dbeta[c] += (float)sb[c - c0];
            }
        }
    }
    if (!dx) return;
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * gamma, over the row.
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *dr = dout + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        double m = mean[n], r = rstd[n];
        double ag[LANES] = {0}, agx[LANES] = {0};
        int c = 0;
        for (; c + LANES <= C; c += LANES) {
#pragma omp simd
            for (int l = 0; l < LANES; l++) {
                double gv = (double)dr[c + l] * gamma[c + l];
                ag[l] += gv;
                agx[l] += gv * ((xr[c + l] - m) * r);
            }
        }
        for (; c < C; c++) {
            double gv = (double)dr[c] * gamma[c];
            ag[0] += gv;
            agx[0] += gv * ((xr[c] - m) * r);
        }
        double a = ld_total8(ag) / C, bcoef = ld_total8(agx) / C;
#pragma omp simd
        for (c = 0; c < C; c++) {
            double xh = (xr[c] - m) * r;
            dxr[c] += (float)(r * ((double)dr[c] * gamma[c] - a - xh * bcoef));
        }
    }
}
