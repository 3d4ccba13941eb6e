// calib.c — see calib.h.
#include "data/calib.h"

#include <string.h>

#include "data/dataset.h"
#include "core/rng.h"
#include "diffusion/schedule.h"

int calib_build(Calib *cs, const PruneConfig *pc, const DataConfig *dc, const DiffusionConfig *diff,
                const ModelConfig *m, long seed, Error *e) {
    return calib_build_from(cs, dc, diff, m, seed, "train", pc->calib_samples, pc->batch, e);
}

int calib_build_from(Calib *cs, const DataConfig *dc, const DiffusionConfig *diff, const ModelConfig *m, long seed,
                     const char *split, int n, int batch, Error *e) {
    memset(cs, 0, sizeof *cs);
    Dataset *d = dataset_open_shard(dc, m, split, 0, 0, e);
    if (!d) return -1;
    Schedule s;
    if (schedule_init(&s, diff, e)) {
        dataset_close(d);
        return -1;
    }
    DatasetShape sh = dataset_shape(d);
    cs->n = n, cs->C = cs->Co = sh.C, cs->H = sh.H, cs->W = sh.W, cs->L = sh.L, cs->D = sh.D;
    cs->batch = batch < n ? batch : n;
    size_t per = (size_t)sh.C * sh.H * sh.W;
    cs->xt = xmalloc((size_t)n * per * sizeof(float));
    cs->noise = xmalloc((size_t)n * per * sizeof(float));
    cs->teacher = xmalloc((size_t)n * per * sizeof(float));
    cs->ctx = xmalloc((size_t)n * sh.L * sh.D * sizeof(float));
    cs->t = xmalloc((size_t)n * sizeof(float));
    int *ti = xmalloc((size_t)n * sizeof(int));
    cs->P = sh.P;
    if (sh.P > 0) {
        cs->pooled = xmalloc((size_t)n * sh.P * sizeof(float));
        cs->time_ids = xmalloc((size_t)n * LD_TIME_IDS * sizeof(float));
    }
    const uint64_t useed = (uint64_t)seed;
    for (int i = 0; i < n; i++) {
        int64_t idx = (int64_t)rng_below(useed, RNG_CALIB, (uint64_t)i, (uint64_t)sh.n);
        dataset_get(d, idx, cs->xt + i * per, cs->ctx + (size_t)i * sh.L * sh.D, NULL, 0);
        if (sh.P > 0)
            dataset_get_added(d, idx, cs->pooled + (size_t)i * sh.P, cs->time_ids + (size_t)i * LD_TIME_IDS, 0);
        ti[i] = (int)rng_below(useed, RNG_CALIB, ((uint64_t)1 << 32) + (uint64_t)i, (uint64_t)s.T);
        cs->t[i] = (float)ti[i];
        uint64_t key = rng_bits(useed, RNG_CALIB, ((uint64_t)2 << 32) + (uint64_t)i);
        rng_normal_fill(cs->noise + i * per, per, key, RNG_CALIB, 0);
    }
    schedule_q_sample(&s, cs->xt, cs->xt, cs->noise, ti, n, per);  // x_0 -> x_t in place
    free(ti);
    schedule_free(&s);
    dataset_close(d);
    return 0;
}

void calib_free(Calib *cs) {
    free(cs->xt), free(cs->noise), free(cs->teacher), free(cs->ctx), free(cs->t);
    free(cs->pooled), free(cs->time_ids);
    memset(cs, 0, sizeof *cs);
}

int calib_run_range(UNet *u, const Calib *cs, const uint8_t *skip, int first, int count, float *out, double *sse,
                    Error *e) {
    if (first < 0 || count < 0 || first > cs->n - count)
        return errorf(e, "calibration samples [%d, %d) are outside the set of %d", first, first + count, cs->n);
    size_t per_in = (size_t)cs->C * cs->H * cs->W, per = (size_t)cs->Co * cs->H * cs->W;
    const Backend *be = u->be;  // on a device, cs is the calib_on copy there
    float *tmp = out ? NULL : be->mem.alloc(be->ctx, (size_t)cs->batch * per);
    double sum = 0;
    UNetKeep keep = unet_set_keep(u, UNET_KEEP_NONE);  // outputs only: no interior kept
    for (int k = 0; k < count; k += cs->batch) {
        int i = first + k, b = count - k < cs->batch ? count - k : cs->batch;
        float *o = out ? out + (size_t)k * per : tmp;
        UNetAdded add = calib_added(cs, i);
        if (unet_forward_added(u, o, cs->xt + (size_t)i * per_in, cs->t + i, cs->ctx + (size_t)i * cs->L * cs->D, &add,
                               b, cs->H, cs->W, cs->L, skip, e)) {
            unet_set_keep(u, keep);
            if (tmp) be->mem.free(be->ctx, tmp);
            return -1;
        }
        if (sse && be->on_device) {  // the device's sum (fixed order, in doubles) as the mean of the chunk
            size_t m = (size_t)b * per;
            sum += BK(be, mse_forward, o, cs->teacher + (size_t)i * per, m) * (double)m;
        } else if (sse) {
            const float *ref = cs->teacher + (size_t)i * per;
            for (size_t j = 0; j < (size_t)b * per; j++) {
                double d = (double)o[j] - ref[j];
                sum += d * d;
            }
        }
    }
    if (sse) *sse = sum;
    unet_set_keep(u, keep);
    if (tmp) be->mem.free(be->ctx, tmp);
    return 0;
}

