// test_classifier.c — the evaluator CNN (model/classifier.h) on a tiny
// architecture: forward against a double-precision reference of the whole
// network (conv3x3 -> GroupNorm -> SiLU per layer, average pool, linear,
// softmax cross-entropy), and every parameter's gradient against central
// finite differences of that reference, into pre-filled gradient buffers
// (backward accumulates). Then save/load: the same bits back, and each kind
// of wrong file refused with a message saying what is wrong.
#include <unistd.h>

#include "kernel_check.h"
#include "kernels/kernels.h"
#include "model/classifier.h"
#include "model/safetensors.h"

typedef struct {
    const Classifier *c;
    double *p;  // the parameters in double, same layout
    const double *x;
    const int *labels;
    int B;
    double *feat;  // [B, feat_dim] of the last call
} Ref;

// The whole network in double, straight loops; returns the mean cross-entropy.
static double ref_loss(void *ctx) {
    Ref *r = ctx;
    const Classifier *c = r->c;
    const ClfArch *a = &c->arch;
    int B = r->B, cin = a->in_channels;
    size_t cur_n = (size_t)B * cin * a->side * a->side;
    double *cur = xmalloc(cur_n * sizeof(double));
    memcpy(cur, r->x, cur_n * sizeof(double));
    for (int l = 0; l < a->n_layers; l++) {
        int s = c->side_in[l], so = c->side_in[l + 1], co = a->channels[l], st = a->strides[l], G = a->groups;
        const double *w = r->p + c->conv_w[l], *bias = r->p + c->conv_b[l];
        double *y = xcalloc((size_t)B * co * so * so, sizeof(double));
        for (int b = 0; b < B; b++)
            for (int o = 0; o < co; o++)
                for (int oy = 0; oy < so; oy++)
                    for (int ox = 0; ox < so; ox++) {
                        double acc = bias[o];
                        for (int i = 0; i < cin; i++)
                            for (int ky = 0; ky < 3; ky++)
                                for (int kx = 0; kx < 3; kx++) {
                                    int iy = oy * st - 1 + ky, ix = ox * st - 1 + kx;
                                    if (iy < 0 || iy >= s || ix < 0 || ix >= s) continue;
                                    acc += w[((o * cin + i) * 3 + ky) * 3 + kx] *
                                           cur[(((size_t)b * cin + i) * s + iy) * s + ix];
                                }
                        y[(((size_t)b * co + o) * so + oy) * so + ox] = acc;
                    }
        // GroupNorm (biased variance) then SiLU, in place
        int cg = co / G, hw = so * so;
        for (int b = 0; b < B; b++)
            for (int g = 0; g < G; g++) {
                double *q = y + ((size_t)b * co + g * cg) * hw, m = 0, v = 0;
                for (int i = 0; i < cg * hw; i++) m += q[i];
                m /= cg * hw;
                for (int i = 0; i < cg * hw; i++) v += (q[i] - m) * (q[i] - m);
                v /= cg * hw;
                for (int i = 0; i < cg * hw; i++) {
                    int ch = g * cg + i / hw;
                    double z = (q[i] - m) / sqrt(v + 1e-5) * r->p[c->gn_w[l] + ch] + r->p[c->gn_b[l] + ch];
                    q[i] = z / (1 + exp(-z));
                }
            }
        free(cur);
        cur = y;
        cin = co;
    }
    int hw = c->side_in[a->n_layers] * c->side_in[a->n_layers], K = a->classes;
    double L = 0;
    for (int b = 0; b < B; b++) {
        double *f = r->feat + (size_t)b * cin, z[16], mx = -INFINITY, se = 0;
        for (int i = 0; i < cin; i++) {
            f[i] = 0;
            for (int k = 0; k < hw; k++) f[i] += cur[((size_t)b * cin + i) * hw + k];
            f[i] /= hw;
        }
        for (int k = 0; k < K; k++) {
            z[k] = r->p[c->fc_b + k];
            for (int i = 0; i < cin; i++) z[k] += r->p[c->fc_w + (size_t)k * cin + i] * f[i];
            if (z[k] > mx) mx = z[k];
        }
        for (int k = 0; k < K; k++) se += exp(z[k] - mx);
        L += log(se) + mx - z[r->labels[b]];
    }
    free(cur);
    return L / B;
}

