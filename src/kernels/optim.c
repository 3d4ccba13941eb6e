// optim.c — the optimizer's element math on a flat parameter buffer (AdamW's
// update, the weight EMA, the global gradient norm and clipping), as kernels
// so every backend has them; train/adamw.c keeps the state and the schedule.
// Formulas and summation order: train/adamw.h.
#include <math.h>

#include "core/common.h"
#include "kernels/kernels.h"

enum { NORM_CHUNK = 1 << 16 };

double grad_norm(const float *g, size_t n) {
    size_t nc = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *part = xmalloc((nc ? nc : 1) * sizeof(double));
    // chunks are fixed by n alone, so the sum order never depends on threads
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nc; c++) {
        size_t lo = c * NORM_CHUNK, hi = lo + NORM_CHUNK < n ? lo + NORM_CHUNK : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    double s = 0;
    for (size_t c = 0; c < nc; c++) s += part[c];
    free(part);
    return sqrt(s);
}

double grad_clip(float *g, size_t n, double max_norm) {
    double norm = grad_norm(g, n);
    if (max_norm <= 0) return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float c = (float)coef;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) g[i] *= c;
    }
    return norm;
}

void adamw_update(float *params, const float *grads, float *m, float *v, size_t n, double lr, long step,
                  double beta1, double beta2, double eps, double weight_decay) {
    double bc1 = 1.0 - pow(beta1, (double)step);
    double bc2 = 1.0 - pow(beta2, (double)step);
    // scalars rounded to float once, then float32 element math as torch does
    const float decay = (float)(1.0 - lr * weight_decay);
    const float b1 = (float)beta1, omb1 = (float)(1.0 - beta1);
    const float b2 = (float)beta2, omb2 = (float)(1.0 - beta2);
    const float bc2_sqrt = (float)sqrt(bc2), step_size = (float)(lr / bc1);
    const float e = (float)eps;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        float p = params[i] * decay;
        float mi = m[i] * b1 + omb1 * g;
        float vi = v[i] * b2 + omb2 * (g * g);
        float denom = sqrtf(vi) / bc2_sqrt + e;
        params[i] = p - step_size * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}

void ema_update(float *ema, const float *params, size_t n, double decay) {
    const float d = (float)decay, omd = (float)(1.0 - decay);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) ema[i] = d * ema[i] + omd * params[i];
}
