// test_kernel_norm.c — GroupNorm (alone and fused with the SiLU after it) and
// LayerNorm: forward (output and the saved mean/rstd) against double loops,
// backward (dx, dgamma, dbeta) against finite differences of those loops,
// gradients pre-filled to check accumulation; GroupNorm's results the same bit
// for bit with 1 and 2 threads.
#include "kernel_check.h"
#include "kernels/kernels.h"

// ---- GroupNorm ----
typedef struct {
    int B, C, HW, G;
    int silu;  // reference is silu(groupnorm(x)), as groupnorm_silu_*
    double eps;
    double *x, *gamma, *beta, *R, *out, *mean, *rstd;
} GnCase;

static void ref_groupnorm(GnCase *c) {
    int cg = c->C / c->G;
    for (int b = 0; b < c->B; b++)
        for (int g = 0; g < c->G; g++) {
            const double *xg = c->x + ((size_t)b * c->C + g * cg) * c->HW;
            size_t n = (size_t)cg * c->HW;
            double m = 0, v = 0;
            for (size_t i = 0; i < n; i++) m += xg[i];
            m /= n;
            for (size_t i = 0; i < n; i++) v += (xg[i] - m) * (xg[i] - m);
            v /= n;
            double r = 1 / sqrt(v + c->eps);
            c->mean[b * c->G + g] = m;
            c->rstd[b * c->G + g] = r;
            for (int j = 0; j < cg; j++)
                for (int i = 0; i < c->HW; i++) {
                    int ch = g * cg + j;
                    size_t t = ((size_t)b * c->C + ch) * c->HW + i;
                    double n = (c->x[t] - m) * r * c->gamma[ch] + c->beta[ch];
                    c->out[t] = c->silu ? n / (1 + exp(-n)) : n;
                }
        }
}

static double gn_loss(void *ctx) {
    GnCase *c = ctx;
    ref_groupnorm(c);
    return kc_dot(c->out, c->R, (size_t)c->B * c->C * c->HW);
}

static void gn_fwd(int silu, float *out, float *mean, float *rstd, const float *x, const float *gamma,
                   const float *beta, int B, int C, int HW, int G, float eps) {
    (silu ? groupnorm_silu_forward : groupnorm_forward)(out, mean, rstd, x, gamma, beta, B, C, HW, G, eps);
}

static void gn_bwd(int silu, float *dx, float *dg, float *db, const float *R, const float *x, const float *mean,
                   const float *rstd, const float *gamma, const float *beta, int B, int C, int HW, int G) {
    if (silu)
        groupnorm_silu_backward(dx, dg, db, R, x, mean, rstd, gamma, beta, B, C, HW, G);
    else
        groupnorm_backward(dx, dg, db, R, x, mean, rstd, gamma, B, C, HW, G);
}

