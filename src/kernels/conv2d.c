// conv2d.c — 2-D convolution (square kernel, stride, zero padding) forward and
// backward. Three algorithms (kernels.h's ConvAlgo): im2col + GEMM one sample at
// a time, so the column buffer stays Cin*k*k*Ho*Wo floats however large the
// batch (a 1x1 stride-1 unpadded convolution is already a GEMM on the NCHW
// layout, so it skips im2col); batched im2col; oneDNN (conv2d_dnnl.c). The
// default per shape is chosen by tests/bench/bench_conv.c's measurements (default_algo).
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "kernels/conv2d_dnnl.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "kernels/runtime.h"
#include "kernels/vecmath.h"

size_t conv2d_scratch_floats(int Cin, int H, int W, int k, int stride, int pad) {
    size_t Ho = (size_t)conv2d_out_size(H, k, stride, pad);
    size_t Wo = (size_t)conv2d_out_size(W, k, stride, pad);
    return (size_t)Cin * k * k * Ho * Wo;
}

static int is_pointwise(int k, int stride, int pad) { return k == 1 && stride == 1 && pad == 0; }

// Output positions o in [*lo, *hi) whose input index o*stride - pad + off lies in [0, n).
static void valid_range(int n, int No, int stride, int pad, int off, int *lo, int *hi) {
    int first = pad - off;  // smallest o*stride allowed
    int l = first <= 0 ? 0 : (first + stride - 1) / stride;
    int last = n - 1 + pad - off;  // largest o*stride allowed
    int h = last < 0 ? 0 : last / stride + 1;
    if (h > No) h = No;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

// col[(c*k + ki)*k + kj, oy*Wo + ox] = x[c, oy*s - pad + ki, ox*s - pad + kj] (0 outside),
// matching w's [Cout, Cin*k*k] flattening.
// ld: the row stride of col (Ho*Wo for one sample; more when samples sit side by side).
static void im2col(float *col, size_t ld, const float *x, int Cin, int H, int W, int k, int stride, int pad,
                   int Ho, int Wo) {
    int rows = Cin * k * k;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        int c = r / (k * k), ki = (r / k) % k, kj = r % k;
        const float *xc = x + (size_t)c * H * W;
        float *dst = col + (size_t)r * ld;
        int oy0, oy1, ox0, ox1;
        valid_range(H, Ho, stride, pad, ki, &oy0, &oy1);
        valid_range(W, Wo, stride, pad, kj, &ox0, &ox1);
        for (int oy = 0; oy < Ho; oy++) {
            float *d = dst + (size_t)oy * Wo;
            if (oy < oy0 || oy >= oy1) {
                memset(d, 0, sizeof(float) * Wo);
                continue;
            }
            const float *src = xc + (size_t)(oy * stride - pad + ki) * W - pad + kj;
            for (int ox = 0; ox < ox0; ox++) d[ox] = 0.0f;
            for (int ox = ox0; ox < ox1; ox++) d[ox] = src[ox * stride];
            for (int ox = ox1; ox < Wo; ox++) d[ox] = 0.0f;
        }
    }
}

// The adjoint of im2col: dx[c, iy, ix] += every column entry that copied it.
// One thread per input channel, so no two threads touch the same dx element.
static void col2im_add(float *dx, const float *col, size_t ld, int Cin, int H, int W, int k, int stride,
                       int pad, int Ho, int Wo) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < Cin; c++) {
        float *dxc = dx + (size_t)c * H * W;
        for (int ki = 0; ki < k; ki++) {
            int oy0, oy1;
            valid_range(H, Ho, stride, pad, ki, &oy0, &oy1);
            for (int kj = 0; kj < k; kj++) {
                int ox0, ox1;
                valid_range(W, Wo, stride, pad, kj, &ox0, &ox1);
                const float *src = col + ((size_t)(c * k + ki) * k + kj) * ld;
                for (int oy = oy0; oy < oy1; oy++) {
                    float *d = dxc + (size_t)(oy * stride - pad + ki) * W - pad + kj;
                    const float *s = src + (size_t)oy * Wo;
                    for (int ox = ox0; ox < ox1; ox++) d[ox * stride] += s[ox];
                }
            }
        }
    }
}

