// testutil.c — see testutil.h.
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "model/model_config.h"
#include "io/config.h"
#include "core/params.h"
#include "model/checkpoint.h"

int tu_failures = 0;
int tu_checks = 0;

void tu_expect(int ok, const char *file, int line, const char *expr, const char *fmt, ...) {
    tu_checks++;
    if (ok) return;
    tu_failures++;
    fprintf(stderr, "FAIL %s:%d: %s: ", file, line, expr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void tu_rng_seed(TuRng *r, uint64_t seed) { r->s = seed * 2685821657736338717ULL + 1; }

float tu_uniform(TuRng *r, float lo, float hi) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    uint64_t v = r->s * 2685821657736338717ULL;
    return lo + (hi - lo) * (float)((v >> 40) * (1.0 / 16777216.0));
}

void tu_fill(TuRng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = tu_uniform(r, lo, hi);
}

double tu_max_rel_err(const float *a, const float *b, size_t n, double floor) {
    double scale = floor, err = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
        double d = fabs((double)a[i] - b[i]);
        if (d > err || isnan(d)) err = isnan(d) ? INFINITY : d;
    }
    return err / scale;
}

int tu_set_threads(int n) {
    int prev = omp_get_max_threads();
    omp_set_num_threads(n);
    return prev;
}

int tu_report(const char *name) {
    printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

void tu_tiny_model(ModelConfig *m, int in_channels, int out_channels, int sample_size, int layers_per_block) {
    memset(m, 0, sizeof *m);
    m->in_channels = in_channels, m->out_channels = out_channels, m->sample_size = sample_size;
    m->n_blocks = 2;
    m->block_out_channels[0] = 8, m->block_out_channels[1] = 16;
    m->layers_per_block = layers_per_block;
    m->down_cross[0] = 1, m->up_cross[1] = 1, m->mid_cross = 1;
    m->heads[0] = 2, m->heads[1] = 4;
    m->transformer_layers[0] = 1, m->transformer_layers[1] = 1;
    m->cross_attention_dim = 6;
    m->norm_num_groups = 4;
    m->norm_eps = 1e-5f;
    m->flip_sin_to_cos = 1;
    m->context_length = 3;
}

float *tu_read_tensor(const StFile *f, const char *name, int64_t *shape) {
    const StTensor *t = st_find(f, name);
    if (!t) FATAL("%s: fixture tensor %s missing", f->path, name);
    float *x = xmalloc((size_t)t->numel * sizeof(float));
    Error e;
    if (st_read_f32(f, t, x, &e)) FATAL("%s", e.msg);
    if (shape)
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
    return x;
}

void tu_read_inputs(const StFile *io, const UNet *u, TuInputs *in) {
    memset(in, 0, sizeof *in);
    int64_t xs[4], cs[3];
    in->sample = tu_read_tensor(io, "sample", xs), in->t = tu_read_tensor(io, "timesteps", NULL);
    in->ctx = tu_read_tensor(io, "context", cs), in->R = tu_read_tensor(io, "loss_weight", NULL);
    in->B = (int)xs[0], in->H = (int)xs[2], in->W = (int)xs[3], in->L = (int)cs[1];
    if (st_find(io, "pooled")) in->add.pooled = tu_read_tensor(io, "pooled", NULL);
    if (st_find(io, "time_ids")) in->add.time_ids = tu_read_tensor(io, "time_ids", NULL);
    char name[256];
    for (int k = 0; k < u->n_taps; k++) {
        snprintf(name, sizeof name, "tap_weight.%s", u->taps[k].name);
        in->Q[k] = tu_read_tensor(io, name, NULL);
    }
    in->n_q = u->n_taps;
}

UNet *tu_load_case(const char *model, StFile *io, const char **removed, TuInputs *in) {
    char path[512];
    Error e;
    snprintf(path, sizeof path, LD_SOURCE_DIR "/tests/reference/fixtures/%s_io.safetensors", model);
    if (st_open(io, path, &e)) FATAL("%s", e.msg);
    *removed = st_meta(io, "removed");
    if (!*removed) FATAL("%s: no \"removed\" metadata", path);
    UNet *u = tu_load_fixture(model, 1, granularity_of_names(*removed));
    tu_read_inputs(io, u, in);
    return u;
}

void tu_free_inputs(TuInputs *in) {
    for (int k = 0; k < in->n_q; k++) free(in->Q[k]);
    free(in->sample), free(in->t), free(in->ctx), free(in->R);
    free((float *)in->add.pooled), free((float *)in->add.time_ids);
    memset(in, 0, sizeof *in);
}

UNet *tu_load_fixture(const char *model, double eps_factor, Granularity g) {
    char path[512];
    JobConfig jc;
    Error e;
    snprintf(path, sizeof path, LD_SOURCE_DIR "/tests/reference/fixtures/%s.cfg", model);
    if (job_config_load(&jc, path, NULL, 0, &e)) FATAL("%s", e.msg);
    jc.model.norm_eps = (float)(jc.model.norm_eps * eps_factor);
    UNet *u = unet_create_at(&jc.model, g, NULL, &e);
    if (!u) FATAL("%s", e.msg);
    StFile wf;
    snprintf(path, sizeof path, LD_SOURCE_DIR "/tests/reference/fixtures/%s_weights.safetensors", model);
    if (st_open(&wf, path, &e) || unet_load_weights(u, &wf, &e)) FATAL("%s", e.msg);
    st_close(&wf);
    return u;
}

UNet *tu_pruned_copy(const UNet *u, const uint8_t *rm) {
    Error e;
    UNet *s = unet_create_at(&u->cfg, u->gran, rm, &e);
    if (!s) FATAL("%s", e.msg);
    for (int i = 0; i < s->pt.n; i++) {
        const ParamTensor *t = &s->pt.t[i], *f = params_find(&u->pt, t->name);
        CHECK(f && f->numel == t->numel);
        memcpy(s->params + t->offset, u->params + f->offset, t->numel * sizeof(float));
    }
    return s;
}
