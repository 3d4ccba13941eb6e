// classifier.c — see classifier.h.
#include "model/classifier.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/numerics.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/safetensors.h"

#define CLF_EPS 1e-5f

int clf_arch_check(const ClfArch *a, Error *e) {
    if (a->in_channels < 1 || a->side < 1 || a->classes < 2)
        return errorf(e, "classifier: in_channels %d, side %d, classes %d; expected >= 1, >= 1, >= 2", a->in_channels,
                      a->side, a->classes);
    if (a->n_layers < 1 || a->n_layers > CLF_MAX_LAYERS)
        return errorf(e, "classifier: %d conv layers; expected 1..%d", a->n_layers, CLF_MAX_LAYERS);
    if (a->groups < 1) return errorf(e, "classifier: %d norm groups; expected >= 1", a->groups);
    int side = a->side;
    for (int l = 0; l < a->n_layers; l++) {
        if (a->channels[l] < 1 || a->channels[l] % a->groups)
            return errorf(e, "classifier: layer %d has %d channels; expected a positive multiple of the %d norm groups",
                          l, a->channels[l], a->groups);
        if (a->strides[l] != 1 && a->strides[l] != 2)
            return errorf(e, "classifier: layer %d has stride %d; expected 1 or 2", l, a->strides[l]);
        if (side % a->strides[l])
            return errorf(e, "classifier: layer %d: stride %d does not divide the side %d it sees", l, a->strides[l],
                          side);
        side /= a->strides[l];
    }
    return 0;
}

Classifier *clf_create(const ClfArch *a, Error *e) {
    if (clf_arch_check(a, e)) return NULL;
    Classifier *c = xcalloc(1, sizeof *c);
    c->arch = *a;
    int cin = a->in_channels, side = a->side;
    for (int l = 0; l < a->n_layers; l++) {
        char conv[32], norm[32];
        snprintf(conv, sizeof conv, "conv%d", l);
        snprintf(norm, sizeof norm, "norm%d", l);
        int co = a->channels[l];
        c->conv_w[l] = params_add(&c->pt, conv, "weight", 4, co, cin, 3, 3);
        c->conv_b[l] = params_add(&c->pt, conv, "bias", 1, co, 0, 0, 0);
        c->gn_w[l] = params_add(&c->pt, norm, "weight", 1, co, 0, 0, 0);
        c->gn_b[l] = params_add(&c->pt, norm, "bias", 1, co, 0, 0, 0);
        c->side_in[l] = side;
        size_t sc = conv2d_scratch_floats(cin, side, side, 3, a->strides[l], 1);
        if (sc > c->scratch_n) c->scratch_n = sc;
        side /= a->strides[l];
        cin = co;
    }
    c->side_in[a->n_layers] = side;
    c->fc_w = params_add(&c->pt, "fc", "weight", 2, a->classes, cin, 0, 0);
    c->fc_b = params_add(&c->pt, "fc", "bias", 1, a->classes, 0, 0, 0);
    c->params = xcalloc(c->pt.total, sizeof(float));
    c->grads = xcalloc(c->pt.total, sizeof(float));
    c->scratch = xmalloc(c->scratch_n * sizeof(float));
    // the largest activation per sample: sizes the backward work buffers
    c->act_max = (size_t)a->in_channels * a->side * a->side;
    for (int l = 0; l < a->n_layers; l++) {
        size_t n = (size_t)a->channels[l] * c->side_in[l + 1] * c->side_in[l + 1];
        if (n > c->act_max) c->act_max = n;
    }
    return c;
}

static void free_acts(Classifier *c) {
    for (int l = 0; l < c->arch.n_layers; l++) {
        free(c->y[l]), free(c->z[l]), free(c->a[l]), free(c->mean[l]), free(c->rstd[l]);
        c->y[l] = c->z[l] = c->a[l] = c->mean[l] = c->rstd[l] = NULL;
    }
    free(c->feat), free(c->logits), free(c->probs), free(c->d0), free(c->d1), free(c->d2);
    c->feat = c->logits = c->probs = c->d0 = c->d1 = c->d2 = NULL;
}