// Cloned (vecmath.h) for the bias seeding's simd loop, scalar on the SSE2 baseline.
LD_VEC_CLONES static void fwd_im2col(float *out, const float *x, const float *w, const float *b, int B, int Cin,
                                     int H, int W, int Cout, int k, int stride, int pad, float *scratch) {
    int Ho = conv2d_out_size(H, k, stride, pad), Wo = conv2d_out_size(W, k, stride, pad);
    int P = Ho * Wo, K = Cin * k * k;
    for (int n = 0; n < B; n++) {
        const float *xn = x + (size_t)n * Cin * H * W;
        float *on = out + (size_t)n * Cout * P;
        // Seed the output with the bias so the GEMM adds onto it (beta = 1).
        if (b) {
#pragma omp parallel for schedule(static)
            for (int co = 0; co < Cout; co++) {
                float *oc = on + (size_t)co * P, bc = b[co];
#pragma omp simd
                for (int p = 0; p < P; p++) oc[p] = bc;
            }
        }
        const float *cols = xn;
        if (!is_pointwise(k, stride, pad)) {
            im2col(scratch, (size_t)P, xn, Cin, H, W, k, stride, pad, Ho, Wo);
            cols = scratch;
        }
        gemm(0, 0, Cout, P, K, 1.0f, w, K, cols, P, b ? 1.0f : 0.0f, on, P);
    }
}

// db[co] += sum of dout over the batch and positions, per output channel in a
// fixed order: deterministic for any thread count, and the same for every algorithm.
// (Each sample's plane in vecmath.h's 8 lanes, so the loop vectorises.)
LD_VEC_CLONES void conv2d_bias_backward(float *db, const float *dout, int B, int Cout, int P) {
#pragma omp parallel for schedule(static)
    for (int co = 0; co < Cout; co++) {
        double s = 0.0;
        for (int n = 0; n < B; n++) s += ld_sum8(dout + ((size_t)n * Cout + co) * P, (size_t)P);
        db[co] += (float)s;
    }
}

static void bwd_im2col(float *dx, float *dw, const float *dout, const float *x, const float *w, int B, int Cin,
                       int H, int W, int Cout, int k, int stride, int pad, float *scratch) {
    int Ho = conv2d_out_size(H, k, stride, pad), Wo = conv2d_out_size(W, k, stride, pad);
    int P = Ho * Wo, K = Cin * k * k;
    int pointwise = is_pointwise(k, stride, pad);
    for (int n = 0; n < B; n++) {
        const float *xn = x + (size_t)n * Cin * H * W;
        const float *dn = dout + (size_t)n * Cout * P;
        if (dw) {
            const float *cols = xn;
            if (!pointwise) {
                im2col(scratch, (size_t)P, xn, Cin, H, W, k, stride, pad, Ho, Wo);
                cols = scratch;
            }
            // dW[Cout, K] += dout_n[Cout, P] @ cols[K, P]^T
            gemm(0, 1, Cout, K, P, 1.0f, dn, P, cols, P, 1.0f, dw, K);
        }
        if (dx) {
            float *dxn = dx + (size_t)n * Cin * H * W;
            if (pointwise) {
                // dx_n[Cin, HW] += W^T[Cin, Cout] @ dout_n[Cout, HW]
                gemm(1, 0, Cin, P, Cout, 1.0f, w, K, dn, P, 1.0f, dxn, P);
            } else {
                // dcols[K, P] = W^T @ dout_n, then scatter back onto the input grid.
                gemm(1, 0, K, P, Cout, 1.0f, w, K, dn, P, 0.0f, scratch, P);
                col2im_add(dxn, scratch, (size_t)P, Cin, H, W, k, stride, pad, Ho, Wo);
            }
        }
    }
}

// ---- batched im2col: the columns of several samples side by side, [K, nb*P], so
// each GEMM is nb times wider; nb is capped so col + the [Cout, nb*P] result stay
// under runtime_conv_chunk_floats(). The GEMM's output is channel-major across
// the chunk and is copied into NCHW after it.

static int batched_nb(int B, int Cin, int Cout, int k, int P) {
    size_t per = ((size_t)Cin * k * k + Cout) * P;
    size_t nb = runtime_conv_chunk_floats() / per;
    if (nb < 1) nb = 1;
    return nb < (size_t)B ? (int)nb : B;
}

static size_t batched_scratch(int B, int Cin, int H, int W, int Cout, int k, int stride, int pad) {
    int P = conv2d_out_size(H, k, stride, pad) * conv2d_out_size(W, k, stride, pad);
    return (size_t)batched_nb(B, Cin, Cout, k, P) * ((size_t)Cin * k * k + Cout) * P;
}

