// layernorm.c — LayerNorm over the last dimension of [N, C] with a per-channel
// affine (torch.nn.LayerNorm, biased variance). Forward saves each row's mean
// and 1/sqrt(var + eps); backward is analytic. Reductions run in double in a
// fixed order so results do not depend on the thread count.
#include <math.h>

#include "kernels/kernels.h"

void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                       const float *beta, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += xr[c];
        double m = s / C;
        double v = 0.0;
        for (int c = 0; c < C; c++) {
            double d = xr[c] - m;
            v += d * d;
        }
        double r = 1.0 / sqrt(v / C + eps);
        mean[n] = (float)m;
        rstd[n] = (float)r;
        float mf = (float)m, rf = (float)r;
        for (int c = 0; c < C; c++) o[c] = (xr[c] - mf) * rf * gamma[c] + beta[c];
    }
}

// Column block for the dgamma/dbeta reduction: each thread owns whole columns
// and walks the rows in order, reading a contiguous strip per row.
#define LN_COLS 64

void layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
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
        double sum_g = 0.0, sum_gx = 0.0;
        for (int c = 0; c < C; c++) {
            double gv = (double)dr[c] * gamma[c];
            sum_g += gv;
            sum_gx += gv * ((xr[c] - m) * r);
        }
        double a = sum_g / C, bcoef = sum_gx / C;
        for (int c = 0; c < C; c++) {
            double xh = (xr[c] - m) * r;
            dxr[c] += (float)(r * ((double)dr[c] * gamma[c] - a - xh * bcoef));
        }
    }
}