static void check_grad(void) {
    ClfArch a = {.in_channels = 1, .side = 8, .classes = 3, .n_layers = 3, .channels = {4, 6, 6},
                 .strides = {1, 2, 2}, .groups = 2};
    Error e = {0};
    Classifier *c = clf_create(&a, &e);
    EXPECT(c != NULL, "clf_create: %s", e.msg);
    if (!c) return;
    clf_init(c, 5);
    TuRng rg;
    tu_rng_seed(&rg, 3);
    // norm affine away from (1, 0) so their gradients are exercised in general position
    for (int l = 0; l < a.n_layers; l++)
        for (int k = 0; k < a.channels[l]; k++) {
            c->params[c->gn_w[l] + k] = tu_uniform(&rg, 0.5f, 1.5f);
            c->params[c->gn_b[l] + k] = tu_uniform(&rg, -0.5f, 0.5f);
        }
    int B = 3, labels[3] = {0, 2, 1};
    size_t nx = (size_t)B * a.side * a.side, np = c->pt.total;
    float *x = kc_rand(&rg, nx, -1, 1);
    Ref r = {c, kc_dup(c->params, np), kc_dup(x, nx), labels, B, xmalloc((size_t)B * 6 * sizeof(double))};
    double L = clf_forward(c, x, labels, B), Lr = ref_loss(&r);
    EXPECT(fabs(L - Lr) <= 1e-5 * (1 + fabs(Lr)), "classifier loss %.9g vs double reference %.9g", L, Lr);
    kc_expect_close(kc_rel_err(c->feat, r.feat, (size_t)B * 6, 1e-3), KC_FWD_TOL, "classifier features");
    tu_fill(&rg, c->grads, np, -1, 1);
    float *pre = kc_fcopy(c->grads, np);
    clf_backward(c, labels, 1.0f / B);
    double *g = xmalloc(np * sizeof(double));
    kc_fd_grad(ref_loss, &r, r.p, np, g);
    for (int i = 0; i < c->pt.n; i++) {
        const ParamTensor *t = &c->pt.t[i];
        kc_expect_close(kc_rel_err_acc(c->grads + t->offset, pre + t->offset, g + t->offset, t->numel, 1e-3),
                        KC_BWD_TOL, "d loss / d %s", t->name);
    }
    int pred[3];
    clf_predict(c, x, B, 2, pred, NULL);  // batch 2: a full and a partial batch
    clf_forward(c, x, NULL, B);
    for (int b = 0; b < B; b++) {
        int best = 0;
        for (int k = 1; k < 3; k++)
            if (c->logits[b * 3 + k] > c->logits[b * 3 + best]) best = k;
        EXPECT(pred[b] == best, "clf_predict in batches of 2: sample %d predicted %d, the argmax is %d", b, pred[b],
               best);
    }
    free(x), free(pre), free(g), free(r.p), free((double *)r.x), free(r.feat);
    clf_free(c);
}

static void expect_load_fails(const char *path, const char *want, const char *what) {
    Error e = {0};
    Classifier *c = clf_load(path, &e);
    EXPECT(!c && strstr(e.msg, want) && strstr(e.msg, path), "%s: expected an error with \"%s\", got \"%s\"", what,
           want, c ? "(loaded)" : e.msg);
    clf_free(c);
}

