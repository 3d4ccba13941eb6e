// eval.c — the `eval` command: teacher and student on held-out data (the
// test split: eval.samples noisy inputs built like the calibration set): task
// loss (MSE to the true noise), output MSE to the teacher, parameters, MACs
// and seconds per sample; /eval/<model>/* in run.h5, a table on stdout, and a
// PNG with teacher and student samples side by side for the same seeds and
// classes. With a device (run_device) every U-Net pass runs there; the
// evaluator classifier and FID stay on the CPU. See commands.h.
#include <stdio.h>
#include <string.h>

#include <math.h>

#include "cli/commands.h"
#include "cli/sample.h"
#include "data/calib.h"
#include "data/conditioning.h"
#include "data/fmnist.h"
#include "diffusion/ddim.h"
#include "diffusion/schedule.h"
#include "io/h5log.h"
#include "io/png_grid.h"
#include "kernels/kernels.h"
#include "metrics/fid.h"
#include "model/checkpoint.h"
#include "model/classifier.h"

typedef struct {
    double task_loss, output_mse, params, macs, seconds_per_sample;
} Metrics;

// u's metrics on cs, a set in u's backend memory (calib_on): the outputs stay
// there and both losses are the backend's sums (doubles; on the CPU
// mse_forward itself), so only the two numbers come back from a device.
static int measure(UNet *u, const Calib *cs, Metrics *m, Error *e) {
    const Backend *be = u->be;
    size_t per = (size_t)cs->Co * cs->H * cs->W, n = (size_t)cs->n * per;
    float *out = be->mem.alloc(be->ctx, n ? n : 1);
    double t0 = now_s();
    int rc = calib_run(u, cs, NULL, out, &m->output_mse, e);
    m->seconds_per_sample = (now_s() - t0) / cs->n;  // calib_run's per-chunk sums wait for the device
    if (!rc) m->task_loss = BK(be, mse_forward, out, cs->noise, n);
    m->params = (double)u->pt.total;
    m->macs = (double)unet_total_macs(u);
    be->mem.free(be->ctx, out);
    return rc;
}

static int write_metrics(H5Log *log, const char *who, const Metrics *m, Error *e) {
    const struct { const char *name; double v; const char *units, *desc; } rows[] = {
        {"task_loss", m->task_loss, "1", "held-out MSE of the predicted to the true noise"},
        {"output_mse", m->output_mse, "1", "held-out MSE of the output to the teacher's output"},
        {"params", m->params, "1", "parameters of the U-Net"},
        {"macs", m->macs, "MAC", "multiply-accumulates per sample at model.sample_size"},
        {"seconds_per_sample", m->seconds_per_sample, "s", "forward wall time per sample on rank 0 (batch prune.batch)"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "/eval/%s/%s", who, rows[i].name);
        if (h5log_write_f64(log, path, &rows[i].v, 0, NULL, rows[i].units, rows[i].desc, e)) return -1;
    }
    return 0;
}

// ---- image quality: alignment and FID under the evaluator classifier, sampling speed

enum { CLF_BATCH = 100 };  // images per classifier forward

typedef struct {
    double alignment, per_class[COND_CLASSES], fid, kid;
    double step_b1, image_b1, step_bn, image_bn;  // sampling wall time (rank 0)
} Quality;

// Why a model gets no image metrics ("" if it does): they need Fashion-MNIST pixels.
static const char *quality_skip(const JobConfig *cfg, const UNet *u) {
    if (!cfg->eval.classifier[0]) return "eval.classifier is empty";
    if (u->cfg.in_channels != 1 || u->cfg.out_channels != 1)
        return "the model's samples are latents (in_channels != 1), not Fashion-MNIST pixels";
    if (cfg->data.source != DATA_FASHION_MNIST) return "data.source is not \"fashion-mnist\" (no real test images)";
    return "";
}

