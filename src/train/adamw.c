// adamw.c — see adamw.h.
#include "train/adamw.h"

#include <math.h>
#include <string.h>

#include "core/common.h"

AdamW *adamw_create(size_t n, const TrainConfig *cfg) {
    AdamW *a = xcalloc(1, sizeof *a);
    a->n = n;
    a->m = xcalloc(n, sizeof(float));
    a->v = xcalloc(n, sizeof(float));
    a->beta1 = cfg->beta1;
    a->beta2 = cfg->beta2;
    a->eps = cfg->adam_eps;
    a->weight_decay = cfg->weight_decay;
    a->ema_decay = cfg->ema_decay;
    return a;
}

void adamw_free(AdamW *a) {
    if (!a) return;
    free(a->m);
    free(a->v);
    free(a->ema);
    free(a);
}

double adamw_lr(const TrainConfig *cfg, long step) {
    double k = (double)step + 1.0, w = cfg->warmup_steps, N = cfg->steps;
    if (k <= w) return cfg->lr * k / w;
    if (cfg->lr_schedule == LR_CONSTANT) return cfg->lr;
    if (k >= N) return 0.0;
    return cfg->lr * 0.5 * (1.0 + cos(3.14159265358979323846 * (k - w) / (N - w)));
}

enum { NORM_CHUNK = 1 << 16 };

double adamw_grad_norm(const float *g, size_t n) {
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

double adamw_clip(float *g, size_t n, double max_norm) {
    double norm = adamw_grad_norm(g, n);
    if (max_norm <= 0) return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float c = (float)coef;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) g[i] *= c;
    }
    return norm;
}

void adamw_step(AdamW *a, float *params, const float *grads, double lr) {
    a->step++;
    double bc1 = 1.0 - pow(a->beta1, (double)a->step);
    double bc2 = 1.0 - pow(a->beta2, (double)a->step);
    // scalars rounded to float once, then float32 element math as torch does
    const float decay = (float)(1.0 - lr * a->weight_decay);
    const float b1 = (float)a->beta1, omb1 = (float)(1.0 - a->beta1);
    const float b2 = (float)a->beta2, omb2 = (float)(1.0 - a->beta2);
    const float bc2_sqrt = (float)sqrt(bc2), step_size = (float)(lr / bc1);
    const float eps = (float)a->eps;
    float *m = a->m, *v = a->v;
    size_t n = a->n;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        float p = params[i] * decay;
        float mi = m[i] * b1 + omb1 * g;
        float vi = v[i] * b2 + omb2 * (g * g);
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        params[i] = p - step_size * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}

void adamw_ema_init(AdamW *a, const float *params) {
    if (a->ema_decay <= 0) return;
    if (!a->ema) a->ema = xmalloc(a->n * sizeof(float));
    memcpy(a->ema, params, a->n * sizeof(float));
}

void adamw_ema_update(AdamW *a, const float *params) {
    if (!a->ema) return;
    const float d = (float)a->ema_decay, omd = (float)(1.0 - a->ema_decay);
    float *ema = a->ema;
    size_t n = a->n;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) ema[i] = d * ema[i] + omd * params[i];
}