static void check_save_load(void) {
    ClfArch a = {.in_channels = 1, .side = 8, .classes = 3, .n_layers = 2, .channels = {4, 8}, .strides = {2, 2},
                 .groups = 4};
    Error e = {0};
    Classifier *c = clf_create(&a, &e);
    clf_init(c, 9);
    char dir[] = "/tmp/test_classifier.XXXXXX", path[128], bad[128];
    EXPECT(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/clf.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    const char *meta[2] = {"test_accuracy", "0.5"};
    EXPECT(clf_save(c, path, meta, 1, &e) == 0, "clf_save: %s", e.msg);
    Classifier *d = clf_load(path, &e);
    EXPECT(d != NULL, "clf_load: %s", e.msg);
    if (d) {
        EXPECT(!memcmp(&d->arch, &c->arch, sizeof a), "the architecture comes back from the metadata");
        EXPECT(d->pt.total == c->pt.total && !memcmp(d->params, c->params, c->pt.total * sizeof(float)),
               "the parameters come back bit for bit");
    }
    clf_free(d);
    // wrong files: one per way to be wrong
    StOut t[32];
    int n = 0;
    for (int i = 0; i < c->pt.n; i++) {
        const ParamTensor *p = &c->pt.t[i];
        t[n] = (StOut){p->name, p->ndim, {0}, c->params + p->offset};
        for (int k = 0; k < p->ndim; k++) t[n].shape[k] = p->shape[k];
        n++;
    }
    char *arch_json = NULL;
    {
        StFile f;
        st_open(&f, path, &e);
        arch_json = strdup(st_meta(&f, "architecture"));
        st_close(&f);
    }
    const char *unet_meta[] = {"config", "{}"};
    st_write(bad, t, n, unet_meta, 1, &e);
    expect_load_fails(bad, "not a laptop-diff classifier", "a file without format");
    const char *no_arch[] = {"format", CLF_FORMAT};
    st_write(bad, t, n, no_arch, 1, &e);
    expect_load_fails(bad, "no \"architecture\"", "no architecture");
    const char *bad_arch[] = {"format", CLF_FORMAT, "architecture", "{\"side\": 8}"};
    st_write(bad, t, n, bad_arch, 2, &e);
    expect_load_fails(bad, "is not the JSON of a classifier", "an incomplete architecture");
    const char *bad_groups[] = {"format", CLF_FORMAT, "architecture",
                                "{\"in_channels\":1,\"side\":8,\"classes\":3,\"channels\":[4,8],\"strides\":[2,2],"
                                "\"groups\":3}"};
    st_write(bad, t, n, bad_groups, 2, &e);
    expect_load_fails(bad, "multiple of the 3 norm groups", "groups not dividing the channels");
    const char *good[] = {"format", CLF_FORMAT, "architecture", arch_json};
    st_write(bad, t, n - 1, good, 2, &e);
    expect_load_fails(bad, "tensors; the architecture has", "a tensor short");
    StOut swapped[32];
    memcpy(swapped, t, sizeof t);
    swapped[0].name = "conv0.wrong";
    st_write(bad, swapped, n, good, 2, &e);
    expect_load_fails(bad, "tensor conv0.weight is missing", "a misnamed tensor");
    memcpy(swapped, t, sizeof t);
    swapped[0].shape[1] = 2;  // conv0.weight [4,2,3,3]: the data of another shape
    float *big = xcalloc(4 * 2 * 9, sizeof(float));
    swapped[0].data = big;
    st_write(bad, swapped, n, good, 2, &e);
    expect_load_fails(bad, "wrong shape", "a tensor of the wrong shape");
    memcpy(swapped, t, sizeof t);
    float *nan = xmalloc(4 * 9 * sizeof(float));
    for (int i = 0; i < 36; i++) nan[i] = i == 7 ? NAN : 0.1f;
    swapped[0].data = nan;
    st_write(bad, swapped, n, good, 2, &e);
    expect_load_fails(bad, "non-finite", "a NaN weight");
    // a truncated file: safetensors' own check
    FILE *fp = fopen(path, "rb"), *fo = fopen(bad, "wb");
    char buf[256];
    size_t got = fread(buf, 1, sizeof buf, fp);
    fwrite(buf, 1, got, fo);
    fclose(fp), fclose(fo);
    Error e2 = {0};
    Classifier *z = clf_load(bad, &e2);
    EXPECT(!z && strstr(e2.msg, bad), "a truncated file is refused naming it: %s", e2.msg);
    clf_free(z);
    free(big), free(nan), free(arch_json);
    unlink(path), unlink(bad), rmdir(dir);
    clf_free(c);
}

int main(void) {
    tu_set_threads(1);
    check_grad();
    check_save_load();
    return tu_report("test_classifier");
}
