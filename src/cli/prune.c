// prune.c — the `score` and `plan` commands (DESIGN §1, §4, §7): every rank
// uses the run's teacher (model.weights) and the same calibration set
// (cli/run.h); rank 0 writes /prune/* into run.h5 and the student's initial
// weights. See commands.h.
#include "cli/commands.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/stop.h"
#include "data/calib.h"
#include "model/checkpoint.h"
#include "io/h5err.h"
#include "io/h5log.h"
#include "prune/plan.h"
#include "prune/prune_score.h"

// What a stage stopped by a signal before its end says (it then exits 3).
static void print_stopped(const char *stage) {
    printf("%s: stopped by %s before the end; nothing was written, the stage starts over when run again\n", stage,
           stop_signal_name(stop_requested()));
}

// /prune/candidates: a compound table h5py reads as a structured array.
static int write_candidates(H5Log *log, const UNet *u, Error *e) {
    int n = u->n_cands;
    const char **name = xcalloc((size_t)n, sizeof *name), **kind = xcalloc((size_t)n, sizeof *kind);
    const char **stage = xcalloc((size_t)n, sizeof *stage);
    long long *params = xcalloc((size_t)n, sizeof *params), *macs = xcalloc((size_t)n, sizeof *macs);
    for (int i = 0; i < n; i++) {
        const Candidate *c = &u->cands[i];
        name[i] = c->name;
        kind[i] = cand_kind_name(c->kind);
        stage[i] = c->stage == STAGE_DOWN ? "down" : c->stage == STAGE_MID ? "mid" : "up";
        params[i] = c->params, macs[i] = c->macs;
    }
    H5LogColumn cols[] = {{"name", H5LOG_STR, name, "diffusers prefix"}, {"kind", H5LOG_STR, kind, "resnet, attention or block"},
                          {"stage", H5LOG_STR, stage, "down, mid or up"}, {"params", H5LOG_I64, params, "1"},
                          {"macs", H5LOG_I64, macs, "MAC"}};
    int rc = h5log_write_table(log, "/prune/candidates", n, cols, 5,
                               "removable layers (diffusers prefixes), their parameters, and MACs at model.sample_size "
                               "for one sample; row i is candidate index i",
                               e);
    if (!rc) rc = h5log_attr_str(log, "/prune/candidates", "granularity", granularity_name(u->gran), e);
    free(name), free(kind), free(stage), free(params), free(macs);
    return rc;
}

// The run's teacher with its candidates listed at prune.granularity (the
// same on every rank: a function of the model and the key).
static UNet *teacher_at_granularity(RunCtx *r, Error *e) {
    UNet *u = run_teacher(r, e);
    if (!u) return NULL;
    int rc = unet_set_granularity(u, (Granularity)r->cfg->prune.granularity, e);
    if (rc) {
        char inner[sizeof e->msg];
        snprintf(inner, sizeof inner, "%s", e->msg);
        errorf(e, "prune.granularity = \"%s\": model.weights %s: %s", granularity_name((Granularity)r->cfg->prune.granularity),
               r->cfg->weights, inner);
    }
    return comm_agree(r->comm, rc, e) ? NULL : u;
}

// The output-loss forwards (score's output_loss, plan's measured losses) on
// the rank's GPU (run_device): a device copy of the teacher, candidates at the
// same granularity, and of the calibration set with the teacher's outputs. u
// stays NULL where they run on the CPU.
typedef struct {
    UNet *u;
    Calib cs;
} OnDevice;

static void on_device_close(OnDevice *d) {
    if (d->u) calib_free_on(&d->cs, d->u->be);
    unet_free(d->u);
    d->u = NULL;
}

// The run's calibration set (run_calib) and, on a device, its copy there in d
// with a device copy of the teacher: when the set is built here its one
// teacher pass runs on that copy and the outputs come back into the context's
// host set, so the CPU criteria and a later stage on this context (plan after
// score in `run`) see them. NULL + e (agreed); d is then closed.
static Calib *calib_and_device(RunCtx *r, const UNet *u, OnDevice *d, Error *e) {
    *d = (OnDevice){0};
    Backend *dev = run_device(r);
    if (dev) {
        d->u = unet_copy_to(u, backend_retain(dev), e);
        if (comm_agree(r->comm, d->u ? 0 : -1, e)) {
            on_device_close(d);
            return NULL;
        }
    }
    Calib *cs = run_calib(r, d->u, &d->cs, e);
    if (!cs) on_device_close(d);
    return cs;
}

