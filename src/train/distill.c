// distill.c — see distill.h.
#include "train/distill.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data/batch.h"
#include "model/checkpoint.h"
#include "data/dataset.h"
#include "io/h5log.h"
#include "kernels/kernels.h"
#include "core/rng.h"
#include "diffusion/schedule.h"
#include "io/h5rows.h"
#include "train/trainer.h"

#define MAX_TAPS (2 * LD_MAX_BLOCKS + 1)

typedef struct {
    const DistillJob *job;
    Comm *comm;
    Dataset *data;
    Schedule sched;
    UNet *teacher;
    int C, H, W, L, D, n_taps;
    size_t numel;
    const Backend *be;  // the student's (and the teacher's): where every tensor below lives
    Batch bt;           // drawn on the host
    BatchOn on;         // what the U-Nets read of it, on be
    float *outS, *outT, *dout;
    float *dtaps[MAX_TAPS];
    int id_raw, id_norm;
    // the fixed probe batch of the snapshots (this rank's rows), on be
    long probe_first, probe_rows;
    float *probe_xt, *probe_ctx, *probe_t, *probe_out;
    float *probe_pooled, *probe_tids;  // text_time models (SDXL) only
} DistillTask;

int distill_loss(UNet *teacher, UNet *u, const DistillConfig *dc, const float *xt, const float *tf, const float *ctx,
                 const float *noise, int b, int B, int H, int W, int L, float *outS, float *outT, float *dout,
                 float *const *dtaps, double *v, Error *e) {
    return distill_loss_added(teacher, u, dc, xt, tf, ctx, NULL, noise, b, B, H, W, L, outS, outT, dout, dtaps, v, e);
}

int distill_loss_added(UNet *teacher, UNet *u, const DistillConfig *dc, const float *xt, const float *tf,
                       const float *ctx, const UNetAdded *add, const float *noise, int b, int B, int H, int W, int L,
                       float *outS, float *outT, float *dout, float *const *dtaps, double *v, Error *e) {
    size_t n = (size_t)b * u->cfg.out_channels * H * W;
    int normalized = dc->feat_norm == FEAT_NORM_L2SQ, n_taps = teacher->n_taps;
    if (unet_forward_added(teacher, outT, xt, tf, ctx, add, b, H, W, L, NULL, e)) return -1;
    if (unet_forward_added(u, outS, xt, tf, ctx, add, b, H, W, L, NULL, e)) return -1;
    double w = (double)b / B;
    // on the student's backend: the U-Nets' outputs and taps are its tensors
    const Backend *be = u->be;
    CHECK(teacher->be->on_device == be->on_device);
    CHECK(!be->on_device || teacher->be == be);  // one device backend: one stream orders both models' ops
    double task = BK(be, mse_forward, outS, noise, n), out = BK(be, mse_forward, outS, outT, n), feat = 0;
    bk_zero(be, dout, n);
    BK(be, mse_backward, dout, NULL, outS, noise, n, (float)(dc->lambda_task * w));
    BK(be, mse_backward, dout, NULL, outS, outT, n, (float)(dc->lambda_out * w));
    for (int t = 0; t < n_taps; t++) {
        const Tap *ts = &u->taps[t], *tt = &teacher->taps[t];
        CHECK(ts->C == tt->C && ts->H == tt->H && ts->W == tt->W);
        size_t m = (size_t)ts->C * ts->H * ts->W;
        bk_zero(be, dtaps[t], (size_t)b * m);
        double raw, nrm;
        BK(be, feat_term, ts->data, tt->data, b, m, normalized, (double)B, (float)dc->lambda_feat, &raw, &nrm,
           dtaps[t]);
        v[4 + t] = raw * w;
        v[4 + n_taps + t] = nrm;  // already divided by the global batch
        feat += normalized ? nrm : raw * w;
    }
    v[1] = task * w, v[2] = out * w, v[3] = feat;
    v[0] = dc->lambda_task * v[1] + dc->lambda_out * v[2] + dc->lambda_feat * v[3];
    unet_backward(u, dout, (const float *const *)dtaps);
    return 0;
}

// values: loss, loss_task, loss_out, loss_feat, then feat_raw[n_taps], feat_norm[n_taps]
static int distill_step(void *self, UNet *u, long step, long g0, int b, int B, double *v, Error *e) {
    DistillTask *d = self;
    batch_fill(&d->bt, d->job->data, d->job->seed, d->data, &d->sched, step, g0, b, B);
    batch_on_load(&d->on, &d->bt, b);
    UNetAdded add = batch_on_added(&d->on);
    return distill_loss_added(d->teacher, u, d->job->distill, d->on.xt, d->on.tf, d->on.ctx, &add, d->on.noise, b, B,
                              d->H, d->W, d->L, d->outS, d->outT, d->dout, d->dtaps, v, e);
}

