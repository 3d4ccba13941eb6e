// conv.cu — linear layers and 2-D convolutions on the GPU (ops.h), both as
// cuBLAS products at the context's precision. A convolution is im2col over a
// chunk of samples (dev_scratch) and one strided-batched GEMM sharing the
// weights; 1x1 stride-1 needs no columns. Backward: the weight gradient adds
// one GEMM per sample in sample order and the input gradient goes back
// through col2im, one thread per input pixel gathering its taps, so nothing is
// summed by atomics and the result repeats run to run. Where the context's
// convolutions are on cuDNN (dev_set_conv), the products go there instead
// (conv_cudnn.cu) and bias and its gradient stay here; a shape cuDNN has no
// deterministic algorithm for runs this file's path.
#include "cuda/conv_cudnn.h"
#include "cuda/cu_common.cuh"
#include "cuda/ops.h"


// Column floats one chunk may hold (128 MiB); a chunk has at least one sample.
#define COL_CHUNK_FLOATS ((size_t)32 << 20)

// out[r, c] += b[c] over rows of OC, or out[s, c, hw] += b[c] (inner = HW).
__global__ void k_bias(float *out, const float *b, size_t n, int OC, size_t inner) {
    CU_GRID_LOOP(i, n) out[i] += b[(i / inner) % OC];
}
// Column sums in fixed slices of rows, then over slices: db[c] += sum_r dout[r, c].
__global__ void k_colsum_part(float *part, const float *x, int N, int C, int chunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int r0 = blockIdx.y * chunk, r1 = r0 + chunk < N ? r0 + chunk : N;
    if (c >= C) return;
    float s = 0;
    for (int r = r0; r < r1; r++) s += x[(size_t)r * C + c];
    part[(size_t)blockIdx.y * C + c] = s;
}
__global__ void k_colsum_fin(float *db, const float *part, int C, int slices) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double s = 0;
    for (int k = 0; k < slices; k++) s += part[(size_t)k * C + c];
    db[c] += (float)s;
}
// db[co] += sum over samples and pixels of dout[s, co, hw]: one block per channel.
__global__ void k_chan_sum(float *db, const float *dout, int B, int C, size_t HW) {
    int c = blockIdx.x;
    double s = 0;
    for (size_t j = threadIdx.x; j < (size_t)B * HW; j += blockDim.x) s += dout[((j / HW) * C + c) * HW + j % HW];
    s = cu_block_sum(s);
    if (threadIdx.x == 0) db[c] += (float)s;
}
// col[s][(ci*k + ky)*k + kx][oy*Wo + ox] = x[s][ci][oy*st - pad + ky][ox*st - pad + kx] (0 outside)
__global__ void k_im2col(float *col, const float *x, int nb, int Cin, int H, int W, int k, int st, int pad, int Ho,
                         int Wo) {
    size_t HoWo = (size_t)Ho * Wo, n = (size_t)nb * Cin * k * k * HoWo;
    CU_GRID_LOOP(i, n) {
        size_t p = i % HoWo, row = i / HoWo;
        int kk = (int)(row % (k * k));
        size_t sc = row / (k * k);  // s*Cin + ci
        int oy = (int)(p / Wo), ox = (int)(p % Wo), iy = oy * st - pad + kk / k, ix = ox * st - pad + kk % k;
        col[i] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[(sc * H + iy) * W + ix] : 0.0f;
    }
}
// dx[s][ci][iy][ix] += sum of dcol over the (ky, kx, oy, ox) that read it.
__global__ void k_col2im(float *dx, const float *dcol, int nb, int Cin, int H, int W, int k, int st, int pad, int Ho,
                         int Wo) {
    size_t n = (size_t)nb * Cin * H * W, HoWo = (size_t)Ho * Wo;
    CU_GRID_LOOP(i, n) {
        int ix = (int)(i % W), iy = (int)((i / W) % H);
        size_t sc = i / ((size_t)H * W);
        float s = 0;
        for (int ky = 0; ky < k; ky++) {
            int ty = iy + pad - ky;
            if (ty < 0 || ty % st) continue;
            int oy = ty / st;
            if (oy >= Ho) continue;
            for (int kx = 0; kx < k; kx++) {
                int tx = ix + pad - kx;
                if (tx < 0 || tx % st) continue;
                int ox = tx / st;
                if (ox >= Wo) continue;
                s += dcol[(sc * k * k + ky * k + kx) * HoWo + (size_t)oy * Wo + ox];
            }
        }
        dx[i] += s;
    }
}

