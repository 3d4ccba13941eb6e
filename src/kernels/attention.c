// attention.c — multi-head scaled dot-product attention on [B, N, C] token
// tensors, heads interleaved along C as diffusers lays them out. Each
// (batch, head) pair is a few GEMMs on strided views (row stride C, head h at
// column h*d), so no head is ever copied out. attention_forward/_backward, the
// reference, save the softmax probabilities [B,nh,Nq,Nk]; attention_flash_*
// below save only out and a log-sum-exp per query row and recompute the rest.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "kernels/vecmath.h"

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

// ---- Memory-efficient (FlashAttention-style) attention.
// Forward walks key tiles with an online softmax: per query row a running max m
// and sum l; when a tile raises m the partial output and l are rescaled by
// exp(m_old - m_new). Only out and lse = m + log(l) survive. Backward rebuilds
// each tile's probabilities as exp(S - lse).
// Threads split the (sample, head) pairs: each pair is one worker's, start to
// end, with single-threaded GEMMs (OpenBLAS runs one thread inside a parallel
// region) and its own scratch. The default teacher's heads are 16 wide over 16
// or 64 tokens, so a GEMM there is a few microseconds and threading inside one
// only added overhead; at SD-1.5's 4096 tokens a pair is still ~50 tiles. The
// thread count only changes which thread does a pair, never the arithmetic,
// and the pairs write disjoint columns of dq, dk, dv. exp is ld_expf in the
// cloned (AVX-512/AVX2/SSE2) kernels, so the row loops vectorise (`omp simd`:
// -O2's cost model would not).

static int mini(int a, int b) { return a < b ? a : b; }

// One worker's scratch: backward's P and dS tiles + D per query row. Forward's
// S tile + m, l per tile row (r*c + 2r) never needs more, as r <= Nq.
static size_t per_worker(int Nq, int Nk, int tq, int tk) {
    size_t r = (size_t)mini(tq, Nq), c = (size_t)mini(tk, Nk);
    return 2 * r * c + (size_t)Nq;
}

// One worker per thread, at most one per (sample, head) pair.
static int workers(int B, int nh) {
    long pairs = (long)B * nh, t = omp_get_max_threads();
    return (int)(pairs < t ? (pairs > 0 ? pairs : 1) : t);
}

size_t attention_flash_scratch_floats(int B, int nh, int Nq, int Nk, int tq, int tk) {
    return (size_t)workers(B, nh) * per_worker(Nq, Nk, tq, tk);
}

// One (sample, head) pair's forward; ws: per_worker() floats.
LD_INLINE void flash_fwd_pair(float *out, float *lse, const float *q, const float *k, const float *v, int b, int h,
                              int Nq, int Nk, int C, int nh, int tq, int tk, float *ws) {
    int d = C / nh;
    float scale = 1.0f / sqrtf((float)d);
    int r0 = mini(tq, Nq), c0 = mini(tk, Nk);
    float *s = ws, *m = ws + (size_t)r0 * c0, *l = m + r0;
    const float *kh = k + (size_t)b * Nk * C + (size_t)h * d;
    const float *vh = v + (size_t)b * Nk * C + (size_t)h * d;
    float *lh = lse + ((size_t)b * nh + h) * Nq;
    for (int i0 = 0; i0 < Nq; i0 += tq) {
        int r = mini(tq, Nq - i0);
        const float *qi = q + ((size_t)b * Nq + i0) * C + (size_t)h * d;
        float *oi = out + ((size_t)b * Nq + i0) * C + (size_t)h * d;
        for (int i = 0; i < r; i++) m[i] = -INFINITY, l[i] = 0.0f;
        for (int j0 = 0; j0 < Nk; j0 += tk) {
            int c = mini(tk, Nk - j0), first = j0 == 0;
            gemm(0, 1, r, c, d, scale, qi, C, kh + (size_t)j0 * C, C, 0.0f, s, c);  // S = scale Q K^T
            for (int i = 0; i < r; i++) {
                float *row = s + (size_t)i * c, *o = oi + (size_t)i * C;
                float mx = ld_max8(row, (size_t)c, first ? -INFINITY : m[i]);
#pragma omp simd
                for (int j = 0; j < c; j++) row[j] = ld_expf(row[j] - mx);
                float sum = (float)ld_sum8(row, (size_t)c);
                if (first) {  // nothing accumulated yet: the product below writes O
                    l[i] = sum, m[i] = mx;
                    continue;
                }
                float alpha = ld_expf(m[i] - mx);
                l[i] = l[i] * alpha + sum;
                m[i] = mx;
#pragma omp simd
                for (int t = 0; t < d; t++) o[t] *= alpha;
            }
            // O = P V on the first key tile, O += P V after
            gemm(0, 0, r, d, c, 1.0f, s, c, vh + (size_t)j0 * C, C, first ? 0.0f : 1.0f, oi, C);
        }
        for (int i = 0; i < r; i++) {
            float inv = 1.0f / l[i], *o = oi + (size_t)i * C;
#pragma omp simd
            for (int t = 0; t < d; t++) o[t] *= inv;
            lh[i0 + i] = m[i] + logf(l[i]);
        }
    }
}

