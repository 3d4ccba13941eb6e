// adamw.c — see adamw.h.
#include "train/adamw.h"

#include <math.h>
#include <string.h>

#include "core/common.h"

AdamW *adamw_create(size_t n, const TrainConfig *cfg) { return adamw_create_on(n, cfg, NULL); }

static float *state_alloc(const AdamW *a) {
    if (!a->be) return xcalloc(a->n ? a->n : 1, sizeof(float));
    float *p = a->be->mem.alloc(a->be->ctx, a->n);
    bk_zero(a->be, p, a->n);
    return p;
}

static void state_free(const AdamW *a, float *p) {
    if (!a->be) free(p);
    else if (p) a->be->mem.free(a->be->ctx, p);
}

AdamW *adamw_create_on(size_t n, const TrainConfig *cfg, const Backend *be) {
    AdamW *a = xcalloc(1, sizeof *a);
    a->n = n;
    a->be = be;
    a->m = state_alloc(a);
    a->v = state_alloc(a);
    a->beta1 = cfg->beta1;
    a->beta2 = cfg->beta2;
    a->eps = cfg->adam_eps;
    a->weight_decay = cfg->weight_decay;
    a->ema_decay = cfg->ema_decay;
    return a;
}

void adamw_free(AdamW *a) {
    if (!a) return;
    state_free(a, a->m);
    state_free(a, a->v);
    state_free(a, a->ema);
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
    if (a->be)
        BK(a->be, adamw_update, params, grads, a->m, a->v, a->n, lr, a->step, a->beta1, a->beta2, a->eps,
           a->weight_decay);
    else
        adamw_update(params, grads, a->m, a->v, a->n, lr, a->step, a->beta1, a->beta2, a->eps, a->weight_decay);
}

void adamw_ema_init(AdamW *a, const float *params) {
    if (a->ema_decay <= 0) return;
    if (!a->ema) a->ema = state_alloc(a);
    if (a->be)
        a->be->copy(a->be->ctx, a->ema, params, a->n);
    else
        memcpy(a->ema, params, a->n * sizeof(float));
}

void adamw_ema_update(AdamW *a, const float *params) {
    if (!a->ema) return;
    if (a->be)
        BK(a->be, ema_update, a->ema, params, a->n, a->ema_decay);
    else
        ema_update(a->ema, params, a->n, a->ema_decay);
}
