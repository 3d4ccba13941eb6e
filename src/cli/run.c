// run.c — see run.h.
#include "cli/run.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "io/h5err.h"
#include "model/checkpoint.h"
#include "train/trainer.h"

int run_ctx_init(RunCtx *r, const JobConfig *cfg, Comm *comm, const H5Access *h5, Error *e) {
    memset(r, 0, sizeof *r);
    r->cfg = cfg, r->comm = comm, r->h5 = h5;
    return rundir_init(&r->dir, cfg->output.dir, e);
}

int run_ctx_lock(RunCtx *r, const char *command, Error *e) {
    int rc = 0;
    if (r->comm->rank == 0) {
        char note[RUNDIR_PATH + 512];
        rc = rundir_lock(&r->dir, command, note, sizeof note, e);
        r->locked = rc == 0;
        if (!rc && note[0]) printf("note: %s\n", note);
    }
    return comm_agree(r->comm, rc, e);
}

void run_ctx_free(RunCtx *r) {
    if (r->locked) rundir_unlock(&r->dir);
    r->locked = 0;
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

// Rank 0: which pruning stages run.h5 and the run directory show complete:
// bit 0 score (/prune/scores/<c> for every configured criterion), bit 1 plan
// (/prune/plan and student_init.safetensors).
static int stages_done(const RunCtx *r) {
    if (access(r->dir.run_h5, R_OK) != 0) return 0;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);
    int done = 0;
    H5E_BEGIN_TRY {
        hid_t f = H5Fopen(r->dir.run_h5, H5F_ACC_RDONLY, fapl);
        if (f >= 0) {
            int score = 1;
            for (int k = 0; k < r->cfg->prune.n_criteria; k++) {
                char ds[128];
                snprintf(ds, sizeof ds, "/prune/scores/%s", criterion_name(r->cfg->prune.criterion[k]));
                score = score && h5_path_exists(f, ds);
            }
            done = score | (h5_path_exists(f, "/prune/plan") && access(r->dir.student_init, R_OK) == 0) << 1;
            H5Fclose(f);
        }
    }
    H5E_END_TRY;
    H5Pclose(fapl);
    return done;
}

int run_main(RunCtx *r, int resume, Error *e) {
    double t0 = now_s();
    const char *names[4] = {"score", "plan", "distill", "eval"};
    // A resumed run skips the pruning stages that are complete on disk and
    // continues distill from its checkpoint (or starts it if it has none).
    int done = 0, distill_resume = TRAINER_RESUME_NO;
    if (resume & TRAINER_RESUME_MODE) {
        if (r->comm->rank == 0) done = stages_done(r);
        r->comm->bcast(r->comm, &done, sizeof done, 0);
        if (!(done & 1)) done = 0;  // new scores make a new plan
        if (done & 2) distill_resume = TRAINER_RESUME_AUTO | (resume & TRAINER_ALLOW_CHANGES);
    }
    for (int k = 0; k < 4; k++) {
        if (k < 2 && done >> k & 1) {
            if (r->comm->rank == 0)
                printf(k == 0 ? "== run: resume: skipping score, complete: %s has /prune/scores for every prune.criterion\n"
                              : "== run: resume: skipping plan, complete: %s has /prune/plan and student_init.safetensors is there\n",
                       r->dir.run_h5);
            continue;
        }
        if (r->comm->rank == 0) {
            if (k == 2 && (resume & TRAINER_RESUME_MODE) && !distill_resume)
                printf("== run: resume: %s, so distill starts fresh\n",
                       done & 1 ? "plan was not complete" : "score was not complete");
            printf("== run: %s (%.0f s so far)\n", names[k], now_s() - t0);
            fflush(stdout);
        }
        int rc = k == 0 ? score_main(r, e)
                 : k == 1 ? plan_main(r, e)
                 : k == 2 ? distill_main(r, distill_resume, e)
                          : eval_main(r, e);
        if (rc) return rc;
        // distill and eval need no calibration set: give its memory back
        if (k == 1 && r->have_calib) calib_free(&r->calib), r->have_calib = 0;
    }
    if (r->comm->rank == 0) printf("== run: done in %.0f s; results in %s\n", now_s() - t0, r->dir.dir);
    return 0;
}