static void check_groupnorm(TuRng *rng, int silu, int B, int C, int HW, int G, float eps, float offset) {
    size_t nx = (size_t)B * C * HW;
    float *x = kc_rand(rng, nx, offset - 1.5f, offset + 1.5f);
    float *gamma = kc_rand(rng, C, 0.5f, 1.5f), *beta = kc_rand(rng, C, -1, 1);
    float *R = kc_rand(rng, nx, -1, 1), *out = xmalloc(nx * sizeof(float));
    float *mean = xmalloc(B * G * sizeof(float)), *rstd = xmalloc(B * G * sizeof(float));
    GnCase c = {B, C, HW, G, silu, eps, kc_dup(x, nx), kc_dup(gamma, C), kc_dup(beta, C), kc_dup(R, nx),
                xmalloc(nx * sizeof(double)), xmalloc(B * G * sizeof(double)),
                xmalloc(B * G * sizeof(double))};
    char tag[96];
    snprintf(tag, sizeof tag, "groupnorm%s B%d C%d HW%d G%d offset %g", silu ? "+silu" : "", B, C, HW, G, offset);

    gn_fwd(silu, out, mean, rstd, x, gamma, beta, B, C, HW, G, eps);
    ref_groupnorm(&c);
    kc_expect_close(kc_rel_err(out, c.out, nx, 1e-3), KC_FWD_TOL, "%s out", tag);
    kc_expect_close(kc_rel_err(mean, c.mean, B * G, 1), KC_FWD_TOL, "%s mean", tag);
    kc_expect_close(kc_rel_err(rstd, c.rstd, B * G, 1e-3), KC_FWD_TOL, "%s rstd", tag);

    float *dx = kc_rand(rng, nx, -1, 1), *dg = kc_rand(rng, C, -1, 1), *db = kc_rand(rng, C, -1, 1);
    float *dx0 = kc_fcopy(dx, nx), *dg0 = kc_fcopy(dg, C), *db0 = kc_fcopy(db, C);
    gn_bwd(silu, dx, dg, db, R, x, mean, rstd, gamma, beta, B, C, HW, G);
    double *gx = xmalloc(nx * sizeof(double)), *gg = xmalloc(C * sizeof(double));
    double *gb = xmalloc(C * sizeof(double));
    kc_fd_grad(gn_loss, &c, c.x, nx, gx);
    kc_fd_grad(gn_loss, &c, c.gamma, C, gg);
    kc_fd_grad(gn_loss, &c, c.beta, C, gb);
    kc_expect_close(kc_rel_err_acc(dx, dx0, gx, nx, 1e-3), KC_BWD_TOL, "%s dx", tag);
    kc_expect_close(kc_rel_err_acc(dg, dg0, gg, C, 1e-3), KC_BWD_TOL, "%s dgamma", tag);
    kc_expect_close(kc_rel_err_acc(db, db0, gb, C, 1e-3), KC_BWD_TOL, "%s dbeta", tag);
    // NULL parameter gradients: dx alone must match the full call bit for bit.
    float *dx1 = kc_fcopy(dx0, nx);
    gn_bwd(silu, dx1, NULL, NULL, R, x, mean, rstd, gamma, beta, B, C, HW, G);
    EXPECT(memcmp(dx1, dx, nx * sizeof(float)) == 0, "%s: dx alone differs", tag);
    // 1 and 2 threads: the same bits (forward output, statistics, every gradient)
    {
        float *o2 = xmalloc(nx * sizeof(float)), *m2 = xmalloc(B * G * sizeof(float));
        float *r2 = xmalloc(B * G * sizeof(float)), *dx2 = kc_fcopy(dx0, nx), *dg2 = kc_fcopy(dg0, C);
        float *db2 = kc_fcopy(db0, C), *dx3 = kc_fcopy(dx0, nx), *dg3 = kc_fcopy(dg0, C), *db3 = kc_fcopy(db0, C);
        int prev = tu_set_threads(1);
        gn_fwd(silu, out, mean, rstd, x, gamma, beta, B, C, HW, G, eps);
        gn_bwd(silu, dx2, dg2, db2, R, x, mean, rstd, gamma, beta, B, C, HW, G);
        tu_set_threads(2);
        gn_fwd(silu, o2, m2, r2, x, gamma, beta, B, C, HW, G, eps);
        gn_bwd(silu, dx3, dg3, db3, R, x, mean, rstd, gamma, beta, B, C, HW, G);
        tu_set_threads(prev);
        EXPECT(!memcmp(out, o2, nx * sizeof(float)) && !memcmp(mean, m2, B * G * sizeof(float)) &&
                   !memcmp(rstd, r2, B * G * sizeof(float)),
               "%s: forward differs between 1 and 2 threads", tag);
        EXPECT(!memcmp(dx2, dx3, nx * sizeof(float)) && !memcmp(dg2, dg3, C * sizeof(float)) &&
                   !memcmp(db2, db3, C * sizeof(float)),
               "%s: backward differs between 1 and 2 threads", tag);
        free(o2), free(m2), free(r2), free(dx2), free(dg2), free(db2), free(dx3), free(dg3), free(db3);
    }

    free(x), free(gamma), free(beta), free(R), free(out), free(mean), free(rstd);
    free(dx), free(dg), free(db), free(dx0), free(dg0), free(db0), free(dx1);
    free(gx), free(gg), free(gb);
    free(c.x), free(c.gamma), free(c.beta), free(c.R), free(c.out), free(c.mean), free(c.rstd);
}

// ---- LayerNorm ----
typedef struct {
    int N, C;
    double eps;
    double *x, *gamma, *beta, *R, *out, *mean, *rstd;
} LnCase;

static void ref_layernorm(LnCase *c) {
    for (int n = 0; n < c->N; n++) {
        const double *xr = c->x + (size_t)n * c->C;
        double m = 0, v = 0;
        for (int i = 0; i < c->C; i++) m += xr[i];
        m /= c->C;
        for (int i = 0; i < c->C; i++) v += (xr[i] - m) * (xr[i] - m);
        v /= c->C;
        double r = 1 / sqrt(v + c->eps);
        c->mean[n] = m;
        c->rstd[n] = r;
        for (int i = 0; i < c->C; i++)
            c->out[(size_t)n * c->C + i] = (xr[i] - m) * r * c->gamma[i] + c->beta[i];
    }
}

static double ln_loss(void *ctx) {
    LnCase *c = ctx;
    ref_layernorm(c);
    return kc_dot(c->out, c->R, (size_t)c->N * c->C);
}

