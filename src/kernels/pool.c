// pool.c — global average pooling (the classifier's feature layer), forward
// and backward side by side.
#include "kernels/kernels.h"

void global_avgpool_forward(float *out, const float *x, int B, int C, int HW) {
#pragma omp parallel for schedule(static)
    for (int bc = 0; bc < B * C; bc++) {
        const float *p = x + (size_t)bc * HW;
        double s = 0;  // double: the same mean whatever HW's size
        for (int i = 0; i < HW; i++) s += p[i];
        out[bc] = (float)(s / HW);
    }
}

void global_avgpool_backward(float *dx, const float *dout, int B, int C, int HW) {
#pragma omp parallel for schedule(static)
    for (int bc = 0; bc < B * C; bc++) {
        float g = dout[bc] / (float)HW, *p = dx + (size_t)bc * HW;
        for (int i = 0; i < HW; i++) p[i] += g;
    }
}