static const char *DESCRIPTIONS[CRIT_COUNT] = {
    "mean over the calibration set of (eps without only this layer - eps teacher)^2 (LAPTOP's output loss)",
    "uniform random draw (seeded baseline)",
    "mean |w| over the layer's parameters",
    "mean over samples of ||layer output - what removal passes on||^2 / ||layer output||^2",
    "|sum over the layer's parameters of grad * w| of the task loss on the calibration set",
};

int score_main(RunCtx *r, Error *e) {
    const JobConfig *cfg = r->cfg;
    Comm *comm = r->comm;
    UNet *u = teacher_at_granularity(r, e);
    OnDevice od = {0};
    Calib *cs = u ? calib_and_device(r, u, &od, e) : NULL;
    if (!cs) return -1;
    int rc = 0;
    if (comm->rank == 0) {
        printf("score: %d candidates (granularity %s), %d calibration samples, criteria ", u->n_cands,
               granularity_name(u->gran), cs->n);
        for (int k = 0; k < cfg->prune.n_criteria; k++)
            printf("%s%s", k ? "," : "", criterion_name(cfg->prune.criterion[k]));
        printf(", %d rank%s\n", comm->size, comm->size == 1 ? "" : "s");
        fflush(stdout);
    }
    const char *path = r->dir.run_h5;
    int n = u->n_cands, nc = 0;
    const Criterion *crit = cfg->prune.criterion;
    double *scores[CRIT_COUNT] = {0}, secs[CRIT_COUNT];
    for (; nc < cfg->prune.n_criteria && !rc; nc++) {
        scores[nc] = xmalloc((size_t)n * sizeof(double));
        double t0 = now_s();
        // the criteria that run the U-Net on the device where there is one; magnitude and random
        // only read the host weights
        int dev = od.u && (crit[nc] == CRIT_OUTPUT_LOSS || crit[nc] == CRIT_FEATURE_LOSS || crit[nc] == CRIT_TAYLOR);
        rc = score_criterion(dev ? od.u : u, dev ? &od.cs : cs, crit[nc], (uint64_t)cfg->runtime.seed, comm,
                             scores[nc], 1, e);
        secs[nc] = now_s() - t0;
    }
    if (rc == 1) {  // a stop signal, agreed by every rank (comm_run_jobs)
        if (comm->rank == 0)
            print_stopped("score");
        goto done;
    }
    if (comm_agree(comm, rc, e)) goto done;
    if (comm->rank == 0) {
        printf("  %4s  %-44s %-10s %12s", "idx", "name", "kind", "params");
        for (int k = 0; k < nc; k++) printf(" %14s", criterion_name(crit[k]));
        printf("\n");
        for (int i = 0; i < n; i++) {
            printf("  %4d  %-44s %-10s %12lld", i, u->cands[i].name, cand_kind_name(u->cands[i].kind),
                   u->cands[i].params);
            for (int k = 0; k < nc; k++) printf(" %14.6g", scores[k][i]);
            printf("\n");
        }
        for (int k = 0; k < nc; k++) printf("score: %s took %.1f s\n", criterion_name(crit[k]), secs[k]);
        H5Log *log = run_open_h5(r, e);
        if (!log) rc = -1;
        if (!rc) rc = write_candidates(log, u, e);
        for (int k = 0; k < nc && !rc; k++) {
            char ds[128];
            snprintf(ds, sizeof ds, "/prune/scores/%s", criterion_name(crit[k]));
            long long dims[1] = {n};
            rc = h5log_write_f64(log, ds, scores[k], 1, dims, crit[k] == CRIT_OUTPUT_LOSS ? "1 (squared output units)" : "1",
                                 DESCRIPTIONS[crit[k]], e);
            if (!rc) rc = h5log_attr_i64(log, ds, "calib_samples", cs->n, e);
            if (!rc) rc = h5log_attr_i64(log, ds, "seed", cfg->runtime.seed, e);
            if (!rc) rc = h5log_attr_i64(log, ds, "ranks", comm->size, e);
            if (!rc) rc = h5log_attr_f64(log, ds, "seconds", secs[k], e);
        }
        if (log && h5log_close(log, e)) rc = -1;
        if (!rc) printf("score: wrote /prune/candidates and /prune/scores/* to %s\n", path);
    }
    rc = comm_agree(comm, rc, e);
done:
    on_device_close(&od);
    for (int k = 0; k < nc; k++) free(scores[k]);
    return rc;
}

