// conv2d.c — 2-D convolution (square kernel, stride, zero padding) forward and
// backward as im2col + GEMM, one sample at a time so the column buffer stays
// Cin*k*k*Ho*Wo floats however large the batch. A 1x1 stride-1 unpadded
// convolution is already a GEMM on the NCHW layout, so it skips im2col.
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/kernels.h"

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
static void im2col(float *col, const float *x, int Cin, int H, int W, int k, int stride, int pad,
                   int Ho, int Wo) {
    int rows = Cin * k * k;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        int c = r / (k * k), ki = (r / k) % k, kj = r % k;
        const float *xc = x + (size_t)c * H * W;
        float *dst = col + (size_t)r * Ho * Wo;
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
static void col2im_add(float *dx, const float *col, int Cin, int H, int W, int k, int stride,
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
                const float *src = col + ((size_t)(c * k + ki) * k + kj) * Ho * Wo;
                for (int oy = oy0; oy < oy1; oy++) {
                    float *d = dxc + (size_t)(oy * stride - pad + ki) * W - pad + kj;
                    const float *s = src + (size_t)oy * Wo;
                    for (int ox = ox0; ox < ox1; ox++) d[ox * stride] += s[ox];
                }
            }
        }
    }
}

void conv2d_forward(float *out, const float *x, const float *w, const float *b, int B, int Cin,
                    int H, int W, int Cout, int k, int stride, int pad, float *scratch) {
    int Ho = conv2d_out_size(H, k, stride, pad), Wo = conv2d_out_size(W, k, stride, pad);
    int P = Ho * Wo, K = Cin * k * k;
    for (int n = 0; n < B; n++) {
        const float *xn = x + (size_t)n * Cin * H * W;
        float *on = out + (size_t)n * Cout * P;
        // Seed the output with the bias so the GEMM adds onto it (beta = 1).
        if (b) {
#pragma omp parallel for schedule(static)
            for (int co = 0; co < Cout; co++)
                for (int p = 0; p < P; p++) on[(size_t)co * P + p] = b[co];
        }
        const float *cols = xn;
        if (!is_pointwise(k, stride, pad)) {
            im2col(scratch, xn, Cin, H, W, k, stride, pad, Ho, Wo);
            cols = scratch;
        }
        gemm(0, 0, Cout, P, K, 1.0f, w, K, cols, P, b ? 1.0f : 0.0f, on, P);
    }
}

void conv2d_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                     const float *w, int B, int Cin, int H, int W, int Cout, int k, int stride,
                     int pad, float *scratch) {
    int Ho = conv2d_out_size(H, k, stride, pad), Wo = conv2d_out_size(W, k, stride, pad);
    int P = Ho * Wo, K = Cin * k * k;
    int pointwise = is_pointwise(k, stride, pad);
    if (db) {
        // Per output channel in a fixed order: deterministic for any thread count.
#pragma omp parallel for schedule(static)
        for (int co = 0; co < Cout; co++) {
            double s = 0.0;
            for (int n = 0; n < B; n++) {
                const float *d = dout + ((size_t)n * Cout + co) * P;
                for (int p = 0; p < P; p++) s += d[p];
            }
            db[co] += (float)s;
        }
    }
    for (int n = 0; n < B; n++) {
        const float *xn = x + (size_t)n * Cin * H * W;
        const float *dn = dout + (size_t)n * Cout * P;
        if (dw) {
            const float *cols = xn;
            if (!pointwise) {
                im2col(scratch, xn, Cin, H, W, k, stride, pad, Ho, Wo);
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
                col2im_add(dxn, scratch, Cin, H, W, k, stride, pad, Ho, Wo);
            }
        }
    }
}
