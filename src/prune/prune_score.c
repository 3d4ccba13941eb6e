// prune_score.c — see prune_score.h.
#include "prune/prune_score.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "core/rng.h"

typedef struct {
    long long cost;
    int job;
} JobCost;

static int by_cost_desc(const void *a, const void *b) {
    const JobCost *x = a, *y = b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    return (x->job > y->job) - (x->job < y->job);
}

void lpt_partition(const long long *cost, int n_jobs, int ranks, int *owner) {
    JobCost *order = xmalloc((size_t)(n_jobs ? n_jobs : 1) * sizeof *order);
    long long *load = xcalloc((size_t)ranks, sizeof(long long));
    for (int j = 0; j < n_jobs; j++) order[j] = (JobCost){cost[j], j};
    // a total order (the index breaks ties), so qsort's instability does not matter
    qsort(order, (size_t)n_jobs, sizeof *order, by_cost_desc);
    for (int k = 0; k < n_jobs; k++) {
        int best = 0;
        for (int r = 1; r < ranks; r++)
            if (load[r] < load[best]) best = r;
        owner[order[k].job] = best;
        load[best] += order[k].cost;
    }
    free(order), free(load);
}

long long removal_macs(const UNet *u, const uint8_t *mask) {
    long long m = unet_total_macs(u);
    for (int i = 0; i < u->n_cands; i++)
        if (mask[i] && u->cands[i].present) m -= u->cands[i].macs;
    return m;
}

// The jobs of removal_losses: job j is set set_of[j], shard shard_of[j].
typedef struct {
    UNet *u;
    const Calib *cs;
    const uint8_t *masks;
    const int *set_of, *shard_of;
    const char *label, *what;
    int S, rank, mine, done;
    double t0, last;
} LossJobs;

static int loss_job(void *ctx, int j, double *out, Error *e) {
    LossJobs *o = ctx;
    int k = o->set_of[j], s = o->shard_of[j], first, count;
    calib_shard(o->cs, s, &first, &count);
    int rc = calib_run_range(o->u, o->cs, o->masks + (size_t)k * o->u->n_cands, first, count, NULL, out, e);
    o->done++;
    double now = now_s();
    // every few seconds and at the end: a line per job would be hundreds at SD-1.5 scale
    if (!rc && o->label && o->rank == 0 && (o->done == o->mine || now - o->last >= 5)) {
        double el = now - o->t0;
        printf("%s: rank 0 job %d/%d (%s %d, shard %d/%d)  ETA %.0fs\n", o->label, o->done, o->mine, o->what, k, s + 1,
               o->S, el / o->done * (o->mine - o->done));
        fflush(stdout);
        o->last = now;
    }
    return rc;
}