// A whole float64 dataset of n values from a file opened read-only (the
// file may be another run's: nothing in it is touched).
static int read_f64_quiet(const char *file, const char *path, double *out, size_t n, Error *e) {
    FILE *probe = fopen(file, "rb");
    if (!probe) return errorf(e, "%s: no such file", file);
    fclose(probe);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);  // readable while another process writes it, like h5log
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) return errorf(e, "%s: not an HDF5 file we can read", file);
    int rc = 0;
    hid_t d = h5_path_exists(f, path) ? H5Dopen2(f, path, H5P_DEFAULT) : -1;
    if (d < 0) {
        rc = errorf(e, "%s: no dataset %s", file, path);
    } else {
        hid_t sp = H5Dget_space(d);
        hssize_t cnt = H5Sget_simple_extent_npoints(sp);
        if (cnt != (hssize_t)n)
            rc = errorf(e, "%s: %s has %lld values, the model has %zu candidates", file, path, (long long)cnt, n);
        else if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
            rc = errorf(e, "%s: reading %s failed", file, path);
        H5Sclose(sp);
        H5Dclose(d);
    }
    H5Fclose(f);
    return rc;
}

static int read_f64(const char *file, const char *path, double *out, size_t n, Error *e) {
    H5Quiet q = h5err_quiet();  // our message instead of HDF5's stack dump
    int rc = read_f64_quiet(file, path, out, n, e);
    h5err_restore(q);
    return rc;
}

// Scores for the plan: prune.scores_from, or this run's file.
static int read_scores(const RunCtx *r, const UNet *u, Criterion crit, double *scores, Error *e) {
    const char *path = r->cfg->prune.scores_from[0] ? r->cfg->prune.scores_from : r->dir.run_h5;
    char ds[128];
    snprintf(ds, sizeof ds, "/prune/scores/%s", criterion_name(crit));
    if (read_f64(path, ds, scores, (size_t)u->n_cands, e)) {
        char inner[sizeof e->msg];
        snprintf(inner, sizeof inner, "%s", e->msg);
        return errorf(e, "plan needs %s scores: %s (run `laptop-diff score` first, or set prune.scores_from)",
                      criterion_name(crit), inner);
    }
    return 0;
}

// Rank 0: /prune/plan with its attributes, /prune/additivity.
static int write_plan(H5Log *log, const Plan *p, int have_scores, int K, const double *pairs, double r, Error *e) {
    int n = p->n_cands;
    long long *idx = xcalloc((size_t)(p->n_removed ? p->n_removed : 1), sizeof(long long));
    for (int i = 0, m = 0; i < n; i++)
        if (p->removed[i]) idx[m++] = i;
    long long d1[1] = {p->n_removed}, d2[2] = {K, 2};
    int rc = h5log_write_i64(log, "/prune/plan", idx, 1, d1, "1",
                             "indices (into /prune/candidates) of the candidates the plan removes", e);
    free(idx);
    if (!rc) rc = h5log_attr_str(log, "/prune/plan", "criterion", p->criterion, e);
    if (!rc) rc = h5log_attr_f64(log, "/prune/plan", "ratio", p->ratio, e);
    if (!rc) rc = h5log_attr_str(log, "/prune/plan", "budget", p->budget_macs ? "macs" : "params", e);
    if (!rc) rc = h5log_attr_str(log, "/prune/plan", "granularity", granularity_name(p->gran), e);
    if (!rc) rc = h5log_attr_i64(log, "/prune/plan", "total", p->total, e);
    if (!rc) rc = h5log_attr_i64(log, "/prune/plan", "required", p->required, e);
    if (!rc) rc = h5log_attr_i64(log, "/prune/plan", "removed", p->removed_cost, e);
    if (!rc) rc = h5log_attr_f64(log, "/prune/plan", "predicted_loss", have_scores ? p->predicted : NAN, e);
    if (!rc) rc = h5log_attr_f64(log, "/prune/plan", "actual_loss", p->actual, e);
    if (!rc && K)
        rc = h5log_write_f64(log, "/prune/additivity", pairs, 2, d2, "1",
                             "rows: random removal sets; columns: predicted (sum of single-layer scores), actual "
                             "output loss on the calibration set",
                             e);
    if (!rc && K) rc = h5log_attr_f64(log, "/prune/additivity", "pearson_r", r, e);
    return rc;
}

// Rank 0: the pruned student with the plan in its metadata.
static int write_student(const RunCtx *r, const UNet *u, const Plan *p, Error *e) {
    UNet *s = plan_student(u, p->removed, e);
    if (!s) return -1;
    char ratio[32], loss[32];
    snprintf(ratio, sizeof ratio, "%.17g", p->ratio);
    snprintf(loss, sizeof loss, "%.17g", p->actual);
    const char *meta[] = {"laptop_diff.criterion", p->criterion, "laptop_diff.ratio", ratio,
                          "laptop_diff.budget", p->budget_macs ? "macs" : "params", "laptop_diff.actual_loss", loss,
                          "laptop_diff.granularity", granularity_name(p->gran)};
    int rc = unet_save(s, r->dir.student_init, meta, 5, e);
    if (!rc)
        printf("plan: student %zu parameters (teacher %zu, %.1f%% removed) -> %s\n", s->pt.total, u->pt.total,
               100.0 * (1.0 - (double)s->pt.total / (double)u->pt.total), r->dir.student_init);
    unet_free(s);
    return rc;
}

