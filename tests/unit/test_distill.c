// test_distill.c — the distillation loss (distill.h):
//  - feat_term against PyTorch float64 (tests/reference/fixtures/
//    featkd.safetensors): raw and normalized values per tap, both gradients,
//    and the denom/scale conventions the data-parallel step relies on;
//  - distill_loss (what distill_step runs) on a tiny teacher and a pruned,
//    perturbed student: its reported terms against an independent evaluation
//    of the formula, shards of a global batch summing to the whole batch, and
//    the gradient of the whole loss (all three terms, "l2sq" and "none")
//    against central finite differences along random directions.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "train/distill.h"
#include "model/init.h"
#include "prune/plan.h"
#include "model/safetensors.h"
#include "testutil.h"
#include "model/unet.h"

#define FIX LD_SOURCE_DIR "/tests/reference/fixtures/featkd.safetensors"
#define MAXT (2 * LD_MAX_BLOCKS + 1)

static double rel(double a, double ref) { return fabs(a - ref) / fmax(fabs(ref), 1e-300); }

// ---- feat_term vs PyTorch -----------------------------------------------------------

static void check_fixture(void) {
    StFile f;
    Error e;
    if (st_open(&f, FIX, &e)) FATAL("%s", e.msg);
    const char *nt = st_meta(&f, "n_taps");
    int n_taps = nt ? atoi(nt) : 0;
    EXPECT(n_taps == 3, "featkd fixture has 3 taps (metadata n_taps = %s)", nt ? nt : "missing");
    for (int l = 0; l < n_taps; l++) {
        char name[64];
        int64_t sh[4];
        snprintf(name, sizeof name, "feat.S.%d", l);
        float *S = tu_read_tensor(&f, name, sh);
        snprintf(name, sizeof name, "feat.T.%d", l);
        float *T = tu_read_tensor(&f, name, NULL);
        snprintf(name, sizeof name, "featnorm.%d", l);
        float *ref_norm = tu_read_tensor(&f, name, NULL);
        snprintf(name, sizeof name, "featraw.%d", l);
        float *ref_raw = tu_read_tensor(&f, name, NULL);
        snprintf(name, sizeof name, "featnorm_grad.%d", l);
        float *ref_gn = tu_read_tensor(&f, name, NULL);
        snprintf(name, sizeof name, "featraw_grad.%d", l);
        float *ref_gr = tu_read_tensor(&f, name, NULL);
        int b = (int)sh[0];
        size_t n = (size_t)(sh[1] * sh[2] * sh[3]), all = (size_t)b * n;
        float *g = xcalloc(all, sizeof(float)), *want = xmalloc(all * sizeof(float));

        // denom = b, scale = 1: exactly the fixture's T_l and dT_l/dS
        double raw, nrm;
        feat_term(S, T, b, n, 1, (double)b, 1.0f, &raw, &nrm, g);
        double en = rel(nrm, ref_norm[0]), er = rel(raw, ref_raw[0]);
        double eg = tu_max_rel_err(g, ref_gn, all, 0);
        printf("tap %d [%d,%lld,%lld,%lld]: featnorm %.6g (rel err %.1e), featraw %.6g (%.1e), norm grad err %.1e\n", l,
               b, (long long)sh[1], (long long)sh[2], (long long)sh[3], nrm, en, raw, er, eg);
        EXPECT(en <= 1e-6, "tap %d: normalized term %.9g vs PyTorch %.9g", l, nrm, (double)ref_norm[0]);
        EXPECT(er <= 1e-6, "tap %d: raw term %.9g vs PyTorch %.9g", l, raw, (double)ref_raw[0]);
        EXPECT(eg <= 1e-6, "tap %d: normalized gradient error %.2e", l, eg);

        // the raw variant's gradient: of raw * b / denom, here raw itself
        memset(g, 0, all * sizeof(float));
        feat_term(S, T, b, n, 0, (double)b, 1.0f, &raw, &nrm, g);
        eg = tu_max_rel_err(g, ref_gr, all, 0);
        EXPECT(eg <= 1e-6, "tap %d: raw gradient error %.2e", l, eg);
        EXPECT(rel(nrm, ref_norm[0]) <= 1e-6 && rel(raw, ref_raw[0]) <= 1e-6,
               "tap %d: both values are reported whichever variant drives the gradient", l);

        // a shard of a bigger global batch (denom 2b) with lambda 0.4: norm and
        // both gradients scale by 0.4 * b / denom, raw stays a mean; dS accumulates
        for (size_t j = 0; j < all; j++) g[j] = 0.25f;
        double raw2, nrm2;
        feat_term(S, T, b, n, 1, 2.0 * b, 0.4f, &raw2, &nrm2, g);
        for (size_t j = 0; j < all; j++) want[j] = 0.25f + 0.2f * ref_gn[j];
        eg = tu_max_rel_err(g, want, all, 0);
        EXPECT(rel(nrm2, 0.5 * ref_norm[0]) <= 1e-6, "tap %d: norm / denom: %.9g vs %.9g", l, nrm2,
               0.5 * ref_norm[0]);
        EXPECT(rel(raw2, ref_raw[0]) <= 1e-6, "tap %d: raw does not depend on denom", l);
        EXPECT(eg <= 1e-6, "tap %d: normalized gradient, denom 2b, scale 0.4, accumulated: error %.2e", l, eg);
        memset(g, 0, all * sizeof(float));
        feat_term(S, T, b, n, 0, 2.0 * b, 0.4f, &raw2, &nrm2, g);
        for (size_t j = 0; j < all; j++) want[j] = 0.2f * ref_gr[j];
        eg = tu_max_rel_err(g, want, all, 0);
        EXPECT(eg <= 1e-6, "tap %d: raw gradient, denom 2b, scale 0.4: error %.2e", l, eg);

        // dS may be NULL: values only
        feat_term(S, T, b, n, 1, (double)b, 1.0f, &raw2, &nrm2, NULL);
        EXPECT(raw2 == raw && nrm2 == nrm, "tap %d: dS = NULL gives the same values", l);
        free(S), free(T), free(ref_norm), free(ref_raw), free(ref_gn), free(ref_gr), free(g), free(want);
    }
    st_close(&f);
}

