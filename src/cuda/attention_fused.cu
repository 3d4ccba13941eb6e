// attention_fused.cu — attention in one kernel per direction, its products on
// tensor cores through CUDA's warp matrix API (wmma), at the context's TF32 or
// BF16 precision: the logits never leave the block's shared memory, where
// attention.cu's cuBLAS path writes each query tile's [heads, rows, keys]
// logits to device memory and reads them back several times.
//
// A block is one (sample, head, tile of rows), 16 rows per warp; the head's
// rows are read straight from [B, N, C] (head h at channel h * dh) and stored
// in shared memory as the tensor-core operand type (bf16, or fp32 converted to
// TF32 at each fragment load), the head size padded with zeros to a multiple
// of 16. Scores, probabilities' sums and the accumulators stay fp32.
//   forward (a block per query tile): keys and values in chunks; per chunk
//     S = Q K^T, the online softmax per row (running max m and sum l, the
//     accumulator O rescaled by exp(m_old - m)), O += P V; then out = O / l
//     and lse = m + log l, the CPU kernel's log-sum-exp of the scaled logits.
//   backward, two kernels so that every gradient row has one owner and sums in
//     a fixed order, without atomics (FlashAttention-2 adds dq with atomics):
//     a block per key tile accumulates dv += P^T dO and dk += dS^T Q over the
//     query chunks; a block per query tile accumulates dq += dS K over the key
//     chunks. Both recompute P = exp(scale S - lse) from the forward's lse, and
//     dS = scale P (dP - D) with dP = dO V^T and D = dO . out per row
//     (attention.cu's k_attn_dsum). Two of the products (S and dP) run twice.
// Within a block, the wmma tiles, the softmax and the loads follow each other
// in a fixed order, so results repeat run to run.
#include <math.h>
#include <string.h>

#include "cuda/cu_common.cuh"
#include "cuda/ops.h"
#ifdef LD_CUDA_EMU
#include "cuda/emu/wmma_emu.h"
#else
#include <cuda_bf16.h>
#include <mma.h>
#endif
using namespace nvcuda;

// The tensor-core operand type: its wmma fragments, k step and shared-memory
// row padding (a multiple of 16 bytes, as wmma's ldm must be).
struct Bf16 {
    typedef __nv_bfloat16 T;
    enum { KS = 16, PAD = 8 };
    typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> ARow;
    typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major> ACol;
    typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> BRow;
    typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> BCol;
    typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> Acc;
    static __device__ __forceinline__ T of(float x) { return __float2bfloat16(x); }
    template <class F> static __device__ __forceinline__ void fix(F &) {}
};
struct Tf32 {
    typedef float T;
    enum { KS = 8, PAD = 4 };
    typedef wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> ARow;
    typedef wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> ACol;
    typedef wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> BRow;
    typedef wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> BCol;
    typedef wmma::fragment<wmma::accumulator, 16, 16, 8, float> Acc;
    static __device__ __forceinline__ T of(float x) { return x; }
    // wmma's TF32 operands must be converted after the load
    template <class F> static __device__ __forceinline__ void fix(F &f) {
        for (int i = 0; i < f.num_elements; i++) f.x[i] = wmma::__float_to_tf32(f.x[i]);
    }
};

// A kernel's arguments and its shared-memory layout (byte offsets; leading
// dimensions in elements: ldT operand rows of the head, ldS fp32 score rows,
// ldP operand score rows, ldO fp32 accumulator rows). R rows per block (16 per
// warp), BC rows per chunk of the other side.
struct Fa {
    float *out, *lse, *dq, *dk, *dv;
    const float *q, *k, *v, *dout, *lse_in, *Dsum;
    int Nq, Nk, C, nh, dh, Dp, R, BC;
    float scale;
    int ldT, ldS, ldP, ldO;
    int oQ, oK, oV, odO, oS, odP, oP, odS, oO, odK, odV, oL, oD, bytes;
};

// acc += A B over k in [0, K): A 16 x K and B K x 16 in shared memory, the
// k-th step at a + k * a_step and b + k * b_step (1 along a row, ld down a column).
template <class P, class FA, class FB>
__device__ __forceinline__ void mma_k(typename P::Acc &acc, const typename P::T *a, int lda, int a_step,
                                      const typename P::T *b, int ldb, int b_step, int K) {
    FA fa;
    FB fb;
    for (int kk = 0; kk < K; kk += P::KS) {
        wmma::load_matrix_sync(fa, a + (size_t)kk * a_step, lda);
        wmma::load_matrix_sync(fb, b + (size_t)kk * b_step, ldb);
        P::fix(fa), P::fix(fb);
        wmma::mma_sync(acc, fa, fb, acc);
    }
}