// N real test images, class-balanced: each class's first N/10 in the split's order.
static int real_images(const JobConfig *cfg, int N, float *x, Error *e) {
    Fmnist test;
    if (fmnist_load(&test, cfg->data.path, "test", e)) return -1;
    int per = N / COND_CLASSES, got[COND_CLASSES] = {0}, n = 0;
    for (int i = 0; i < test.n && n < N; i++) {
        int c = test.labels[i];
        if (got[c] == per) continue;
        fmnist_image(&test, i, x + ((size_t)c * per + got[c]) * FMNIST_SIDE * FMNIST_SIDE);
        got[c]++, n++;
    }
    fmnist_free(&test);
    if (n < N) return errorf(e, "eval.fid_samples = %d: the test split has fewer than %d images of some class", N, per);
    return 0;
}

// Wall time of one DDIM sampling run of B class-conditioned samples (rank 0's share of nothing: a local run).
static int time_sampling(UNet *u, const JobConfig *cfg, int B, double *secs, Error *e) {
    const ModelConfig *m = &u->cfg;
    int L = m->context_length, D = m->cross_attention_dim, H = m->sample_size, C = m->out_channels;
    Conditioner *cond = cond_create(L, D, (uint64_t)cfg->data.embed_seed, e);
    if (!cond) return -1;
    Schedule sc;
    if (schedule_init(&sc, &cfg->diffusion, e)) {
        cond_free(cond);
        return -1;
    }
    float *cc = xmalloc((size_t)B * L * D * sizeof(float)), *cu = xmalloc((size_t)B * L * D * sizeof(float));
    float *out = xmalloc((size_t)B * C * H * H * sizeof(float));
    for (int i = 0; i < B; i++) {
        cond_context(cond, i % COND_CLASSES, cc + (size_t)i * L * D);
        cond_context(cond, COND_EMPTY, cu + (size_t)i * L * D);
    }
    DdimOptions o = {.clip_x0 = 1, .first_sample = 0};
    double t0 = now_s();
    int rc = ddim_sample_opts(u, &sc, &cfg->sample, &o, cc, cu, B, C, H, H, L, out, e);
    *secs = now_s() - t0;
    free(cc), free(cu), free(out);
    schedule_free(&sc);
    cond_free(cond);
    return rc;
}

// One model's quality: eval.fid_samples class-balanced samples (sample_all: split
// across the ranks, each sample's noise keyed by its global index, gathered on
// rank 0), classified and compared there with the real images' features.
static int measure_quality(UNet *u, const JobConfig *cfg, Comm *comm, Classifier *clf, const float *real_feat,
                           Quality *q, Error *e) {
    int N = cfg->eval.fid_samples, d = clf_feat_dim(clf);
    JobConfig *gc = xmalloc(sizeof *gc);
    *gc = *cfg;
    gc->sample.per_class = N / COND_CLASSES;
    float *x = sample_all(u, gc, comm, e);
    free(gc);
    if (!x) return -1;
    int rc = 0;
    if (comm->rank == 0) {
        int *cls = xmalloc((size_t)N * sizeof(int));
        for (int i = 0; i < N; i++) cls[i] = i / (N / COND_CLASSES);  // sample_all's class-major order
        float *feat = xmalloc((size_t)N * d * sizeof(float));
        q->alignment = clf_alignment(clf, x, cls, N, CLF_BATCH, q->per_class);
        clf_predict(clf, x, N, CLF_BATCH, NULL, feat);
        rc = fid_features(feat, N, real_feat, N, d, &q->fid, e);
        if (!rc) rc = kid_features(feat, N, real_feat, N, d, &q->kid, e);
        double t1 = 0, tn = 0;
        if (!rc) rc = time_sampling(u, cfg, 1, &t1, e);
        if (!rc) rc = time_sampling(u, cfg, cfg->eval.speed_batch, &tn, e);
        q->step_b1 = t1 / cfg->sample.steps, q->image_b1 = t1;
        q->step_bn = tn / cfg->sample.steps, q->image_bn = tn / cfg->eval.speed_batch;
        free(cls), free(feat);
    }
    free(x);
    return comm_agree(comm, rc, e);
}