static void check_layernorm(TuRng *rng, int N, int C, float eps, float offset) {
    size_t nx = (size_t)N * C;
    float *x = kc_rand(rng, nx, offset - 2, offset + 2);
    float *gamma = kc_rand(rng, C, 0.5f, 1.5f), *beta = kc_rand(rng, C, -1, 1);
    float *R = kc_rand(rng, nx, -1, 1), *out = xmalloc(nx * sizeof(float));
    float *mean = xmalloc(N * sizeof(float)), *rstd = xmalloc(N * sizeof(float));
    LnCase c = {N, C, eps, kc_dup(x, nx), kc_dup(gamma, C), kc_dup(beta, C), kc_dup(R, nx),
                xmalloc(nx * sizeof(double)), xmalloc(N * sizeof(double)), xmalloc(N * sizeof(double))};
    char tag[96];
    snprintf(tag, sizeof tag, "layernorm N%d C%d offset %g", N, C, offset);

    layernorm_forward(out, mean, rstd, x, gamma, beta, N, C, eps);
    ref_layernorm(&c);
    kc_expect_close(kc_rel_err(out, c.out, nx, 1e-3), KC_FWD_TOL, "%s out", tag);
    kc_expect_close(kc_rel_err(mean, c.mean, N, 1), KC_FWD_TOL, "%s mean", tag);
    kc_expect_close(kc_rel_err(rstd, c.rstd, N, 1e-3), KC_FWD_TOL, "%s rstd", tag);

    float *dx = kc_rand(rng, nx, -1, 1), *dg = kc_rand(rng, C, -1, 1), *db = kc_rand(rng, C, -1, 1);
    float *dx0 = kc_fcopy(dx, nx), *dg0 = kc_fcopy(dg, C), *db0 = kc_fcopy(db, C);
    layernorm_backward(dx, dg, db, R, x, mean, rstd, gamma, N, C);
    double *gx = xmalloc(nx * sizeof(double)), *gg = xmalloc(C * sizeof(double));
    double *gb = xmalloc(C * sizeof(double));
    kc_fd_grad(ln_loss, &c, c.x, nx, gx);
    kc_fd_grad(ln_loss, &c, c.gamma, C, gg);
    kc_fd_grad(ln_loss, &c, c.beta, C, gb);
    kc_expect_close(kc_rel_err_acc(dx, dx0, gx, nx, 1e-3), KC_BWD_TOL, "%s dx", tag);
    kc_expect_close(kc_rel_err_acc(dg, dg0, gg, C, 1e-3), KC_BWD_TOL, "%s dgamma", tag);
    kc_expect_close(kc_rel_err_acc(db, db0, gb, C, 1e-3), KC_BWD_TOL, "%s dbeta", tag);
    float *dg1 = kc_fcopy(dg0, C);
    layernorm_backward(NULL, dg1, NULL, R, x, mean, rstd, gamma, N, C);
    EXPECT(memcmp(dg1, dg, C * sizeof(float)) == 0, "%s: dgamma alone differs", tag);

    free(x), free(gamma), free(beta), free(R), free(out), free(mean), free(rstd);
    free(dx), free(dg), free(db), free(dx0), free(dg0), free(db0), free(dg1);
    free(gx), free(gg), free(gb);
    free(c.x), free(c.gamma), free(c.beta), free(c.R), free(c.out), free(c.mean), free(c.rstd);
}

int main(void) {
    TuRng rng;
    tu_rng_seed(&rng, 99);
    for (int silu = 0; silu < 2; silu++) {
        check_groupnorm(&rng, silu, 2, 8, 15, 4, 1e-5f, 0);
        check_groupnorm(&rng, silu, 3, 6, 7, 3, 1e-6f, 0);
        check_groupnorm(&rng, silu, 2, 4, 9, 1, 1e-5f, 5);    // one group = LayerNorm over C*HW, offset mean
        check_groupnorm(&rng, silu, 2, 6, 5, 6, 1e-5f, 0);    // one channel per group
        check_groupnorm(&rng, silu, 2, 8, 6, 2, 1e-5f, 50);   // mean >> std: no cancellation
        check_groupnorm(&rng, silu, 3, 4, 37, 2, 1e-5f, 0);   // rows of 37: 16-lane body and a tail
        check_groupnorm(&rng, silu, 1, 2, 300, 1, 1e-5f, 0);  // rows of 300: backward's 128-element blocks, a tail
    }
    check_layernorm(&rng, 7, 12, 1e-5f, 0);
    check_layernorm(&rng, 5, 130, 1e-5f, 3);        // C spans several 64-column blocks
    check_layernorm(&rng, 1, 3, 1e-5f, 0);
    return tu_report("test_kernel_norm");
}