// ---- the whole loss on a tiny U-Net pair ------------------------------------------------------

static void tiny_config(ModelConfig *m) { tu_tiny_model(m, 2, 2, 4, 1); }

enum { NB = 3, C = 2, H = 4, W = 4, L = 3, D = 6, HW = H * W };

typedef struct {
    UNet *T, *S;
    DistillConfig dc;
    float xt[NB * C * HW], tf[NB], ctx[NB * L * D], noise[NB * C * HW];
    float *outS, *outT, *dout, *dtaps[MAXT];
    double v[4 + 2 * MAXT];
} Pair;

// distill_loss on samples [g0, g0 + b) of the global batch of B; returns v[0].
static double loss_at(Pair *p, int g0, int b, int B) {
    Error e;
    if (distill_loss(p->T, p->S, &p->dc, p->xt + g0 * C * HW, p->tf + g0, p->ctx + g0 * L * D, p->noise + g0 * C * HW,
                     b, B, H, W, L, p->outS, p->outT, p->dout, p->dtaps, p->v, &e))
        FATAL("distill_loss: %s", e.msg);
    return p->v[0];
}

static void pair_make(Pair *p) {
    memset(p, 0, sizeof *p);
    ModelConfig m;
    tiny_config(&m);
    Error e;
    p->T = unet_create(&m, NULL, &e);
    if (!p->T) FATAL("%s", e.msg);
    unet_init_params(p->T, 7);
    // remove the first attention and the first removable resnet
    uint8_t rm[256] = {0};
    int got_attn = 0, got_res = 0;
    CHECK(p->T->n_cands <= 256);
    for (int c = 0; c < p->T->n_cands; c++) {
        int k = p->T->cands[c].kind;
        if ((k == CAND_ATTENTION && !got_attn) || (k == CAND_RESNET && !got_res)) {
            rm[c] = 1, got_attn |= k == CAND_ATTENTION, got_res |= k == CAND_RESNET;
            printf("student without %s\n", p->T->cands[c].name);
        }
    }
    CHECK(got_attn && got_res);
    p->S = plan_student(p->T, rm, &e);
    if (!p->S) FATAL("%s", e.msg);
    CHECK(p->S->pt.total < p->T->pt.total && p->S->n_taps == p->T->n_taps);
    // perturb the student so no term is at its minimum (biases and norms start at 0 / 1)
    TuRng r;
    tu_rng_seed(&r, 11);
    for (size_t j = 0; j < p->S->pt.total; j++)
        p->S->params[j] = p->S->params[j] * (1 + tu_uniform(&r, -0.15f, 0.15f)) + tu_uniform(&r, -0.03f, 0.03f);
    tu_fill(&r, p->xt, sizeof p->xt / sizeof(float), -1.5f, 1.5f);
    tu_fill(&r, p->ctx, sizeof p->ctx / sizeof(float), -1, 1);
    tu_fill(&r, p->noise, sizeof p->noise / sizeof(float), -1.7f, 1.7f);
    p->tf[0] = 12, p->tf[1] = 480, p->tf[2] = 931;
    p->outS = xmalloc(sizeof p->xt), p->outT = xmalloc(sizeof p->xt), p->dout = xmalloc(sizeof p->xt);
    float o[NB * C * HW];
    if (unet_forward(p->T, o, p->xt, p->tf, p->ctx, NB, H, W, L, NULL, &e)) FATAL("%s", e.msg);
    for (int t = 0; t < p->T->n_taps; t++) {
        const Tap *tp = &p->T->taps[t];
        p->dtaps[t] = xmalloc((size_t)NB * tp->C * tp->H * tp->W * sizeof(float));
    }
    p->dc.lambda_task = 0.7, p->dc.lambda_out = 1.3, p->dc.lambda_feat = 0.9;
}