static int write_quality(H5Log *log, const char *who, const Quality *q, const JobConfig *cfg, Error *e) {
    char d_fid[256], d_step[256], d_img[256];
    snprintf(d_fid, sizeof d_fid,
             "Frechet distance of the evaluator's penultimate features between %d generated samples and %d real test "
             "images (both class-balanced)", cfg->eval.fid_samples, cfg->eval.fid_samples);
    snprintf(d_step, sizeof d_step,
             "DDIM sampling wall time per denoising step (with classifier-free guidance: 2 U-Net passes) at batch %d, "
             "rank 0", cfg->eval.speed_batch);
    snprintf(d_img, sizeof d_img, "DDIM sampling wall time per image (%d steps) at batch %d, rank 0", cfg->sample.steps,
             cfg->eval.speed_batch);
    const struct { const char *name; double v; const char *units, *desc; } rows[] = {
        {"alignment", q->alignment, "1", "fraction of class-conditioned samples the evaluator assigns to the class asked for"},
        {"fid", q->fid, "1", d_fid},
        {"kid", q->kid, "1", "kernel inception distance (unbiased MMD^2, cubic kernel) on the same features"},
        {"seconds_per_step_b1", q->step_b1, "s", "DDIM sampling wall time per denoising step (with classifier-free guidance: 2 U-Net passes) at batch 1, rank 0"},
        {"seconds_per_image_b1", q->image_b1, "s", "DDIM sampling wall time per image at batch 1, rank 0"},
        {"seconds_per_step_bN", q->step_bn, "s", d_step},
        {"seconds_per_image_bN", q->image_bn, "s", d_img},
    };
    char path[128];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        snprintf(path, sizeof path, "/eval/%s/%s", who, rows[i].name);
        if (h5log_write_f64(log, path, &rows[i].v, 0, NULL, rows[i].units, rows[i].desc, e)) return -1;
    }
    long long n = COND_CLASSES;
    snprintf(path, sizeof path, "/eval/%s/alignment_per_class", who);
    if (h5log_write_f64(log, path, q->per_class, 1, &n, "1", "alignment of each class's samples, classes 0..9", e))
        return -1;
    snprintf(path, sizeof path, "/eval/%s/seconds_per_step_bN", who);
    char nb[16];
    snprintf(nb, sizeof nb, "%d", cfg->eval.speed_batch);
    if (h5log_attr_str(log, path, "batch", nb, e)) return -1;
    snprintf(path, sizeof path, "/eval/%s/seconds_per_image_bN", who);
    return h5log_attr_str(log, path, "batch", nb, e);
}

static void print_quality(const JobConfig *cfg, const Quality *q, const char *const *who) {
    int N = cfg->eval.fid_samples, nb = cfg->eval.speed_batch;
    printf("eval image quality: %d class-balanced samples per model (%d DDIM steps, guidance %.2f) vs %d real test "
           "images, evaluator %s:\n",
           N, cfg->sample.steps, cfg->sample.guidance, N, cfg->eval.classifier);
    printf("  %-8s %9s %9s %9s %11s %11s %11s %11s\n", "model", "alignment", "FID", "KID", "ms/step b1", "ms/img b1",
           "ms/step bN", "ms/img bN");
    for (int k = 0; k < 2; k++)
        printf("  %-8s %9.4f %9.4f %9.5f %11.2f %11.2f %11.2f %11.2f\n", who[k], q[k].alignment, q[k].fid, q[k].kid,
               1e3 * q[k].step_b1, 1e3 * q[k].image_b1, 1e3 * q[k].step_bn, 1e3 * q[k].image_bn);
    printf("  (bN: batch %d)\n", nb);
    for (int k = 0; k < 2; k++) {
        printf("  %-8s alignment per class:", who[k]);
        for (int c = 0; c < COND_CLASSES; c++) printf(" %.2f", q[k].per_class[c]);
        printf("\n");
    }
    double da = q[1].alignment - q[0].alignment;
    printf("  student vs teacher: alignment %+.4f (%+.1f%% of the teacher's), FID %+.4f; %.2fx the teacher's "
           "sampling speed at batch 1, %.2fx at batch %d\n",
           da, q[0].alignment > 0 ? 100 * da / q[0].alignment : NAN, q[1].fid - q[0].fid, q[0].image_b1 / q[1].image_b1,
           q[0].image_bn / q[1].image_bn, nb);
}

