// batch.c — see batch.h.
#include "data/batch.h"

#include "data/conditioning.h"

void batch_alloc(Batch *bt, int b, size_t numel, int LD) {
    bt->b = b, bt->numel = numel, bt->LD = LD;
    bt->P = 0, bt->pooled = bt->time_ids = NULL;  // batch_alloc_added, for text_time models
    bt->x0 = xmalloc((size_t)b * numel * sizeof(float));
    bt->xt = xmalloc((size_t)b * numel * sizeof(float));
    bt->noise = xmalloc((size_t)b * numel * sizeof(float));
    bt->ctx = xmalloc((size_t)b * LD * sizeof(float));
    bt->tf = xmalloc((size_t)b * sizeof(float));
    bt->ti = xmalloc((size_t)b * sizeof(int));
}

void batch_alloc_added(Batch *bt, int P) {
    bt->P = P;
    if (P <= 0) return;
    bt->pooled = xmalloc((size_t)bt->b * P * sizeof(float));
    bt->time_ids = xmalloc((size_t)bt->b * LD_TIME_IDS * sizeof(float));
}

UNetAdded batch_added(const Batch *bt, int i) {
    UNetAdded a = {NULL, NULL};
    if (bt->P > 0) a = (UNetAdded){bt->pooled + (size_t)i * bt->P, bt->time_ids + (size_t)i * LD_TIME_IDS};
    return a;
}

void batch_free(Batch *bt) {
    free(bt->pooled), free(bt->time_ids);
    bt->pooled = bt->time_ids = NULL;
    free(bt->x0), free(bt->xt), free(bt->noise), free(bt->ctx), free(bt->tf), free(bt->ti);
    bt->x0 = bt->xt = bt->noise = bt->ctx = bt->tf = NULL;
    bt->ti = NULL;
}

void batch_fill(Batch *bt, const DataConfig *dc, long run_seed, const Dataset *d, const Schedule *s, long step, long g0,
                int b, int B) {
    CHECK(b <= bt->b);
    const uint64_t seed = (uint64_t)run_seed;
    int64_t N = dataset_size(d);
    for (int i = 0; i < b; i++) {
        long g = g0 + i, k = step * B + g;  // global sample k of the run
        int64_t idx = dataset_order(seed, k / N, N, k % N);
        int drop = cond_drop(seed, (uint64_t)step, (uint64_t)g, dc->cfg_drop);
        dataset_get(d, idx, bt->x0 + i * bt->numel, bt->ctx + (size_t)i * bt->LD, NULL, drop);
        if (bt->P > 0)
            dataset_get_added(d, idx, bt->pooled + (size_t)i * bt->P, bt->time_ids + (size_t)i * LD_TIME_IDS, drop);
    }
    schedule_draw_timesteps(bt->ti, b, s->T, seed, (uint64_t)step, (uint64_t)g0);
    schedule_draw_noise(bt->noise, b, bt->numel, seed, (uint64_t)step, (uint64_t)g0);
    schedule_q_sample(s, bt->xt, bt->x0, bt->noise, bt->ti, b, bt->numel);
    for (int i = 0; i < b; i++) bt->tf[i] = (float)bt->ti[i];
    (void)B;
}

void batch_on_init(BatchOn *o, const Batch *bt, const Backend *be) {
    *o = (BatchOn){be, bt->xt, bt->noise, bt->ctx, bt->tf, bt->pooled, bt->time_ids, bt->P};
    if (!be->on_device) return;
    size_t b = (size_t)bt->b;
    o->xt = be->mem.alloc(be->ctx, b * bt->numel);
    o->noise = be->mem.alloc(be->ctx, b * bt->numel);
    o->ctx = be->mem.alloc(be->ctx, b * (size_t)bt->LD + 1);
    o->tf = be->mem.alloc(be->ctx, b);
    if (bt->P > 0) {
        o->pooled = be->mem.alloc(be->ctx, b * (size_t)bt->P);
        o->time_ids = be->mem.alloc(be->ctx, b * LD_TIME_IDS);
    }
}

void batch_on_load(BatchOn *o, const Batch *bt, int b) {
    const Backend *be = o->be;
    if (!be->on_device) return;
    CHECK(b <= bt->b);
    size_t n = (size_t)b;
    be->upload(be->ctx, o->xt, bt->xt, n * bt->numel);
    be->upload(be->ctx, o->noise, bt->noise, n * bt->numel);
    be->upload(be->ctx, o->ctx, bt->ctx, n * (size_t)bt->LD);
    be->upload(be->ctx, o->tf, bt->tf, n);
    if (bt->P > 0) {
        be->upload(be->ctx, o->pooled, bt->pooled, n * (size_t)bt->P);
        be->upload(be->ctx, o->time_ids, bt->time_ids, n * LD_TIME_IDS);
    }
}

UNetAdded batch_on_added(const BatchOn *o) {
    return o->P > 0 ? (UNetAdded){o->pooled, o->time_ids} : (UNetAdded){NULL, NULL};
}

void batch_on_free(BatchOn *o) {
    const Backend *be = o->be;
    if (be && be->on_device) {
        float *p[] = {o->xt, o->noise, o->ctx, o->tf, o->pooled, o->time_ids};
        for (size_t i = 0; i < sizeof p / sizeof *p; i++)
            if (p[i]) be->mem.free(be->ctx, p[i]);
    }
    *o = (BatchOn){0};
}
