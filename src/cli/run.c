// run.c — see run.h.
#include "cli/run.h"

#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "model/checkpoint.h"

int run_ctx_init(RunCtx *r, const JobConfig *cfg, Comm *comm, const H5Access *h5, Error *e) {
    memset(r, 0, sizeof *r);
    r->cfg = cfg, r->comm = comm, r->h5 = h5;
    return rundir_init(&r->dir, cfg->output.dir, e);
}

void run_ctx_free(RunCtx *r) {
    if (r->have_calib) calib_free(&r->calib);
    unet_free(r->teacher);
    r->teacher = NULL, r->have_calib = 0;
}

UNet *run_teacher(RunCtx *r, Error *e) {
    if (r->teacher) return r->teacher;
    UNet *u = NULL;
    if (!r->cfg->weights[0])
        errorf(e, "model.weights is empty: score, plan, distill and eval need the teacher's weights (.safetensors)");
    else
        u = unet_from_file(r->cfg->weights, &r->cfg->model, e);
    if (comm_agree(r->comm, u ? 0 : -1, e)) {
        unet_free(u);
        return NULL;
    }
    return r->teacher = u;
}

Calib *run_calib(RunCtx *r, Error *e) {
    if (r->have_calib) return &r->calib;
    UNet *t = run_teacher(r, e);
    if (!t) return NULL;
    const JobConfig *c = r->cfg;
    int rc = calib_build(&r->calib, &c->prune, &c->data, &c->diffusion, &c->model, c->runtime.seed, e);
    if (!rc) rc = calib_teacher(t, &r->calib, e);
    if (comm_agree(r->comm, rc, e)) {
        calib_free(&r->calib);
        return NULL;
    }
    r->have_calib = 1;
    return &r->calib;
}

int run_main(RunCtx *r, int resume, Error *e) {
    double t0 = now_s();
    const char *names[4] = {"score", "plan", "distill", "eval"};
    for (int k = 0; k < 4; k++) {
        // a resumed run skips the finished pruning stages: its student is on disk
        if (resume && k < 2) continue;
        if (r->comm->rank == 0) {
            printf("== run: %s (%.0f s so far)\n", names[k], now_s() - t0);
            fflush(stdout);
        }
        int rc = k == 0 ? score_main(r, e)
                 : k == 1 ? plan_main(r, e)
                 : k == 2 ? distill_main(r, resume, e)
                          : eval_main(r, e);
        if (rc) return rc;
        // distill and eval need no calibration set: give its memory back
        if (k == 1 && r->have_calib) calib_free(&r->calib), r->have_calib = 0;
    }
    if (r->comm->rank == 0) printf("== run: done in %.0f s; results in %s\n", now_s() - t0, r->dir.dir);
    return 0;
}