// Alignment, FID and speed of teacher t and student s into /eval/<model>/*
// (rank 0 writes), or a printed line why not.
static int eval_quality(RunCtx *r, UNet *t, UNet *s, Error *e) {
    const JobConfig *cfg = r->cfg;
    Comm *comm = r->comm;
    const char *skip = quality_skip(cfg, t);
    if (skip[0]) {
        if (comm->rank == 0) printf("eval: no alignment, FID or sampling speed: %s\n", skip);
        return 0;
    }
    Classifier *clf = clf_load(cfg->eval.classifier, e);
    int rc = clf ? 0 : -1;
    if (!rc && (clf->arch.in_channels != t->cfg.out_channels || clf->arch.side != t->cfg.sample_size))
        rc = errorf(e, "eval.classifier %s classifies [%d,%d,%d] images; the model samples [%d,%d,%d]",
                    cfg->eval.classifier, clf->arch.in_channels, clf->arch.side, clf->arch.side, t->cfg.out_channels,
                    t->cfg.sample_size, t->cfg.sample_size);
    if (!rc && clf->arch.classes != COND_CLASSES)
        rc = errorf(e, "eval.classifier %s has %d classes; the captions have %d", cfg->eval.classifier,
                    clf->arch.classes, COND_CLASSES);
    int N = cfg->eval.fid_samples, d = clf ? clf_feat_dim(clf) : 1;
    float *real_feat = NULL;
    if (!rc && comm->rank == 0) {
        float *x = xmalloc((size_t)N * FMNIST_SIDE * FMNIST_SIDE * sizeof(float));
        rc = real_images(cfg, N, x, e);
        if (!rc) {
            real_feat = xmalloc((size_t)N * d * sizeof(float));
            clf_predict(clf, x, N, CLF_BATCH, NULL, real_feat);
        }
        free(x);
    }
    Quality q[2];
    memset(q, 0, sizeof q);
    const char *who[2] = {"teacher", "student"};
    rc = comm_agree(comm, rc, e);
    if (!rc) rc = measure_quality(t, cfg, comm, clf, real_feat, &q[0], e);
    if (!rc) rc = measure_quality(s, cfg, comm, clf, real_feat, &q[1], e);
    if (!rc && comm->rank == 0) {
        print_quality(cfg, q, who);
        H5Log *log = h5log_open(r->dir.run_h5, NULL, H5LOG_OPEN, H5LOG_ALL_ROWS, e);
        rc = log ? 0 : -1;
        for (int k = 0; k < 2 && !rc; k++) rc = write_quality(log, who[k], &q[k], cfg, e);
        if (log && h5log_close(log, e)) rc = -1;
    }
    free(real_feat);
    clf_free(clf);
    return comm_agree(comm, rc, e);
}

