// dataset.c — see dataset.h.
#include "data/dataset.h"

#include <string.h>

#include "data/conditioning.h"
#include "data/fmnist.h"
#include "data/h5data.h"
#include "core/rng.h"
#include "model/unet.h"

struct Dataset {
    DataSource source;
    DatasetShape s;
    // fashion-mnist
    Fmnist fm;
    Conditioner *cond;
    // hdf5
    H5Data *h5;
    int64_t start, count;  // resident rows
    float *lat, *ctx;      // [count, C*H*W], [count, L*D]
    float *pooled, *tids;  // [count, P], [count, 6]: text_time models only
    float *uncond;         // [L*D]
};

static Dataset *open_fmnist(const DataConfig *dc, const ModelConfig *m, const char *split, Error *e) {
    int f = 1 << (m->n_blocks - 1);
    if (m->in_channels != 1) {
        errorf(e, "data.source \"fashion-mnist\" is 1-channel pixel data [1,%d,%d] but "
               "model.in_channels is %d", FMNIST_SIDE, FMNIST_SIDE, m->in_channels);
        return NULL;
    }
    if (FMNIST_SIDE % f) {
        errorf(e, "data.source \"fashion-mnist\" is %dx%d but the model (%d blocks) needs "
               "sides that are multiples of %d", FMNIST_SIDE, FMNIST_SIDE, m->n_blocks, f);
        return NULL;
    }
    Conditioner *cond = cond_create(m->context_length, m->cross_attention_dim,
                                    (uint64_t)dc->embed_seed, e);
    if (!cond) return NULL;
    Dataset *d = xcalloc(1, sizeof *d);
    d->source = DATA_FASHION_MNIST;
    d->cond = cond;
    if (fmnist_load(&d->fm, dc->path, split, e)) {
        dataset_close(d);
        return NULL;
    }
    d->s = (DatasetShape){d->fm.n, 1, FMNIST_SIDE, FMNIST_SIDE, m->context_length,
                          m->cross_attention_dim, model_pooled_dim(m)};
    return d;
}

static Dataset *open_hdf5(const DataConfig *dc, const ModelConfig *m, const char *split, int64_t start,
                          int64_t count, Error *e) {
    const char *group;
    if (!strcmp(split, "train")) group = "";
    else if (!strcmp(split, "test")) group = "/test";
    else {
        errorf(e, "hdf5 data: split \"%s\"; expected \"train\" or \"test\"", split);
        return NULL;
    }
    H5Data *h = h5data_open(dc->path, group, e);
    if (!h) return NULL;
    if (h5data_check_model(h, m, e)) {
        h5data_close(h);
        return NULL;
    }
    H5Shape hs = h5data_shape(h);
    if (start < 0) start = 0, count = hs.n;  // dataset_open: the whole file
    if (start > hs.n || count < 0 || count > hs.n - start) {
        errorf(e, "%s: shard [%lld, %lld) is outside the file's %lld rows", dc->path,
               (long long)start, (long long)(start + count), (long long)hs.n);
        h5data_close(h);
        return NULL;
    }
    Dataset *d = xcalloc(1, sizeof *d);
    d->source = DATA_HDF5;
    d->h5 = h;
    d->s = (DatasetShape){hs.n, hs.C, hs.H, hs.W, hs.L, hs.D, model_pooled_dim(m)};  // checked: == hs.P
    size_t xn = (size_t)hs.C * hs.H * hs.W, cn = (size_t)hs.L * hs.D;
    d->start = start, d->count = count;
    d->lat = xmalloc((size_t)count * xn * sizeof(float));
    d->ctx = xmalloc((size_t)count * cn * sizeof(float));
    d->uncond = xcalloc(cn, sizeof(float));
    if (d->s.P > 0) {
        d->pooled = xmalloc((size_t)count * d->s.P * sizeof(float));
        d->tids = xmalloc((size_t)count * LD_TIME_IDS * sizeof(float));
    }
    if (h5data_read(h, start, count, d->lat, d->ctx, e) ||
        (d->s.P > 0 && h5data_read_added(h, start, count, d->pooled, d->tids, e)) ||
        (hs.has_uncond && h5data_read_uncond(h, d->uncond, e))) {
        dataset_close(d);
        return NULL;
    }
    return d;
}

Dataset *dataset_open_shard(const DataConfig *dc, const ModelConfig *m, const char *split, int64_t start,
                            int64_t count, Error *e) {
    if (dc->source == DATA_FASHION_MNIST) return open_fmnist(dc, m, split, e);
    if (dc->source == DATA_HDF5) return open_hdf5(dc, m, split, start, count, e);
    errorf(e, "data.source: value %d; expected \"fashion-mnist\" or \"hdf5\"", (int)dc->source);
    return NULL;
}