// The one place the test sets distill.feat_norm; returns its name for messages.
static const char *use_norm(Pair *p, int normalized) {
    p->dc.feat_norm = normalized ? FEAT_NORM_L2SQ : FEAT_NORM_NONE;
    return feat_norm_name(p->dc.feat_norm);
}

static void pair_free(Pair *p) {
    unet_free(p->T), unet_free(p->S);
    free(p->outS), free(p->outT), free(p->dout);
    for (int t = 0; t < MAXT; t++) free(p->dtaps[t]);
}

// The teacher on samples [g0, g0 + b): its output and taps, which no change
// of the student affects.
typedef struct {
    int g0, b;
    float out[NB * C * HW];
    float *tap[MAXT];
} TeacherRef;

static void teacher_ref(Pair *p, TeacherRef *r, int g0, int b) {
    Error e;
    r->g0 = g0, r->b = b;
    if (unet_forward(p->T, r->out, p->xt + g0 * C * HW, p->tf + g0, p->ctx + g0 * L * D, b, H, W, L, NULL, &e))
        FATAL("%s", e.msg);
    for (int t = 0; t < p->T->n_taps; t++) {
        size_t m = (size_t)b * p->T->taps[t].C * p->T->taps[t].H * p->T->taps[t].W;
        r->tap[t] = xmalloc(m * sizeof(float));
        memcpy(r->tap[t], p->T->taps[t].data, m * sizeof(float));
    }
}

static void teacher_ref_free(Pair *p, TeacherRef *r) {
    for (int t = 0; t < p->T->n_taps; t++) free(r->tap[t]);
}

// The values distill_loss reports (v[0..3], then raw and normalized per tap)
// for the shard of r in a global batch of NB, written out from one student
// forward (not through feat_term or the mse kernels).
static void formula(Pair *p, const TeacherRef *r, int normalized, double *v) {
    int nt = p->T->n_taps, g0 = r->g0, b = r->b;
    Error e;
    float oS[NB * C * HW];
    if (unet_forward(p->S, oS, p->xt + g0 * C * HW, p->tf + g0, p->ctx + g0 * L * D, b, H, W, L, NULL, &e))
        FATAL("%s", e.msg);
    size_t n = (size_t)b * C * HW;
    double task = 0, out = 0, w = (double)b / NB;
    for (size_t j = 0; j < n; j++) {
        double a = (double)oS[j] - p->noise[g0 * C * HW + j], c = (double)oS[j] - r->out[j];
        task += a * a, out += c * c;
    }
    task = task / n * w, out = out / n * w;
    double feat = 0;
    for (int t = 0; t < nt; t++) {
        const Tap *ts = &p->S->taps[t];
        size_t m = (size_t)ts->C * ts->H * ts->W;
        double sq_all = 0, nsum = 0;
        for (int s = 0; s < b; s++) {
            double sq = 0, tn = 0;
            for (size_t j = 0; j < m; j++) {
                double d = (double)ts->data[s * m + j] - r->tap[t][s * m + j];
                sq += d * d, tn += (double)r->tap[t][s * m + j] * r->tap[t][s * m + j];
            }
            sq_all += sq, nsum += sq / tn;
        }
        v[4 + t] = sq_all / ((double)b * m) * w, v[4 + nt + t] = nsum / NB;
        feat += v[4 + (normalized ? nt : 0) + t];
    }
    v[1] = task, v[2] = out, v[3] = feat;
    v[0] = p->dc.lambda_task * task + p->dc.lambda_out * out + p->dc.lambda_feat * feat;
}