void clf_free(Classifier *c) {
    if (!c) return;
    free_acts(c);
    params_free(&c->pt);
    free(c->params), free(c->grads), free(c->scratch);
    free(c);
}

static void ensure_cap(Classifier *c, int B) {
    if (B <= c->cap) return;
    free_acts(c);
    const ClfArch *a = &c->arch;
    for (int l = 0; l < a->n_layers; l++) {
        size_t n = (size_t)B * a->channels[l] * c->side_in[l + 1] * c->side_in[l + 1];
        c->y[l] = xmalloc(n * sizeof(float));
        c->z[l] = xmalloc(n * sizeof(float));
        c->a[l] = xmalloc(n * sizeof(float));
        c->mean[l] = xmalloc((size_t)B * a->groups * sizeof(float));
        c->rstd[l] = xmalloc((size_t)B * a->groups * sizeof(float));
    }
    c->feat = xmalloc((size_t)B * clf_feat_dim(c) * sizeof(float));
    c->logits = xmalloc((size_t)B * a->classes * sizeof(float));
    c->probs = xmalloc((size_t)B * a->classes * sizeof(float));
    c->d0 = xmalloc((size_t)B * c->act_max * sizeof(float));
    c->d1 = xmalloc((size_t)B * c->act_max * sizeof(float));
    c->d2 = xmalloc((size_t)B * c->act_max * sizeof(float));
    c->cap = B;
}

void clf_init(Classifier *c, uint64_t seed) {
    for (int i = 0; i < c->pt.n; i++) {
        const ParamTensor *t = &c->pt.t[i];
        float *p = c->params + t->offset;
        const char *leaf = strrchr(t->name, '.') + 1;
        if (!strncmp(t->name, "norm", 4)) {
            float v = strcmp(leaf, "weight") ? 0.0f : 1.0f;
            for (size_t k = 0; k < t->numel; k++) p[k] = v;
            continue;
        }
        // fan_in of the weight (the bias shares its layer's)
        const ParamTensor *w = t;
        if (!strcmp(leaf, "bias")) w = &c->pt.t[i - 1];
        size_t fan_in = w->numel / (size_t)w->shape[0];
        float bound = 1.0f / sqrtf((float)fan_in);
        for (size_t k = 0; k < t->numel; k++)
            p[k] = bound * (2.0f * rng_uniform(seed, RNG_INIT, t->offset + k) - 1.0f);
    }
}

double clf_forward(Classifier *c, const float *x, const int *labels, int B) {
    ensure_cap(c, B);
    const ClfArch *a = &c->arch;
    const float *P = c->params, *in = x;
    int cin = a->in_channels;
    c->x = x;
    c->B = B;
    for (int l = 0; l < a->n_layers; l++) {
        int s = c->side_in[l], so = c->side_in[l + 1], co = a->channels[l];
        size_t n = (size_t)B * co * so * so;
        conv2d_forward(c->y[l], in, P + c->conv_w[l], P + c->conv_b[l], B, cin, s, s, co, 3, a->strides[l], 1,
                       c->scratch);
        groupnorm_forward(c->z[l], c->mean[l], c->rstd[l], c->y[l], P + c->gn_w[l], P + c->gn_b[l], B, co, so * so,
                          a->groups, CLF_EPS);
        silu_forward(c->a[l], c->z[l], n);
        in = c->a[l];
        cin = co;
    }
    int so = c->side_in[a->n_layers];
    global_avgpool_forward(c->feat, in, B, cin, so * so);
    linear_forward(c->logits, c->feat, P + c->fc_w, P + c->fc_b, B, cin, a->classes);
    return softmax_xent_forward(c->probs, c->logits, labels, B, a->classes);
}