static void fwd_batched(float *out, const float *x, const float *w, const float *b, int B, int Cin, int H, int W,
                        int Cout, int k, int stride, int pad, float *scratch) {
    int Ho = conv2d_out_size(H, k, stride, pad), Wo = conv2d_out_size(W, k, stride, pad);
    int P = Ho * Wo, K = Cin * k * k, nb = batched_nb(B, Cin, Cout, k, P);
    for (int n0 = 0; n0 < B; n0 += nb) {
        int m = B - n0 < nb ? B - n0 : nb;
        size_t ld = (size_t)m * P;
        float *col = scratch, *y = scratch + (size_t)K * ld;
        for (int i = 0; i < m; i++)
            im2col(col + (size_t)i * P, ld, x + (size_t)(n0 + i) * Cin * H * W, Cin, H, W, k, stride, pad, Ho, Wo);
        gemm(0, 0, Cout, (int)ld, K, 1.0f, w, K, col, (int)ld, 0.0f, y, (int)ld);
#pragma omp parallel for collapse(2) schedule(static)
        for (int i = 0; i < m; i++)
            for (int co = 0; co < Cout; co++) {
                float *o = out + ((size_t)(n0 + i) * Cout + co) * P;
                const float *s = y + (size_t)co * ld + (size_t)i * P;
                float bb = b ? b[co] : 0.0f;
                for (int p = 0; p < P; p++) o[p] = s[p] + bb;
            }
    }
}

static void bwd_batched(float *dx, float *dw, const float *dout, const float *x, const float *w, int B, int Cin,
                        int H, int W, int Cout, int k, int stride, int pad, float *scratch) {
    int Ho = conv2d_out_size(H, k, stride, pad), Wo = conv2d_out_size(W, k, stride, pad);
    int P = Ho * Wo, K = Cin * k * k, nb = batched_nb(B, Cin, Cout, k, P);
    for (int n0 = 0; n0 < B; n0 += nb) {
        int m = B - n0 < nb ? B - n0 : nb;
        size_t ld = (size_t)m * P;
        float *col = scratch, *dy = scratch + (size_t)K * ld;
        // dout's chunk, channel-major: dy[co, i*P + p]
#pragma omp parallel for collapse(2) schedule(static)
        for (int i = 0; i < m; i++)
            for (int co = 0; co < Cout; co++)
                memcpy(dy + (size_t)co * ld + (size_t)i * P, dout + ((size_t)(n0 + i) * Cout + co) * P,
                       sizeof(float) * P);
        if (dw) {
            for (int i = 0; i < m; i++)
                im2col(col + (size_t)i * P, ld, x + (size_t)(n0 + i) * Cin * H * W, Cin, H, W, k, stride, pad, Ho,
                       Wo);
            gemm(0, 1, Cout, K, (int)ld, 1.0f, dy, (int)ld, col, (int)ld, 1.0f, dw, K);
        }
        if (dx) {
            gemm(1, 0, K, (int)ld, Cout, 1.0f, w, K, dy, (int)ld, 0.0f, col, (int)ld);
            for (int i = 0; i < m; i++)
                col2im_add(dx + (size_t)(n0 + i) * Cin * H * W, col + (size_t)i * P, ld, Cin, H, W, k, stride, pad,
                           Ho, Wo);
        }
    }
}

// ---- the doors (kernels.h)

// What CONV_ALGO_DEFAULT runs for this shape.
// oneDNN on its blocked layouts (reorders included) took 0.38x the time of
// per-sample im2col over the default teacher's 3x3 convolutions at batch 32, while
// oneDNN on NCHW took 1.17x and batched im2col 1.50x (bench_conv, AMD EPYC); a
// 1x1 stride-1 convolution is already one GEMM per sample with no im2col, and
// that was faster than oneDNN's (bench_conv's 1x1 rows).
static ConvAlgo default_algo(int k, int stride, int pad) {
#ifdef LD_HAVE_DNNL
    if (!is_pointwise(k, stride, pad)) return CONV_ALGO_DNNL_BLOCKED;
#else
    (void)k, (void)stride, (void)pad;
#endif
    return CONV_ALGO_IM2COL;
}

int conv2d_default_blocked(int k, int stride, int pad) {
    return default_algo(k, stride, pad) == CONV_ALGO_DNNL_BLOCKED;
}

int conv2d_algo_available(ConvAlgo a) {
    if (a == CONV_ALGO_DNNL || a == CONV_ALGO_DNNL_BLOCKED) {
#ifdef LD_HAVE_DNNL
        return 1;
#else
        return 0;
#endif
    }
    return a >= CONV_ALGO_DEFAULT && a <= CONV_ALGO_IM2COL_BATCHED;
}