int plan_main(RunCtx *r, Error *e) {
    const JobConfig *cfg = r->cfg;
    Comm *comm = r->comm;
    UNet *u = teacher_at_granularity(r, e);
    if (!u) return -1;
    int n = u->n_cands, rc = 0;
    const Criterion crit = cfg->prune.criterion[0];  // the plan uses the first
    double *scores = xmalloc((size_t)n * sizeof(double));
    int have_scores = 0;
    if (comm->rank == 0) {
        rc = read_scores(r, u, crit, scores, e);
        have_scores = rc == 0;
        if (rc && cfg->prune.n_layers) rc = 0;  // a handcrafted plan needs no scores (it reports them if present)
    }
    if (comm_agree(comm, rc, e)) {
        free(scores);
        return -1;
    }
    comm->bcast(comm, &have_scores, sizeof have_scores, 0);
    if (!have_scores)
        for (int i = 0; i < n; i++) scores[i] = NAN;
    comm->bcast(comm, scores, (size_t)n * sizeof(double), 0);
    Plan p;
    rc = plan_make(u, have_scores ? scores : NULL, crit, &cfg->prune, &p, e);
    if (comm_agree(comm, rc, e)) {
        free(scores);
        return -1;
    }
    // measure: the plan's actual output loss and the additivity sets, split across ranks
    OnDevice od = {0};
    Calib *cs = calib_and_device(r, u, &od, e);
    int K = have_scores ? cfg->prune.additivity_sets : 0;
    double achievable = 0;
    for (int i = 0; i < n; i++)
        if (u->cands[i].present) achievable += (double)(p.budget_macs ? u->cands[i].macs : u->cands[i].params);
    achievable /= (double)p.total;
    double max_ratio = fmin(fmax(2 * cfg->prune.ratio, 0.1), 0.95 * achievable);
    uint8_t *sets = cs && K ? additivity_sets(u, K, max_ratio, p.budget_macs, (uint64_t)cfg->runtime.seed) : NULL;
    double *actual = xcalloc((size_t)K + 1, sizeof(double));
    // removal set j < K: additivity set j; set K: the plan itself. (set x shard) jobs, like score's.
    uint8_t *masks = xcalloc((size_t)(K + 1) * n, 1);
    if (K) memcpy(masks, sets, (size_t)K * n);
    memcpy(masks + (size_t)K * n, p.removed, (size_t)n);
    rc = cs ? 0 : -1;
    if (!rc)
        rc = removal_losses(od.u ? od.u : u, od.u ? &od.cs : cs, masks, NULL, K + 1, comm, "plan output loss",
                            "removal set", actual, e);
    on_device_close(&od);
    free(masks);
    if (rc == 1) {  // a stop signal, agreed by every rank (comm_run_jobs)
        if (comm->rank == 0)
            print_stopped("plan");
        free(actual), free(sets), free(scores);
        plan_free(&p);
        return 1;
    }
    if (!rc && comm->rank == 0) {
        p.actual = actual[K];
        plan_print(stdout, u, have_scores ? scores : NULL, &p);
        double *pred = xcalloc((size_t)(K ? K : 1), sizeof(double)), *pairs = xcalloc((size_t)2 * (K ? K : 1), sizeof(double));
        for (int j = 0; j < K; j++) {
            for (int i = 0; i < n; i++)
                if (sets[(size_t)j * n + i]) pred[j] += scores[i];
            pairs[2 * j] = pred[j], pairs[2 * j + 1] = actual[j];
        }
        double pr = K >= 2 ? pearson(pred, actual, K) : NAN;
        if (K) printf("additivity: %d random removal sets (up to %.0f%% of the %s): Pearson r(sum of scores, actual output loss) = %.4f\n",
                      K, 100 * max_ratio, p.budget_macs ? "MACs" : "parameters", pr);
        H5Log *log = run_open_h5(r, e);
        rc = log ? write_candidates(log, u, e) : -1;
        if (!rc) rc = write_plan(log, &p, have_scores, K, pairs, pr, e);
        if (log && h5log_close(log, e)) rc = -1;
        free(pred), free(pairs);
        if (!rc) rc = write_student(r, u, &p, e);
    }
    if (cs) rc = comm_agree(comm, rc, e);
    free(actual), free(sets), free(scores);
    plan_free(&p);
    return rc;
}