void clf_backward(Classifier *c, const int *labels, float scale) {
    const ClfArch *a = &c->arch;
    int B = c->B, L = a->n_layers, cf = clf_feat_dim(c), so = c->side_in[L];
    float *P = c->params, *G = c->grads;
    // d0: dlogits, then dfeat; then per layer d0 = d a_l, d1 = d z_l, d2 = d y_l
    float *dlog = c->d1, *dfeat = c->d2;
    memset(dlog, 0, (size_t)B * a->classes * sizeof(float));
    memset(dfeat, 0, (size_t)B * cf * sizeof(float));
    softmax_xent_backward(dlog, c->probs, labels, B, a->classes, scale);
    linear_backward(dfeat, G + c->fc_w, G + c->fc_b, dlog, c->feat, P + c->fc_w, B, cf, a->classes);
    memset(c->d0, 0, (size_t)B * cf * so * so * sizeof(float));
    global_avgpool_backward(c->d0, dfeat, B, cf, so * so);
    for (int l = L - 1; l >= 0; l--) {
        int s = c->side_in[l], s2 = c->side_in[l + 1], co = a->channels[l];
        int cin = l ? a->channels[l - 1] : a->in_channels;
        size_t n = (size_t)B * co * s2 * s2;
        memset(c->d1, 0, n * sizeof(float));
        silu_backward(c->d1, c->d0, c->z[l], n);
        memset(c->d2, 0, n * sizeof(float));
        groupnorm_backward(c->d2, G + c->gn_w[l], G + c->gn_b[l], c->d1, c->y[l], c->mean[l], c->rstd[l],
                           P + c->gn_w[l], B, co, s2 * s2, a->groups);
        float *dx = NULL;  // the input image needs no gradient
        if (l) {
            dx = c->d0;
            memset(dx, 0, (size_t)B * cin * s * s * sizeof(float));
        }
        conv2d_backward(dx, G + c->conv_w[l], G + c->conv_b[l], c->d2, l ? c->a[l - 1] : c->x, P + c->conv_w[l], B,
                        cin, s, s, co, 3, a->strides[l], 1, c->scratch);
    }
}

void clf_predict(Classifier *c, const float *x, int n, int batch, int *pred, float *feat) {
    const ClfArch *a = &c->arch;
    size_t per = (size_t)a->in_channels * a->side * a->side;
    int cf = clf_feat_dim(c);
    for (int i = 0; i < n; i += batch) {
        int b = n - i < batch ? n - i : batch;
        clf_forward(c, x + (size_t)i * per, NULL, b);
        if (feat) memcpy(feat + (size_t)i * cf, c->feat, (size_t)b * cf * sizeof(float));
        if (pred)
            for (int k = 0; k < b; k++) {
                const float *z = c->logits + (size_t)k * a->classes;
                int best = 0;
                for (int j = 1; j < a->classes; j++)
                    if (z[j] > z[best]) best = j;
                pred[i + k] = best;
            }
    }
}

double clf_alignment(Classifier *c, const float *x, const int *cls, int n, int batch, double *per_class) {
    int K = c->arch.classes, *pred = xmalloc((size_t)n * sizeof(int));
    long *hit = xcalloc((size_t)K, sizeof(long)), *tot = xcalloc((size_t)K, sizeof(long)), ok = 0;
    clf_predict(c, x, n, batch, pred, NULL);
    for (int i = 0; i < n; i++) {
        CHECK(cls[i] >= 0 && cls[i] < K);
        tot[cls[i]]++;
        hit[cls[i]] += pred[i] == cls[i];
        ok += pred[i] == cls[i];
    }
    if (per_class)
        for (int k = 0; k < K; k++) per_class[k] = tot[k] ? (double)hit[k] / tot[k] : NAN;
    free(pred), free(hit), free(tot);
    return (double)ok / n;
}

static char *arch_to_json(const ClfArch *a) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "in_channels", a->in_channels);
    cJSON_AddNumberToObject(o, "side", a->side);
    cJSON_AddNumberToObject(o, "classes", a->classes);
    cJSON_AddItemToObject(o, "channels", cJSON_CreateIntArray(a->channels, a->n_layers));
    cJSON_AddItemToObject(o, "strides", cJSON_CreateIntArray(a->strides, a->n_layers));
    cJSON_AddNumberToObject(o, "groups", a->groups);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int json_int(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != (int)v->valuedouble) return -1;
    *out = (int)v->valuedouble;
    return 0;
}