// dst (16 x 16 fp32, row stride ld) = A B^T over the Dp channels: A's 16 rows
// and B's 16 rows of the head in shared memory (row stride ldT) — one tile of
// S = Q K^T or dP = dO V^T.
template <class P>
__device__ __forceinline__ void score_tile(float *dst, int ld, const typename P::T *a, const typename P::T *b, int ldT,
                                           int Dp) {
    typename P::Acc acc;
    wmma::fill_fragment(acc, 0.0f);
    mma_k<P, typename P::ARow, typename P::BCol>(acc, a, ldT, 1, b, ldT, 1, Dp);
    wmma::store_matrix_sync(dst, acc, ld, wmma::mem_row_major);
}
// acc (16 x Dp fp32 rows, stride ldO) += A B over k in [0, K): A of layout FA
// (a_step as in mma_k), B row-major K x Dp with row stride ldb — the warp's
// rows of O += P V, dq += dS K, dv += P^T dO or dk += dS^T Q.
template <class P, class FA>
__device__ __forceinline__ void accumulate_rows(float *acc_rows, int ldO, int Dp, const typename P::T *a, int lda,
                                                int a_step, const typename P::T *b, int ldb, int K) {
    for (int n = 0; n < Dp; n += 16) {
        typename P::Acc acc;
        wmma::load_matrix_sync(acc, acc_rows + n, ldO, wmma::mem_row_major);
        mma_k<P, FA, typename P::BRow>(acc, a, lda, a_step, b + n, ldb, ldb, K);
        wmma::store_matrix_sync(acc_rows + n, acc, ldO, wmma::mem_row_major);
    }
}

// Rows [row0, row0 + n) of a head ([N, C] at src, dh channels) into dst
// (n x Dp, row stride ld), zeros past N and past dh; the whole block loads.
template <class P>
__device__ void load_rows(typename P::T *dst, int ld, const float *src, int C, int row0, int n, int N, int dh,
                          int Dp) {
    for (int e = threadIdx.x; e < n * Dp; e += blockDim.x) {
        int r = e / Dp, c = e - r * Dp;
        float x = row0 + r < N && c < dh ? src[(size_t)(row0 + r) * C + c] : 0.0f;
        dst[r * ld + c] = P::of(x);
    }
}
__device__ void zero_rows(float *dst, int ld, int n, int Dp) {
    for (int e = threadIdx.x; e < n * Dp; e += blockDim.x) dst[(e / Dp) * ld + e % Dp] = 0.0f;
}
// dst[row0 + r] (+)= acc[r] over the warp's 16 rows of a [n, ldO] accumulator:
// the warp's lanes along each row, so the global writes coalesce.
__device__ void store_rows(float *dst, int C, int row0, int N, const float *acc, int ldO, int dh, int accumulate,
                           const float *div) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int e = lane; e < 16 * dh; e += 32) {
        int r = warp * 16 + e / dh, c = e % dh;
        if (row0 + r >= N) continue;
        float x = acc[r * ldO + c];
        if (div) x /= div[r];
        float *o = dst + (size_t)(row0 + r) * C + c;
        *o = accumulate ? *o + x : x;
    }
}

