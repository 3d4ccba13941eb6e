// test_gpu_distill.c — one rank's distillation loss and backward
// (distill_loss_added, the code distill_step runs) with teacher and student on
// the CUDA backend against both on the CPU backend: a reference fixture as the
// teacher, the student built without the fixture's two removed layers, the
// fixture's sample/timesteps/context as the noisy batch and its loss weight as
// the noise. Every loss value (total, task, output, feature, and each tap's raw
// and normalized term), for feat_norm l2sq and none, and every student
// gradient must agree; the teacher gets no gradient. Then the rest of the step
// through each backend's optimizer ops (gradient norm, clipping, an AdamW
// update, the EMA): the weight steps must agree.
//
// test_gpu_distill (label gpu; SKIPPED without a device) and
// test_gpu_distill_emu (label emu) on the host CUDA emulator: not a GPU result.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/backend_cuda.h"
#include "gpu_test.h"
#include "model/checkpoint.h"
#include "testutil.h"
#include "train/distill.h"

#define TOL_LOSS 1e-5  // relative, on each loss value
#define TOL_GRAD 6e-4  // test_reference's gradient bound

// One loss + backward on both backends for one feature normalisation.
static void check(const char *model, UNet *tc, UNet *sc, UNet *tg, UNet *sg, const TuInputs *in, FeatNorm fn) {
    DistillConfig dc = {.lambda_task = 1.0, .lambda_out = 0.7, .lambda_feat = 0.4, .feat_norm = fn};
    const ModelConfig *m = &tc->cfg;
    // b samples: this rank's half of a global batch of B
    int b = in->B, B = 2 * in->B, H = in->H, W = in->W, L = in->L, nt = tc->n_taps;
    size_t nout = (size_t)b * m->out_channels * H * W, nx = (size_t)b * m->in_channels * H * W;
    size_t nctx = (size_t)b * L * m->cross_attention_dim;
    // host side
    float *oS = xmalloc(nout * 4), *oT = xmalloc(nout * 4), *dout = xmalloc(nout * 4), *dt[2 * LD_MAX_BLOCKS + 1];
    size_t tn[2 * LD_MAX_BLOCKS + 1];  // tap sizes, known after a forward
    Error e;
    EXPECT(unet_forward_added(tc, oT, in->sample, in->t, in->ctx, &in->add, b, H, W, L, NULL, &e) == 0, "%s: %s",
           model, e.msg);
    for (int t = 0; t < nt; t++) {
        tn[t] = (size_t)b * tc->taps[t].C * tc->taps[t].H * tc->taps[t].W;
        dt[t] = xmalloc(tn[t] * 4);
    }
    double vc[4 + 2 * (2 * LD_MAX_BLOCKS + 1)], vg[4 + 2 * (2 * LD_MAX_BLOCKS + 1)];
    unet_zero_grad(sc);
    EXPECT(distill_loss_added(tc, sc, &dc, in->sample, in->t, in->ctx, &in->add, in->R, b, B, H, W, L, oS, oT, dout,
                              dt, vc, &e) == 0,
           "%s cpu: %s", model, e.msg);
    // device side
    Backend *be = sg->be;
    float *xs = gpu_up(be, in->sample, nx), *ts = gpu_up(be, in->t, (size_t)b), *cs = gpu_up(be, in->ctx, nctx);
    float *noise = gpu_up(be, in->R, nout), *gS = be->mem.alloc(be->ctx, nout), *gT = be->mem.alloc(be->ctx, nout);
    float *gd = be->mem.alloc(be->ctx, nout), *gdt[2 * LD_MAX_BLOCKS + 1];
    for (int t = 0; t < nt; t++) gdt[t] = be->mem.alloc(be->ctx, tn[t]);
    UNetAdded add = {0};
    if (tc->pooled_dim > 0)
        add.pooled = gpu_up(be, in->add.pooled, (size_t)b * tc->pooled_dim),
        add.time_ids = gpu_up(be, in->add.time_ids, (size_t)b * LD_TIME_IDS);
    unet_zero_grad(sg);
    EXPECT(distill_loss_added(tg, sg, &dc, xs, ts, cs, &add, noise, b, B, H, W, L, gS, gT, gd, gdt, vg, &e) == 0,
           "%s gpu: %s", model, e.msg);
    const char *fname = fn == FEAT_NORM_L2SQ ? "l2sq" : "none";
    double worst = 0;
    for (int i = 0; i < 4 + 2 * nt; i++) {
        double err = fabs(vg[i] - vc[i]) / fmax(fabs(vc[i]), 1e-30);
        EXPECT(err <= TOL_LOSS, "%s %s: loss value %d: cpu %.9g gpu %.9g", model, fname, i, vc[i], vg[i]);
        worst = fmax(worst, err);
    }
    float *gg = xmalloc(sc->pt.total * 4);
    be->download(be->ctx, gg, sg->grads, sc->pt.total);
    double gw = 0;
    for (int i = 0; i < sc->pt.n; i++) {
        const ParamTensor *p = &sc->pt.t[i];
        double ge = tu_max_rel_err(gg + p->offset, sc->grads + p->offset, p->numel, 1e-30);
        EXPECT(ge <= TOL_GRAD, "%s %s: gradient of %s error %.2e", model, fname, p->name, ge);
        gw = fmax(gw, ge);
    }
    EXPECT(tg->grads == NULL, "%s: the teacher got a gradient buffer", model);
    // the rest of the step through each backend's optimizer ops: clipping (to half the norm, so it
    // clips), an AdamW update, the EMA; then the updated weights and EMA must agree. The update is a
    // second one, from moments of a fixed earlier gradient of the same scale: a first AdamW update is
    // lr * sign(g) wherever g is near zero, so it would compare rounding signs, not the step.
    size_t np = sc->pt.total;
    double nc = BK(sc->be, grad_norm, sc->grads, np), ng = BK(be, grad_norm, sg->grads, np);
    EXPECT(fabs(ng - nc) <= 1e-5 * nc, "%s %s: gradient norm cpu %.9g gpu %.9g", model, fname, nc, ng);
    BK(sc->be, grad_clip, sc->grads, np, nc / 2), BK(be, grad_clip, sg->grads, np, nc / 2);
    float rms = (float)(nc / 2 / sqrt((double)np));  // the clipped gradient's scale
    float *p0 = xmalloc(np * 4), *mc = xmalloc(np * 4), *vc_ = xmalloc(np * 4), *ec = xmalloc(np * 4);
    TuRng rng;
    tu_rng_seed(&rng, 7);
    for (size_t i = 0; i < np; i++) {
        float gp = rms * tu_uniform(&rng, -2, 2);
        mc[i] = 0.1f * gp, vc_[i] = 0.001f * gp * gp + 1e-3f * rms * rms;
    }
    memcpy(p0, sc->params, np * 4), memcpy(ec, sc->params, np * 4);
    float *mg = gpu_up(be, mc, np), *vg_ = gpu_up(be, vc_, np), *eg = gpu_up(be, ec, np), *pg0 = gpu_up(be, p0, np);
    BK(sc->be, adamw_update, sc->params, sc->grads, mc, vc_, np, 1e-3, 2, 0.9, 0.999, 1e-8, 0.01);
    BK(be, adamw_update, sg->params, sg->grads, mg, vg_, np, 1e-3, 2, 0.9, 0.999, 1e-8, 0.01);
    BK(sc->be, ema_update, ec, sc->params, np, 0.9);
    BK(be, ema_update, eg, sg->params, np, 0.9);
    float *pg = xmalloc(np * 4), *egh = xmalloc(np * 4);
    be->download(be->ctx, pg, sg->params, np), be->download(be->ctx, egh, eg, np);
    // the steps (new - old weights) against each other, relative to the largest step
    double smax = 0, se = 0, ee = 0;
    for (size_t i = 0; i < np; i++) {
        smax = fmax(smax, fabs(sc->params[i] - p0[i]));
        se = fmax(se, fabs((pg[i] - p0[i]) - (sc->params[i] - p0[i])));
        ee = fmax(ee, fabs((egh[i] - p0[i]) - (ec[i] - p0[i])));
    }
    EXPECT(smax > 0 && se <= 1e-3 * smax && ee <= 1e-3 * smax,
           "%s %s: AdamW steps differ by %.2e, EMA by %.2e (largest step %.2e)", model, fname, se, ee, smax);
    printf("%-6s feat_norm %-4s clip + AdamW + EMA: steps differ by %.2e of the largest (%.2e), EMA %.2e\n", model,
           fname, se / smax, smax, ee / smax);
    // back to the weights before, for the next case
    memcpy(sc->params, p0, np * 4);
    BK(be, copy, sg->params, pg0, np);
    be->mem.free(be->ctx, mg), be->mem.free(be->ctx, vg_), be->mem.free(be->ctx, eg), be->mem.free(be->ctx, pg0);
    free(p0), free(mc), free(vc_), free(ec), free(pg), free(egh);
    printf("%-6s feat_norm %-4s loss %.6g (cpu %.6g): worst loss term error %.2e, student gradients of %d tensors "
           "worst %.2e\n",
           model, fname, vg[0], vc[0], worst, sc->pt.n, gw);
    float *dv[] = {xs, ts, cs, noise, gS, gT, gd, (float *)add.pooled, (float *)add.time_ids};
    for (size_t i = 0; i < sizeof dv / sizeof *dv; i++)
        if (dv[i]) be->mem.free(be->ctx, dv[i]);
    for (int t = 0; t < nt; t++) be->mem.free(be->ctx, gdt[t]), free(dt[t]);
    free(oS), free(oT), free(dout), free(gg);
}