Dataset *dataset_open(const DataConfig *dc, const ModelConfig *m, const char *split, Error *e) {
    return dataset_open_shard(dc, m, split, -1, 0, e);  // start -1: every row resident
}

void dataset_close(Dataset *d) {
    if (!d) return;
    fmnist_free(&d->fm);
    cond_free(d->cond);
    h5data_close(d->h5);
    free(d->lat);
    free(d->ctx);
    free(d->uncond);
    free(d->pooled);
    free(d->tids);
    free(d);
}

int64_t dataset_size(const Dataset *d) { return d->s.n; }

DatasetShape dataset_shape(const Dataset *d) { return d->s; }

void dataset_uncond(const Dataset *d, float *ctx) {
    if (d->source == DATA_FASHION_MNIST) cond_context(d->cond, COND_EMPTY, ctx);
    else memcpy(ctx, d->uncond, (size_t)d->s.L * d->s.D * sizeof(float));
}

void dataset_get(const Dataset *d, int64_t index, float *x, float *ctx, int *label,
                 int drop_caption) {
    CHECK(index >= 0 && index < d->s.n);
    if (d->source == DATA_FASHION_MNIST) {
        int cls = d->fm.labels[index];
        if (x) fmnist_image(&d->fm, (int)index, x);
        if (ctx) cond_context(d->cond, drop_caption ? COND_EMPTY : cls, ctx);
        if (label) *label = cls;
        return;
    }
    size_t xn = (size_t)d->s.C * d->s.H * d->s.W, cn = (size_t)d->s.L * d->s.D;
    if (label) *label = -1;
    if (index >= d->start && index < d->start + d->count) {
        size_t r = (size_t)(index - d->start);
        if (x) memcpy(x, d->lat + r * xn, xn * sizeof(float));
        if (ctx && !drop_caption) memcpy(ctx, d->ctx + r * cn, cn * sizeof(float));
    } else {
        Error e;
        if (h5data_read(d->h5, index, 1, x, drop_caption ? NULL : ctx, &e)) FATAL("%s", e.msg);
    }
    if (ctx && drop_caption) dataset_uncond(d, ctx);
}

void dataset_get_added(const Dataset *d, int64_t index, float *pooled, float *time_ids, int drop_caption) {
    CHECK(index >= 0 && index < d->s.n && d->s.P > 0);
    size_t P = (size_t)d->s.P;
    if (d->source == DATA_FASHION_MNIST) {
        if (pooled) memset(pooled, 0, P * sizeof(float));
        if (time_ids) unet_neutral_time_ids(time_ids, d->s.H, d->s.W);
        return;
    }
    if (index >= d->start && index < d->start + d->count) {
        size_t r = (size_t)(index - d->start);
        if (pooled) memcpy(pooled, d->pooled + r * P, P * sizeof(float));
        if (time_ids) memcpy(time_ids, d->tids + r * LD_TIME_IDS, LD_TIME_IDS * sizeof(float));
    } else {
        Error e;
        if (h5data_read_added(d->h5, index, 1, drop_caption ? NULL : pooled, time_ids, &e)) FATAL("%s", e.msg);
    }
    if (pooled && drop_caption) memset(pooled, 0, P * sizeof(float));
}

void dataset_shard_range(int64_t n, int rank, int size, int64_t *start, int64_t *count) {
    CHECK(n >= 0 && size >= 1 && rank >= 0 && rank < size);
    int64_t q = n / size, r = n % size;
    *start = rank * q + (rank < r ? rank : r);
    *count = q + (rank < r);
}

int64_t dataset_order(uint64_t seed, int64_t epoch, int64_t n, int64_t position) {
    CHECK(n >= 1 && position >= 0 && position < n && epoch >= 0);
    if (n == 1) return 0;
    // balanced Feistel over 2^(2*half) >= n values; cycle-walking (re-encrypt
    // until the value lands in [0, n)) restricts it to a permutation of [0, n),
    // and since the domain is < 4n the expected number of walks is < 4
    int bits = 64 - __builtin_clzll((uint64_t)(n - 1));
    int half = (bits + 1) / 2;
    uint64_t mask = ((uint64_t)1 << half) - 1;
    uint64_t key = rng_bits(seed, RNG_DATA_ORDER, (uint64_t)epoch);
    uint64_t x = (uint64_t)position;
    do {
        uint64_t l = x >> half, r = x & mask;
        for (uint64_t round = 0; round < 6; round++) {
            uint64_t t = l ^ (rng_bits(key, round, r) & mask);
            l = r;
            r = t;
        }
        x = l << half | r;
    } while (x >= (uint64_t)n);
    return (int64_t)x;
}
