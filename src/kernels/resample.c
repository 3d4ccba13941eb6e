// resample.c — nearest-neighbour x2 upsampling (diffusers' Upsample2D before
// its conv): every input pixel becomes a 2x2 block; backward sums the block.
#include "kernels/kernels.h"

void upsample2x_forward(float *out, const float *x, int B, int C, int H, int W) {
    int W2 = 2 * W;
#pragma omp parallel for schedule(static)
    for (int bc = 0; bc < B * C; bc++) {
        const float *xp = x + (size_t)bc * H * W;
        float *op = out + (size_t)bc * 4 * H * W;
        for (int i = 0; i < H; i++) {
            float *r0 = op + (size_t)(2 * i) * W2, *r1 = r0 + W2;
            for (int j = 0; j < W; j++) {
                float v = xp[(size_t)i * W + j];
                r0[2 * j] = r0[2 * j + 1] = r1[2 * j] = r1[2 * j + 1] = v;
            }
        }
    }
}

void upsample2x_backward(float *dx, const float *dout, int B, int C, int H, int W) {
    if (!dx) return;
    int W2 = 2 * W;
#pragma omp parallel for schedule(static)
    for (int bc = 0; bc < B * C; bc++) {
        float *dp = dx + (size_t)bc * H * W;
        const float *op = dout + (size_t)bc * 4 * H * W;
        for (int i = 0; i < H; i++) {
            const float *r0 = op + (size_t)(2 * i) * W2, *r1 = r0 + W2;
            for (int j = 0; j < W; j++)
                dp[(size_t)i * W + j] += (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
        }
    }
}