size_t conv2d_algo_scratch_floats(ConvAlgo a, int B, int Cin, int H, int W, int Cout, int k, int stride, int pad) {
    if (a == CONV_ALGO_DEFAULT) a = default_algo(k, stride, pad);
    if (a == CONV_ALGO_IM2COL_BATCHED) return batched_scratch(B, Cin, H, W, Cout, k, stride, pad);
    return conv2d_scratch_floats(Cin, H, W, k, stride, pad);
}

void conv2d_forward_algo(ConvAlgo a, float *out, const float *x, const float *w, const float *b, int B, int Cin,
                         int H, int W, int Cout, int k, int stride, int pad, float *scratch) {
    if (a == CONV_ALGO_DEFAULT) a = default_algo(k, stride, pad);
    switch (a) {
    case CONV_ALGO_IM2COL_BATCHED:
        fwd_batched(out, x, w, b, B, Cin, H, W, Cout, k, stride, pad, scratch);
        return;
#ifdef LD_HAVE_DNNL
    case CONV_ALGO_DNNL:
    case CONV_ALGO_DNNL_BLOCKED:
        conv2d_dnnl_forward(out, x, w, b, B, Cin, H, W, Cout, k, stride, pad, a == CONV_ALGO_DNNL_BLOCKED);
        return;
#endif
    case CONV_ALGO_IM2COL:
        fwd_im2col(out, x, w, b, B, Cin, H, W, Cout, k, stride, pad, scratch);
        return;
    default:
        FATAL("conv2d: algorithm %d is not in this build", (int)a);
    }
}

void conv2d_backward_algo(ConvAlgo a, float *dx, float *dw, float *db, const float *dout, const float *x,
                          const float *w, int B, int Cin, int H, int W, int Cout, int k, int stride, int pad,
                          float *scratch) {
    if (a == CONV_ALGO_DEFAULT) a = default_algo(k, stride, pad);
    int P = conv2d_out_size(H, k, stride, pad) * conv2d_out_size(W, k, stride, pad);
    if (db) conv2d_bias_backward(db, dout, B, Cout, P);
    if (!dx && !dw) return;
    switch (a) {
    case CONV_ALGO_IM2COL_BATCHED:
        bwd_batched(dx, dw, dout, x, w, B, Cin, H, W, Cout, k, stride, pad, scratch);
        return;
#ifdef LD_HAVE_DNNL
    case CONV_ALGO_DNNL:
    case CONV_ALGO_DNNL_BLOCKED:
        conv2d_dnnl_backward(dx, dw, dout, x, w, B, Cin, H, W, Cout, k, stride, pad, a == CONV_ALGO_DNNL_BLOCKED);
        return;
#endif
    case CONV_ALGO_IM2COL:
        bwd_im2col(dx, dw, dout, x, w, B, Cin, H, W, Cout, k, stride, pad, scratch);
        return;
    default:
        FATAL("conv2d: algorithm %d is not in this build", (int)a);
    }
}

void conv2d_forward(float *out, const float *x, const float *w, const float *b, int B, int Cin, int H, int W,
                    int Cout, int k, int stride, int pad, float *scratch) {
    conv2d_forward_algo(CONV_ALGO_DEFAULT, out, x, w, b, B, Cin, H, W, Cout, k, stride, pad, scratch);
}

void conv2d_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w, int B,
                     int Cin, int H, int W, int Cout, int k, int stride, int pad, float *scratch) {
    conv2d_backward_algo(CONV_ALGO_DEFAULT, dx, dw, db, dout, x, w, B, Cin, H, W, Cout, k, stride, pad, scratch);
}

const char *conv2d_algo_name(ConvAlgo a) {
    static const char *const names[] = {"default", "im2col", "im2col-batched", "onednn-nchw", "onednn-blocked"};
    return a >= 0 && a <= CONV_ALGO_DNNL_BLOCKED ? names[a] : "?";
}

void conv2d_backend_describe(char *buf, size_t n) {
    char v[64];
    int blocked = conv2d_dnnl_version(v, sizeof v) && default_algo(3, 1, 1) == CONV_ALGO_DNNL_BLOCKED;
    int blk = blocked ? conv2d_dnnl_act_block() : 0;
    if (blk)
        snprintf(buf, n, "%s (its blocked layouts) for 3x3, GEMM for 1x1; ResNet interiors held in aBcd%db", v, blk);
    else if (blocked)
        snprintf(buf, n, "%s (its blocked layouts) for 3x3, GEMM for 1x1", v);
    else if (v[0])
        snprintf(buf, n, "im2col + GEMM (%s linked, not used)", v);
    else
        snprintf(buf, n, "im2col + GEMM (built without oneDNN)");
}