// The terms distill_loss reports equal the formula.
static void check_values(Pair *p, int normalized) {
    int nt = p->T->n_taps;
    const char *norm = use_norm(p, normalized);
    const int g0 = 1, b = 2;
    loss_at(p, g0, b, NB);
    double got[4 + 2 * MAXT], want[4 + 2 * MAXT];
    memcpy(got, p->v, sizeof got);
    TeacherRef r;
    teacher_ref(p, &r, g0, b);
    formula(p, &r, normalized, want);
    teacher_ref_free(p, &r);
    double worst = 0;
    for (int k = 0; k < 4 + 2 * nt; k++) worst = fmax(worst, rel(got[k], want[k]));
    for (int t = 0; t < nt; t++)
        EXPECT(want[4 + t] > 0 && want[4 + nt + t] > 0, "%s: tap %s differs between student and teacher", norm,
               p->S->taps[t].name);
    printf("%s: loss %.6f = 0.7 * task %.6f + 1.3 * out %.6f + 0.9 * feat %.6f (shard of 2 of 3), max rel diff %.1e\n",
           norm, got[0], got[1], got[2], got[3], worst);
    EXPECT(worst <= 1e-9, "%s: reported terms differ from the formula by %.2e", norm, worst);
}

// Shards [0,2) and [2,3) of a global batch of 3 sum to the whole batch (values and gradient):
// the weighting data parallelism relies on.
static void check_shards(Pair *p, int normalized) {
    const char *norm = use_norm(p, normalized);
    UNet *S = p->S;
    int nv = 4 + 2 * p->T->n_taps;
    double whole[4 + 2 * MAXT], parts[4 + 2 * MAXT] = {0};
    unet_zero_grad(S);
    loss_at(p, 0, NB, NB);
    memcpy(whole, p->v, sizeof whole);
    float *gw = xmalloc(S->pt.total * sizeof(float));
    memcpy(gw, S->grads, S->pt.total * sizeof(float));
    unet_zero_grad(S);
    loss_at(p, 0, 2, NB);
    for (int k = 0; k < nv; k++) parts[k] += p->v[k];
    loss_at(p, 2, 1, NB);
    for (int k = 0; k < nv; k++) parts[k] += p->v[k];
    double ev = 0;
    for (int k = 0; k < nv; k++) ev = fmax(ev, rel(parts[k], whole[k]));
    double eg = tu_max_rel_err(S->grads, gw, S->pt.total, 0);
    printf("%s: shards 2+1 vs batch 3: values rel diff %.1e, gradient %.1e\n", norm, ev, eg);
    EXPECT(ev <= 1e-6, "%s: shard values do not sum to the batch's (%.2e)", norm, ev);
    EXPECT(eg <= 1e-5, "%s: shard gradients do not sum to the batch's (%.2e)", norm, eg);
    free(gw);
}

// Directional derivative of the formula's loss along dir at step h, central
// difference. The step actually taken differs from h*dir by float rounding of
// the parameters, so the analytic side uses the perturbation as stored:
// an = g . (p+ - p-) / 2h.
static void central(Pair *p, const TeacherRef *r, int normalized, float *x, const float *x0, const float *dir,
                    size_t n, const float *g, double h, double *fd, double *an) {
    double lp[4 + 2 * MAXT], lm[4 + 2 * MAXT], a = 0;
    for (size_t j = 0; j < n; j++) x[j] = (float)(x0[j] + h * dir[j]);
    for (size_t j = 0; j < n; j++) a += (double)g[j] * ((double)x[j] - x0[j]);
    formula(p, r, normalized, lp);
    for (size_t j = 0; j < n; j++) x[j] = (float)(x0[j] - h * dir[j]);
    for (size_t j = 0; j < n; j++) a -= (double)g[j] * ((double)x[j] - x0[j]);
    formula(p, r, normalized, lm);
    memcpy(x, x0, n * sizeof(float));
    *fd = (lp[0] - lm[0]) / (2 * h), *an = a / (2 * h);
}

