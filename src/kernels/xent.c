// xent.c — softmax cross-entropy over class logits (the classifier's loss),
// forward and backward side by side.
#include <math.h>

#include "kernels/kernels.h"

double softmax_xent_forward(float *probs, const float *logits, const int *labels, int N, int K) {
    double loss = 0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * K;
        float *p = probs + (size_t)n * K;
        double mx = z[0], s = 0;
        for (int k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;  // shift: exp never overflows
        for (int k = 0; k < K; k++) s += exp((double)z[k] - mx);
        for (int k = 0; k < K; k++) p[k] = (float)(exp((double)z[k] - mx) / s);
        if (labels) loss += log(s) + mx - z[labels[n]];
    }
    return labels ? loss / N : 0.0;
}

void softmax_xent_backward(float *dlogits, const float *probs, const int *labels, int N, int K, float scale) {
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            dlogits[(size_t)n * K + k] += scale * (probs[(size_t)n * K + k] - (k == labels[n] ? 1.0f : 0.0f));
}