int eval_main(RunCtx *r, Error *e) {
    const JobConfig *cfg = r->cfg;
    Comm *comm = r->comm;
    const char *run_h5 = r->dir.run_h5, *png = r->dir.eval_png;
    UNet *t = run_teacher(r, e), *s = NULL, *td = NULL;
    if (!t) return -1;
    s = unet_from_file(r->dir.student, &cfg->model, e);
    int rc = s ? 0 : -1;
    if (comm_agree(comm, rc, e)) goto done;
    // On the rank's GPU both models' passes run there (one backend, so one
    // stream orders them): the student moves, the teacher gets a device copy
    // (the run's host teacher may be node-shared read-only memory, and stays
    // for the run's other stages). The classifier and FID stay on the CPU.
    Backend *dev = run_device(r);
    if (dev) {
        td = unet_copy_to(t, backend_retain(dev), e);
        if ((rc = comm_agree(comm, td ? 0 : -1, e))) goto done;
        unet_use_backend(s, backend_retain(dev));
        t = td;
    }
    Metrics mt = {0}, ms = {0};
    if (comm->rank == 0) {
        Calib cs, on = {0};  // the held-out set on the host, and in the models' memory
        rc = calib_build_from(&cs, &cfg->data, &cfg->diffusion, &cfg->model, cfg->runtime.seed, "test",
                              cfg->eval.samples, cfg->prune.batch, e);
        if (!rc) rc = calib_teacher_on(t, &cs, &on, e);
        if (!rc) rc = measure(t, &on, &mt, e);
        if (!rc) rc = measure(s, &on, &ms, e);
        calib_free_on(&on, t->be);
        calib_free(&cs);
        if (!rc) {
            printf("eval on %d held-out samples (test split):\n", cfg->eval.samples);
            printf("  %-8s %12s %12s %12s %14s %12s\n", "model", "task_loss", "output_mse", "params", "MACs", "ms/sample");
            const Metrics *ms2[2] = {&mt, &ms};
            const char *who[2] = {"teacher", "student"};
            for (int k = 0; k < 2; k++)
                printf("  %-8s %12.6f %12.6f %12.0f %14.0f %12.2f\n", who[k], ms2[k]->task_loss, ms2[k]->output_mse,
                       ms2[k]->params, ms2[k]->macs, 1e3 * ms2[k]->seconds_per_sample);
            printf("  student/teacher: %.1f%% of the parameters, %.1f%% of the MACs\n", 100 * ms.params / mt.params,
                   100 * ms.macs / mt.macs);
            H5Log *log = h5log_open(run_h5, NULL, H5LOG_OPEN, H5LOG_ALL_ROWS, e);
            rc = log ? 0 : -1;
            if (!rc) rc = write_metrics(log, "teacher", &mt, e);
            if (!rc) rc = write_metrics(log, "student", &ms, e);
            if (log && h5log_close(log, e)) rc = -1;
        }
    }
    if (comm_agree(comm, rc, e)) goto done;
    if ((rc = eval_quality(r, t, s, e))) goto done;
    int C = t->cfg.out_channels;
    if (C != 1 && C != 3) {
        // latents (SD's 4 channels) are no picture until a VAE decodes them
        if (comm->rank == 0)
            printf("eval: no %s: the model's %d output channels are latents, not gray or RGB pixels\n", png, C);
        goto done;
    }
    // samples side by side: the same seeds and classes for both
    float *xt = sample_all(t, cfg, comm, e), *xs = xt ? sample_all(s, cfg, comm, e) : NULL;
    rc = xs ? 0 : -1;
    if (!rc && comm->rank == 0) {
        int pc = cfg->sample.per_class, H = t->cfg.sample_size;
        size_t per = (size_t)C * H * H;
        float *grid = xmalloc((size_t)COND_CLASSES * 2 * pc * per * sizeof(float));
        for (int c = 0; c < COND_CLASSES; c++)
            for (int k = 0; k < pc; k++) {
                memcpy(grid + ((size_t)c * 2 * pc + k) * per, xt + ((size_t)c * pc + k) * per, per * sizeof(float));
                memcpy(grid + ((size_t)c * 2 * pc + pc + k) * per, xs + ((size_t)c * pc + k) * per, per * sizeof(float));
            }
        rc = png_write_grid(png, grid, COND_CLASSES * 2 * pc, C, H, H, COND_CLASSES, 2 * pc, 2, e);
        if (!rc)
            printf("eval: %s — one row per class (0..9), %d teacher samples then %d student samples from the same "
                   "seeds\n",
                   png, pc, pc);
        free(grid);
    }
    free(xt), free(xs);
    rc = comm_agree(comm, rc, e);
done:
    unet_free(s);
    unet_free(td);
    return rc;
}
