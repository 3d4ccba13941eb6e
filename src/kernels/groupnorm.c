// groupnorm.c — GroupNorm over [B, C, HW] with G groups and a per-channel
// affine, as torch.nn.GroupNorm (biased variance). Forward saves each group's
// mean and 1/sqrt(var + eps); backward is the analytic normalisation gradient.
// Statistics and reductions accumulate in double, in a fixed order.
#include <math.h>

#include "kernels/kernels.h"

void groupnorm_forward(float *out, float *mean, float *rstd, const float *x, const float *gamma,
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

void groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
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