int calib_run(UNet *u, const Calib *cs, const uint8_t *skip, float *out, double *mse, Error *e) {
    double sum = 0;
    if (calib_run_range(u, cs, skip, 0, cs->n, out, mse ? &sum : NULL, e)) return -1;
    if (mse) *mse = sum / ((double)cs->n * cs->Co * cs->H * cs->W);
    return 0;
}

UNetAdded calib_added(const Calib *cs, int first) {
    UNetAdded a = {NULL, NULL};
    if (cs->P > 0 && cs->pooled && cs->time_ids)
        a = (UNetAdded){cs->pooled + (size_t)first * cs->P, cs->time_ids + (size_t)first * LD_TIME_IDS};
    return a;
}

int calib_shards(const Calib *cs) { return (cs->n + cs->batch - 1) / cs->batch; }

void calib_shard(const Calib *cs, int s, int *first, int *count) {
    *first = s * cs->batch;
    *count = cs->n - *first < cs->batch ? cs->n - *first : cs->batch;
}

int calib_teacher(UNet *teacher, Calib *cs, Error *e) { return calib_run(teacher, cs, NULL, cs->teacher, NULL, e); }

// n floats of src in be's memory (NULL stays NULL)
static float *copy_on(const Backend *be, const float *src, size_t n) {
    if (!src) return NULL;
    float *p = be->mem.alloc(be->ctx, n ? n : 1);
    be->upload(be->ctx, p, src, n);
    return p;
}

void calib_on(Calib *dst, const Calib *src, const Backend *be) {
    *dst = *src;
    if (!be->on_device) return;
    size_t n = (size_t)src->n, in = n * src->C * src->H * src->W;
    dst->xt = copy_on(be, src->xt, in);
    dst->noise = copy_on(be, src->noise, in);
    dst->ctx = copy_on(be, src->ctx, n * src->L * src->D);
    dst->t = copy_on(be, src->t, n);
    dst->pooled = copy_on(be, src->pooled, n * src->P);
    dst->time_ids = copy_on(be, src->time_ids, n * LD_TIME_IDS);
    dst->teacher = copy_on(be, src->teacher, n * src->Co * src->H * src->W);
}

int calib_teacher_on(UNet *teacher, Calib *cs, Calib *dst, Error *e) {
    const Backend *be = teacher->be;
    if (!be->on_device) {
        if (calib_teacher(teacher, cs, e)) {
            memset(dst, 0, sizeof *dst);
            return -1;
        }
        calib_on(dst, cs, be);
        return 0;
    }
    float *host = cs->teacher;
    cs->teacher = NULL;  // what is computed: nothing to upload
    calib_on(dst, cs, be);
    cs->teacher = host;
    size_t n = (size_t)cs->n * cs->Co * cs->H * cs->W;
    dst->teacher = be->mem.alloc(be->ctx, n ? n : 1);
    if (calib_run(teacher, dst, NULL, dst->teacher, NULL, e)) {
        calib_free_on(dst, be);
        return -1;
    }
    be->download(be->ctx, host, dst->teacher, n);
    return 0;
}

void calib_free_on(Calib *c, const Backend *be) {
    if (be->on_device) {
        float *p[] = {c->xt, c->noise, c->ctx, c->t, c->pooled, c->time_ids, c->teacher};
        for (size_t i = 0; i < sizeof p / sizeof *p; i++)
            if (p[i]) be->mem.free(be->ctx, p[i]);
    }
    memset(c, 0, sizeof *c);
}
