// test_grad_sync.c — the overlapped gradient sum's two halves in one process:
//  - UNet.grads_final: on every reference fixture (with tap gradients, with
//    layers bypassed, pruned, and under recompute), each call's range
//    [from, total) already holds its final gradient, from never rises, and
//    the last call says 0;
//  - grad_sync over a fake two-rank Comm whose "sum" doubles a bucket: each
//    bucket is started exactly once, only when wholly final (its contents
//    equal the finished backward's), waited exactly once, never more than the
//    in-flight limit at once; overlap off starts none during backward; the
//    result is every gradient doubled, bit for bit.
// (The MPI sum itself: tests/cli/test_isum.sh; the trainer: test_overlap.sh.)
#include <stdio.h>
#include <string.h>

#include "core/comm.h"
#include "model/checkpoint.h"
#include "model/unet.h"
#include "testutil.h"
#include "train/grad_sync.h"

#define FIX LD_SOURCE_DIR "/tests/reference/fixtures/"

typedef TuInputs Inputs;

static void pass(UNet *u, const Inputs *in, const uint8_t *skip) {
    Error e;
    size_t n = (size_t)in->B * u->cfg.out_channels * in->H * in->W;
    float *out = xmalloc(n * sizeof(float));
    EXPECT(unet_forward_added(u, out, in->sample, in->t, in->ctx, &in->add, in->B, in->H, in->W, in->L, skip, &e) == 0,
           "forward: %s", e.msg);
    unet_zero_grad(u);
    unet_backward(u, in->R, (const float *const *)in->Q);
    free(out);
}

// ---------------------------------------------------------------- the hook

typedef struct {
    UNet *u;
    const float *final;  // the gradients a backward ends with
    size_t last;
    int calls, bad_value, rose;
} HookLog;

static void record(void *ctx, size_t from) {
    HookLog *h = ctx;
    size_t n = h->u->pt.total;
    h->calls++;
    if (from > h->last) h->rose++;
    h->last = from;
    if (from < n && memcmp(h->u->grads + from, h->final + from, (n - from) * sizeof(float))) h->bad_value++;
}

static void check_hook(const char *what, UNet *u, const Inputs *in, const uint8_t *skip) {
    u->grads_final = NULL;
    pass(u, in, skip);
    float *final = xmalloc(u->pt.total * sizeof(float));
    memcpy(final, u->grads, u->pt.total * sizeof(float));
    HookLog h = {.u = u, .final = final, .last = u->pt.total};
    u->grads_final = record, u->grads_final_ctx = &h;
    pass(u, in, skip);
    u->grads_final = NULL;
    EXPECT(!memcmp(u->grads, final, u->pt.total * sizeof(float)), "%s: the hook changed the gradients", what);
    EXPECT(h.bad_value == 0, "%s: %d of %d calls announced gradients that changed afterwards", what, h.bad_value,
           h.calls);
    EXPECT(h.rose == 0, "%s: from rose %d times", what, h.rose);
    EXPECT(h.calls > 3 && h.last == 0, "%s: %d calls, the last from %zu (want 0)", what, h.calls, h.last);
    printf("%-24s %d hook calls, every announced range final\n", what, h.calls);
    free(final);
}

static void check_model(const char *model) {
    StFile io;
    char name[256];
    Error e;
    const char *removed;
    Inputs in;
    UNet *u = tu_load_case(model, &io, &removed, &in);
    snprintf(name, sizeof name, "%s +taps", model);
    check_hook(name, u, &in, NULL);
    unet_set_keep(u, UNET_KEEP_INPUTS);
    snprintf(name, sizeof name, "%s recompute", model);
    check_hook(name, u, &in, NULL);
    unet_set_keep(u, UNET_KEEP_ALL);
    uint8_t *skip = xcalloc((size_t)u->n_cands, 1);
    EXPECT(candidates_from_names(u, removed, skip, "fixture", &e) == 0, "%s: %s", model, e.msg);
    snprintf(name, sizeof name, "%s bypassed", model);
    check_hook(name, u, &in, skip);
    UNet *s = tu_pruned_copy(u, skip);
    snprintf(name, sizeof name, "%s pruned", model);
    check_hook(name, s, &in, NULL);
    unet_free(s);
    free(skip);
    tu_free_inputs(&in);
    unet_free(u);
    st_close(&io);
}

// ---------------------------------------------------------------- grad_sync

// A fake second rank: isum "sums" a bucket with an identical copy (doubles it)
// when it is waited on; a sum is done after `lag` tests.
typedef struct Fake Fake;
typedef struct {
    Fake *f;
    float *buf;
    size_t n;
    int tag;
} FakeSum;
struct Fake {
    const float *grads, *final;  // the buffer being summed, and what backward will end with
    size_t n;
    int nb;
    int *starts, *waits, *tests_left;  // [nb]
    FakeSum *sums;                     // [nb]
    int lag, inflight, max_seen, not_final, bad_tag, during_backward;
};

