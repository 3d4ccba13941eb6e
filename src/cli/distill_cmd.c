// distill_cmd.c — see distill_cmd.h.
#include "cli/distill_cmd.h"

#include "train/distill.h"

int distill_cmd(const JobConfig *cfg, Comm *comm, int resume, Error *e) {
    char *text = job_config_text(cfg);
    DistillJob job = {.distill = &cfg->distill, .train = &cfg->train, .data = &cfg->data,
                      .diffusion = &cfg->diffusion, .model = &cfg->model, .teacher = cfg->weights,
                      .output_dir = cfg->output.dir, .seed = cfg->runtime.seed, .config_text = text};
    int rc = distill_main(&job, comm, resume, e);
    free(text);
    return rc;
}
