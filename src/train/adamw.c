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

void adamw_step(AdamW *a, float *params, const float *grads, double lr) {
    a->step++;
    adamw_update(params, grads, a->m, a->v, a->n, lr, a->step, a->beta1, a->beta2, a->eps, a->weight_decay);
}

void adamw_ema_init(AdamW *a, const float *params) {
    if (a->ema_decay <= 0) return;
    if (!a->ema) a->ema = xmalloc(a->n * sizeof(float));
    memcpy(a->ema, params, a->n * sizeof(float));
}

void adamw_ema_update(AdamW *a, const float *params) {
    if (a->ema) ema_update(a->ema, params, a->n, a->ema_decay);
}
