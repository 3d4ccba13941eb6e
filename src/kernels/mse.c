// mse.c — mean squared error between two tensors and its gradient, and
// distillation's per-tap feature term (raw and teacher-normalized) with its
// gradient. MSE's sum is split into a fixed number of contiguous chunks, each
// summed in double and then combined in order, so the result is the same for
// any thread count.
#include "kernels/kernels.h"

#define MSE_CHUNKS 64

double mse_forward(const float *a, const float *b, size_t n) {
    if (n == 0) return 0.0;
    double part[MSE_CHUNKS];
#pragma omp parallel for schedule(static)
    for (int c = 0; c < MSE_CHUNKS; c++) {
        size_t lo = n * c / MSE_CHUNKS, hi = n * (c + 1) / MSE_CHUNKS;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) {
            double d = (double)a[i] - b[i];
            s += d * d;
        }
        part[c] = s;
    }
    double s = 0.0;
    for (int c = 0; c < MSE_CHUNKS; c++) s += part[c];
    return s / (double)n;
}

void mse_backward(float *da, float *db, const float *a, const float *b, size_t n, float scale) {
    if (n == 0) return;
    float k = (float)(2.0 * scale / (double)n);  // d/da mean((a-b)^2) = 2(a-b)/n
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = k * (a[i] - b[i]);
        if (da) da[i] += g;
        if (db) db[i] -= g;
    }
}

void feat_term(const float *S, const float *T, int b, size_t n, int normalized, double denom, float scale,
               double *raw, double *norm, float *dS) {
    double sq_all = 0, nsum = 0;
    for (int s = 0; s < b; s++) {
        const float *x = S + (size_t)s * n, *y = T + (size_t)s * n;
        double sq = 0, tn = 0;
        for (size_t j = 0; j < n; j++) {
            double d = (double)x[j] - y[j];
            sq += d * d, tn += (double)y[j] * y[j];
        }
        tn = tn > 0 ? tn : 1.0;  // an all-zero teacher feature: the term is the plain squared error
        sq_all += sq, nsum += sq / tn;
        if (dS) {
            // d/dS of (1/denom) * ||S-T||^2 / ||T||^2 (teacher norm constant), or of the raw MSE's share
            float c = normalized ? (float)(scale * 2.0 / (denom * tn)) : (float)(scale * 2.0 / (denom * (double)n));
            float *g = dS + (size_t)s * n;
            for (size_t j = 0; j < n; j++) g[j] += c * (x[j] - y[j]);
        }
    }
    *raw = sq_all / ((double)b * n);
    *norm = nsum / denom;
}