int removal_losses(UNet *u, const Calib *cs, const uint8_t *masks, const uint8_t *live, int n_sets, Comm *comm,
                   const char *label, const char *what, double *loss, Error *e) {
    int n = u->n_cands, S = calib_shards(cs), n_live = 0;
    for (int k = 0; k < n_sets; k++) n_live += !live || live[k];
    int n_jobs = n_live * S;
    size_t cap = (size_t)(n_jobs ? n_jobs : 1);
    int *set_of = xmalloc(cap * sizeof(int)), *shard_of = xmalloc(cap * sizeof(int)), *owner = xmalloc(cap * sizeof(int));
    long long *cost = xmalloc(cap * sizeof(long long));
    for (int k = 0, j = 0; k < n_sets; k++) {
        if (live && !live[k]) continue;
        long long m = removal_macs(u, masks + (size_t)k * n);
        for (int s = 0; s < S; s++, j++) {
            int first, count;
            calib_shard(cs, s, &first, &count);
            set_of[j] = k, shard_of[j] = s, cost[j] = m * count;
        }
    }
    lpt_partition(cost, n_jobs, comm->size, owner);
    LossJobs o = {u, cs, masks, set_of, shard_of, label, what, S, comm->rank, 0, 0, now_s(), now_s()};
    for (int j = 0; j < n_jobs; j++) o.mine += owner[j] == comm->rank;
    if (label && comm->rank == 0) {
        // the partition, so a user sees whether the ranks have work and how evenly
        int *jobs = xcalloc((size_t)comm->size, sizeof(int));
        long long *load = xcalloc((size_t)comm->size, sizeof(long long)), hi = 0, sum = 0;
        for (int j = 0; j < n_jobs; j++) jobs[owner[j]]++, load[owner[j]] += cost[j], sum += cost[j];
        for (int r = 0; r < comm->size; r++) hi = load[r] > hi ? load[r] : hi;
        printf("%s: %d jobs (%d %ss x %d shard%s of <= %d samples) on %d rank%s, cost max/mean %.2f:", label, n_jobs,
               n_live, what, S, S == 1 ? "" : "s", cs->batch, comm->size, comm->size == 1 ? "" : "s",
               sum ? (double)hi * comm->size / (double)sum : 1.0);
        for (int r = 0; r < comm->size; r++) printf("%s rank %d: %d job%s", r ? "," : "", r, jobs[r], jobs[r] == 1 ? "" : "s");
        printf("\n");
        fflush(stdout);
        free(jobs), free(load);
    }
    double *part = xmalloc(cap * sizeof(double));
    int rc = comm_run_jobs(comm, n_jobs, owner, 1, loss_job, &o, part, e);
    if (!rc) {
        // every rank holds every partial sum: added in shard order, the same on every rank and rank count
        double elems = (double)cs->n * cs->Co * cs->H * cs->W;
        for (int k = 0, j = 0; k < n_sets; k++) {
            if (live && !live[k]) {
                loss[k] = NAN;
                continue;
            }
            double sum = 0;
            for (int s = 0; s < S; s++, j++) sum += part[j];
            loss[k] = sum / elems;
        }
    }
    free(set_of), free(shard_of), free(owner), free(cost), free(part);
    return rc;
}

static int layer_tensors(const Candidate *c, int *first, int *end) {
    if (!c->present) return 0;
    if (c->kind == CAND_BLOCK) {
        *first = c->attn->blk[c->tblock].first_tensor, *end = c->attn->blk[c->tblock].end_tensor;
    } else {
        *first = c->res ? c->res->first_tensor : c->attn->first_tensor;
        *end = c->res ? c->res->end_tensor : c->attn->end_tensor;
    }
    return 1;
}

