// plan.c — see plan.h.
#include "prune/plan.h"

#include <math.h>
#include <string.h>

#include "model/checkpoint.h"
#include "prune/knapsack.h"
#include "core/rng.h"

static long long cand_cost(const Candidate *c, int macs) { return macs ? c->macs : c->params; }

static long long budget_total(const UNet *u, int macs) { return macs ? unet_total_macs(u) : (long long)u->pt.total; }

int plan_make(const UNet *teacher, const double *scores, Criterion criterion, const PruneConfig *pc, Plan *p,
              Error *e) {
    memset(p, 0, sizeof *p);
    int n = teacher->n_cands;
    p->n_cands = n;
    p->gran = teacher->gran;
    p->removed = xcalloc((size_t)n, 1);
    p->budget_macs = pc->budget == BUDGET_MACS;
    p->total = budget_total(teacher, p->budget_macs);
    p->ratio = pc->ratio;
    p->actual = NAN;
    if (pc->n_layers) {
        for (int i = 0; i < pc->n_layers; i++)
            if (candidate_mark(teacher, pc->layers[i], p->removed, "prune.layers", e)) return -1;
        snprintf(p->criterion, sizeof p->criterion, "handcrafted");
    } else {
        int m = 0;
        int *idx = xmalloc((size_t)n * sizeof(int));
        double *s = xmalloc((size_t)n * sizeof(double));
        int64_t *c = xmalloc((size_t)n * sizeof(int64_t));
        for (int i = 0; i < n; i++) {
            if (!teacher->cands[i].present) continue;
            if (!isfinite(scores[i]) || scores[i] < 0) {
                free(idx), free(s), free(c);
                return errorf(e, "the %s score of %s is %g: scores must be finite and >= 0", criterion_name(criterion),
                              teacher->cands[i].name, scores[i]);
            }
            idx[m] = i, s[m] = scores[i], c[m] = cand_cost(&teacher->cands[i], p->budget_macs), m++;
        }
        p->required = (long long)ceil(pc->ratio * (double)p->total);
        KnapsackPlan kp;
        char what[64];
        snprintf(what, sizeof what, "%s", p->budget_macs ? "MACs" : "parameters");
        int rc = knapsack_min_cover(s, c, m, p->required, what, p->total, &kp, e);
        if (rc) {
            char inner[sizeof e->msg];
            snprintf(inner, sizeof inner, "%s", e->msg);
            errorf(e, "prune.ratio = %g (prune.budget = \"%s\"): %s", pc->ratio, budget_name(pc->budget), inner);
        } else {
            for (int k = 0; k < kp.n_removed; k++) p->removed[idx[kp.removed[k]]] = 1;
            knapsack_plan_free(&kp);
        }
        free(idx), free(s), free(c);
        if (rc) return -1;
        snprintf(p->criterion, sizeof p->criterion, "%s", criterion_name(criterion));
    }
    for (int i = 0; i < n; i++)
        if (p->removed[i]) {
            p->n_removed++;
            p->removed_cost += cand_cost(&teacher->cands[i], p->budget_macs);
            if (scores && isfinite(scores[i])) p->predicted += scores[i];
        }
    return 0;
}

void plan_free(Plan *p) {
    free(p->removed);
    memset(p, 0, sizeof *p);
}

void plan_print(FILE *f, const UNet *u, const double *scores, const Plan *p) {
    fprintf(f, "plan (%s, budget %s, ratio %.4g): remove %d of %d candidates (granularity %s)\n", p->criterion,
            p->budget_macs ? "macs" : "params", p->ratio, p->n_removed, u->n_cands, granularity_name(u->gran));
    fprintf(f, "  %-32s %-10s %14s %16s %12s %9s\n", "layer", "kind", "params", "MACs", "score", "ratio");
    long long run = 0;
    for (int i = 0; i < u->n_cands; i++) {
        if (!p->removed[i]) continue;
        const Candidate *c = &u->cands[i];
        run += cand_cost(c, p->budget_macs);
        fprintf(f, "  %-32s %-10s %14lld %16lld %12.6g %9.4f\n", c->name, cand_kind_name(c->kind),
                c->params, c->macs, scores ? scores[i] : NAN, (double)run / (double)p->total);
    }
    fprintf(f, "  removed %lld of %lld %s (%.2f%%; required %lld); predicted output loss (sum of scores) %.6g",
            p->removed_cost, p->total, p->budget_macs ? "MACs" : "parameters", 100.0 * p->removed_cost / p->total,
            p->required, p->predicted);
    if (isfinite(p->actual)) fprintf(f, ", measured %.6g", p->actual);
    fprintf(f, "\n");
}

uint8_t *additivity_sets(const UNet *u, int K, double max_ratio, int budget_macs, uint64_t seed) {
    int n = u->n_cands;
    uint8_t *sets = xcalloc((size_t)K * n, 1);
    long long total = budget_total(u, budget_macs);
    int *perm = xmalloc((size_t)n * sizeof(int));
    for (int k = 0; k < K; k++) {
        // a seeded shuffle (Fisher-Yates on counter-based draws) per set
        for (int i = 0; i < n; i++) perm[i] = i;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)rng_below(seed, RNG_MISC, ((uint64_t)(k + 1) << 32) + (uint64_t)i, (uint64_t)i + 1);
            int t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        double target = max_ratio * (k + 1) / K * (double)total;
        long long got = 0;
        for (int i = 0; i < n && got < target; i++) {
            const Candidate *c = &u->cands[perm[i]];
            if (!c->present) continue;
            sets[(size_t)k * n + perm[i]] = 1;
            got += cand_cost(c, budget_macs);
        }
    }
    free(perm);
    return sets;
}

double pearson(const double *x, const double *y, int n) {
    double mx = 0, my = 0;
    for (int i = 0; i < n; i++) mx += x[i], my += y[i];
    mx /= n, my /= n;
    double sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
}

UNet *plan_student(const UNet *teacher, const uint8_t *removed, Error *e) {
    uint8_t *absent = xcalloc((size_t)teacher->n_cands, 1);
    for (int i = 0; i < teacher->n_cands; i++) absent[i] = removed[i] || !teacher->cands[i].present;
    UNet *s = unet_create_at(&teacher->cfg, teacher->gran, absent, e);
    free(absent);
    if (!s) return NULL;
    for (int i = 0; i < s->pt.n; i++) {
        const ParamTensor *t = &s->pt.t[i];
        const ParamTensor *src = params_find(&teacher->pt, t->name);
        CHECK(src && src->numel == t->numel);
        memcpy(s->params + t->offset, teacher->params + src->offset, t->numel * sizeof(float));
    }
    return s;
}