template <class P> __global__ void k_fa_forward(Fa a) {
    typedef typename P::T T;
    CU_DYN_SMEM(sm);
    T *Qs = (T *)(sm + a.oQ), *Ks = (T *)(sm + a.oK), *Vs = (T *)(sm + a.oV), *Ps = (T *)(sm + a.oP);
    float *Ss = (float *)(sm + a.oS), *Os = (float *)(sm + a.oO), *Ls = (float *)(sm + a.oL);
    float *Ms = (float *)(sm + a.oD);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, h = blockIdx.y, b = blockIdx.z, i0 = blockIdx.x * a.R;
    size_t hc = (size_t)h * a.dh;
    const float *kb = a.k + (size_t)b * a.Nk * a.C + hc, *vb = a.v + (size_t)b * a.Nk * a.C + hc;
    load_rows<P>(Qs, a.ldT, a.q + (size_t)b * a.Nq * a.C + hc, a.C, i0, a.R, a.Nq, a.dh, a.Dp);
    zero_rows(Os, a.ldO, a.R, a.Dp);
    // the online softmax: row r of the tile by two lanes of its warp, each half of the chunk
    int r = warp * 16 + (lane >> 1), half = lane & 1, c0 = half * (a.BC / 2), c1 = c0 + a.BC / 2;
    float m = -INFINITY, l = 0.0f;
    T *Qw = Qs + warp * 16 * a.ldT, *Pw = Ps + warp * 16 * a.ldP;
    float *Sw = Ss + warp * 16 * a.ldS, *Ow = Os + warp * 16 * a.ldO;
    for (int j0 = 0; j0 < a.Nk; j0 += a.BC) {
        __syncthreads();  // every warp is done with the last chunk
        load_rows<P>(Ks, a.ldT, kb, a.C, j0, a.BC, a.Nk, a.dh, a.Dp);
        load_rows<P>(Vs, a.ldT, vb, a.C, j0, a.BC, a.Nk, a.dh, a.Dp);
        __syncthreads();
        for (int n = 0; n < a.BC; n += 16) score_tile<P>(Sw + n, a.ldS, Qw, Ks + n * a.ldT, a.ldT, a.Dp);  // S_w = Q_w K^T
        __syncwarp();
        const float *srow = Ss + r * a.ldS;
        int nv = a.Nk - j0;  // keys of the chunk that exist
        float mx = -INFINITY;
        for (int c = c0; c < c1; c++)
            if (c < nv) mx = fmaxf(mx, srow[c] * a.scale);
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float mn = fmaxf(m, mx), alpha = expf(m - mn), sum = 0.0f;  // the chunk has a key: mn is finite
        T *prow = Ps + r * a.ldP;
        for (int c = c0; c < c1; c++) {
            float p = c < nv ? expf(srow[c] * a.scale - mn) : 0.0f;
            prow[c] = P::of(p);
            sum += p;
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * alpha + sum, m = mn;
        float *orow = Os + r * a.ldO;
        for (int c = half; c < a.Dp; c += 2) orow[c] *= alpha;
        __syncwarp();
        accumulate_rows<P, typename P::ARow>(Ow, a.ldO, a.Dp, Pw, a.ldP, 1, Vs, a.ldT, a.BC);  // O_w += P_w V
    }
    if (!half) Ls[r] = l, Ms[r] = m;
    __syncwarp();
    store_rows(a.out + (size_t)b * a.Nq * a.C + hc, a.C, i0, a.Nq, Os, a.ldO, a.dh, 0, Ls);
    int rr = warp * 16 + lane;
    if (lane < 16 && i0 + rr < a.Nq) a.lse[((size_t)b * a.nh + h) * a.Nq + i0 + rr] = Ms[rr] + logf(Ls[rr]);
}

// The forward's lse and D of rows [row0, row0 + n) into shared memory (0 past Nq).
__device__ void load_row_stats(float *Ls, float *Ds, const Fa &a, int b, int h, int row0, int n) {
    for (int e = threadIdx.x; e < n; e += blockDim.x) {
        int i = row0 + e;
        size_t o = ((size_t)b * a.nh + h) * a.Nq + i;
        Ls[e] = i < a.Nq ? a.lse_in[o] : 0.0f;
        Ds[e] = i < a.Nq ? a.Dsum[o] : 0.0f;
    }
}

// A block per tile of R keys (16 per warp): dv += P^T dO, dk += dS^T Q over
// the query chunks of BC rows.
template <class P> __global__ void k_fa_dkv(Fa a) {
    typedef typename P::T T;
    CU_DYN_SMEM(sm);
    T *Ks = (T *)(sm + a.oK), *Vs = (T *)(sm + a.oV), *Qs = (T *)(sm + a.oQ), *dOs = (T *)(sm + a.odO);
    T *Pt = (T *)(sm + a.oP), *dSt = (T *)(sm + a.odS);
    float *Ss = (float *)(sm + a.oS), *dPs = (float *)(sm + a.odP), *dKs = (float *)(sm + a.odK);
    float *dVs = (float *)(sm + a.odV), *Lq = (float *)(sm + a.oL), *Dq = (float *)(sm + a.oD);
    int warp = threadIdx.x >> 5, nw = blockDim.x >> 5, h = blockIdx.y, b = blockIdx.z, j0 = blockIdx.x * a.R;
    size_t hc = (size_t)h * a.dh;
    const float *qb = a.q + (size_t)b * a.Nq * a.C + hc, *gb = a.dout + (size_t)b * a.Nq * a.C + hc;
    load_rows<P>(Ks, a.ldT, a.k + (size_t)b * a.Nk * a.C + hc, a.C, j0, a.R, a.Nk, a.dh, a.Dp);
    load_rows<P>(Vs, a.ldT, a.v + (size_t)b * a.Nk * a.C + hc, a.C, j0, a.R, a.Nk, a.dh, a.Dp);
    zero_rows(dKs, a.ldO, a.R, a.Dp);
    zero_rows(dVs, a.ldO, a.R, a.Dp);
    int tn = a.R / 16, tiles = a.BC / 16 * tn;
    float *dKw = dKs + warp * 16 * a.ldO, *dVw = dVs + warp * 16 * a.ldO;
    for (int i0 = 0; i0 < a.Nq; i0 += a.BC) {
        __syncthreads();
        load_rows<P>(Qs, a.ldT, qb, a.C, i0, a.BC, a.Nq, a.dh, a.Dp);
        load_rows<P>(dOs, a.ldT, gb, a.C, i0, a.BC, a.Nq, a.dh, a.Dp);
        load_row_stats(Lq, Dq, a, b, h, i0, a.BC);
        __syncthreads();
        for (int t = warp; t < tiles; t += nw) {  // S = Q K^T and dP = dO V^T, BC x R, by 16 x 16 tiles
            int tm = t / tn, tc = t % tn;
            size_t so = (size_t)tm * 16 * a.ldS + tc * 16;
            score_tile<P>(Ss + so, a.ldS, Qs + tm * 16 * a.ldT, Ks + tc * 16 * a.ldT, a.ldT, a.Dp);
            score_tile<P>(dPs + so, a.ldS, dOs + tm * 16 * a.ldT, Vs + tc * 16 * a.ldT, a.ldT, a.Dp);
        }
        __syncthreads();
        for (int e = threadIdx.x; e < a.BC * a.R; e += blockDim.x) {
            int r = e / a.R, c = e % a.R;
            float p = i0 + r < a.Nq && j0 + c < a.Nk ? expf(Ss[r * a.ldS + c] * a.scale - Lq[r]) : 0.0f;
            Pt[r * a.ldP + c] = P::of(p);
            dSt[r * a.ldP + c] = P::of(p * (dPs[r * a.ldS + c] - Dq[r]) * a.scale);
        }
        __syncthreads();
        // the warp's 16 keys: P^T and dS^T are column-major views of P and dS
        if (a.dv) accumulate_rows<P, typename P::ACol>(dVw, a.ldO, a.Dp, Pt + warp * 16, a.ldP, a.ldP, dOs, a.ldT, a.BC);
        if (a.dk) accumulate_rows<P, typename P::ACol>(dKw, a.ldO, a.Dp, dSt + warp * 16, a.ldP, a.ldP, Qs, a.ldT, a.BC);
    }
    __syncwarp();
    size_t kofs = (size_t)b * a.Nk * a.C + hc;
    if (a.dk) store_rows(a.dk + kofs, a.C, j0, a.Nk, dKs, a.ldO, a.dh, 1, NULL);
    if (a.dv) store_rows(a.dv + kofs, a.C, j0, a.Nk, dVs, a.ldO, a.dh, 1, NULL);
}

// A block per tile of R query rows: dq += dS K over the key chunks of BC.
template <class P> __global__ void k_fa_dq(Fa a) {
    typedef typename P::T T;
    CU_DYN_SMEM(sm);
    T *Qs = (T *)(sm + a.oQ), *dOs = (T *)(sm + a.odO), *Ks = (T *)(sm + a.oK), *Vs = (T *)(sm + a.oV);
    T *dSt = (T *)(sm + a.odS);
    float *Ss = (float *)(sm + a.oS), *dPs = (float *)(sm + a.odP), *dQs = (float *)(sm + a.oO);
    float *Lq = (float *)(sm + a.oL), *Dq = (float *)(sm + a.oD);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, h = blockIdx.y, b = blockIdx.z, i0 = blockIdx.x * a.R;
    size_t hc = (size_t)h * a.dh, qofs = (size_t)b * a.Nq * a.C + hc;
    const float *kb = a.k + (size_t)b * a.Nk * a.C + hc, *vb = a.v + (size_t)b * a.Nk * a.C + hc;
    load_rows<P>(Qs, a.ldT, a.q + qofs, a.C, i0, a.R, a.Nq, a.dh, a.Dp);
    load_rows<P>(dOs, a.ldT, a.dout + qofs, a.C, i0, a.R, a.Nq, a.dh, a.Dp);
    load_row_stats(Lq, Dq, a, b, h, i0, a.R);
    zero_rows(dQs, a.ldO, a.R, a.Dp);
    T *Qw = Qs + warp * 16 * a.ldT, *dOw = dOs + warp * 16 * a.ldT, *dSw = dSt + warp * 16 * a.ldP;
    float *Sw = Ss + warp * 16 * a.ldS, *dPw = dPs + warp * 16 * a.ldS, *dQw = dQs + warp * 16 * a.ldO;
    for (int j0 = 0; j0 < a.Nk; j0 += a.BC) {
        __syncthreads();
        load_rows<P>(Ks, a.ldT, kb, a.C, j0, a.BC, a.Nk, a.dh, a.Dp);
        load_rows<P>(Vs, a.ldT, vb, a.C, j0, a.BC, a.Nk, a.dh, a.Dp);
        __syncthreads();
        for (int n = 0; n < a.BC; n += 16) {  // the warp's rows of S = Q K^T and dP = dO V^T
            score_tile<P>(Sw + n, a.ldS, Qw, Ks + n * a.ldT, a.ldT, a.Dp);
            score_tile<P>(dPw + n, a.ldS, dOw, Vs + n * a.ldT, a.ldT, a.Dp);
        }
        __syncwarp();
        for (int e = lane; e < 16 * a.BC; e += 32) {
            int r = warp * 16 + e / a.BC, c = e % a.BC;
            float p = i0 + r < a.Nq && j0 + c < a.Nk ? expf(Ss[r * a.ldS + c] * a.scale - Lq[r]) : 0.0f;
            dSt[r * a.ldP + c] = P::of(p * (dPs[r * a.ldS + c] - Dq[r]) * a.scale);
        }
        __syncwarp();
        accumulate_rows<P, typename P::ARow>(dQw, a.ldO, a.Dp, dSw, a.ldP, 1, Ks, a.ldT, a.BC);  // dQ_w += dS_w K
        __syncwarp();
    }
    store_rows(a.dq + qofs, a.C, i0, a.Nq, dQs, a.ldO, a.dh, 1, NULL);
}

enum FaKind { FA_FORWARD, FA_DKV, FA_DQ };

static int carve(int *total, size_t bytes) {
    int off = (*total + 127) & ~127;
    *total = off + (int)bytes;
    return off;
}
// The layout of `kind` with R rows per block and chunks of BC; a.bytes its size.
static void fa_layout(Fa *a, FaKind kind, int R, int BC, size_t tsz, int pad) {
    int Dp = a->Dp, t = 0;
    // the score tiles: R x BC (forward, dq) or BC queries x R keys (dkv)
    int srows = kind == FA_DKV ? BC : R, scols = kind == FA_DKV ? R : BC;
    a->R = R, a->BC = BC;
    a->ldT = Dp + pad, a->ldS = scols + 4, a->ldP = scols + pad, a->ldO = Dp + 4;
    a->oQ = carve(&t, (size_t)(kind == FA_DKV ? BC : R) * a->ldT * tsz);
    a->oK = carve(&t, (size_t)(kind == FA_DKV ? R : BC) * a->ldT * tsz);
    a->oV = carve(&t, (size_t)(kind == FA_DKV ? R : BC) * a->ldT * tsz);
    a->odO = kind == FA_FORWARD ? 0 : carve(&t, (size_t)(kind == FA_DKV ? BC : R) * a->ldT * tsz);
    a->oS = carve(&t, (size_t)srows * a->ldS * 4);
    a->odP = kind == FA_FORWARD ? 0 : carve(&t, (size_t)srows * a->ldS * 4);
    a->oP = kind == FA_DQ ? 0 : carve(&t, (size_t)srows * a->ldP * tsz);
    a->odS = kind == FA_FORWARD ? 0 : carve(&t, (size_t)srows * a->ldP * tsz);
    a->oO = kind == FA_DKV ? 0 : carve(&t, (size_t)R * a->ldO * 4);
    a->odK = kind == FA_DKV ? carve(&t, (size_t)R * a->ldO * 4) : 0;
    a->odV = kind == FA_DKV ? carve(&t, (size_t)R * a->ldO * 4) : 0;
    a->oL = carve(&t, (size_t)(kind == FA_DKV ? BC : R) * 4);
    a->oD = carve(&t, (size_t)(kind == FA_DKV ? BC : R) * 4);
    a->bytes = t;
}
// Tile sizes: the largest of these whose layout fits 64 KiB (a few blocks per
// SM), else the largest that fits the device's opt-in limit; 0 where none does.
// A guess until measured on a GPU (README, GPU).
static int fa_plan(DevCtx *d, Fa *a, FaKind kind, size_t tsz, int pad) {
    static const int cand[][2] = {{64, 64}, {64, 32}, {32, 32}, {16, 32}, {16, 16}};
    int n = (int)(sizeof cand / sizeof *cand);
    for (int pass = 0; pass < 2; pass++) {
        int cap = pass == 0 ? 64 << 10 : dev_smem_optin(d);
        for (int i = 0; i < n; i++) {
            fa_layout(a, kind, cand[i][0], cand[i][1], tsz, pad);
            if (a->bytes <= cap) return 1;
        }
    }
    return 0;
}

static int fa_setup(DevCtx *d, Fa *a, FaKind kind, int Nq, int Nk, int C, int nh) {
    GemmPrecision p = dev_precision(d);
    if (p == GEMM_FP32 || nh <= 0 || C % nh || Nk <= 0) return 0;
    memset(a, 0, sizeof *a);
    a->Nq = Nq, a->Nk = Nk, a->C = C, a->nh = nh, a->dh = C / nh, a->Dp = (a->dh + 15) / 16 * 16;
    a->scale = 1.0f / sqrtf((float)a->dh);
    return p == GEMM_BF16 ? fa_plan(d, a, kind, sizeof(__nv_bfloat16), Bf16::PAD)
                          : fa_plan(d, a, kind, sizeof(float), Tf32::PAD);
}

static void fa_launch(DevCtx *d, void (*kern)(Fa), const Fa &a, int tiles, int B) {
    if (a.bytes > (48 << 10)) CU_OK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, a.bytes));
    dim3 grid((unsigned)tiles, (unsigned)a.nh, (unsigned)B), block((unsigned)(a.R / 16 * 32));
    LD_LAUNCH_SMEM(kern, grid, block, (size_t)a.bytes, dev_stream(d), a);
    CU_LAUNCHED();
}