LD_VEC_CLONES void attention_flash_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                                           int B, int Nq, int Nk, int C, int nh, int tq, int tk, float *scratch) {
    size_t per = per_worker(Nq, Nk, tq, tk);
    int nw = workers(B, nh);
#pragma omp parallel for schedule(static) num_threads(nw)
    for (int bh = 0; bh < B * nh; bh++)
        flash_fwd_pair(out, lse, q, k, v, bh / nh, bh % nh, Nq, Nk, C, nh, tq, tk,
                       scratch + (size_t)omp_get_thread_num() * per);
}

// One (sample, head) pair's backward, accumulating into its columns of dq, dk, dv.
LD_INLINE void flash_bwd_pair(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *out, const float *lse, int b, int h, int Nq, int Nk,
                              int C, int nh, int tq, int tk, float *ws) {
    int d = C / nh;
    float scale = 1.0f / sqrtf((float)d);
    int r0 = mini(tq, Nq), c0 = mini(tk, Nk);
    float *p = ws, *ds = ws + (size_t)r0 * c0, *D = ds + (size_t)r0 * c0;
    size_t qo = (size_t)b * Nq * C + (size_t)h * d, ko = (size_t)b * Nk * C + (size_t)h * d;
    const float *lh = lse + ((size_t)b * nh + h) * Nq;
    int need_ds = dq || dk;
    // D_i = rowsum(dO_i * O_i) = rowsum(dP_i * P_i), the softmax backward's row term
    if (need_ds) {
        for (int i = 0; i < Nq; i++) {
            const float *o = out + qo + (size_t)i * C, *g = dout + qo + (size_t)i * C;
            double dot = 0.0;
            for (int t = 0; t < d; t++) dot += (double)g[t] * o[t];
            D[i] = (float)dot;
        }
    }
    for (int i0 = 0; i0 < Nq; i0 += tq) {
        int r = mini(tq, Nq - i0);
        size_t qi = qo + (size_t)i0 * C;
        for (int j0 = 0; j0 < Nk; j0 += tk) {
            int c = mini(tk, Nk - j0);
            size_t kj = ko + (size_t)j0 * C;
            gemm(0, 1, r, c, d, scale, q + qi, C, k + kj, C, 0.0f, p, c);  // S = scale Q K^T
            for (int i = 0; i < r; i++) {
                float *row = p + (size_t)i * c, ls = lh[i0 + i];
#pragma omp simd
                for (int j = 0; j < c; j++) row[j] = ld_expf(row[j] - ls);  // P = exp(S - lse)
            }
            if (dv) gemm(1, 0, c, d, r, 1.0f, p, c, dout + qi, C, 1.0f, dv + kj, C);  // dV += P^T dO
            if (!need_ds) continue;
            gemm(0, 1, r, c, d, 1.0f, dout + qi, C, v + kj, C, 0.0f, ds, c);  // dP = dO V^T
            for (int i = 0; i < r; i++) {
                float *row = ds + (size_t)i * c, Di = D[i0 + i];
                const float *pr = p + (size_t)i * c;
#pragma omp simd
                for (int j = 0; j < c; j++) row[j] = scale * pr[j] * (row[j] - Di);  // dS
            }
            if (dq) gemm(0, 0, r, d, c, 1.0f, ds, c, k + kj, C, 1.0f, dq + qi, C);  // dQ += dS K
            if (dk) gemm(1, 0, c, d, r, 1.0f, ds, c, q + qi, C, 1.0f, dk + kj, C);  // dK += dS^T Q
        }
    }
}

LD_VEC_CLONES void attention_flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                            const float *k, const float *v, const float *out, const float *lse,
                                            int B, int Nq, int Nk, int C, int nh, int tq, int tk, float *scratch) {
    if (!dq && !dk && !dv) return;
    size_t per = per_worker(Nq, Nk, tq, tk);
    int nw = workers(B, nh);
#pragma omp parallel for schedule(static) num_threads(nw)
    for (int bh = 0; bh < B * nh; bh++)
        flash_bwd_pair(dq, dk, dv, dout, q, k, v, out, lse, bh / nh, bh % nh, Nq, Nk, C, nh, tq, tk,
                       scratch + (size_t)omp_get_thread_num() * per);
}
