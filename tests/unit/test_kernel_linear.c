// test_kernel_linear.c — linear layer (also with a residual folded in) and the activations (SiLU, exact GELU,
// GEGLU in diffusers' hidden/gate order): forward against double loops,
// backward against finite differences, gradients pre-filled to check that
// backward accumulates.
#include "kernel_check.h"
#include "kernels/kernels.h"

// ---- linear ----
typedef struct {
    int N, C, OC;
    double *x, *w, *b, *R, *out;
} LinCase;

static void ref_linear(LinCase *c) {
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->OC; o++) {
            double s = c->b ? c->b[o] : 0;
            for (int i = 0; i < c->C; i++) s += c->x[(size_t)n * c->C + i] * c->w[(size_t)o * c->C + i];
            c->out[(size_t)n * c->OC + o] = s;
        }
}

static double lin_loss(void *ctx) {
    LinCase *c = ctx;
    ref_linear(c);
    return kc_dot(c->out, c->R, (size_t)c->N * c->OC);
}

static void check_linear(TuRng *rng, int N, int C, int OC, int bias) {
    size_t nx = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    float *x = kc_rand(rng, nx, -1, 1), *w = kc_rand(rng, nw, -1, 1);
    float *b = bias ? kc_rand(rng, OC, -1, 1) : NULL;
    float *R = kc_rand(rng, no, -1, 1), *out = xmalloc(no * sizeof(float));
    LinCase c = {N, C, OC, kc_dup(x, nx), kc_dup(w, nw), bias ? kc_dup(b, OC) : NULL, kc_dup(R, no),
                 xmalloc(no * sizeof(double))};
    char tag[64];
    snprintf(tag, sizeof tag, "linear N%d C%d OC%d%s", N, C, OC, bias ? "" : " nobias");
    linear_forward(out, x, w, b, N, C, OC);
    ref_linear(&c);
    kc_expect_close(kc_rel_err(out, c.out, no, 1e-3), KC_FWD_TOL, "%s forward", tag);
    // with the residual folded in: out = res + linear, separate and in place (out == res)
    {
        float *res = kc_rand(rng, no, -2, 2), *o2 = kc_fcopy(res, no);
        double *want = xmalloc(no * sizeof(double));
        for (size_t i = 0; i < no; i++) want[i] = c.out[i] + res[i];
        linear_residual_forward(out, x, w, b, res, N, C, OC);
        kc_expect_close(kc_rel_err(out, want, no, 1e-3), KC_FWD_TOL, "%s residual forward", tag);
        linear_residual_forward(o2, x, w, b, o2, N, C, OC);
        kc_expect_close(kc_rel_err(o2, want, no, 1e-3), KC_FWD_TOL, "%s residual forward in place", tag);
        free(res), free(o2), free(want);
    }

    float *dx = kc_rand(rng, nx, -1, 1), *dw = kc_rand(rng, nw, -1, 1), *db = kc_rand(rng, OC, -1, 1);
    float *dx0 = kc_fcopy(dx, nx), *dw0 = kc_fcopy(dw, nw), *db0 = kc_fcopy(db, OC);
    linear_backward(dx, dw, bias ? db : NULL, R, x, w, N, C, OC);
    double *gx = xmalloc(nx * sizeof(double)), *gw = xmalloc(nw * sizeof(double));
    kc_fd_grad(lin_loss, &c, c.x, nx, gx);
    kc_fd_grad(lin_loss, &c, c.w, nw, gw);
    kc_expect_close(kc_rel_err_acc(dx, dx0, gx, nx, 1e-3), KC_BWD_TOL, "%s dx", tag);
    kc_expect_close(kc_rel_err_acc(dw, dw0, gw, nw, 1e-3), KC_BWD_TOL, "%s dw", tag);
    if (bias) {
        double *gb = xmalloc(OC * sizeof(double));
        kc_fd_grad(lin_loss, &c, c.b, OC, gb);
        kc_expect_close(kc_rel_err_acc(db, db0, gb, OC, 1e-3), KC_BWD_TOL, "%s db", tag);
        free(gb);
    } else {
        EXPECT(memcmp(db, db0, OC * sizeof(float)) == 0, "%s: NULL db touched", tag);
    }
    free(x), free(w), free(b), free(R), free(out), free(dx), free(dw), free(db);
    free(dx0), free(dw0), free(db0), free(gx), free(gw);
    free(c.x), free(c.w), free(c.b), free(c.R), free(c.out);
}

// ---- elementwise activations ----
typedef enum { ACT_SILU, ACT_GELU } Act;

static double ref_act1(Act a, double x) {
    if (a == ACT_SILU) return x / (1 + exp(-x));
    return 0.5 * x * (1 + erf(x / sqrt(2.0)));
}