// Every student tensor, one random +-1 direction v each: the analytic g . v
// (distill_loss's gradient) against Richardson-extrapolated central
// differences at h and h/2 (O(h^4) truncation) of the formula, which
// check_values shows is distill_loss's value; each probe is one student
// forward instead of distill_loss's teacher forward, student forward and
// backward. |g . v| is typically ||g||_2 (random signs), so the error is
// allowed tol * ||g||_2 plus the float32 rounding noise of the loss divided by
// the step; a cancelling dot product does not make it fail.
static void check_gradient(Pair *p, int normalized, double la, double lo, double lf, double tol) {
    const char *norm = use_norm(p, normalized);
    p->dc.lambda_task = la, p->dc.lambda_out = lo, p->dc.lambda_feat = lf;
    UNet *S = p->S;
    unet_zero_grad(S);
    double L0 = loss_at(p, 0, 2, NB);
    float *g = xmalloc(S->pt.total * sizeof(float));
    memcpy(g, S->grads, S->pt.total * sizeof(float));
    TeacherRef ref;
    teacher_ref(p, &ref, 0, 2);
    // the gradient under test came from the threads ctest gives; the ~700
    // finite-difference passes are the reference: one thread (testutil.h)
    int threads = tu_set_threads(1);
    TuRng r;
    tu_rng_seed(&r, 2024);
    double worst = 0, worst_rel = 0, sum_rel = 0;
    const char *worst_name = "";
    int zero = 0;
    for (int i = 0; i < S->pt.n; i++) {
        const ParamTensor *t = &S->pt.t[i];
        float *x = S->params + t->offset, *x0 = xmalloc(t->numel * sizeof(float));
        float *dir = xmalloc(t->numel * sizeof(float)), *gi = g + t->offset;
        memcpy(x0, x, t->numel * sizeof(float));
        double gn = 0, rms = 0;
        for (size_t j = 0; j < t->numel; j++) {
            dir[j] = tu_uniform(&r, 0, 1) < 0.5f ? -1.0f : 1.0f;
            gn += (double)gi[j] * gi[j], rms += (double)x0[j] * x0[j];
        }
        gn = sqrt(gn), rms = sqrt(rms / t->numel);
        // a step of 3% of the tensor's rms on every element: the extrapolated
        // truncation error stays well under tol, and the difference of the two
        // losses stays far above their float32 rounding (~1e-7 relative)
        double h = 3e-2 * fmax(rms, 1e-2), f1, a1, f2, a2;
        central(p, &ref, normalized, x, x0, dir, t->numel, gi, h, &f1, &a1);
        central(p, &ref, normalized, x, x0, dir, t->numel, gi, h / 2, &f2, &a2);
        double fd = (4 * f2 - f1) / 3, an = (4 * a2 - a1) / 3;
        // every student tensor feeds the loss (pruned layers are absent, not
        // zero), except that the feature term alone never reaches the output head
        int head = !strncmp(t->name, "conv_norm_out.", 14) || !strncmp(t->name, "conv_out.", 9);
        if ((gn == 0) != (head && la == 0 && lo == 0)) zero++;
        double noise = 3e-7 * fabs(L0) / h, err = fabs(fd - an) / (tol * gn + noise);
        double rel_g = gn > 0 ? fabs(fd - an) / gn : 0;
        sum_rel += rel_g, worst_rel = fmax(worst_rel, rel_g);
        if (err > worst) worst = err, worst_name = t->name;
        EXPECT(err <= 1, "%s lambdas (%g, %g, %g): %s: g.v %.6e vs finite difference %.6e (|diff| %.2e, ||g|| %.3e, "
               "noise allowance %.1e)", norm, la, lo, lf, t->name, an, fd, fabs(fd - an), gn, noise);
        free(x0), free(dir);
    }
    tu_set_threads(threads);
    teacher_ref_free(p, &ref);
    printf("%s lambdas (%g, %g, %g): loss %.6f, %d tensors: |g.v - FD| / ||g|| mean %.1e max %.1e; "
           "worst %.2f of the allowance (%s)\n",
           norm, la, lo, lf, L0, S->pt.n, sum_rel / S->pt.n, worst_rel, worst, worst_name);
    EXPECT(zero == 0, "%s: %d student tensors have an unexpected (non)zero gradient", norm, zero);
    free(g);
}

int main(void) {
    check_fixture();
    Pair p;
    pair_make(&p);
    check_values(&p, 1);
    check_values(&p, 0);
    check_shards(&p, 1);
    check_shards(&p, 0);
    // all three terms under both normalizations, then LAPTOP's normalized term
    // alone (nothing else to dilute a wrong tap gradient). Seen here: |g.v - FD|
    // ~1e-3 of ||g|| on average, up to 0.1 where a tensor's gradient is tiny next
    // to the loss (float32 rounding: within 0.5 of the allowance); a dropped
    // factor 2, a local instead of global denominator, a lost tap gradient or
    // the lambda_out share without b/B exceed it 100-10000x.
    const double tol = 1e-3;
    check_gradient(&p, 1, 0.7, 1.3, 0.9, tol);
    check_gradient(&p, 0, 0.7, 1.3, 0.9, tol);
    check_gradient(&p, 1, 0, 0, 1, tol);
    pair_free(&p);
    return tu_report("test_distill");
}