static int distill_log(void *self, H5Log *log, long step, const double *v, Error *e) {
    DistillTask *d = self;
    if (step < 0) {
        const char *cols[MAX_TAPS];
        for (int t = 0; t < d->n_taps; t++) cols[t] = d->teacher->taps[t].name;
        d->id_raw = h5log_series2d(log, "feat_raw", d->n_taps, "1",
                                   "per tap: mean over elements of (F_S - F_T)^2 (BK-SDM's term)", cols, e);
        d->id_norm = h5log_series2d(log, "feat_norm", d->n_taps, "1",
                                    "per tap: mean over samples of ||F_S - F_T||^2 / ||F_T||^2 (LAPTOP's term)", cols, e);
        return d->id_raw < 0 || d->id_norm < 0 ? -1 : 0;
    }
    if (h5log_append(log, d->id_raw, v + 4, e)) return -1;
    return h5log_append(log, d->id_norm, v + 4 + d->n_taps, e);
}

// Teacher and student taps on the fixed probe batch: one collective write.
static int distill_snapshot(void *self, UNet *u, long step, Error *e) {
    DistillTask *d = self;
    long rows = d->probe_rows, total = d->job->distill->probe_samples;
    const char *paths[2 * MAX_TAPS];
    char names[2 * MAX_TAPS][96];
    int ndims[2 * MAX_TAPS];
    long long dims[2 * MAX_TAPS][H5ROWS_MAX_DIMS];
    const float *data[2 * MAX_TAPS];
    float *copies[MAX_TAPS] = {0}, *student[MAX_TAPS] = {0};  // host copies of the taps (student's: device only)
    const Backend *be = d->be;
    int rc = 0;
    UNetAdded add = {d->probe_pooled, d->probe_tids};
    if (rows > 0 && unet_forward_added(d->teacher, d->probe_out, d->probe_xt, d->probe_t, d->probe_ctx, &add, (int)rows,
                                       d->H, d->W, d->L, NULL, e))
        rc = -1;
    // the teacher's taps live until its next forward; copy them before the student runs
    for (int t = 0; t < d->n_taps && !rc; t++) {
        const Tap *tt = &d->teacher->taps[t];
        size_t m = (size_t)tt->C * tt->H * tt->W;
        copies[t] = xmalloc((size_t)(rows ? rows : 1) * m * sizeof(float));
        if (rows) be->download(be->ctx, copies[t], tt->data, (size_t)rows * m);
    }
    if (!rc && rows > 0 &&
        unet_forward_added(u, d->probe_out, d->probe_xt, d->probe_t, d->probe_ctx, &add, (int)rows, d->H, d->W, d->L,
                           NULL, e))
        rc = -1;
    for (int t = 0; t < d->n_taps && !rc && be->on_device; t++) {
        const Tap *ts = &u->taps[t];
        size_t m = (size_t)ts->C * ts->H * ts->W;
        student[t] = xmalloc((size_t)(rows ? rows : 1) * m * sizeof(float));
        if (rows) be->download(be->ctx, student[t], ts->data, (size_t)rows * m);
    }
    for (int t = 0; t < d->n_taps && !rc; t++) {
        const Tap *tt = &d->teacher->taps[t];
        for (int k = 0; k < 2; k++) {
            int i = 2 * t + k;
            snprintf(names[i], sizeof names[i], "/activations/%ld/%s/%s", step, tt->name, k ? "student" : "teacher");
            paths[i] = names[i];
            ndims[i] = 4;
            dims[i][0] = total, dims[i][1] = tt->C, dims[i][2] = tt->H, dims[i][3] = tt->W;
            data[i] = k ? (student[t] ? student[t] : u->taps[t].data) : copies[t];
        }
    }
    // every rank must enter the collective, or none: a local failure is agreed first
    if (!comm_agree(d->comm, rc, e)) {
        const char *an[] = {"description", "units"};
        const char *av[] = {"feature map of this tap on the fixed probe batch (rows: probe samples)", "1"};
        rc = h5rows_write(d->comm, d->job->h5, d->job->run_h5, 2 * d->n_taps, paths, ndims,
                          (const long long(*)[H5ROWS_MAX_DIMS])dims, d->probe_first, rows, data, an, av, 2, e);
    } else {
        rc = -1;
    }
    for (int t = 0; t < d->n_taps; t++) free(copies[t]), free(student[t]);
    return rc;
}

// n floats of backend memory holding host's (which is freed): a tensor drawn on
// the host, moved to where the models run (on the CPU, the buffer itself).
static float *onto(const Backend *be, float *host, size_t n) {
    if (!be->on_device || !host) return host;
    float *p = be->mem.alloc(be->ctx, n);
    be->upload(be->ctx, p, host, n);
    free(host);
    return p;
}

