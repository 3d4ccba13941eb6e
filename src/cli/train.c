// train.c — the `train` command (commands.h): the denoising task (epsilon
// prediction, MSE) on the configured data, run by the shared trainer, from
// train.init or a seeded initialisation.
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

#include "data/batch.h"
#include "model/checkpoint.h"
#include "data/dataset.h"
#include "model/init.h"
#include "kernels/kernels.h"
#include "diffusion/schedule.h"
#include "train/trainer.h"

typedef struct {
    const DataConfig *data_cfg;
    long seed;
    Dataset *data;
    Schedule sched;
    int64_t N;
    int C, H, W, L, D;
    size_t numel;  // per sample
    Batch bt;    // drawn on the host
    BatchOn on;  // what the U-Net reads of it, on its backend
    float *out, *dout;  // on the U-Net's backend
} DiffusionTask;

static int diffusion_step(void *self, UNet *u, long step, long g0, int b, int B, double *losses, Error *e) {
    DiffusionTask *d = self;
    size_t n = (size_t)b * d->numel;
    const Backend *be = u->be;
    batch_fill(&d->bt, d->data_cfg, d->seed, d->data, &d->sched, step, g0, b, B);
    batch_on_load(&d->on, &d->bt, b);
    UNetAdded add = batch_on_added(&d->on);
    if (unet_forward_added(u, d->out, d->on.xt, d->on.tf, d->on.ctx, &add, b, d->H, d->W, d->L, NULL, e)) return -1;
    double w = (double)b / B;  // this shard's share of the global mean
    losses[0] = BK(be, mse_forward, d->out, d->on.noise, n) * w;
    bk_zero(be, d->dout, n);
    BK(be, mse_backward, d->dout, NULL, d->out, d->on.noise, n, (float)w);
    unet_backward(u, d->dout, NULL);
    return 0;
}

int train_main(RunCtx *r, int resume, Error *e) {
    const JobConfig *cfg = r->cfg;
    Comm *comm = r->comm;
    DiffusionTask d = {.data_cfg = &cfg->data, .seed = cfg->runtime.seed};
    int rc = -1;
    UNet *u = NULL;
    d.data = dataset_open(&cfg->data, &cfg->model, "train", e);
    if (!d.data) return -1;
    if (schedule_init(&d.sched, &cfg->diffusion, e)) goto done;
    DatasetShape sh = dataset_shape(d.data);
    d.N = sh.n, d.C = sh.C, d.H = sh.H, d.W = sh.W, d.L = sh.L, d.D = sh.D;
    d.numel = (size_t)d.C * d.H * d.W;
    if (cfg->train.init[0]) {
        u = unet_from_file(cfg->train.init, &cfg->model, e);
        if (!u) goto done;
    } else {
        u = unet_create(&cfg->model, NULL, e);
        if (!u) goto done;
        unet_init_params(u, (uint64_t)cfg->runtime.seed);
    }
    if (u->cfg.in_channels != d.C || u->cfg.out_channels != d.C || u->cfg.cross_attention_dim != d.D) {
        errorf(e, "the model (%d->%d channels, cross_attention_dim %d) does not fit the data (%d channels, context "
                  "width %d)",
               u->cfg.in_channels, u->cfg.out_channels, u->cfg.cross_attention_dim, d.C, d.D);
        goto done;
    }
    if (u->pooled_dim != sh.P) {  // the data was opened for the job's model section
        errorf(e, "%s: the model takes %d pooled text features (addition_embed_type) but the job's model section "
                  "says %d",
               cfg->train.init, u->pooled_dim, sh.P);
        goto done;
    }
    long B = cfg->train.batch, b = B / (comm->size > 0 ? comm->size : 1) + 1;
    Backend *dev = run_device(r);  // the rank's GPU (runtime.device = "cuda"), or NULL: the CPU
    if (dev) unet_use_backend(u, backend_retain(dev));
    const Backend *be = u->be;
    batch_alloc(&d.bt, (int)b, d.numel, d.L * d.D);
    batch_alloc_added(&d.bt, sh.P);
    batch_on_init(&d.on, &d.bt, be);
    d.out = be->mem.alloc(be->ctx, (size_t)b * d.numel);
    d.dout = be->mem.alloc(be->ctx, (size_t)b * d.numel);

    Comm *gc = NULL;  // the GPUs' gradient sums (collective; every rank got here alike)
    if (run_grad_comm(r, &gc, e)) goto done;
    char steps[32];
    snprintf(steps, sizeof steps, "%d", cfg->train.steps);
    const char *meta[] = {"laptop_diff.stage", "train", "laptop_diff.steps", steps};
    TrainTask task = {.n_losses = 1, .loss_names = {"loss"}, .step = diffusion_step, .self = &d};
    char *text = job_config_text(cfg);
    TrainerOptions opt = {.stage = "train", .run_h5 = r->dir.run_h5, .ckpt_dir = r->dir.checkpoints,
                          .model_out = r->dir.model, .ema_out = r->dir.model_ema, .resume = resume, .meta = meta,
                          .n_meta = 2, .config_text = text, .grad_comm = gc};
    if (comm->rank == 0) {
        printf("train: %zu parameters, %lld samples, global batch %ld on %d rank%s, %d steps\n", u->pt.total,
               (long long)d.N, B, comm->size, comm->size == 1 ? "" : "s", cfg->train.steps);
        fflush(stdout);
    }
    rc = trainer_run(&cfg->train, cfg->runtime.seed, comm, u, &task, &opt, e);
    free(text);
done:
    batch_on_free(&d.on);
    batch_free(&d.bt);
    if (u) {
        if (d.out) u->be->mem.free(u->be->ctx, d.out);
        if (d.dout) u->be->mem.free(u->be->ctx, d.dout);
    }
    unet_free(u);
    schedule_free(&d.sched);
    dataset_close(d.data);
    return rc;
}