static int json_ints(const cJSON *o, const char *key, int *out, int *n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) < 1 || cJSON_GetArraySize(v) > CLF_MAX_LAYERS) return -1;
    *n = cJSON_GetArraySize(v);
    for (int i = 0; i < *n; i++) {
        const cJSON *x = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(x) || x->valuedouble != (int)x->valuedouble) return -1;
        out[i] = (int)x->valuedouble;
    }
    return 0;
}

static int arch_from_json(const char *path, const char *s, ClfArch *a, Error *e) {
    memset(a, 0, sizeof *a);
    cJSON *o = cJSON_Parse(s);
    int ns = 0, rc = 0;
    if (!o || json_int(o, "in_channels", &a->in_channels) || json_int(o, "side", &a->side) ||
        json_int(o, "classes", &a->classes) || json_int(o, "groups", &a->groups) ||
        json_ints(o, "channels", a->channels, &a->n_layers) || json_ints(o, "strides", a->strides, &ns) ||
        ns != a->n_layers)
        rc = errorf(e,
                    "%s: metadata \"architecture\" is not the JSON of a classifier (in_channels, side, classes, "
                    "groups, and channels and strides of equal length 1..%d): %.200s",
                    path, CLF_MAX_LAYERS, s);
    cJSON_Delete(o);
    if (!rc && clf_arch_check(a, e)) {
        char msg[sizeof e->msg];
        snprintf(msg, sizeof msg, "%s", e->msg);
        rc = errorf(e, "%s: %s", path, msg);
    }
    return rc;
}

int clf_save(const Classifier *c, const char *path, const char *const *meta, int n_meta, Error *e) {
    StOut *ts = xcalloc((size_t)c->pt.n, sizeof *ts);
    st_outs_from_params(ts, &c->pt, c->params);
    char *arch = arch_to_json(&c->arch);
    const char **kv = xcalloc((size_t)2 * (n_meta + 2), sizeof *kv);
    kv[0] = "format", kv[1] = CLF_FORMAT, kv[2] = "architecture", kv[3] = arch;
    for (int i = 0; i < 2 * n_meta; i++) kv[4 + i] = meta[i];
    int rc = st_write(path, ts, c->pt.n, kv, n_meta + 2, e);
    free(kv), free(arch), free(ts);
    return rc;
}

Classifier *clf_load(const char *path, Error *e) {
    StFile f;
    if (st_open(&f, path, e)) return NULL;
    Classifier *c = NULL;
    const char *fmt = st_meta(&f, "format"), *arch = st_meta(&f, "architecture");
    ClfArch a;
    if (!fmt || strcmp(fmt, CLF_FORMAT)) {
        errorf(e, "%s: not a laptop-diff classifier (metadata \"format\" is %s%s%s; expected \"%s\")", path,
               fmt ? "\"" : "", fmt ? fmt : "absent", fmt ? "\"" : "", CLF_FORMAT);
        goto fail;
    }
    if (!arch) {
        errorf(e, "%s: no \"architecture\" in the metadata", path);
        goto fail;
    }
    if (arch_from_json(path, arch, &a, e) || !(c = clf_create(&a, e))) goto fail;
    if (f.n_tensors != c->pt.n) {
        errorf(e, "%s: %d tensors; the architecture has %d", path, f.n_tensors, c->pt.n);
        goto fail;
    }
    for (int i = 0; i < c->pt.n; i++) {
        const ParamTensor *p = &c->pt.t[i];
        const StTensor *t = st_find(&f, p->name);
        if (!t) {
            errorf(e, "%s: tensor %s is missing", path, p->name);
            goto fail;
        }
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            errorf(e, "%s: tensor %s has the wrong shape for the architecture (%d dims, first %lld; expected %d "
                   "dims, first %d)", path, p->name, t->ndim, t->ndim ? (long long)t->shape[0] : 0LL, p->ndim,
                   p->shape[0]);
            goto fail;
        }
        if (st_read_f32(&f, t, c->params + p->offset, e)) goto fail;
        if (!all_finite(c->params + p->offset, p->numel)) {
            errorf(e, "%s: tensor %s has a non-finite value", path, p->name);
            goto fail;
        }
    }
    st_close(&f);
    return c;
fail:
    clf_free(c);
    st_close(&f);
    return NULL;
}
