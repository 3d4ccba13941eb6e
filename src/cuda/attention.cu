// attention.cu — memory-efficient multi-head attention on the GPU (ops.h):
// FlashAttention's scheme without its tiling. Forward keeps a running max and
// sum per query row (online softmax) and saves only out and the row's
// log-sum-exp; backward recomputes each probability from q, k and lse.
// One warp per row: lane l owns channels l, l+32, ... of the head (head size
// up to 256), dot products are warp sums. Backward runs two passes instead of
// adding into shared gradients with atomics: a warp per query row for dq, a
// warp per key row for dk and dv, so the sums have a fixed order.
// This is the correct first version; tensor-core tiles are the fast one.
#include <math.h>

#include "cuda/cu_common.cuh"
#include "cuda/ops.h"

#define MAXV 8  // channels per lane: head size <= 32 * MAXV

__device__ __forceinline__ float warp_sum(float v) { return cu_warp_sum(v); }

// The warp's row of sample blockIdx.y: r = h*R + i over nh*R rows. Rows past
// the end still run (on row 0) so that every thread reaches every shuffle,
// and skip their stores.
struct Row {
    int valid, b, h, i;
};
__device__ __forceinline__ Row warp_row(int nh, int R) {
    long r = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    Row w;
    w.valid = r < (long)nh * R;
    if (!w.valid) r = 0;
    w.i = (int)(r % R);
    w.h = (int)(r / R);
    w.b = (int)blockIdx.y;
    return w;
}

__global__ void k_attn_fwd(float *out, float *lse, const float *q, const float *k, const float *v, int nh, int Nq,
                           int Nk, int C, float scale) {
    int dh = C / nh, lane = threadIdx.x & 31;
    Row w = warp_row(nh, Nq);
    const float *qr = q + ((size_t)w.b * Nq + w.i) * C + w.h * dh;
    float qv[MAXV], acc[MAXV];
    for (int t = 0; t < MAXV; t++) {
        int c = lane + 32 * t;
        qv[t] = c < dh ? qr[c] : 0.0f;
        acc[t] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j < Nk; j++) {
        const float *kr = k + ((size_t)w.b * Nk + j) * C + w.h * dh, *vr = v + ((size_t)w.b * Nk + j) * C + w.h * dh;
        float s = 0.0f;
        for (int t = 0; t < MAXV; t++) {
            int c = lane + 32 * t;
            if (c < dh) s += qv[t] * kr[c];
        }
        s = warp_sum(s) * scale;
        float mn = fmaxf(m, s), corr = expf(m - mn), p = expf(s - mn);
        l = l * corr + p;
        for (int t = 0; t < MAXV; t++) {
            int c = lane + 32 * t;
            acc[t] = acc[t] * corr + (c < dh ? p * vr[c] : 0.0f);
        }
        m = mn;
    }
    if (!w.valid) return;
    float *orow = out + ((size_t)w.b * Nq + w.i) * C + w.h * dh;
    for (int t = 0; t < MAXV; t++) {
        int c = lane + 32 * t;
        if (c < dh) orow[c] = acc[t] / l;
    }
    if (lane == 0) lse[((size_t)w.b * nh + w.h) * Nq + w.i] = m + logf(l);
}

// Dsum[(b*nh + h)*Nq + i] = dout_i . out_i over the head's channels.
__global__ void k_attn_dsum(float *Dsum, const float *dout, const float *out, int nh, int Nq, int C) {
    int dh = C / nh, lane = threadIdx.x & 31;
    Row w = warp_row(nh, Nq);
    size_t off = ((size_t)w.b * Nq + w.i) * C + w.h * dh;
    float s = 0.0f;
    for (int c = lane; c < 32 * MAXV; c += 32)
        if (c < dh) s += dout[off + c] * out[off + c];
    s = warp_sum(s);
    if (w.valid && lane == 0) Dsum[((size_t)w.b * nh + w.h) * Nq + w.i] = s;
}

// dq_i += scale * sum_j P_ij (dout_i . v_j - D_i) k_j
__global__ void k_attn_dq(float *dq, const float *dout, const float *q, const float *k, const float *v,
                          const float *lse, const float *Dsum, int nh, int Nq, int Nk, int C, float scale) {
    int dh = C / nh, lane = threadIdx.x & 31;
    Row w = warp_row(nh, Nq);
    size_t off = ((size_t)w.b * Nq + w.i) * C + w.h * dh, st = ((size_t)w.b * nh + w.h) * Nq + w.i;
    float qv[MAXV], dv_[MAXV], acc[MAXV];
    for (int t = 0; t < MAXV; t++) {
        int c = lane + 32 * t;
        qv[t] = c < dh ? q[off + c] : 0.0f;
        dv_[t] = c < dh ? dout[off + c] : 0.0f;
        acc[t] = 0.0f;
    }
    float L = lse[st], D = Dsum[st];
    for (int j = 0; j < Nk; j++) {
        const float *kr = k + ((size_t)w.b * Nk + j) * C + w.h * dh, *vr = v + ((size_t)w.b * Nk + j) * C + w.h * dh;
        float s = 0.0f, dp = 0.0f;
        for (int t = 0; t < MAXV; t++) {
            int c = lane + 32 * t;
            if (c < dh) s += qv[t] * kr[c], dp += dv_[t] * vr[c];
        }
        s = warp_sum(s), dp = warp_sum(dp);
        float ds = expf(s * scale - L) * (dp - D);
        for (int t = 0; t < MAXV; t++) {
            int c = lane + 32 * t;
            if (c < dh) acc[t] += ds * kr[c];
        }
    }
    if (!w.valid) return;
    for (int t = 0; t < MAXV; t++) {
        int c = lane + 32 * t;
        if (c < dh) dq[off + c] += scale * acc[t];
    }
}

