// rundir.c — see rundir.h.
#include "io/rundir.h"

#include <stdio.h>
#include <string.h>

static void join(char *out, const char *dir, const char *name) { snprintf(out, RUNDIR_PATH, "%s/%s", dir, name); }

int rundir_init(RunDir *d, const char *dir, Error *e) {
    size_t n = strlen(dir);
    if (n == 0) return errorf(e, "output.dir is empty: set the run directory (results, checkpoints, models)");
    if (n > RUNDIR_MAX)
        return errorf(e, "output.dir is %zu characters long (at most %d): \"%.40s...\"", n, RUNDIR_MAX, dir);
    memset(d, 0, sizeof *d);
    memcpy(d->dir, dir, n + 1);
    join(d->run_h5, dir, "run.h5");
    join(d->checkpoints, dir, "checkpoints");
    join(d->model, dir, "model.safetensors");
    join(d->model_ema, dir, "model_ema.safetensors");
    join(d->student_init, dir, "student_init.safetensors");
    join(d->student, dir, "student.safetensors");
    join(d->student_ema, dir, "student_ema.safetensors");
    join(d->samples_png, dir, "samples.png");
    join(d->samples_h5, dir, "samples.h5");
    join(d->eval_png, dir, "teacher_vs_student.png");
    return 0;
}

int rundir_make(const RunDir *d, Error *e) { return make_dirs(d->dir, e); }