static void *fake_start(Comm *c, float *buf, size_t n, int tag) {
    Fake *f = c->impl;
    if (tag < 0 || tag >= f->nb) return f->bad_tag++, NULL;
    size_t off = (size_t)(buf - f->grads), head = f->n < 64 ? f->n : 64;
    if (off + n > f->n || memcmp(buf, f->final + off, n * sizeof(float))) f->not_final++;
    // conv_in's gradient (the buffer's head) is the last to be final: still
    // different, backward is still running
    if (memcmp(f->grads, f->final, head * sizeof(float))) f->during_backward++;
    f->starts[tag]++, f->tests_left[tag] = f->lag;
    if (++f->inflight > f->max_seen) f->max_seen = f->inflight;
    f->sums[tag] = (FakeSum){f, buf, n, tag};
    return &f->sums[tag];
}

static int fake_test(Comm *c, void *hv) {
    (void)c;
    FakeSum *h = hv;
    return h->f->tests_left[h->tag]-- <= 0;
}

static void fake_wait(Comm *c, void *hv) {
    (void)c;
    FakeSum *h = hv;
    for (size_t i = 0; i < h->n; i++) h->buf[i] += h->buf[i];
    h->f->waits[h->tag]++, h->f->inflight--;
}

static void check_sync(const char *what, UNet *u, const Inputs *in, double bucket_mb, int overlap, int max_inflight,
                       int lag) {
    u->grads_final = NULL;
    pass(u, in, NULL);
    size_t n = u->pt.total;
    float *final = xmalloc(n * sizeof(float));
    memcpy(final, u->grads, n * sizeof(float));
    Fake f = {.final = final, .n = n, .lag = lag};
    Comm c = comm_serial();
    c.size = 2, c.impl = &f, c.isum_start = fake_start, c.isum_test = fake_test, c.isum_wait = fake_wait;
    GradSync *gs = grad_sync_create(&c, n, bucket_mb, overlap, max_inflight);
    int nb = f.nb = grad_sync_buckets(gs);
    f.starts = xcalloc((size_t)nb, sizeof(int)), f.waits = xcalloc((size_t)nb, sizeof(int));
    f.tests_left = xcalloc((size_t)nb, sizeof(int)), f.sums = xcalloc((size_t)nb, sizeof *f.sums);
    u->grads_final = grad_sync_final, u->grads_final_ctx = gs;
    // two steps: the second reuses the bookkeeping
    for (int step = 0; step < 2; step++) {
        memset(f.starts, 0, (size_t)nb * sizeof(int)), memset(f.waits, 0, (size_t)nb * sizeof(int));
        f.during_backward = 0;
        unet_zero_grad(u);
        f.grads = u->grads;
        grad_sync_begin(gs, u->grads);
        pass(u, in, NULL);
        int early = grad_sync_started_early(gs);
        grad_sync_finish(gs);
        int once = 1;
        for (int k = 0; k < nb; k++) once &= f.starts[k] == 1 && f.waits[k] == 1;
        EXPECT(once, "%s: a bucket was not started and waited exactly once", what);
        EXPECT(f.not_final == 0 && f.bad_tag == 0, "%s: %d buckets started before their gradients were final", what,
               f.not_final);
        EXPECT(f.inflight == 0, "%s: %d sums left in flight", what, f.inflight);
        EXPECT(max_inflight <= 0 || f.max_seen <= max_inflight, "%s: %d in flight, limit %d", what, f.max_seen,
               max_inflight);
        if (overlap && nb > 1)
            EXPECT(f.during_backward > 0 && early > 0, "%s: no bucket started while backward ran (%d of %d from the "
                   "hook)", what, early, nb);
        if (!overlap)
            EXPECT(early == 0 && f.during_backward == 0, "%s: overlap off started %d buckets during backward", what,
                   early);
        int doubled = 1;
        for (size_t i = 0; i < n; i++) doubled &= u->grads[i] == final[i] + final[i];
        EXPECT(doubled, "%s: the summed gradients are not every element once doubled", what);
        if (step == 0)
            printf("%-24s %d buckets, %d started by the hook, %d before conv_in's gradient was final, at most %d in "
                   "flight\n", what, nb, early, f.during_backward, f.max_seen);
    }
    u->grads_final = NULL;
    grad_sync_free(gs);
    free(f.starts), free(f.waits), free(f.tests_left), free(f.sums);
    free(final);
}

static void sync_checks(void) {
    StFile io;
    char path[512];
    Error e;
    snprintf(path, sizeof path, FIX "conv_io.safetensors");
    if (st_open(&io, path, &e)) FATAL("%s", e.msg);
    UNet *u = tu_load_fixture("conv", 1, GRAN_LAYER);
    Inputs in;
    tu_read_inputs(&io, u, &in);
    // buckets of ~1/20 of the model, odd-sized so they straddle tensors
    double mb = (double)u->pt.total * sizeof(float) / 20.0 / (1024 * 1024) * 1.013;
    check_sync("overlap", u, &in, mb, 1, 0, 0);
    check_sync("overlap, slow sums", u, &in, mb, 1, 0, 3);
    check_sync("overlap, 2 in flight", u, &in, mb, 1, 2, 5);
    check_sync("overlap, 1-float buckets", u, &in, 1.0 / (1024 * 1024), 1, 64, 1);
    check_sync("overlap off", u, &in, mb, 0, 0, 0);
    check_sync("one bucket", u, &in, 4096, 1, 0, 0);
    tu_free_inputs(&in);
    unet_free(u);
    st_close(&io);
}

int main(void) {
    tu_set_threads(1);
    check_model("conv");
    check_model("linear");
    check_model("xl");
    check_model("xlt");
    sync_checks();
    return tu_report("test_grad_sync");
}
