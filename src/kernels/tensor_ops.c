// tensor_ops.c — the glue between layers: channel concat/split, [B,C,N] <->
// [B,N,C] transposes, elementwise add and accumulate, and the per-channel
// broadcast add of the resnet's time embedding. Forward writes, backward adds.
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/vecmath.h"

void concat_channels_forward(float *out, const float *a, const float *b, int B, int Ca, int Cb, int HW) {
    size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
    // one (sample, part) copy per iteration: both threads copy at 2 threads
#pragma omp parallel for schedule(static)
    for (int t = 0; t < 2 * B; t++) {
        int n = t / 2;
        float *o = out + (size_t)n * (na + nb);
        if (t % 2 == 0)
            memcpy(o, a + (size_t)n * na, na * sizeof(float));
        else
            memcpy(o + na, b + (size_t)n * nb, nb * sizeof(float));
    }
}

LD_VEC_CLONES void concat_channels_backward(float *da, float *db, const float *dout, int B, int Ca, int Cb, int HW) {
    size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
    // one parallel region for all samples (accumulate() would open one per sample and part)
#pragma omp parallel for schedule(static)
    for (int t = 0; t < 2 * B; t++) {
        int n = t / 2;
        const float *d = dout + (size_t)n * (na + nb) + (t % 2 ? na : 0);
        float *dst = t % 2 ? (db ? db + (size_t)n * nb : NULL) : (da ? da + (size_t)n * na : NULL);
        size_t len = t % 2 ? nb : na;
        if (!dst) continue;
#pragma omp simd
        for (size_t i = 0; i < len; i++) dst[i] += d[i];
    }
}

// Tile edge for the transposes: a TxT tile of source and destination both stay in cache.
#define TILE 32

// dst[b, j, i] (op)= src[b, i, j] for src [B, R, S]; `add` selects += over =.
static void transpose_batched(float *dst, const float *src, int B, int R, int S, int add) {
    if (!dst) return;  // a NULL gradient is not needed
    int tr = (R + TILE - 1) / TILE, ts = (S + TILE - 1) / TILE;
    long tiles = (long)B * tr * ts;
#pragma omp parallel for schedule(static)
    for (long t = 0; t < tiles; t++) {
        int b = (int)(t / ((long)tr * ts)), rem = (int)(t % ((long)tr * ts));
        int i0 = (rem / ts) * TILE, j0 = (rem % ts) * TILE;
        int i1 = i0 + TILE < R ? i0 + TILE : R, j1 = j0 + TILE < S ? j0 + TILE : S;
        const float *s = src + (size_t)b * R * S;
        float *d = dst + (size_t)b * R * S;
        for (int j = j0; j < j1; j++)
            for (int i = i0; i < i1; i++) {
                float v = s[(size_t)i * S + j];
                if (add)
                    d[(size_t)j * R + i] += v;
                else
                    d[(size_t)j * R + i] = v;
            }
    }
}

void transpose_cn_forward(float *out, const float *x, int B, int C, int N) {
    transpose_batched(out, x, B, C, N, 0);
}
void transpose_cn_backward(float *dx, const float *dout, int B, int C, int N) {
    transpose_batched(dx, dout, B, N, C, 1);
}
void transpose_nc_forward(float *out, const float *x, int B, int N, int C) {
    transpose_batched(out, x, B, N, C, 0);
}
void transpose_nc_backward(float *dx, const float *dout, int B, int N, int C) {
    transpose_batched(dx, dout, B, C, N, 1);
}

// The elementwise loops are cloned and marked simd (vecmath.h): gcc 12 at -O2
// leaves such loops scalar otherwise. Elementwise, so the same bits either way.
LD_VEC_CLONES void add_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

LD_VEC_CLONES void accumulate(float *dst, const float *src, size_t n) {
    if (!dst) return;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

LD_VEC_CLONES void add_channel_bias_forward(float *out, const float *x, const float *v, int B, int C, int HW) {
#pragma omp parallel for schedule(static)
    for (int bc = 0; bc < B * C; bc++) {
        float vb = v[bc];  // v is [B, C]: one value per (sample, channel) plane
        const float *xp = x + (size_t)bc * HW;
        float *o = out + (size_t)bc * HW;
#pragma omp simd
        for (int i = 0; i < HW; i++) o[i] = xp[i] + vb;
    }
}

LD_VEC_CLONES void add_channel_bias_backward(float *dx, float *dv, const float *dout, int B, int C, int HW) {
#pragma omp parallel for schedule(static)
    for (int bc = 0; bc < B * C; bc++) {
        const float *d = dout + (size_t)bc * HW;
        if (dx) {
            float *g = dx + (size_t)bc * HW;
            for (int i = 0; i < HW; i++) g[i] += d[i];
        }
        if (dv) dv[bc] += (float)ld_sum8(d, (size_t)HW);
    }
}
