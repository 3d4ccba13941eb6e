// test_gpu_unet.c — the whole U-Net on the CUDA backend against the CPU
// backend, on the reference fixtures (tests/reference/fixtures: conv, linear,
// xl, xlt, the models test_reference checks against diffusers): output, every
// feature tap, and every parameter gradient of loss = sum(out * R) + sum over
// taps of tap * Q, with the fixture's two layers bypassed too, and with
// train.recompute's UNET_KEEP_INPUTS (the backward recomputing each layer on
// the device). The CPU backend is the reference (DESIGN §9); the bounds are
// test_reference's, against diffusers.
//
// Built twice like test_gpu_ops: on the GPU (label gpu; SKIPPED without a
// device, failing under LD_REQUIRE_GPU=1) and on the host CUDA emulator
// (test_gpu_unet_emu, label unit), which is not a GPU result.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/backend_cuda.h"
#include "gpu_test.h"
#include "model/checkpoint.h"
#include "testutil.h"

#define TOL_OUT 3e-5
#define TOL_GRAD 6e-4

// One pass on both: forward (skip may be NULL), backward with the taps'
// gradients; compares everything the pass produces.
static void compare(const char *model, const char *what, UNet *cpu, UNet *gpu, const TuInputs *in,
                    const uint8_t *skip, UNetKeep keep) {
    Backend *be = gpu->be;
    const ModelConfig *m = &cpu->cfg;
    int B = in->B, H = in->H, W = in->W, L = in->L;
    size_t nx = (size_t)B * m->in_channels * H * W, nout = (size_t)B * m->out_channels * H * W;
    size_t nctx = (size_t)B * L * m->cross_attention_dim;
    float *out = xmalloc(nout * sizeof(float));
    Error e;
    unet_set_keep(cpu, keep), unet_set_keep(gpu, keep);
    EXPECT(unet_forward_added(cpu, out, in->sample, in->t, in->ctx, &in->add, B, H, W, L, skip, &e) == 0,
           "%s cpu forward: %s", model, e.msg);
    float *ds = gpu_up(be, in->sample, nx), *dt = gpu_up(be, in->t, (size_t)B), *dc = gpu_up(be, in->ctx, nctx);
    float *dout = be->mem.alloc(be->ctx, nout), *dR = gpu_up(be, in->R, nout);
    UNetAdded dadd = {0};
    if (cpu->pooled_dim > 0) {
        dadd.pooled = gpu_up(be, in->add.pooled, (size_t)B * cpu->pooled_dim);
        dadd.time_ids = gpu_up(be, in->add.time_ids, (size_t)B * LD_TIME_IDS);
    }
    EXPECT(unet_forward_added(gpu, dout, ds, dt, dc, &dadd, B, H, W, L, skip, &e) == 0, "%s gpu forward: %s", model,
           e.msg);
    float *gout = gpu_down(be, dout, nout);
    double worst_out = tu_max_rel_err(gout, out, nout, 0);
    EXPECT(worst_out <= TOL_OUT, "%s %s: output error %.2e", model, what, worst_out);
    float *dQ[2 * LD_MAX_BLOCKS + 1] = {0};
    for (int k = 0; k < cpu->n_taps; k++) {
        size_t n = (size_t)B * cpu->taps[k].C * cpu->taps[k].H * cpu->taps[k].W;
        float *gt = gpu_down(be, gpu->taps[k].data, n);
        double te = tu_max_rel_err(gt, cpu->taps[k].data, n, 0);
        EXPECT(te <= TOL_OUT, "%s %s: tap %s error %.2e", model, what, cpu->taps[k].name, te);
        worst_out = fmax(worst_out, te);
        dQ[k] = gpu_up(be, in->Q[k], n);
        free(gt);
    }
    unet_zero_grad(cpu), unet_zero_grad(gpu);
    unet_backward(cpu, in->R, (const float *const *)in->Q);
    unet_backward(gpu, dR, (const float *const *)dQ);
    float *gg = gpu_down(be, gpu->grads, gpu->pt.total);
    double worst_grad = 0;
    const char *worst_name = "";
    for (int i = 0; i < cpu->pt.n; i++) {
        const ParamTensor *p = &cpu->pt.t[i];
        double mx = 0;
        for (size_t j = 0; j < p->numel; j++) mx = fmax(mx, fabs(cpu->grads[p->offset + j]));
        double ge = tu_max_rel_err(gg + p->offset, cpu->grads + p->offset, p->numel, 0);
        if (mx == 0) {  // a bypassed layer: exactly zero on both
            ge = 0;
            for (size_t j = 0; j < p->numel; j++) ge = fmax(ge, fabs(gg[p->offset + j]));
        }
        EXPECT(ge <= (mx > 0 ? TOL_GRAD : 0), "%s %s: gradient of %s error %.2e", model, what, p->name, ge);
        if (ge > worst_grad) worst_grad = ge, worst_name = p->name;
    }
    printf("%-6s %-20s output+taps %.2e, gradients of %d tensors worst %.2e (%s)\n", model, what, worst_out,
           cpu->pt.n, worst_grad, worst_name);
    for (int k = 0; k < cpu->n_taps; k++) be->mem.free(be->ctx, dQ[k]);
    float *devs[] = {ds, dt, dc, dout, dR, (float *)dadd.pooled, (float *)dadd.time_ids};
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++)
        if (devs[i]) be->mem.free(be->ctx, devs[i]);
    free(out), free(gout), free(gg);
}

static void check_model(const char *model) {
    StFile io;
    const char *removed;
    TuInputs in;
    UNet *cpu = tu_load_case(model, &io, &removed, &in);
    UNet *gpu = tu_load_fixture(model, 1, cpu->gran);
    Error e;
    Backend *be = backend_cuda_create(0, GEMM_FP32, GPU_CONV_AUTO, GPU_ATTN_AUTO, &e);
    if (!be) FATAL("backend_cuda_create: %s", e.msg);
    unet_use_backend(gpu, be);
    compare(model, "full", cpu, gpu, &in, NULL, UNET_KEEP_ALL);
    // the emulator spends ~30 s per pass of conv (a barrier per key in every
    // attention row): there the other passes run on xl only, the quickest
    int emu = dev_is_emulated();
    if (!emu || !strcmp(model, "xl")) {
        uint8_t *skip = xcalloc((size_t)cpu->n_cands, 1);
        EXPECT(candidates_from_names(cpu, removed, skip, "fixture", &e) == 0, "%s: %s", model, e.msg);
        compare(model, "removed (bypassed)", cpu, gpu, &in, skip, UNET_KEEP_ALL);
        free(skip);
    }
    if (!emu || !strcmp(model, "xl")) compare(model, "recompute", cpu, gpu, &in, NULL, UNET_KEEP_INPUTS);
    unet_free(gpu), unet_free(cpu);
    tu_free_inputs(&in);
    st_close(&io);
}

// argv: the models to check (default all four)
int main(int argc, char **argv) {
    int rc = gpu_test_start();
    if (rc) return rc;
    tu_set_threads(1);  // the CPU reference at one thread: the emulator's blocks take the cores
    const char *all[] = {"conv", "linear", "xl", "xlt"};
    const char *const *models = argc > 1 ? (const char *const *)argv + 1 : all;
    int nm = argc > 1 ? argc - 1 : 4;
    for (int i = 0; i < nm; i++) {
        double t0 = now_s();
        check_model(models[i]);
        printf("-- %s: %.1f s\n", models[i], now_s() - t0);
    }
    return tu_report("test_gpu_unet");
}
