// distill.c — the `distill` command (commands.h): the run's teacher and the
// pruned student (distill.student, or plan's student_init.safetensors) handed
// to distill_train (train/distill.h).
#include "cli/commands.h"
#include "model/checkpoint.h"
#include "train/distill.h"

int distill_main(RunCtx *r, int resume, Error *e) {
    const JobConfig *cfg = r->cfg;
    const char *student = cfg->distill.student[0] ? cfg->distill.student : r->dir.student_init;
    UNet *t = run_teacher(r, e);
    if (!t) return -1;
    UNet *s = unet_from_file(student, &cfg->model, e);
    if (!s) {
        char inner[sizeof e->msg];
        snprintf(inner, sizeof inner, "%s", e->msg);
        errorf(e, "%s (the student comes from `laptop-diff plan`, or set distill.student)", inner);
    }
    if (comm_agree(r->comm, s ? 0 : -1, e)) {
        unet_free(s);
        return -1;
    }
    // on the rank's GPU: the student, and a device copy of the run's teacher (its host copy
    // serves the other stages), on one backend so that their ops run in order
    Backend *dev = run_device(r);
    UNet *td = t;
    if (dev) {
        unet_use_backend(s, backend_retain(dev));
        td = unet_copy_to(t, backend_retain(dev), e);
        if (comm_agree(r->comm, td ? 0 : -1, e)) {
            unet_free(s);
            return -1;
        }
    }
    Comm *gc = NULL;
    if (run_grad_comm(r, &gc, e)) {
        if (td != t) unet_free(td);
        unet_free(s);
        return -1;
    }
    char *text = job_config_text(cfg);
    DistillJob job = {.distill = &cfg->distill, .train = &cfg->train, .data = &cfg->data,
                      .diffusion = &cfg->diffusion, .model = &cfg->model, .seed = cfg->runtime.seed,
                      .config_text = text, .run_h5 = r->dir.run_h5, .ckpt_dir = r->dir.checkpoints,
                      .model_out = r->dir.student, .ema_out = r->dir.student_ema, .teacher_path = cfg->weights,
                      .student_path = student, .h5 = r->h5, .resume = resume,
                      .grad_comm = gc};
    int rc = distill_train(&job, r->comm, td, s, e);
    free(text);
    if (td != t) unet_free(td);
    unet_free(s);
    return rc;
}
