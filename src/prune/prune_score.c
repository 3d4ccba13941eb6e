// prune_score.c — see prune_score.h.
#include "prune/prune_score.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"
#include "core/rng.h"

void score_partition(const UNet *u, int ranks, int *owner) {
    int n = u->n_cands;
    long long total = unet_total_macs(u);
    int *order = xmalloc((size_t)n * sizeof(int));
    long long *cost = xmalloc((size_t)n * sizeof(long long)), *load = xcalloc((size_t)ranks, sizeof(long long));
    for (int i = 0; i < n; i++) {
        order[i] = i;
        cost[i] = u->cands[i].present ? total - u->cands[i].macs : 0;
    }
    // insertion sort by cost descending, index ascending: n is small (tens to hundreds)
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && (cost[order[j]] > cost[order[j - 1]] ||
                                  (cost[order[j]] == cost[order[j - 1]] && order[j] < order[j - 1]));
             j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    for (int k = 0; k < n; k++) {
        int best = 0;
        for (int r = 1; r < ranks; r++)
            if (load[r] < load[best]) best = r;
        owner[order[k]] = best;
        load[best] += cost[order[k]];
    }
    free(order), free(cost), free(load);
}

static int layer_tensors(const Candidate *c, int *first, int *end) {
    if (!c->present) return 0;
    *first = c->res ? c->res->first_tensor : c->attn->first_tensor;
    *end = c->res ? c->res->end_tensor : c->attn->end_tensor;
    return 1;
}

// LAPTOP's criterion: one job per candidate (comm_run_jobs), the candidate
// bypassed for one pass over the calibration set.
typedef struct {
    UNet *u;
    Calib *cs;
    uint8_t *skip;
    int progress, rank, mine, done;
    double t0;
} OutputLossJobs;

static int output_loss_job(void *ctx, int i, double *out, Error *e) {
    OutputLossJobs *o = ctx;
    if (!o->u->cands[i].present) {
        *out = NAN;
        return 0;
    }
    o->skip[i] = 1;
    int rc = calib_run(o->u, o->cs, o->skip, NULL, out, e);
    o->skip[i] = 0;
    o->done++;
    if (o->progress && o->rank == 0) {
        double el = now_s() - o->t0;
        printf("score output_loss: rank 0 candidate %d/%d (%s) = %.6g  ETA %.0fs\n", o->done, o->mine,
               o->u->cands[i].name, *out, el / o->done * (o->mine - o->done));
        fflush(stdout);
    }
    return rc;
}

static int output_loss(UNet *u, Calib *cs, Comm *comm, double *scores, int progress, Error *e) {
    int n = u->n_cands;
    int *owner = xmalloc((size_t)n * sizeof(int));
    score_partition(u, comm->size, owner);
    OutputLossJobs o = {u, cs, xcalloc((size_t)n, 1), progress, comm->rank, 0, 0, now_s()};
    for (int i = 0; i < n; i++) o.mine += owner[i] == comm->rank && u->cands[i].present;
    // every rank gets every score: all plan and report alike
    int rc = comm_run_jobs(comm, n, owner, 1, output_loss_job, &o, scores, e);
    free(owner), free(o.skip);
    return rc;
}