// For key row j: dv_j += sum_i P_ij dout_i; dk_j += scale * sum_i P_ij (dout_i . v_j - D_i) q_i
__global__ void k_attn_dkv(float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v,
                           const float *lse, const float *Dsum, int nh, int Nq, int Nk, int C, float scale) {
    int dh = C / nh, lane = threadIdx.x & 31;
    Row w = warp_row(nh, Nk);  // w.i is the key row here
    size_t off = ((size_t)w.b * Nk + w.i) * C + w.h * dh;
    float kv[MAXV], vv[MAXV], ak[MAXV], av[MAXV];
    for (int t = 0; t < MAXV; t++) {
        int c = lane + 32 * t;
        kv[t] = c < dh ? k[off + c] : 0.0f;
        vv[t] = c < dh ? v[off + c] : 0.0f;
        ak[t] = av[t] = 0.0f;
    }
    const float *L = lse + ((size_t)w.b * nh + w.h) * Nq, *D = Dsum + ((size_t)w.b * nh + w.h) * Nq;
    for (int i = 0; i < Nq; i++) {
        size_t qo = ((size_t)w.b * Nq + i) * C + w.h * dh;
        float s = 0.0f, dp = 0.0f;
        for (int t = 0; t < MAXV; t++) {
            int c = lane + 32 * t;
            if (c < dh) s += q[qo + c] * kv[t], dp += dout[qo + c] * vv[t];
        }
        s = warp_sum(s), dp = warp_sum(dp);
        float p = expf(s * scale - L[i]), ds = p * (dp - D[i]);
        for (int t = 0; t < MAXV; t++) {
            int c = lane + 32 * t;
            if (c < dh) av[t] += p * dout[qo + c], ak[t] += ds * q[qo + c];
        }
    }
    if (!w.valid) return;
    for (int t = 0; t < MAXV; t++) {
        int c = lane + 32 * t;
        if (c >= dh) continue;
        if (dk) dk[off + c] += scale * ak[t];
        if (dv) dv[off + c] += av[t];
    }
}

static void check_heads(int C, int nh) {
    if (nh <= 0 || C % nh || C / nh > 32 * MAXV)
        FATAL("cu_attention: %d channels in %d heads: heads must divide the channels into at most %d each", C, nh,
              32 * MAXV);
}
// Grid (x: blocks of warps over nh*R rows, y: samples).
static dim3 row_grid(int nh, int R, int B) {
    long rows = (long)nh * R, per = LD_CU_BLOCK / 32;
    return dim3((unsigned)((rows + per - 1) / per), (unsigned)B);
}

extern "C" {
void cu_attention_forward(DevCtx *d, float *out, float *lse, const float *q, const float *k, const float *v, int B,
                          int Nq, int Nk, int C, int nh) {
    check_heads(C, nh);
    if ((long)B * Nq * C == 0) return;
    float scale = 1.0f / sqrtf((float)(C / nh));
    LD_LAUNCH(k_attn_fwd, row_grid(nh, Nq, B), dim3(LD_CU_BLOCK), dev_stream(d), out, lse, q, k, v, nh, Nq, Nk, C,
              scale);
    CU_LAUNCHED();
}
void cu_attention_backward(DevCtx *d, float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *out, const float *lse, int B, int Nq, int Nk,
                           int C, int nh) {
    check_heads(C, nh);
    if ((long)B * Nq * C == 0 || (!dq && !dk && !dv)) return;
    float scale = 1.0f / sqrtf((float)(C / nh));
    float *Dsum = dev_scratch(d, (size_t)B * nh * Nq);
    LD_LAUNCH(k_attn_dsum, row_grid(nh, Nq, B), dim3(LD_CU_BLOCK), dev_stream(d), Dsum, dout, out, nh, Nq, C);
    CU_LAUNCHED();
    if (dq) {
        LD_LAUNCH(k_attn_dq, row_grid(nh, Nq, B), dim3(LD_CU_BLOCK), dev_stream(d), dq, dout, q, k, v, lse, Dsum, nh,
                  Nq, Nk, C, scale);
        CU_LAUNCHED();
    }
    if ((dk || dv) && Nk > 0) {
        LD_LAUNCH(k_attn_dkv, row_grid(nh, Nk, B), dim3(LD_CU_BLOCK), dev_stream(d), dk, dv, dout, q, k, v, lse, Dsum,
                  nh, Nq, Nk, C, scale);
        CU_LAUNCHED();
    }
}
}
