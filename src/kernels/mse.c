// mse.c — mean squared error between two tensors and its gradient. The sum is
// split into a fixed number of contiguous chunks, each summed in double and
// then combined in order, so the result is the same for any thread count.
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
