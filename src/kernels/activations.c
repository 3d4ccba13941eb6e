// activations.c — elementwise SiLU, exact (erf) GELU and the GEGLU gate of
// diffusers' feed-forward, forward and backward. exp and Phi come from
// vecmath.h (branch-free, so each loop vectorises: `omp simd`); every element is
// the same pure function of its inputs, whatever the thread count.
#include "kernels/kernels.h"
#include "kernels/vecmath.h"

LD_VEC_CLONES void silu_forward(float *out, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = x[i] * ld_sigmoidf(x[i]);
}

LD_VEC_CLONES void silu_backward(float *dx, const float *dout, const float *x, size_t n) {
    if (!dx) return;
    // d/dx x*s(x) = s(x) * (1 + x * (1 - s(x)))
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float s = ld_sigmoidf(x[i]);
        dx[i] += dout[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

// GELU (exact, as torch's F.gelu default that diffusers' GELU/GEGLU call): x * Phi(x).
LD_INLINE float gelu1(float x) { return x * ld_phif(x); }

// d/dx x*Phi(x) = Phi(x) + x * phi(x)
LD_INLINE float gelu_grad1(float x) { return ld_phif(x) + x * ld_normal_pdf(x); }

LD_VEC_CLONES void gelu_forward(float *out, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = gelu1(x[i]);
}

LD_VEC_CLONES void gelu_backward(float *dx, const float *dout, const float *x, size_t n) {
    if (!dx) return;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] += dout[i] * gelu_grad1(x[i]);
}

LD_VEC_CLONES void geglu_forward(float *out, const float *x, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *hid = x + (size_t)n * 2 * H, *gate = hid + H;
        float *o = out + (size_t)n * H;
#pragma omp simd
        for (int j = 0; j < H; j++) o[j] = hid[j] * gelu1(gate[j]);
    }
}

LD_VEC_CLONES void geglu_backward(float *dx, const float *dout, const float *x, int N, int H) {
    if (!dx) return;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *hid = x + (size_t)n * 2 * H, *gate = hid + H;
        const float *d = dout + (size_t)n * H;
        float *dh = dx + (size_t)n * 2 * H, *dg = dh + H;
#pragma omp simd
        for (int j = 0; j < H; j++) {
            float g = gate[j], ph = ld_phif(g);
            dh[j] += d[j] * (g * ph);
            dg[j] += d[j] * hid[j] * (ph + g * ld_normal_pdf(g));
        }
    }
}