typedef struct {
    Act act;
    size_t n;
    double *x, *R;
} ActCase;

static double act_loss(void *ctx) {
    ActCase *c = ctx;
    double s = 0;
    for (size_t i = 0; i < c->n; i++) s += ref_act1(c->act, c->x[i]) * c->R[i];
    return s;
}

static void check_act(TuRng *rng, Act act, size_t n) {
    const char *name = act == ACT_SILU ? "silu" : "gelu";
    float *x = kc_rand(rng, n, -6, 6), *R = kc_rand(rng, n, -1, 1);
    x[0] = 0, x[1] = -30, x[2] = 30;  // the flat tails and the origin
    float *out = xmalloc(n * sizeof(float));
    double *ref = xmalloc(n * sizeof(double));
    ActCase c = {act, n, kc_dup(x, n), kc_dup(R, n)};
    (act == ACT_SILU ? silu_forward : gelu_forward)(out, x, n);
    for (size_t i = 0; i < n; i++) ref[i] = ref_act1(act, c.x[i]);
    kc_expect_close(kc_rel_err(out, ref, n, 1), KC_FWD_TOL, "%s forward", name);
    // GELU's known values: gelu(1) = Phi(1) = 0.841344746...
    if (act == ACT_GELU) {
        float one = 1, g;
        gelu_forward(&g, &one, 1);
        EXPECT(fabs(g - 0.8413447460685429) < 1e-6, "gelu(1) = %.9g", g);
    }
    float *dx = kc_rand(rng, n, -1, 1), *dx0 = kc_fcopy(dx, n);
    (act == ACT_SILU ? silu_backward : gelu_backward)(dx, R, x, n);
    double *g = xmalloc(n * sizeof(double));
    kc_fd_grad(act_loss, &c, c.x, n, g);
    kc_expect_close(kc_rel_err_acc(dx, dx0, g, n, 1e-3), KC_BWD_TOL, "%s dx", name);
    free(x), free(R), free(out), free(ref), free(dx), free(dx0), free(g), free(c.x), free(c.R);
}

// ---- GEGLU ----
typedef struct {
    int N, H;
    double *x, *R, *out;
} GegluCase;

static void ref_geglu(GegluCase *c) {
    for (int n = 0; n < c->N; n++)
        for (int j = 0; j < c->H; j++) {
            double hid = c->x[(size_t)n * 2 * c->H + j], gate = c->x[(size_t)n * 2 * c->H + c->H + j];
            c->out[(size_t)n * c->H + j] = hid * ref_act1(ACT_GELU, gate);
        }
}

static double geglu_loss(void *ctx) {
    GegluCase *c = ctx;
    ref_geglu(c);
    return kc_dot(c->out, c->R, (size_t)c->N * c->H);
}

static void check_geglu(TuRng *rng, int N, int H) {
    size_t nx = (size_t)N * 2 * H, no = (size_t)N * H;
    float *x = kc_rand(rng, nx, -3, 3), *R = kc_rand(rng, no, -1, 1), *out = xmalloc(no * sizeof(float));
    GegluCase c = {N, H, kc_dup(x, nx), kc_dup(R, no), xmalloc(no * sizeof(double))};
    geglu_forward(out, x, N, H);
    ref_geglu(&c);
    kc_expect_close(kc_rel_err(out, c.out, no, 1e-3), KC_FWD_TOL, "geglu N%d H%d forward", N, H);
    float *dx = kc_rand(rng, nx, -1, 1), *dx0 = kc_fcopy(dx, nx);
    geglu_backward(dx, R, x, N, H);
    double *g = xmalloc(nx * sizeof(double));
    kc_fd_grad(geglu_loss, &c, c.x, nx, g);
    kc_expect_close(kc_rel_err_acc(dx, dx0, g, nx, 1e-3), KC_BWD_TOL, "geglu N%d H%d dx", N, H);
    free(x), free(R), free(out), free(dx), free(dx0), free(g), free(c.x), free(c.R), free(c.out);
}

int main(void) {
    TuRng rng;
    tu_rng_seed(&rng, 7);
    check_linear(&rng, 5, 7, 3, 1);
    check_linear(&rng, 9, 4, 11, 1);
    check_linear(&rng, 3, 6, 5, 0);
    check_linear(&rng, 4, 3, 70, 1);  // bias gradient over more than one 64-column block
    check_act(&rng, ACT_SILU, 501);
    check_act(&rng, ACT_GELU, 501);
    check_geglu(&rng, 4, 5);
    check_geglu(&rng, 3, 16);
    return tu_report("test_kernel_linear");
}
