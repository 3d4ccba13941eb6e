// attention.cu — memory-efficient multi-head attention on the GPU (ops.h),
// with its products on cuBLAS (tensor cores at the context's GEMM precision).
// Queries go in tiles of tq rows, sized so a tile's logits for every head,
// [nh, tq, Nk], fit the tile budget (dev_attention_tile_floats): memory grows
// with tq * Nk, never with Nq * Nk. (Where the context's attention is
// DEV_ATTN_FUSED, attention_fused.cu's kernels run instead.) Per tile and sample:
//   forward:  S = scale Q K^T (one strided-batched GEMM over the heads),
//             P = softmax(S) in place (a warp per row: max, exp, sum), lse
//             saved, O = P V (a second batched GEMM);
//   backward: P recomputed from q, k and lse, dP = dO V^T, dS = P (dP - D)
//             with D_i = dO_i . O_i, then dq += scale dS K, dk += scale dS^T Q
//             and dv += P^T dO as GEMMs accumulating (beta = 1) in tile order,
//             so the sums have a fixed order and no atomics are needed.
// A head's rows are strided views of [B, N, C] (row stride C, head h at
// channel h * dh), so the GEMMs read q, k and v in place.
#include <math.h>

#include "cuda/cu_common.cuh"
#include "cuda/ops.h"

// The warp's row r = h * R + i of the [nh, R, Nk] tile. Rows past the end still
// run (on row 0) so that every thread reaches every shuffle, and skip stores.
struct Row {
    int valid, h, i;
};
__device__ __forceinline__ Row warp_row(int nh, int R) {
    long r = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    Row w;
    w.valid = r < (long)nh * R;
    if (!w.valid) r = 0;
    w.i = (int)(r % R);
    w.h = (int)(r / R);
    return w;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    return v;
}

// Softmax of each row of S [nh, R, Nk] in place; lse[h * Nq + i] (this sample's
// [nh, Nq] block, offset to the tile's first row) = the row's log-sum-exp.
__global__ void k_softmax_rows(float *S, float *lse, int nh, int R, int Nk, int Nq) {
    int lane = threadIdx.x & 31;
    Row w = warp_row(nh, R);
    float *s = S + ((size_t)w.h * R + w.i) * Nk;
    float m = -INFINITY;
    for (int j = lane; j < Nk; j += 32) m = fmaxf(m, s[j]);
    m = warp_max(m);
    float l = 0.0f;
    for (int j = lane; j < Nk; j += 32) l += expf(s[j] - m);
    l = cu_warp_sum(l);
    if (!w.valid) return;
    float inv = 1.0f / l;
    for (int j = lane; j < Nk; j += 32) s[j] = expf(s[j] - m) * inv;
    if (lane == 0) lse[(size_t)w.h * Nq + w.i] = m + logf(l);
}

// P = exp(S - lse) in place (the forward's probabilities, recomputed).
__global__ void k_probs(float *S, const float *lse, int nh, int R, int Nk, int Nq) {
    int lane = threadIdx.x & 31;
    Row w = warp_row(nh, R);
    if (!w.valid) return;
    float *s = S + ((size_t)w.h * R + w.i) * Nk, L = lse[(size_t)w.h * Nq + w.i];
    for (int j = lane; j < Nk; j += 32) s[j] = expf(s[j] - L);
}

// dP <- P (dP - D_i) in place, D = Dsum[h * Nq + i].
__global__ void k_dsoftmax(float *dP, const float *P, const float *Dsum, int nh, int R, int Nk, int Nq) {
    int lane = threadIdx.x & 31;
    Row w = warp_row(nh, R);
    if (!w.valid) return;
    size_t o = ((size_t)w.h * R + w.i) * Nk;
    float D = Dsum[(size_t)w.h * Nq + w.i];
    for (int j = lane; j < Nk; j += 32) dP[o + j] = P[o + j] * (dP[o + j] - D);
}

// Dsum[(b*nh + h)*Nq + i] = dout_i . out_i over the head's channels: a warp per
// (b, h, i), lanes over the channels.
__global__ void k_attn_dsum(float *Dsum, const float *dout, const float *out, int nh, int Nq, int C) {
    int dh = C / nh, lane = threadIdx.x & 31;
    Row w = warp_row(nh, Nq);
    size_t off = ((size_t)blockIdx.y * Nq + w.i) * C + (size_t)w.h * dh;
    float s = 0.0f;
    for (int c = lane; c < dh; c += 32) s += dout[off + c] * out[off + c];
    s = cu_warp_sum(s);
    if (w.valid && lane == 0) Dsum[((size_t)blockIdx.y * nh + w.h) * Nq + w.i] = s;
}

static void check_heads(int C, int nh) {
    if (nh <= 0 || C % nh) FATAL("cu_attention: %d channels do not split into %d heads", C, nh);
}
// Blocks of warps over nh * R rows (y: samples, for k_attn_dsum).
static dim3 row_grid(int nh, int R, int B) {
    long rows = (long)nh * R, per = LD_CU_BLOCK / 32;
    return dim3((unsigned)((rows + per - 1) / per), (unsigned)B);
}
// Query rows per tile: nh * tq * Nk floats per tile buffer within the budget.
static int tile_rows(DevCtx *d, int nh, int Nq, int Nk) {
    size_t per = (size_t)nh * (Nk > 0 ? Nk : 1), tq = dev_attention_tile_floats(d) / per;
    if (tq < 1) tq = 1;
    return tq > (size_t)Nq ? Nq : (int)tq;
}