static void add_bias(DevCtx *d, float *out, const float *b, size_t n, int OC, size_t inner) {
    if (!b || n == 0) return;
    LD_LAUNCH(k_bias, dim3(cu_blocks(n)), dim3(LD_CU_BLOCK), dev_stream(d), out, b, n, OC, inner);
    CU_LAUNCHED();
}

extern "C" {
void cu_linear_forward(DevCtx *d, float *out, const float *x, const float *w, const float *b, int N, int C, int OC) {
    dev_gemm(d, 0, 1, N, OC, C, 1.0f, x, C, w, C, 0.0f, out, OC);
    add_bias(d, out, b, (size_t)N * OC, OC, 1);
}
void cu_linear_residual_forward(DevCtx *d, float *out, const float *x, const float *w, const float *b,
                                const float *res, int N, int C, int OC) {
    if (out != res) dev_copy(d, out, res, (size_t)N * OC);
    dev_gemm(d, 0, 1, N, OC, C, 1.0f, x, C, w, C, 1.0f, out, OC);
    add_bias(d, out, b, (size_t)N * OC, OC, 1);
}
void cu_linear_backward(DevCtx *d, float *dx, float *dw, float *db, const float *dout, const float *x,
                        const float *w, int N, int C, int OC) {
    if (dx) dev_gemm(d, 0, 0, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dx, C);
    if (dw) dev_gemm(d, 1, 0, OC, C, N, 1.0f, dout, OC, x, C, 1.0f, dw, C);
    if (db && N > 0 && OC > 0) {
        const int chunk = 64;
        int slices = (N + chunk - 1) / chunk;
        float *part = dev_scratch(d, (size_t)slices * OC);
        unsigned gx = (OC + LD_CU_BLOCK - 1) / LD_CU_BLOCK;
        LD_LAUNCH(k_colsum_part, dim3(gx, slices), dim3(LD_CU_BLOCK), dev_stream(d), part, dout, N, OC, chunk);
        CU_LAUNCHED();
        LD_LAUNCH(k_colsum_fin, dim3(gx), dim3(LD_CU_BLOCK), dev_stream(d), db, part, OC, slices);
        CU_LAUNCHED();
    }
}

void cu_conv2d_forward(DevCtx *d, float *out, const float *x, const float *w, const float *b, int B, int Cin, int H,
                       int W, int Cout, int k, int stride, int pad) {
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    size_t HoWo = (size_t)Ho * Wo, K = (size_t)Cin * k * k, nout = (size_t)B * Cout * HoWo;
    if (nout == 0) return;
#ifdef LD_HAVE_CUDNN
    DnnConvs *dnn = dev_dnn(d);
    if (dnn && dnn_conv2d_forward(dnn, d, out, x, w, B, Cin, H, W, Cout, k, stride, pad)) {
        add_bias(d, out, b, nout, Cout, HoWo);
        return;
    }
    if (dnn) dev_conv_fell_back(d);
#endif
    if (k == 1 && stride == 1 && pad == 0) {
        dev_gemm_batched(d, 0, 0, Cout, (int)HoWo, Cin, 1.0f, w, Cin, 0, x, (int)HoWo, (long)(Cin * HoWo), 0.0f, out,
                         (int)HoWo, (long)(Cout * HoWo), B);
    } else {
        size_t per = K * HoWo;
        int chunk = per >= COL_CHUNK_FLOATS ? 1 : (int)(COL_CHUNK_FLOATS / per);
        if (chunk > B) chunk = B;
        float *col = dev_scratch(d, (size_t)chunk * per);
        for (int s0 = 0; s0 < B; s0 += chunk) {
            int nb = B - s0 < chunk ? B - s0 : chunk;
            size_t n = (size_t)nb * per;
            LD_LAUNCH(k_im2col, dim3(cu_blocks(n)), dim3(LD_CU_BLOCK), dev_stream(d), col,
                      x + (size_t)s0 * Cin * H * W, nb, Cin, H, W, k, stride, pad, Ho, Wo);
            CU_LAUNCHED();
            dev_gemm_batched(d, 0, 0, Cout, (int)HoWo, (int)K, 1.0f, w, (int)K, 0, col, (int)HoWo, (long)per, 0.0f,
                             out + (size_t)s0 * Cout * HoWo, (int)HoWo, (long)(Cout * HoWo), nb);
        }
    }
    add_bias(d, out, b, nout, Cout, HoWo);
}

void cu_conv2d_backward(DevCtx *d, float *dx, float *dw, float *db, const float *dout, const float *x,
                        const float *w, int B, int Cin, int H, int W, int Cout, int k, int stride, int pad) {
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    size_t HoWo = (size_t)Ho * Wo, K = (size_t)Cin * k * k;
    if ((size_t)B * Cout * HoWo == 0) return;
    if (db) {
        LD_LAUNCH(k_chan_sum, dim3(Cout), dim3(LD_CU_BLOCK), dev_stream(d), db, dout, B, Cout, HoWo);
        CU_LAUNCHED();
    }
#ifdef LD_HAVE_CUDNN
    DnnConvs *dnn = dev_dnn(d);
    if (dnn && dw) {
        if (dnn_conv2d_backward_filter(dnn, d, dw, dout, x, B, Cin, H, W, Cout, k, stride, pad))
            dw = NULL;  // done
        else
            dev_conv_fell_back(d);
    }
    if (dnn && dx) {
        if (dnn_conv2d_backward_data(dnn, d, dx, dout, w, B, Cin, H, W, Cout, k, stride, pad))
            dx = NULL;
        else
            dev_conv_fell_back(d);
    }
#endif
    if (k == 1 && stride == 1 && pad == 0) {
        if (dw)
            for (int s = 0; s < B; s++)
                dev_gemm(d, 0, 1, Cout, Cin, (int)HoWo, 1.0f, dout + (size_t)s * Cout * HoWo, (int)HoWo,
                         x + (size_t)s * Cin * HoWo, (int)HoWo, 1.0f, dw, Cin);
        if (dx)
            dev_gemm_batched(d, 1, 0, Cin, (int)HoWo, Cout, 1.0f, w, Cin, 0, dout, (int)HoWo, (long)(Cout * HoWo),
                             1.0f, dx, (int)HoWo, (long)(Cin * HoWo), B);
        return;
    }
    if (!dw && !dx) return;
    size_t per = K * HoWo;
    int chunk = per >= COL_CHUNK_FLOATS ? 1 : (int)(COL_CHUNK_FLOATS / per);
    if (chunk > B) chunk = B;
    // columns (for dw) and column gradients (for dx) side by side in one scratch
    float *col = dev_scratch(d, (size_t)chunk * per * 2), *dcol = col + (size_t)chunk * per;
    for (int s0 = 0; s0 < B; s0 += chunk) {
        int nb = B - s0 < chunk ? B - s0 : chunk;
        size_t n = (size_t)nb * per;
        const float *dout0 = dout + (size_t)s0 * Cout * HoWo;
        if (dw) {
            LD_LAUNCH(k_im2col, dim3(cu_blocks(n)), dim3(LD_CU_BLOCK), dev_stream(d), col,
                      x + (size_t)s0 * Cin * H * W, nb, Cin, H, W, k, stride, pad, Ho, Wo);
            CU_LAUNCHED();
            for (int s = 0; s < nb; s++)
                dev_gemm(d, 0, 1, Cout, (int)K, (int)HoWo, 1.0f, dout0 + (size_t)s * Cout * HoWo, (int)HoWo,
                         col + (size_t)s * per, (int)HoWo, 1.0f, dw, (int)K);
        }
        if (dx) {
            dev_gemm_batched(d, 1, 0, (int)K, (int)HoWo, Cout, 1.0f, w, (int)K, 0, dout0, (int)HoWo,
                             (long)(Cout * HoWo), 0.0f, dcol, (int)HoWo, (long)per, nb);
            size_t nx = (size_t)nb * Cin * H * W;
            LD_LAUNCH(k_col2im, dim3(cu_blocks(nx)), dim3(LD_CU_BLOCK), dev_stream(d), dx + (size_t)s0 * Cin * H * W,
                      dcol, nb, Cin, H, W, k, stride, pad, Ho, Wo);
            CU_LAUNCHED();
        }
    }
}
}
