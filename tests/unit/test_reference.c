// test_reference.c — the U-Net against PyTorch/diffusers. The fixtures in
// tests/reference/fixtures/ were made by tests/reference/make_fixtures.py
// (diffusers run in float64 on float32-rounded weights and inputs): for each
// model, the output and EVERY parameter's gradient of loss = sum(out * R),
// the feature taps, and the same with one resnet and one attention removed.
// Tolerances (issue #2): output within 1e-4 of its max magnitude, each
// gradient tensor within 1e-3 of its own max magnitude.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/checkpoint.h"
#include "io/config.h"
#include "testutil.h"
#include "model/unet.h"

#define FIX LD_SOURCE_DIR "/tests/reference/fixtures/"

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

// One pass (full or with layers removed) compared with the fixture's prefix.
// with_taps: the loss also has sum(tap * tap_weight) for every tap, so the
// gradients entering at the taps (feature distillation) are checked too.
static void compare_pass(const char *model, UNet *u, const StFile *io, const char *pfx, const uint8_t *skip,
                         int with_taps) {
    int64_t xs[4], cs[3];
    float *sample = tu_read_tensor(io, "sample", xs), *t = tu_read_tensor(io, "timesteps", NULL);
    float *ctx = tu_read_tensor(io, "context", cs), *R = tu_read_tensor(io, "loss_weight", NULL);
    char name[256];
    snprintf(name, sizeof name, "%sout", pfx);
    float *ref = tu_read_tensor(io, name, NULL);
    int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3], L = (int)cs[1];
    size_t nout = (size_t)B * u->cfg.out_channels * H * W;
    float *out = xmalloc(nout * sizeof(float));
    Error e;
    EXPECT(unet_forward(u, out, sample, t, ctx, B, H, W, L, skip, &e) == 0, "%s forward: %s", model, e.msg);
    double err = tu_max_rel_err(out, ref, nout, 0);
    printf("%-7s %-8s output: max error %.2e of max |out| %.3g\n", model, *pfx ? "removed" : "full", err, max_abs(ref, nout));
    EXPECT(err <= 1e-4, "%s %soutput error %.3e > 1e-4", model, pfx, err);
    for (int k = 0; k < u->n_taps; k++) {
        snprintf(name, sizeof name, "%stap.%s", pfx, u->taps[k].name);
        float *tr = tu_read_tensor(io, name, NULL);
        size_t n = (size_t)B * u->taps[k].C * u->taps[k].H * u->taps[k].W;
        double te = tu_max_rel_err(u->taps[k].data, tr, n, 0);
        EXPECT(te <= 1e-4, "%s %s error %.3e > 1e-4", model, name, te);
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
    const char *label = with_taps ? "+taps" : *pfx ? "removed" : "full";
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < u->pt.n; i++) {
        const ParamTensor *p = &u->pt.t[i];
        snprintf(name, sizeof name, "%s%s%s", pfx, gpfx, p->name);
        float *g = tu_read_tensor(io, name, NULL);
        double m = max_abs(g, p->numel);
        // a bypassed layer's reference gradient is exactly zero, and so must ours be
        double ge = m > 0 ? tu_max_rel_err(u->grads + p->offset, g, p->numel, 0) : max_abs(u->grads + p->offset, p->numel);
        if (ge > worst) worst = ge, worst_name = u->pt.t[i].name;
        EXPECT(ge <= 1e-3, "%s %s: gradient error %.3e > 1e-3 (max |ref| %.3g)", model, name, ge, m);
        free(g);
    }
    printf("%-7s %-8s gradients: %d tensors, worst relative error %.2e (%s)\n", model, label, u->pt.n, worst,
           worst_name);
    for (int k = 0; k < u->n_taps; k++) free(Q[k]);
    free(sample), free(t), free(ctx), free(R), free(ref), free(out);
}

static void check_model(const char *model) {
    char path[512];
    JobConfig jc;
    Error e;
    snprintf(path, sizeof path, FIX "%s.cfg", model);
    if (job_config_load(&jc, path, NULL, 0, &e)) FATAL("%s", e.msg);
    UNet *u = unet_create(&jc.model, NULL, &e);
    if (!u) FATAL("%s", e.msg);
    StFile wf, io;
    snprintf(path, sizeof path, FIX "%s_weights.safetensors", model);
    if (st_open(&wf, path, &e) || unet_load_weights(u, &wf, &e)) FATAL("%s", e.msg);
    st_close(&wf);
    snprintf(path, sizeof path, FIX "%s_io.safetensors", model);
    if (st_open(&io, path, &e)) FATAL("%s", e.msg);
    compare_pass(model, u, &io, "", NULL, 0);
    compare_pass(model, u, &io, "", NULL, 1);
    const char *removed = st_meta(&io, "removed");
    EXPECT(removed != NULL, "%s: fixture names its removed layers", model);
    uint8_t *skip = xcalloc((size_t)u->n_cands, 1);
    if (removed && candidates_from_names(u, removed, skip, path, &e) == 0) {
        int n = 0;
        for (int c = 0; c < u->n_cands; c++) n += skip[c];
        EXPECT(n == 2, "%s: two removed layers (%s)", model, removed);
        compare_pass(model, u, &io, "removed.", skip, 0);
    } else {
        EXPECT(0, "%s: %s", model, e.msg);
    }
    free(skip);
    st_close(&io);
    unet_free(u);
}

int main(void) {
    check_model("conv");
    check_model("linear");
    return tu_report("test_reference");
}