extern "C" {
void cu_attention_forward(DevCtx *d, float *out, float *lse, const float *q, const float *k, const float *v, int B,
                          int Nq, int Nk, int C, int nh) {
    check_heads(C, nh);
    if ((long)B * Nq * C == 0) return;
    if (dev_attention(d) == DEV_ATTN_FUSED && cu_attention_fused_fits(d, Nq, Nk, C, nh)) {
        cu_attention_fused_forward(d, out, lse, q, k, v, B, Nq, Nk, C, nh);
        return;
    }
    int dh = C / nh, tq = tile_rows(d, nh, Nq, Nk);
    float scale = 1.0f / sqrtf((float)dh);
    float *S = dev_scratch(d, (size_t)nh * tq * (Nk > 0 ? Nk : 1));
    for (int b = 0; b < B; b++) {
        const float *kb = k + (size_t)b * Nk * C, *vb = v + (size_t)b * Nk * C;
        for (int i0 = 0; i0 < Nq; i0 += tq) {
            int R = Nq - i0 < tq ? Nq - i0 : tq;
            const float *qt = q + ((size_t)b * Nq + i0) * C;
            float *ot = out + ((size_t)b * Nq + i0) * C, *lt = lse + (size_t)b * nh * Nq + i0;
            // S[h] = scale Q_h K_h^T: [R, dh] x [dh, Nk], heads dh channels apart
            dev_gemm_batched(d, 0, 1, R, Nk, dh, scale, qt, C, dh, kb, C, dh, 0.0f, S, Nk, (long)R * Nk, nh);
            LD_LAUNCH(k_softmax_rows, row_grid(nh, R, 1), dim3(LD_CU_BLOCK), dev_stream(d), S, lt, nh, R, Nk, Nq);
            CU_LAUNCHED();
            // O_h = P_h V_h: [R, Nk] x [Nk, dh] into the head's channels of out
            dev_gemm_batched(d, 0, 0, R, dh, Nk, 1.0f, S, Nk, (long)R * Nk, vb, C, dh, 0.0f, ot, C, dh, nh);
        }
    }
}

void cu_attention_backward(DevCtx *d, float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *out, const float *lse, int B, int Nq, int Nk,
                           int C, int nh) {
    check_heads(C, nh);
    if ((long)B * Nq * C == 0 || Nk == 0 || (!dq && !dk && !dv)) return;
    int fused = dev_attention(d) == DEV_ATTN_FUSED && cu_attention_fused_fits(d, Nq, Nk, C, nh);
    int dh = C / nh, tq = fused ? 0 : tile_rows(d, nh, Nq, Nk);
    float scale = 1.0f / sqrtf((float)dh);
    size_t tile = (size_t)nh * tq * Nk, nd = (size_t)B * nh * Nq;
    // one scratch: D (both paths), then the cuBLAS tiles' probabilities and their gradient
    float *Dsum = dev_scratch(d, nd + 2 * tile), *P = Dsum + nd, *dP = P + tile;
    LD_LAUNCH(k_attn_dsum, row_grid(nh, Nq, B), dim3(LD_CU_BLOCK), dev_stream(d), Dsum, dout, out, nh, Nq, C);
    CU_LAUNCHED();
    if (fused) {
        cu_attention_fused_backward(d, dq, dk, dv, dout, q, k, v, lse, Dsum, B, Nq, Nk, C, nh);
        return;
    }
    for (int b = 0; b < B; b++) {
        const float *kb = k + (size_t)b * Nk * C, *vb = v + (size_t)b * Nk * C;
        float *dkb = dk ? dk + (size_t)b * Nk * C : NULL, *dvb = dv ? dv + (size_t)b * Nk * C : NULL;
        for (int i0 = 0; i0 < Nq; i0 += tq) {
            int R = Nq - i0 < tq ? Nq - i0 : tq;
            size_t row0 = ((size_t)b * Nq + i0) * C;
            const float *lt = lse + (size_t)b * nh * Nq + i0, *Dt = Dsum + (size_t)b * nh * Nq + i0;
            long sR = (long)R * Nk;
            dev_gemm_batched(d, 0, 1, R, Nk, dh, scale, q + row0, C, dh, kb, C, dh, 0.0f, P, Nk, sR, nh);
            LD_LAUNCH(k_probs, row_grid(nh, R, 1), dim3(LD_CU_BLOCK), dev_stream(d), P, lt, nh, R, Nk, Nq);
            CU_LAUNCHED();
            // dv_h += P_h^T dO_h: [Nk, R] x [R, dh]
            if (dvb) dev_gemm_batched(d, 1, 0, Nk, dh, R, 1.0f, P, Nk, sR, dout + row0, C, dh, 1.0f, dvb, C, dh, nh);
            if (!dq && !dkb) continue;
            // dP_h = dO_h V_h^T, then dS = P (dP - D)
            dev_gemm_batched(d, 0, 1, R, Nk, dh, 1.0f, dout + row0, C, dh, vb, C, dh, 0.0f, dP, Nk, sR, nh);
            LD_LAUNCH(k_dsoftmax, row_grid(nh, R, 1), dim3(LD_CU_BLOCK), dev_stream(d), dP, P, Dt, nh, R, Nk, Nq);
            CU_LAUNCHED();
            // dq_h += scale dS_h K_h; dk_h += scale dS_h^T Q_h
            if (dq) dev_gemm_batched(d, 0, 0, R, dh, Nk, scale, dP, Nk, sR, kb, C, dh, 1.0f, dq + row0, C, dh, nh);
            if (dkb) dev_gemm_batched(d, 1, 0, Nk, dh, R, scale, dP, Nk, sR, q + row0, C, dh, 1.0f, dkb, C, dh, nh);
        }
    }
}
}
