// activations.c — elementwise SiLU, exact (erf) GELU and the GEGLU gate of
// diffusers' feed-forward, forward and backward.
#include <math.h>

#include "kernels/kernels.h"

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void silu_forward(float *out, const float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = x[i] * sigmoidf(x[i]);
}

void silu_backward(float *dx, const float *dout, const float *x, size_t n) {
    if (!dx) return;
    // d/dx x*s(x) = s(x) * (1 + x * (1 - s(x)))
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float s = sigmoidf(x[i]);
        dx[i] += dout[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

static inline float gelu1(float x) { return 0.5f * x * (1.0f + erff(x * INV_SQRT2)); }

// d/dx x*Phi(x) = Phi(x) + x * phi(x)
static inline float gelu_grad1(float x) {
    return 0.5f * (1.0f + erff(x * INV_SQRT2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
}

void gelu_forward(float *out, const float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = gelu1(x[i]);
}

void gelu_backward(float *dx, const float *dout, const float *x, size_t n) {
    if (!dx) return;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] += dout[i] * gelu_grad1(x[i]);
}

void geglu_forward(float *out, const float *x, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *hid = x + (size_t)n * 2 * H, *gate = hid + H;
        float *o = out + (size_t)n * H;
        for (int j = 0; j < H; j++) o[j] = hid[j] * gelu1(gate[j]);
    }
}

void geglu_backward(float *dx, const float *dout, const float *x, int N, int H) {
    if (!dx) return;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *hid = x + (size_t)n * 2 * H, *gate = hid + H;
        const float *d = dout + (size_t)n * H;
        float *dh = dx + (size_t)n * 2 * H, *dg = dh + H;
        for (int j = 0; j < H; j++) {
            dh[j] += d[j] * gelu1(gate[j]);
            dg[j] += d[j] * hid[j] * gelu_grad1(gate[j]);
        }
    }
}
