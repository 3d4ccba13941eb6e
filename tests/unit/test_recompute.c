// test_recompute.c — activation checkpointing (train.recompute, UNET_KEEP_INPUTS)
// and the forward-only mode (UNET_KEEP_NONE) against the ordinary pass
// (UNET_KEEP_ALL), BIT FOR BIT: recompute runs each layer's forward again with
// the same ops in the same order, so its output, taps and every parameter
// gradient must be identical, not merely close. On every reference fixture
// (conv: SD-1.5-like; linear; xl: block granularity, 2-deep stacks; xlt: SDXL's
// text_time), each with gradients entering at the taps (feature KD), with the
// fixture's two layers bypassed for the pass and built without them. Each mode
// must also keep less: the test reads the activation arenas' floats per pass.
#include <stdio.h>
#include <string.h>

#include "io/config.h"
#include "model/checkpoint.h"
#include "model/unet.h"
#include "testutil.h"

#define FIX LD_SOURCE_DIR "/tests/reference/fixtures/"

typedef TuInputs Inputs;

typedef struct {
    float *out, *taps[2 * LD_MAX_BLOCKS + 1], *grads;
    size_t acts;  // floats the forward left in the pass arena (what the backward needs)
} Result;

static size_t out_floats(const UNet *u, const Inputs *in) {
    return (size_t)in->B * u->cfg.out_channels * in->H * in->W;
}

static size_t tap_floats(const UNet *u, const Inputs *in, int k) {
    return (size_t)in->B * u->taps[k].C * u->taps[k].H * u->taps[k].W;
}

// One pass in mode `keep`; backward (with the tap gradients when with_taps)
// unless the mode is forward-only. Everything it produced, copied.
static Result run_pass(UNet *u, const Inputs *in, UNetKeep keep, const uint8_t *skip, int with_taps) {
    Result r = {0};
    Error e;
    unet_set_keep(u, keep);
    r.out = xmalloc(out_floats(u, in) * sizeof(float));
    EXPECT(unet_forward_added(u, r.out, in->sample, in->t, in->ctx, &in->add, in->B, in->H, in->W, in->L, skip, &e) ==
               0,
           "forward: %s", e.msg);
    r.acts = u->acts.pass_total;
    for (int k = 0; k < u->n_taps; k++) {
        size_t n = tap_floats(u, in, k);
        r.taps[k] = xmalloc(n * sizeof(float));
        memcpy(r.taps[k], u->taps[k].data, n * sizeof(float));
    }
    if (keep != UNET_KEEP_NONE) {
        unet_zero_grad(u);
        unet_backward(u, in->R, with_taps ? (const float *const *)in->Q : NULL);
        r.grads = xmalloc(u->pt.total * sizeof(float));
        memcpy(r.grads, u->grads, u->pt.total * sizeof(float));
    }
    return r;
}

static void free_result(const UNet *u, Result *r) {
    free(r->out), free(r->grads);
    for (int k = 0; k < u->n_taps; k++) free(r->taps[k]);
}

// b must equal a bit for bit (memcmp: -0.0 vs 0.0 or a NaN pattern counts too).
static void same_bits(const char *what, const UNet *u, const Inputs *in, const Result *a, const Result *b) {
    EXPECT(!memcmp(a->out, b->out, out_floats(u, in) * sizeof(float)), "%s: output differs", what);
    for (int k = 0; k < u->n_taps; k++)
        EXPECT(!memcmp(a->taps[k], b->taps[k], tap_floats(u, in, k) * sizeof(float)), "%s: tap %s differs", what,
               u->taps[k].name);
    if (!a->grads || !b->grads) return;
    int bad = 0;
    for (int i = 0; i < u->pt.n; i++) {
        const ParamTensor *p = &u->pt.t[i];
        if (memcmp(a->grads + p->offset, b->grads + p->offset, p->numel * sizeof(float))) {
            if (bad++ < 3) EXPECT(0, "%s: gradient of %s differs", what, p->name);
        }
    }
    EXPECT(bad == 0, "%s: %d of %d gradient tensors differ", what, bad, u->pt.n);
}

// ALL vs INPUTS (twice: the recompute arena is reused from the first) vs NONE.
static void check_modes(const char *what, UNet *u, const Inputs *in, const uint8_t *skip, int with_taps) {
    Result all = run_pass(u, in, UNET_KEEP_ALL, skip, with_taps);
    Result rec = run_pass(u, in, UNET_KEEP_INPUTS, skip, with_taps);
    Result rec2 = run_pass(u, in, UNET_KEEP_INPUTS, skip, with_taps);
    Result none = run_pass(u, in, UNET_KEEP_NONE, skip, with_taps);
    Result all2 = run_pass(u, in, UNET_KEEP_ALL, skip, with_taps);  // and back: nothing left over
    char name[160];
    snprintf(name, sizeof name, "%s recompute", what);
    same_bits(name, u, in, &all, &rec);
    snprintf(name, sizeof name, "%s recompute again", what);
    same_bits(name, u, in, &all, &rec2);
    snprintf(name, sizeof name, "%s forward-only", what);
    same_bits(name, u, in, &all, &none);
    snprintf(name, sizeof name, "%s all after the others", what);
    same_bits(name, u, in, &all, &all2);
    EXPECT(rec.acts < all.acts, "%s: recompute keeps %zu floats, not fewer than %zu", what, rec.acts, all.acts);
    EXPECT(none.acts <= rec.acts, "%s: forward-only keeps %zu floats, more than recompute's %zu", what, none.acts,
           rec.acts);
    printf("%-22s kept floats: all %zu, recompute %zu (%.0f%%), recompute arena %zu; bit-identical\n", what, all.acts,
           rec.acts, 100.0 * (double)rec.acts / (double)all.acts, u->rec.peak);
    free_result(u, &all), free_result(u, &rec), free_result(u, &rec2), free_result(u, &none), free_result(u, &all2);
}

static void check_model(const char *model) {
    StFile io;
    char name[256];
    Error e;
    const char *removed;
    Inputs in;
    UNet *u = tu_load_case(model, &io, &removed, &in);
    snprintf(name, sizeof name, "%s +taps", model);
    check_modes(name, u, &in, NULL, 1);
    uint8_t *skip = xcalloc((size_t)u->n_cands, 1);
    EXPECT(candidates_from_names(u, removed, skip, "fixture", &e) == 0, "%s: %s", model, e.msg);
    snprintf(name, sizeof name, "%s bypassed +taps", model);
    check_modes(name, u, &in, skip, 1);
    UNet *s = tu_pruned_copy(u, skip);
    snprintf(name, sizeof name, "%s pruned +taps", model);
    check_modes(name, s, &in, NULL, 1);
    unet_free(s);
    free(skip);
    tu_free_inputs(&in);
    unet_free(u);
    st_close(&io);
}

int main(void) {
    check_model("conv");
    check_model("linear");
    check_model("xl");
    check_model("xlt");
    return tu_report("test_recompute");
}
