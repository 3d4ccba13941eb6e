// attention.c — multi-head scaled dot-product attention on [B, N, C] token
// tensors, heads interleaved along C as diffusers lays them out. Each
// (batch, head) pair is a few GEMMs on strided views (row stride C, head h at
// column h*d), so no head is ever copied out. The softmax probabilities are
// saved by forward; backward rebuilds everything else from them.
#include <math.h>

#include "kernels/gemm.h"
#include "kernels/kernels.h"

size_t attention_scratch_floats(int Nq, int Nk) { return (size_t)Nq * Nk; }

// Row-wise softmax in place, max-subtracted so exp never overflows.
static void softmax_rows(float *s, int rows, int cols) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; i++) {
        float *r = s + (size_t)i * cols;
        float mx = r[0];
        for (int j = 1; j < cols; j++) mx = r[j] > mx ? r[j] : mx;
        double sum = 0.0;
        for (int j = 0; j < cols; j++) {
            r[j] = expf(r[j] - mx);
            sum += r[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < cols; j++) r[j] *= inv;
    }
}

void attention_forward(float *out, float *probs, const float *q, const float *k, const float *v,
                       int B, int Nq, int Nk, int C, int nh) {
    int d = C / nh;
    float scale = 1.0f / sqrtf((float)d);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < nh; h++) {
            const float *qh = q + (size_t)b * Nq * C + (size_t)h * d;
            const float *kh = k + (size_t)b * Nk * C + (size_t)h * d;
            const float *vh = v + (size_t)b * Nk * C + (size_t)h * d;
            float *oh = out + (size_t)b * Nq * C + (size_t)h * d;
            float *p = probs + ((size_t)b * nh + h) * Nq * Nk;
            gemm(0, 1, Nq, Nk, d, scale, qh, C, kh, C, 0.0f, p, Nk);  // S = scale * Q K^T
            softmax_rows(p, Nq, Nk);
            gemm(0, 0, Nq, d, Nk, 1.0f, p, Nk, vh, C, 0.0f, oh, C);  // O = P V
        }
    }
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *probs, int B, int Nq, int Nk,
                        int C, int nh, float *scratch) {
    int d = C / nh;
    float scale = 1.0f / sqrtf((float)d);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < nh; h++) {
            size_t qo = (size_t)b * Nq * C + (size_t)h * d, ko = (size_t)b * Nk * C + (size_t)h * d;
            const float *p = probs + ((size_t)b * nh + h) * Nq * Nk;
            const float *doh = dout + qo;
            if (dv) gemm(1, 0, Nk, d, Nq, 1.0f, p, Nk, doh, C, 1.0f, dv + ko, C);  // dV += P^T dO
            if (!dq && !dk) continue;
            float *ds = scratch;
            gemm(0, 1, Nq, Nk, d, 1.0f, doh, C, v + ko, C, 0.0f, ds, Nk);  // dP = dO V^T
            // Softmax backward, scale folded in: dS = scale * P * (dP - rowsum(dP * P)).
#pragma omp parallel for schedule(static)
            for (int i = 0; i < Nq; i++) {
                float *r = ds + (size_t)i * Nk;
                const float *pr = p + (size_t)i * Nk;
                double dot = 0.0;
                for (int j = 0; j < Nk; j++) dot += (double)r[j] * pr[j];
                float df = (float)dot;
                for (int j = 0; j < Nk; j++) r[j] = scale * pr[j] * (r[j] - df);
            }
            if (dq) gemm(0, 0, Nq, d, Nk, 1.0f, ds, Nk, k + ko, C, 1.0f, dq + qo, C);  // dQ += dS K
            if (dk) gemm(1, 0, Nk, d, Nq, 1.0f, ds, Nk, q + qo, C, 1.0f, dk + ko, C);  // dK += dS^T Q
        }
    }
}
