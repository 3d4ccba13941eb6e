// elementwise.cu — activations, layout glue, resampling and the timestep
// embedding on the GPU (ops.h). One thread per output element, grid-stride
// loops; every backward adds into its gradient, as kernels.h says.
#include "cuda/cu_common.cuh"
#include "cuda/ops.h"


__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }
// Phi(x) = P(N(0,1) <= x) as erfc, which keeps the left tail's relative accuracy.
__device__ __forceinline__ float phif_(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
__device__ __forceinline__ float normal_pdf_(float x) { return 0.39894228040143268f * expf(-0.5f * x * x); }

__global__ void k_silu_fwd(float *out, const float *x, size_t n) {
    CU_GRID_LOOP(i, n) out[i] = x[i] * sigmoidf_(x[i]);
}
__global__ void k_silu_bwd(float *dx, const float *dout, const float *x, size_t n) {
    CU_GRID_LOOP(i, n) {
        float s = sigmoidf_(x[i]);
        dx[i] += dout[i] * (s * (1.0f + x[i] * (1.0f - s)));
    }
}
__global__ void k_gelu_fwd(float *out, const float *x, size_t n) {
    CU_GRID_LOOP(i, n) out[i] = x[i] * phif_(x[i]);
}
__global__ void k_gelu_bwd(float *dx, const float *dout, const float *x, size_t n) {
    CU_GRID_LOOP(i, n) dx[i] += dout[i] * (phif_(x[i]) + x[i] * normal_pdf_(x[i]));
}
// x [N, 2H] = [hidden | gate] -> out [N, H] = hidden * gelu(gate)
__global__ void k_geglu_fwd(float *out, const float *x, size_t N, size_t H) {
    CU_GRID_LOOP(i, N * H) {
        size_t n = i / H, j = i % H;
        float hid = x[n * 2 * H + j], g = x[n * 2 * H + H + j];
        out[i] = hid * (g * phif_(g));
    }
}
__global__ void k_geglu_bwd(float *dx, const float *dout, const float *x, size_t N, size_t H) {
    CU_GRID_LOOP(i, N * H) {
        size_t n = i / H, j = i % H;
        float hid = x[n * 2 * H + j], g = x[n * 2 * H + H + j], ph = phif_(g);
        dx[n * 2 * H + j] += dout[i] * (g * ph);
        dx[n * 2 * H + H + j] += dout[i] * hid * (ph + g * normal_pdf_(g));
    }
}
__global__ void k_add(float *out, const float *a, const float *b, size_t n) {
    CU_GRID_LOOP(i, n) out[i] = a[i] + b[i];
}
__global__ void k_acc(float *dst, const float *src, size_t n) {
    CU_GRID_LOOP(i, n) dst[i] += src[i];
}
__global__ void k_scale(float *x, float s, size_t n) {
    CU_GRID_LOOP(i, n) x[i] *= s;
}
__global__ void k_chan_bias(float *out, const float *x, const float *v, size_t BC, size_t HW) {
    CU_GRID_LOOP(i, BC * HW) out[i] = x[i] + v[i / HW];
}
// dv[bc] += sum over hw of dout[bc, hw]: one block per (b, c), fixed order.
__global__ void k_row_sums(float *dv, const float *dout, size_t HW) {
    const float *r = dout + (size_t)blockIdx.x * HW;
    float s = 0;
    for (size_t j = threadIdx.x; j < HW; j += blockDim.x) s += r[j];
    s = cu_block_sum(s);
    if (threadIdx.x == 0) dv[blockIdx.x] += s;
}
// out [B, Ca+Cb, HW] from a [B, Ca, HW] and b [B, Cb, HW]; backward splits (adds).
__global__ void k_concat(float *out, const float *a, const float *b, size_t B, size_t na, size_t nb) {
    CU_GRID_LOOP(i, B * (na + nb)) {
        size_t n = i / (na + nb), j = i % (na + nb);
        out[i] = j < na ? a[n * na + j] : b[n * nb + j - na];
    }
}
__global__ void k_concat_bwd(float *da, float *db, const float *dout, size_t B, size_t na, size_t nb) {
    CU_GRID_LOOP(i, B * (na + nb)) {
        size_t n = i / (na + nb), j = i % (na + nb);
        if (j < na) {
            if (da) da[n * na + j] += dout[i];
        } else if (db) {
            db[n * nb + j - na] += dout[i];
        }
    }
}
// dst[b, j, i] (=|+=) src[b, i, j], src [B, R, S], through a 32x32 shared tile
// so both the reads and the writes are coalesced. Block (32, 8).
__global__ void k_transpose(float *dst, const float *src, int R, int S, int add) {
    __shared__ float tile[32][33];
    int b = blockIdx.z, i0 = blockIdx.y * 32, j0 = blockIdx.x * 32;
    const float *s = src + (size_t)b * R * S;
    float *d = dst + (size_t)b * R * S;
    for (int di = threadIdx.y; di < 32; di += 8) {
        int i = i0 + di, j = j0 + threadIdx.x;
        if (i < R && j < S) tile[di][threadIdx.x] = s[(size_t)i * S + j];
    }
    __syncthreads();
    for (int dj = threadIdx.y; dj < 32; dj += 8) {
        int j = j0 + dj, i = i0 + threadIdx.x;
        if (i < R && j < S) {
            float v = tile[threadIdx.x][dj];
            if (add)
                d[(size_t)j * R + i] += v;
            else
                d[(size_t)j * R + i] = v;
        }
    }
}
__global__ void k_up2(float *out, const float *x, size_t BC, size_t H, size_t W) {
    CU_GRID_LOOP(i, BC * 4 * H * W) {
        size_t W2 = 2 * W, bc = i / (4 * H * W), r = i % (4 * H * W), y = r / W2, xx = r % W2;
        out[i] = x[bc * H * W + (y / 2) * W + xx / 2];
    }
}
__global__ void k_up2_bwd(float *dx, const float *dout, size_t BC, size_t H, size_t W) {
    CU_GRID_LOOP(i, BC * H * W) {
        size_t bc = i / (H * W), r = i % (H * W), y = r / W, xx = r % W, W2 = 2 * W;
        const float *o = dout + bc * 4 * H * W + (2 * y) * W2 + 2 * xx;
        dx[i] += (o[0] + o[1]) + (o[W2] + o[W2 + 1]);
    }
}
__global__ void k_timestep(float *out, const float *t, int B, int dim, int flip, float freq_shift) {
    int half = dim / 2;
    CU_GRID_LOOP(i, (size_t)B * dim) {
        int b = (int)(i / dim), c = (int)(i % dim);
        float v = 0.0f;  // odd dim: the last column is zero
        int sin_first = !flip, j = c < half ? c : c - half;
        if (c < 2 * half) {
            // float32 step by step, as torch's get_timestep_embedding
            float neg_log_period = -9.21034049987792969f;  // (float)-ln(10000)
            float e = expf(neg_log_period * (float)j / (float)((double)half - (double)freq_shift));
            float arg = t[b] * e;
            int is_sin = (c < half) == sin_first;
            v = is_sin ? sinf(arg) : cosf(arg);
        }
        out[i] = v;
    }
}

#define LAUNCH_N(kern, n, ...)                                                                  \
    do {                                                                                        \
        LD_LAUNCH(kern, dim3(cu_blocks(n)), dim3(LD_CU_BLOCK), dev_stream(d), __VA_ARGS__);     \
        CU_LAUNCHED();                                                                          \
    } while (0)

extern "C" {
void cu_silu_forward(DevCtx *d, float *out, const float *x, size_t n) { LAUNCH_N(k_silu_fwd, n, out, x, n); }
void cu_silu_backward(DevCtx *d, float *dx, const float *dout, const float *x, size_t n) {
    if (dx) LAUNCH_N(k_silu_bwd, n, dx, dout, x, n);
}
void cu_gelu_forward(DevCtx *d, float *out, const float *x, size_t n) { LAUNCH_N(k_gelu_fwd, n, out, x, n); }
void cu_gelu_backward(DevCtx *d, float *dx, const float *dout, const float *x, size_t n) {
    if (dx) LAUNCH_N(k_gelu_bwd, n, dx, dout, x, n);
}
void cu_geglu_forward(DevCtx *d, float *out, const float *x, int N, int H) {
    size_t n = (size_t)N * H;
    LAUNCH_N(k_geglu_fwd, n, out, x, (size_t)N, (size_t)H);
}
void cu_geglu_backward(DevCtx *d, float *dx, const float *dout, const float *x, int N, int H) {
    size_t n = (size_t)N * H;
    if (dx) LAUNCH_N(k_geglu_bwd, n, dx, dout, x, (size_t)N, (size_t)H);
}
void cu_add_forward(DevCtx *d, float *out, const float *a, const float *b, size_t n) {
    LAUNCH_N(k_add, n, out, a, b, n);
}
void cu_accumulate(DevCtx *d, float *dst, const float *src, size_t n) {
    if (dst) LAUNCH_N(k_acc, n, dst, src, n);
}
void cu_scale(DevCtx *d, float *x, float s, size_t n) { LAUNCH_N(k_scale, n, x, s, n); }
void cu_add_channel_bias_forward(DevCtx *d, float *out, const float *x, const float *v, int B, int C, int HW) {
    size_t n = (size_t)B * C * HW;
    LAUNCH_N(k_chan_bias, n, out, x, v, (size_t)B * C, (size_t)HW);
}
void cu_add_channel_bias_backward(DevCtx *d, float *dx, float *dv, const float *dout, int B, int C, int HW) {
    size_t n = (size_t)B * C * HW;
    if (dx) LAUNCH_N(k_acc, n, dx, dout, n);
    if (dv && B * C > 0) {
        LD_LAUNCH(k_row_sums, dim3(B * C), dim3(LD_CU_BLOCK), dev_stream(d), dv, dout, (size_t)HW);
        CU_LAUNCHED();
    }
}
void cu_concat_channels_forward(DevCtx *d, float *out, const float *a, const float *b, int B, int Ca, int Cb,
                                int HW) {
    size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW, n = (size_t)B * (na + nb);
    LAUNCH_N(k_concat, n, out, a, b, (size_t)B, na, nb);
}
void cu_concat_channels_backward(DevCtx *d, float *da, float *db, const float *dout, int B, int Ca, int Cb, int HW) {
    size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW, n = (size_t)B * (na + nb);
    if (da || db) LAUNCH_N(k_concat_bwd, n, da, db, dout, (size_t)B, na, nb);
}
static void transpose(DevCtx *d, float *dst, const float *src, int B, int R, int S, int add) {
    if (!dst || B == 0 || R == 0 || S == 0) return;
    dim3 grid((S + 31) / 32, (R + 31) / 32, B);
    LD_LAUNCH(k_transpose, grid, dim3(32, 8), dev_stream(d), dst, src, R, S, add);
    CU_LAUNCHED();
}
void cu_transpose_cn_forward(DevCtx *d, float *out, const float *x, int B, int C, int N) {
    transpose(d, out, x, B, C, N, 0);
}
void cu_transpose_cn_backward(DevCtx *d, float *dx, const float *dout, int B, int C, int N) {
    transpose(d, dx, dout, B, N, C, 1);
}
void cu_transpose_nc_forward(DevCtx *d, float *out, const float *x, int B, int N, int C) {
    transpose(d, out, x, B, N, C, 0);
}
void cu_transpose_nc_backward(DevCtx *d, float *dx, const float *dout, int B, int N, int C) {
    transpose(d, dx, dout, B, C, N, 1);
}
void cu_upsample2x_forward(DevCtx *d, float *out, const float *x, int B, int C, int H, int W) {
    size_t n = (size_t)B * C * 4 * H * W;
    LAUNCH_N(k_up2, n, out, x, (size_t)B * C, (size_t)H, (size_t)W);
}
void cu_upsample2x_backward(DevCtx *d, float *dx, const float *dout, int B, int C, int H, int W) {
    size_t n = (size_t)B * C * H * W;
    if (dx) LAUNCH_N(k_up2_bwd, n, dx, dout, (size_t)B * C, (size_t)H, (size_t)W);
}
void cu_timestep_embedding(DevCtx *d, float *out, const float *t, int B, int dim, int flip_sin_to_cos,
                           float freq_shift) {
    size_t n = (size_t)B * dim;
    LAUNCH_N(k_timestep, n, out, t, B, dim, flip_sin_to_cos, freq_shift);
}
}