static void bfree(const Backend *be, float *p) {  // backend memory (the CPU's: malloc's, so host buffers too)
    if (p) be->mem.free(be->ctx, p);
}

static float *bzeros(const Backend *be, size_t n) {
    float *p = be->mem.alloc(be->ctx, n ? n : 1);
    bk_zero(be, p, n ? n : 1);
    return p;
}

int distill_train(const DistillJob *job, Comm *comm, UNet *teacher, UNet *s, Error *e) {
    DistillTask d = {.job = job, .comm = comm, .teacher = teacher, .be = s->be};
    const Backend *be = s->be;
    const DistillJob *o = job;
    const DistillConfig *dc = job->distill;
    int rc = -1;
    // the teacher only runs forward: its layers' interiors share one arena, none kept for a backward
    UNetKeep teacher_keep = unet_set_keep(teacher, UNET_KEEP_NONE);
    // the data carries SDXL's added conditioning when the teacher (its own file's architecture) takes it
    ModelConfig dm = *job->model;
    dm.addition_embed_type = teacher->cfg.addition_embed_type;
    dm.addition_time_embed_dim = teacher->cfg.addition_time_embed_dim;
    dm.projection_class_embeddings_input_dim = teacher->cfg.projection_class_embeddings_input_dim;
    const int P = teacher->pooled_dim;
    if (s->pooled_dim != P) {
        errorf(e, "%s: the student takes %d pooled text features (addition_embed_type) but the teacher %s takes %d",
               job->student_path, s->pooled_dim, job->teacher_path, P);
        return -1;
    }
    d.data = dataset_open(job->data, &dm, "train", e);
    if (!d.data || schedule_init(&d.sched, job->diffusion, e)) goto done;
    DatasetShape sh = dataset_shape(d.data);
    d.C = sh.C, d.H = sh.H, d.W = sh.W, d.L = sh.L, d.D = sh.D, d.numel = (size_t)sh.C * sh.H * sh.W;
    d.n_taps = d.teacher->n_taps;
    // the files carry their own architecture: both must fit the data and each other
    const UNet *both[2] = {d.teacher, s};
    const char *paths[2] = {o->teacher_path, o->student_path};
    for (int k = 0; k < 2; k++) {
        const ModelConfig *m = &both[k]->cfg;
        if (m->in_channels != d.C || m->out_channels != d.C || m->cross_attention_dim != d.D) {
            errorf(e, "%s: a U-Net with %d->%d channels and cross_attention_dim %d does not fit the job's data "
                      "(%d channels, %dx%d, context %dx%d)",
                   paths[k], m->in_channels, m->out_channels, m->cross_attention_dim, d.C, d.H, d.W, d.L, d.D);
            goto done;
        }
    }
    int same = s->n_taps == d.n_taps && s->cfg.n_blocks == d.teacher->cfg.n_blocks;
    for (int i = 0; same && i < s->cfg.n_blocks; i++)
        same = s->cfg.block_out_channels[i] == d.teacher->cfg.block_out_channels[i];
    if (!same) {
        errorf(e, "%s: the student's stages (blocks and widths) do not match the teacher's (%s): feature KD needs "
                  "the same taps",
               o->student_path, o->teacher_path);
        goto done;
    }
    long B = job->train->batch, b = B / comm->size + 1;
    batch_alloc(&d.bt, (int)b, d.numel, d.L * d.D);
    batch_alloc_added(&d.bt, P);
    batch_on_init(&d.on, &d.bt, be);
    d.outS = be->mem.alloc(be->ctx, (size_t)b * d.numel);
    d.outT = be->mem.alloc(be->ctx, (size_t)b * d.numel);
    d.dout = be->mem.alloc(be->ctx, (size_t)b * d.numel);
    // tap sizes from one probe forward of the teacher (taps depend on H, W only)
    {
        float *x = bzeros(be, d.numel), *c = bzeros(be, (size_t)d.L * d.D), *t = bzeros(be, 1);
        float *o = be->mem.alloc(be->ctx, d.numel);
        float *pz = bzeros(be, (size_t)P + 1), *tid = xmalloc(LD_TIME_IDS * sizeof(float));
        unet_neutral_time_ids(tid, d.H, d.W);
        tid = onto(be, tid, LD_TIME_IDS);
        UNetAdded add = {pz, tid};
        int frc = unet_forward_added(d.teacher, o, x, t, c, &add, 1, d.H, d.W, d.L, NULL, e);
        bfree(be, x), bfree(be, c), bfree(be, t), bfree(be, o), bfree(be, pz), bfree(be, tid);
        if (frc) goto done;
        for (int t2 = 0; t2 < d.n_taps; t2++) {
            const Tap *tp = &d.teacher->taps[t2];
            d.dtaps[t2] = be->mem.alloc(be->ctx, (size_t)b * tp->C * tp->H * tp->W);
        }
    }
    // the probe batch: fixed samples from the test split, this rank's rows
    if (dc->activation_interval > 0) {
        comm_shard(dc->probe_samples, comm->rank, comm->size, &d.probe_first, &d.probe_rows);
        Dataset *test = dataset_open(job->data, &dm, "test", e);
        if (!test) goto done;
        long r = d.probe_rows ? d.probe_rows : 1;
        d.probe_xt = xmalloc((size_t)r * d.numel * sizeof(float));
        d.probe_ctx = xmalloc((size_t)r * d.L * d.D * sizeof(float));
        d.probe_t = xmalloc((size_t)r * sizeof(float));
        d.probe_out = xmalloc((size_t)r * d.numel * sizeof(float));
        if (P > 0) {
            d.probe_pooled = xmalloc((size_t)r * P * sizeof(float));
            d.probe_tids = xmalloc((size_t)r * LD_TIME_IDS * sizeof(float));
        }
        int *ti = xmalloc((size_t)r * sizeof(int));
        float *noise = xmalloc((size_t)r * d.numel * sizeof(float));
        uint64_t seed = (uint64_t)job->seed;
        for (long i = 0; i < d.probe_rows; i++) {
            uint64_t g = (uint64_t)(d.probe_first + i);
            int64_t idx = (int64_t)rng_below(seed, RNG_MISC, (7ULL << 32) + g, (uint64_t)dataset_size(test));
            dataset_get(test, idx, d.probe_xt + i * d.numel, d.probe_ctx + (size_t)i * d.L * d.D, NULL, 0);
            if (P > 0)
                dataset_get_added(test, idx, d.probe_pooled + (size_t)i * P, d.probe_tids + (size_t)i * LD_TIME_IDS, 0);
            ti[i] = (int)rng_below(seed, RNG_MISC, (8ULL << 32) + g, (uint64_t)d.sched.T);
            d.probe_t[i] = (float)ti[i];
            rng_normal_fill(noise + i * d.numel, d.numel, rng_bits(seed, RNG_MISC, (9ULL << 32) + g), RNG_MISC, 0);
        }
        schedule_q_sample(&d.sched, d.probe_xt, d.probe_xt, noise, ti, (int)d.probe_rows, d.numel);
        free(ti), free(noise);
        dataset_close(test);
        d.probe_xt = onto(be, d.probe_xt, (size_t)r * d.numel);
        d.probe_ctx = onto(be, d.probe_ctx, (size_t)r * d.L * d.D);
        d.probe_t = onto(be, d.probe_t, (size_t)r);
        d.probe_out = onto(be, d.probe_out, (size_t)r * d.numel);
        d.probe_pooled = onto(be, d.probe_pooled, (size_t)r * P);
        d.probe_tids = onto(be, d.probe_tids, (size_t)r * LD_TIME_IDS);
    }
    const char *meta[] = {"laptop_diff.stage", "distill", "laptop_diff.feat_norm", feat_norm_name(dc->feat_norm)};
    TrainTask task = {.n_losses = 4, .loss_names = {"loss", "loss_task", "loss_out", "loss_feat"}, .n_extra = 2 * d.n_taps,
                      .step = distill_step, .log_extra = distill_log, .self = &d};
    if (dc->activation_interval > 0) task.snapshot = distill_snapshot, task.snapshot_interval = dc->activation_interval;
    TrainerOptions opt = {.stage = "distill", .run_h5 = o->run_h5, .ckpt_dir = o->ckpt_dir,
                          .model_out = o->model_out, .ema_out = o->ema_out, .resume = o->resume, .meta = meta,
                          .n_meta = 2, .config_text = job->config_text, .grad_comm = job->grad_comm};
    if (comm->rank == 0) {
        printf("distill: student %zu parameters (teacher %zu), feature KD \"%s\", %d taps, global batch %ld on %d rank%s, "
               "%d steps\n",
               s->pt.total, d.teacher->pt.total, feat_norm_name(dc->feat_norm), d.n_taps, B, comm->size,
               comm->size == 1 ? "" : "s", job->train->steps);
        fflush(stdout);
    }
    rc = trainer_run(job->train, job->seed, comm, s, &task, &opt, e);
done:
    batch_on_free(&d.on);
    batch_free(&d.bt);
    bfree(be, d.outS), bfree(be, d.outT), bfree(be, d.dout);
    for (int t = 0; t < MAX_TAPS; t++) bfree(be, d.dtaps[t]);
    bfree(be, d.probe_xt), bfree(be, d.probe_ctx), bfree(be, d.probe_t), bfree(be, d.probe_out);
    bfree(be, d.probe_pooled), bfree(be, d.probe_tids);
    if (d.data) schedule_free(&d.sched);
    dataset_close(d.data);
    unet_set_keep(teacher, teacher_keep);
    return rc;
}
