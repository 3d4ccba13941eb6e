// test_reference.c — the U-Net against PyTorch/diffusers. The fixtures in
// tests/reference/fixtures/ were made by tests/reference/make_fixtures.py
// (diffusers run in float64 on float32-rounded weights and inputs): for each
// model (conv: SD-1.5-like; linear: linear projections, 2-deep stacks, odd time
// embedding; xl: SDXL-like, per-block stack depth; xlt: xl's layout with SDXL's
// text_time conditioning, pooled + time ids through add_embedding), the output and EVERY
// parameter's gradient of loss = sum(out * R), the feature taps, the gradients
// with extra loss terms on the taps, and the same with two layers removed
// (bypassed, and built without them; xl's are a BasicTransformerBlock, at
// prune.granularity = "block", and an up-block resnet).
// Tolerances: see TOL_OUT / TOL_GRAD. The same comparison with the config's
// norm_eps doubled must fail, so the tolerances are known to discriminate.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "model/checkpoint.h"
#include "io/config.h"
#include "testutil.h"
#include "model/unet.h"

#define FIX LD_SOURCE_DIR "/tests/reference/fixtures/"

// Output and taps: max error over the tensor / its max magnitude. Each gradient
// tensor: the same against its own max magnitude. Worst seen (AMD EPYC, 1 and 2
// threads, OpenBLAS's SkylakeX, Haswell and Zen kernels; its generic Prescott
// kernels in brackets): output/taps 3.9e-6 (5.1e-6), gradients 8.9e-5 (1.2e-4),
// both on conv; the gradient is a LayerNorm bias's with tap gradients, a sum
// over all tokens that mostly cancels, so float32 summation error is large next
// to its max. Doubling norm_eps gives output/taps errors of 9.6e-5 (conv),
// 4.7e-3 (linear), 3.8e-5 (xl) and gradient errors of 6.9e-4 .. 1.8e-2.
#define TOL_OUT 3e-5
#define TOL_GRAD 6e-4

// One model's comparisons. quiet (the doubled-eps run): mismatches are only
// counted, they must happen.
typedef struct {
    const char *model;
    int quiet, mismatches;
    double out_err, grad_err;  // worst of the current pass
    char grad_name[LD_NAME_MAX];
} Cmp;

