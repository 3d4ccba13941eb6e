// eval.c — the `eval` command: teacher and student on held-out data (the
// test split: eval.samples noisy inputs built like the calibration set): task
// loss (MSE to the true noise), output MSE to the teacher, parameters, MACs
// and seconds per sample; /eval/<model>/* in run.h5, a table on stdout, and a
// PNG with teacher and student samples side by side for the same seeds and
// classes. See commands.h.
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/sample.h"
#include "data/calib.h"
#include "data/conditioning.h"
#include "io/h5log.h"
#include "io/png_grid.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"

typedef struct {
    double task_loss, output_mse, params, macs, seconds_per_sample;
} Metrics;

static int measure(UNet *u, Calib *cs, Metrics *m, Error *e) {
    size_t per = (size_t)cs->Co * cs->H * cs->W, n = (size_t)cs->n * per;
    float *out = xmalloc(n * sizeof(float));
    double t0 = now_s();
    int rc = calib_run(u, cs, NULL, out, &m->output_mse, e);
    m->seconds_per_sample = (now_s() - t0) / cs->n;
    if (!rc) m->task_loss = mse_forward(out, cs->noise, n);
    m->params = (double)u->pt.total;
    m->macs = (double)unet_total_macs(u);
    free(out);
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

int eval_main(RunCtx *r, Error *e) {
    const JobConfig *cfg = r->cfg;
    Comm *comm = r->comm;
    const char *run_h5 = r->dir.run_h5, *png = r->dir.eval_png;
    UNet *t = run_teacher(r, e), *s = NULL;
    if (!t) return -1;
    s = unet_from_file(r->dir.student, &cfg->model, e);
    int rc = s ? 0 : -1;
    if (comm_agree(comm, rc, e)) goto done;
    Metrics mt = {0}, ms = {0};
    if (comm->rank == 0) {
        Calib cs;
        rc = calib_build_from(&cs, &cfg->data, &cfg->diffusion, &cfg->model, cfg->runtime.seed, "test",
                              cfg->eval.samples, cfg->prune.batch, e);
        if (!rc) rc = calib_teacher(t, &cs, e);
        if (!rc) rc = measure(t, &cs, &mt, e);
        if (!rc) rc = measure(s, &cs, &ms, e);
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
    return rc;
}