// How much removing a layer changes its own output, relative:
// mean over samples of ||out - passed_on||^2 / ||out||^2, from one full pass.
static int feature_loss(UNet *u, Calib *cs, double *scores, Error *e) {
    int n = u->n_cands;
    double *acc = xcalloc((size_t)n, sizeof(double));
    size_t per = (size_t)cs->C * cs->H * cs->W;
    float *tmp = xmalloc((size_t)cs->batch * cs->Co * cs->H * cs->W * sizeof(float));
    for (int i = 0; i < cs->n; i += cs->batch) {
        int b = cs->n - i < cs->batch ? cs->n - i : cs->batch;
        if (unet_forward(u, tmp, cs->xt + (size_t)i * per, cs->t + i, cs->ctx + (size_t)i * cs->L * cs->D, b, cs->H,
                         cs->W, cs->L, NULL, e)) {
            free(acc), free(tmp);
            return -1;
        }
        for (int c = 0; c < n; c++) {
            const Candidate *cd = &u->cands[c];
            if (!cd->out) continue;
            size_t m = (size_t)cd->C * cd->H * cd->W;
            for (int s = 0; s < b; s++) {
                double num = 0, den = 0;
                for (size_t j = 0; j < m; j++) {
                    double o = cd->out[s * m + j], d = o - cd->in[s * m + j];
                    num += d * d, den += o * o;
                }
                acc[c] += den > 0 ? num / den : 0;
            }
        }
    }
    for (int c = 0; c < n; c++) scores[c] = u->cands[c].present ? acc[c] / cs->n : NAN;
    free(acc), free(tmp);
    return 0;
}

// First-order Taylor estimate |sum grad * w| of the task loss (MSE to the noise).
static int taylor(UNet *u, Calib *cs, double *scores, Error *e) {
    size_t per = (size_t)cs->C * cs->H * cs->W, per_out = (size_t)cs->Co * cs->H * cs->W;
    CHECK(per == per_out);  // the task loss compares the output with the noise
    float *out = xmalloc((size_t)cs->batch * per * sizeof(float)), *dout = xmalloc((size_t)cs->batch * per * sizeof(float));
    unet_zero_grad(u);
    for (int i = 0; i < cs->n; i += cs->batch) {
        int b = cs->n - i < cs->batch ? cs->n - i : cs->batch;
        if (unet_forward(u, out, cs->xt + (size_t)i * per, cs->t + i, cs->ctx + (size_t)i * cs->L * cs->D, b, cs->H,
                         cs->W, cs->L, NULL, e)) {
            free(out), free(dout);
            return -1;
        }
        memset(dout, 0, (size_t)b * per * sizeof(float));
        // gradient of the mean over the whole set: this chunk's share b/n
        mse_backward(dout, NULL, out, cs->noise + (size_t)i * per, (size_t)b * per, (float)b / cs->n);
        unet_backward(u, dout, NULL);
    }
    for (int c = 0; c < u->n_cands; c++) {
        int first, end;
        if (!layer_tensors(&u->cands[c], &first, &end)) {
            scores[c] = NAN;
            continue;
        }
        double s = 0;
        for (int t = first; t < end; t++) {
            const ParamTensor *p = &u->pt.t[t];
            for (size_t j = 0; j < p->numel; j++) s += (double)u->grads[p->offset + j] * u->params[p->offset + j];
        }
        scores[c] = fabs(s);
    }
    unet_zero_grad(u);
    free(out), free(dout);
    return 0;
}

int score_criterion(UNet *u, Calib *cs, Criterion c, uint64_t seed, Comm *comm, double *scores, int progress,
                    Error *e) {
    int n = u->n_cands;
    switch (c) {
    case CRIT_OUTPUT_LOSS: return output_loss(u, cs, comm, scores, progress, e);
    case CRIT_RANDOM:
        for (int i = 0; i < n; i++) scores[i] = u->cands[i].present ? rng_uniform(seed, RNG_MISC, (uint64_t)i) : NAN;
        return 0;
    case CRIT_MAGNITUDE:
        for (int i = 0; i < n; i++) {
            int first, end;
            if (!layer_tensors(&u->cands[i], &first, &end)) {
                scores[i] = NAN;
                continue;
            }
            double s = 0;
            size_t cnt = 0;
            for (int t = first; t < end; t++)
                for (size_t j = 0; j < u->pt.t[t].numel; j++) s += fabs(u->params[u->pt.t[t].offset + j]), cnt++;
            scores[i] = s / (double)cnt;
        }
        return 0;
    case CRIT_FEATURE_LOSS: return feature_loss(u, cs, scores, e);
    case CRIT_TAYLOR: return taylor(u, cs, scores, e);
    default: return errorf(e, "unknown criterion %d", (int)c);
    }
}