// LAPTOP's criterion: candidate i bypassed alone, over the whole calibration set.
static int output_loss(UNet *u, Calib *cs, Comm *comm, double *scores, int progress, Error *e) {
    int n = u->n_cands;
    uint8_t *masks = xcalloc((size_t)n * n, 1), *live = xmalloc((size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) masks[(size_t)i * n + i] = 1, live[i] = u->cands[i].present;
    int rc = removal_losses(u, cs, masks, live, n, comm, progress ? "score output_loss" : NULL, "candidate", scores, e);
    free(masks), free(live);
    return rc;
}

// How much removing a layer changes its own output, relative:
// mean over samples of ||out - passed_on||^2 / ||out||^2, from one full pass.
// On a device (u and cs there: calib_on) the two sums of each sample are the
// backend's MSE (a fixed-order sum in doubles) against the passed-on tensor and
// against zeros; only they come back.
static int feature_loss(UNet *u, Calib *cs, double *scores, Error *e) {
    int n = u->n_cands;
    const Backend *be = u->be;
    double *acc = xcalloc((size_t)n, sizeof(double));
    size_t per = (size_t)cs->C * cs->H * cs->W, zn = 0;
    float *tmp = be->mem.alloc(be->ctx, (size_t)cs->batch * cs->Co * cs->H * cs->W), *zeros = NULL;
    for (int c = 0; be->on_device && c < n; c++)
        if (u->cands[c].present) {
            size_t m = (size_t)u->cands[c].C * u->cands[c].H * u->cands[c].W;
            zn = m > zn ? m : zn;
        }
    if (be->on_device) {
        zeros = be->mem.alloc(be->ctx, zn ? zn : 1);
        be->mem.zero(be->ctx, zeros, zn ? zn : 1);
    }
    int rc = 0;
    for (int i = 0; i < cs->n && !rc; i += cs->batch) {
        int b = cs->n - i < cs->batch ? cs->n - i : cs->batch;
        UNetAdded add = calib_added(cs, i);
        if ((rc = unet_forward_added(u, tmp, cs->xt + (size_t)i * per, cs->t + i, cs->ctx + (size_t)i * cs->L * cs->D,
                                     &add, b, cs->H, cs->W, cs->L, NULL, e)))
            break;
        for (int c = 0; c < n; c++) {
            const Candidate *cd = &u->cands[c];
            if (!cd->out) continue;
            size_t m = (size_t)cd->C * cd->H * cd->W;
            for (int s = 0; s < b; s++) {
                double num = 0, den = 0;
                if (be->on_device) {
                    CHECK(m <= zn);
                    num = BK(be, mse_forward, cd->out + s * m, cd->in + s * m, m) * (double)m;
                    den = BK(be, mse_forward, cd->out + s * m, zeros, m) * (double)m;
                } else {
                    for (size_t j = 0; j < m; j++) {
                        double o = cd->out[s * m + j], d = o - cd->in[s * m + j];
                        num += d * d, den += o * o;
                    }
                }
                acc[c] += den > 0 ? num / den : 0;
            }
        }
    }
    for (int c = 0; c < n && !rc; c++) scores[c] = u->cands[c].present ? acc[c] / cs->n : NAN;
    free(acc);
    be->mem.free(be->ctx, tmp);
    if (zeros) be->mem.free(be->ctx, zeros);
    return rc ? -1 : 0;
}

// First-order Taylor estimate |sum grad * w| of the task loss (MSE to the noise).
// On a device the passes run there and the gradient and weights come back once
// for the sums.
static int taylor(UNet *u, Calib *cs, double *scores, Error *e) {
    size_t per = (size_t)cs->C * cs->H * cs->W, per_out = (size_t)cs->Co * cs->H * cs->W;
    CHECK(per == per_out);  // the task loss compares the output with the noise
    const Backend *be = u->be;
    float *out = be->mem.alloc(be->ctx, (size_t)cs->batch * per), *dout = be->mem.alloc(be->ctx, (size_t)cs->batch * per);
    unet_zero_grad(u);
    int rc = 0;
    for (int i = 0; i < cs->n && !rc; i += cs->batch) {
        int b = cs->n - i < cs->batch ? cs->n - i : cs->batch;
        UNetAdded add = calib_added(cs, i);
        if ((rc = unet_forward_added(u, out, cs->xt + (size_t)i * per, cs->t + i, cs->ctx + (size_t)i * cs->L * cs->D,
                                     &add, b, cs->H, cs->W, cs->L, NULL, e)))
            break;
        be->mem.zero(be->ctx, dout, (size_t)b * per);
        // gradient of the mean over the whole set: this chunk's share b/n
        BK(be, mse_backward, dout, NULL, out, cs->noise + (size_t)i * per, (size_t)b * per, (float)b / cs->n);
        unet_backward(u, dout, NULL);
    }
    be->mem.free(be->ctx, out), be->mem.free(be->ctx, dout);
    if (rc) {
        unet_zero_grad(u);
        return -1;
    }
    const float *g = u->grads, *w = u->params;
    float *hg = NULL, *hw = NULL;
    if (be->on_device) {
        hg = xmalloc(u->pt.total * sizeof(float)), hw = xmalloc(u->pt.total * sizeof(float));
        be->download(be->ctx, hg, u->grads, u->pt.total), be->download(be->ctx, hw, u->params, u->pt.total);
        g = hg, w = hw;
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
            for (size_t j = 0; j < p->numel; j++) s += (double)g[p->offset + j] * w[p->offset + j];
        }
        scores[c] = fabs(s);
    }
    unet_zero_grad(u);
    free(hg), free(hw);
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