extern "C" {
int cu_attention_fused_fits(DevCtx *d, int Nq, int Nk, int C, int nh) {
    Fa a;
    return fa_setup(d, &a, FA_FORWARD, Nq, Nk, C, nh) && fa_setup(d, &a, FA_DKV, Nq, Nk, C, nh) &&
           fa_setup(d, &a, FA_DQ, Nq, Nk, C, nh);
}

void cu_attention_fused_forward(DevCtx *d, float *out, float *lse, const float *q, const float *k, const float *v,
                                int B, int Nq, int Nk, int C, int nh) {
    Fa a;
    if (!fa_setup(d, &a, FA_FORWARD, Nq, Nk, C, nh)) FATAL("cu_attention_fused_forward: the shape does not fit");
    a.out = out, a.lse = lse, a.q = q, a.k = k, a.v = v;
    int tiles = (Nq + a.R - 1) / a.R;
    fa_launch(d, dev_precision(d) == GEMM_BF16 ? k_fa_forward<Bf16> : k_fa_forward<Tf32>, a, tiles, B);
    dev_attention_fused_ran(d);
}

void cu_attention_fused_backward(DevCtx *d, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                 const float *k, const float *v, const float *lse, const float *Dsum, int B, int Nq,
                                 int Nk, int C, int nh) {
    int bf = dev_precision(d) == GEMM_BF16;
    Fa a;
    if (dk || dv) {
        if (!fa_setup(d, &a, FA_DKV, Nq, Nk, C, nh)) FATAL("cu_attention_fused_backward: the shape does not fit");
        a.dk = dk, a.dv = dv, a.dout = dout, a.q = q, a.k = k, a.v = v, a.lse_in = lse, a.Dsum = Dsum;
        fa_launch(d, bf ? k_fa_dkv<Bf16> : k_fa_dkv<Tf32>, a, (Nk + a.R - 1) / a.R, B);
    }
    if (dq) {
        if (!fa_setup(d, &a, FA_DQ, Nq, Nk, C, nh)) FATAL("cu_attention_fused_backward: the shape does not fit");
        a.dq = dq, a.dout = dout, a.q = q, a.k = k, a.v = v, a.lse_in = lse, a.Dsum = Dsum;
        fa_launch(d, bf ? k_fa_dq<Bf16> : k_fa_dq<Tf32>, a, (Nq + a.R - 1) / a.R, B);
    }
    dev_attention_fused_ran(d);
}
}