// Teacher and student on one backend, as distill runs them: one stream orders their ops.
static UNet *on_gpu(UNet *u, Backend *be) {
    unet_use_backend(u, backend_retain(be));
    return u;
}

static void check_model(const char *model) {
    StFile io;
    const char *removed;
    TuInputs in;
    UNet *tc = tu_load_case(model, &io, &removed, &in);
    uint8_t *rm = xcalloc((size_t)tc->n_cands, 1);
    Error e;
    EXPECT(candidates_from_names(tc, removed, rm, "fixture", &e) == 0, "%s: %s", model, e.msg);
    UNet *sc = tu_pruned_copy(tc, rm);
    Backend *be = backend_cuda_create(0, GEMM_FP32, GPU_CONV_AUTO, GPU_ATTN_AUTO, &e);
    if (!be) FATAL("backend_cuda_create: %s", e.msg);
    UNet *tg = on_gpu(tu_load_fixture(model, 1, tc->gran), be), *sg = on_gpu(tu_pruned_copy(tc, rm), be);
    backend_free(be);  // the models hold it now
    unet_set_keep(tc, UNET_KEEP_NONE), unet_set_keep(tg, UNET_KEEP_NONE);  // frozen teachers, as distill runs them
    check(model, tc, sc, tg, sg, &in, FEAT_NORM_L2SQ);
    check(model, tc, sc, tg, sg, &in, FEAT_NORM_NONE);
    free(rm);
    unet_free(tc), unet_free(sc), unet_free(tg), unet_free(sg);
    tu_free_inputs(&in);
    st_close(&io);
}

int main(int argc, char **argv) {
    int rc = gpu_test_start();
    if (rc) return rc;
    tu_set_threads(1);
    // the emulator: xl only (seconds; conv and linear take a minute a pass there)
    const char *all[] = {"conv", "linear", "xl", "xlt"}, *quick[] = {"xl"};
    const char *const *models = argc > 1 ? (const char *const *)argv + 1 : dev_is_emulated() ? quick : all;
    int nm = argc > 1 ? argc - 1 : dev_is_emulated() ? 1 : 4;
    for (int i = 0; i < nm; i++) check_model(models[i]);
    return tu_report("test_gpu_distill");
}