static void judge(Cmp *c, double err, double tol, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void judge(Cmp *c, double err, double tol, const char *fmt, ...) {
    if (err <= tol) return;  // NaN compares false and so counts as a mismatch
    c->mismatches++;
    if (c->quiet) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tu_expect(0, __FILE__, __LINE__, "error <= tolerance", "%s: %s: error %.3e > %.1e", c->model, msg, err, tol);
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

// One pass (full or with layers removed) compared with the fixture's prefix.
// with_taps: the loss also has sum(tap * tap_weight) for every tap, so the
// gradients entering at the taps (feature distillation) are checked too.
// Every parameter u has is compared (a pruned u has only the kept ones).
static void compare_pass(Cmp *c, UNet *u, const StFile *io, const char *pfx, const uint8_t *skip, int with_taps) {
    int64_t xs[4], cs[3];
    float *sample = tu_read_tensor(io, "sample", xs), *t = tu_read_tensor(io, "timesteps", NULL);
    float *ctx = tu_read_tensor(io, "context", cs), *R = tu_read_tensor(io, "loss_weight", NULL);
    char name[256];
    snprintf(name, sizeof name, "%sout", pfx);
    float *ref = tu_read_tensor(io, name, NULL);
    int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3], L = (int)cs[1];
    size_t nout = (size_t)B * u->cfg.out_channels * H * W;
    float *out = xmalloc(nout * sizeof(float));
    // text_time models: the fixture's pooled embedding and time ids (NULL for the others)
    UNetAdded add = {st_find(io, "pooled") ? tu_read_tensor(io, "pooled", NULL) : NULL,
                     st_find(io, "time_ids") ? tu_read_tensor(io, "time_ids", NULL) : NULL};
    EXPECT((u->pooled_dim > 0) == (add.pooled && add.time_ids), "%s: pooled/time_ids in the fixture iff text_time",
           c->model);
    Error e;
    EXPECT(unet_forward_added(u, out, sample, t, ctx, &add, B, H, W, L, skip, &e) == 0, "%s forward: %s", c->model,
           e.msg);
    c->out_err = tu_max_rel_err(out, ref, nout, 0), c->grad_err = 0, c->grad_name[0] = 0;
    judge(c, c->out_err, TOL_OUT, "%sout", pfx);
    for (int k = 0; k < u->n_taps; k++) {
        snprintf(name, sizeof name, "%stap.%s", pfx, u->taps[k].name);
        float *tr = tu_read_tensor(io, name, NULL);
        size_t n = (size_t)B * u->taps[k].C * u->taps[k].H * u->taps[k].W;
        double te = tu_max_rel_err(u->taps[k].data, tr, n, 0);
        c->out_err = fmax(c->out_err, te);
        judge(c, te, TOL_OUT, "%s", name);
        free(tr);
    }
    float *Q[2 * LD_MAX_BLOCKS + 1] = {0};
    if (with_taps)
        for (int k = 0; k < u->n_taps; k++) {
            snprintf(name, sizeof name, "tap_weight.%s", u->taps[k].name);
            Q[k] = tu_read_tensor(io, name, NULL);
        }
    unet_zero_grad(u);
    unet_backward(u, R, with_taps ? (const float *const *)Q : NULL);
    const char *gpfx = with_taps ? "tapgrad." : "grad.";
    int compared = 0;
    for (int i = 0; i < u->pt.n; i++) {
        const ParamTensor *p = &u->pt.t[i];
        snprintf(name, sizeof name, "%s%s%s", pfx, gpfx, p->name);
        float *g = tu_read_tensor(io, name, NULL);
        double m = max_abs(g, p->numel);
        // a bypassed layer's reference gradient is exactly zero, and so must ours be
        double ge = m > 0 ? tu_max_rel_err(u->grads + p->offset, g, p->numel, 0) : max_abs(u->grads + p->offset, p->numel);
        if (!(ge <= c->grad_err)) c->grad_err = ge, snprintf(c->grad_name, sizeof c->grad_name, "%s", p->name);
        judge(c, ge, m > 0 ? TOL_GRAD : 0, "%s (max |ref| %.3g)", name, m);
        compared++;
        free(g);
    }
    EXPECT(compared == u->pt.n, "%s: %d of %d gradients compared", c->model, compared, u->pt.n);
    if (!c->quiet)
        printf("%-6s %-8s output+taps error %.2e, gradients of %d tensors worst %.2e (%s)\n", c->model,
               with_taps ? "+taps" : *pfx ? "removed" : "full", c->out_err, compared, c->grad_err, c->grad_name);
    for (int k = 0; k < u->n_taps; k++) free(Q[k]);
    free(sample), free(t), free(ctx), free(R), free(ref), free(out);
    free((float *)add.pooled), free((float *)add.time_ids);
}

static void check_model(const char *model) {
    Cmp c = {.model = model};
    StFile io;
    char path[512];
    Error e;
    snprintf(path, sizeof path, FIX "%s_io.safetensors", model);
    if (st_open(&io, path, &e)) FATAL("%s", e.msg);
    const char *removed = st_meta(&io, "removed");
    EXPECT(removed != NULL, "%s: fixture names its removed layers", model);
    // xl's removed variant takes out a single BasicTransformerBlock: a block candidate
    Granularity g = granularity_of_names(removed);
    UNet *u = tu_load_fixture(model, 1, g);
    compare_pass(&c, u, &io, "", NULL, 0);
    double worst_out = c.out_err, worst_grad = c.grad_err;
    compare_pass(&c, u, &io, "", NULL, 1);
    worst_out = fmax(worst_out, c.out_err), worst_grad = fmax(worst_grad, c.grad_err);
    if (removed) {
        // bypassed in the full network (the removed layers' reference gradients are exactly zero, ours must be)
        uint8_t *skip = xcalloc((size_t)u->n_cands, 1);
        EXPECT(candidates_from_names(u, removed, skip, "fixture", &e) == 0, "%s: %s", model, e.msg);
        int n = 0;
        for (int k = 0; k < u->n_cands; k++) n += skip[k];
        EXPECT(n == 2, "%s: two removed layers (%s)", model, removed);
        compare_pass(&c, u, &io, "removed.", skip, 0);
        worst_out = fmax(worst_out, c.out_err), worst_grad = fmax(worst_grad, c.grad_err);
        // and built without them: the student's path (no parameters, no compute)
        UNet *s = tu_pruned_copy(u, skip);
        compare_pass(&c, s, &io, "removed.", NULL, 0);
        worst_out = fmax(worst_out, c.out_err), worst_grad = fmax(worst_grad, c.grad_err);
        printf("%-6s removed (%s, granularity %s): bypassed and built without them both match\n", model, removed,
               granularity_name(g));
        unet_free(s);
        free(skip);
    }
    unet_free(u);
    printf("%-6s worst: output+taps %.2e (tolerance %.0e), gradients %.2e (tolerance %.0e)\n", model, worst_out,
           TOL_OUT, worst_grad, TOL_GRAD);

    // The same full pass with GroupNorm's norm_eps doubled must fail.
    Cmp bad = {.model = model, .quiet = 1};
    u = tu_load_fixture(model, 2, GRAN_LAYER);
    compare_pass(&bad, u, &io, "", NULL, 0);
    printf("%-6s norm_eps x2: output+taps error %.2e, gradients worst %.2e (%s): %d mismatches\n", model, bad.out_err,
           bad.grad_err, bad.grad_name, bad.mismatches);
    EXPECT(bad.mismatches > 0, "%s: doubling norm_eps (%g) goes unnoticed", model, u->cfg.norm_eps / 2);
    unet_free(u);
    if (!strcmp(model, "xlt")) {
        // add_embedding.linear_2 zero is the U-Net without its added term (emb + 0):
        // the fixture must tell, so the pooled/time-id path is really compared
        Cmp noadd = {.model = model, .quiet = 1};
        u = tu_load_fixture(model, 1, GRAN_LAYER);
        int zeroed = 0;
        for (int i = 0; i < u->pt.n; i++)
            if (!strncmp(u->pt.t[i].name, "add_embedding.linear_2.", 23)) {
                memset(u->params + u->pt.t[i].offset, 0, u->pt.t[i].numel * sizeof(float));
                zeroed++;
            }
        EXPECT(zeroed == 2, "%s: add_embedding.linear_2 weight and bias (%d)", model, zeroed);
        compare_pass(&noadd, u, &io, "", NULL, 0);
        printf("%-6s without add_embedding: output+taps error %.2e: %d mismatches\n", model, noadd.out_err,
               noadd.mismatches);
        EXPECT(noadd.out_err > 100 * TOL_OUT, "%s: dropping the added conditioning goes unnoticed (%.2e)", model,
               noadd.out_err);
        unet_free(u);
    }
    st_close(&io);
}

int main(void) {
    check_model("conv");
    check_model("linear");
    check_model("xl");
    check_model("xlt");
    return tu_report("test_reference");
}
