// test_gpu_ops.c — every GPU op (src/cuda/ops.h) against its CPU kernel, in
// the manner of ggml's test-backend-ops: the same random inputs on both, the
// GPU result downloaded and compared by relative RMS error,
//   err = sqrt(sum (gpu - cpu)^2 / sum cpu^2),
// with a bound per op family and GEMM precision. Backward ops start from the
// same random gradient buffers on both sides, so accumulation (+=) is tested too.
//
// Built twice (CMakeLists.txt): test_gpu_ops on the real backend (label gpu;
// exit 77 = SKIPPED where CUDA finds no device, a failure under
// LD_REQUIRE_GPU=1) and test_gpu_ops_emu on the host CUDA emulator (label
// unit), which runs the same kernel sources everywhere. A pass of the emulated
// build is not a GPU result: it checks the kernels' arithmetic and indexing,
// not what only a GPU shows (races that need another order of warps or lanes, real TF32/BF16 rounding).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/dev.h"
#include "gpu_test.h"
#include "testutil.h"
#include "cuda/ops.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "train/adamw.h"
#include "train/distill.h"

static DevCtx *D;
static TuRng rng;  // seeded in main

static float *h_rand(size_t n, float scale) {  // uniform in [-scale, scale)
    float *p = xmalloc((n ? n : 1) * sizeof(float));
    tu_fill(&rng, p, n, -scale, scale);
    return p;
}
static float *h_pos(size_t n) {  // in [0.5, 1.5): GroupNorm/LayerNorm gammas, variances
    float *p = h_rand(n, 0.5f);
    for (size_t i = 0; i < n; i++) p[i] += 1.0f;
    return p;
}
static float *h_copy(const float *h, size_t n) {
    float *p = xmalloc((n ? n : 1) * sizeof(float));
    memcpy(p, h, n * sizeof(float));
    return p;
}
static float *up(const float *h, size_t n) {
    float *p = dev_alloc(D, n);
    dev_upload(D, p, h, n);
    return p;
}

// Relative RMS error of device tensor g against host reference c; *bad is set
// when g holds a non-finite value.
static double rel_err(const float *c, const float *g, size_t n, int *bad) {
    float *h = xmalloc((n ? n : 1) * sizeof(float));
    dev_download(D, h, g, n);
    double num = 0, den = 0;
    *bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)h[i] - c[i];
        if (!isfinite(h[i])) *bad = 1;
        num += e * e, den += (double)c[i] * c[i];
    }
    free(h);
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// Compares device tensor g against host reference c; prints one line.
static void cmp(const char *what, const float *c, const float *g, size_t n, double tol) {
    int bad;
    double err = rel_err(c, g, n, &bad);
    int ok = !bad && err <= tol;
    EXPECT(ok, "%s: err %.2e > bound %.0e (or not finite)", what, err, tol);
    printf("%-4s %-44s n=%-8zu err %.2e (bound %.0e)\n", ok ? "ok" : "FAIL", what, n, err, tol);
}

// A faster precision must change the result: device tensor g differs from the
// fp32 result f32 by more than `above` (else the knob is not applied).
static void differs_from_fp32(const char *what, const float *f32, const float *g, size_t n, double above) {
    int bad;
    double err = rel_err(f32, g, n, &bad);
    int ok = err > above;
    EXPECT(ok, "%s equals fp32 (err %.1e): the precision is not applied", what, err);
    printf("%-4s %s differs from fp32 (err %.1e > %.0e)\n", ok ? "ok" : "FAIL", what, err, above);
}
static void cmp_scalar(const char *what, double c, double g, double tol) {
    double err = fabs(g - c) / (fabs(c) > 0 ? fabs(c) : 1.0);
    int ok = isfinite(g) && err <= tol;
    EXPECT(ok, "%s: cpu %.9g gpu %.9g", what, c, g);
    printf("%-4s %-44s cpu %.9g gpu %.9g err %.2e (bound %.0e)\n", ok ? "ok" : "FAIL", what, c, g, err, tol);
}

#define TOL_ELEM 1e-6  // elementwise: a few ulps (GPU expf/erfcf differ from vecmath's)
#define TOL_RED 1e-5   // reductions, GEMMs in fp32
#define TOL_ATTN 2e-5
// the fused attention's tensor-core operands (q, k, v, dout, P, dS) rounded to TF32 / BF16
#define TOL_ATTN_TF32 2e-3
#define TOL_ATTN_BF16 1e-2

static void test_elementwise(void) {
    size_t n = 5003;
    float *x = h_rand(n, 4.0f), *dout = h_rand(n, 1.0f), *g0 = h_rand(n, 1.0f);
    float *dx_ = up(x, n), *ddout = up(dout, n), *dout_ = dev_alloc(D, n), *dg = up(g0, n);
    float *out = xmalloc(n * sizeof(float)), *g = h_copy(g0, n);

    silu_forward(out, x, n), cu_silu_forward(D, dout_, dx_, n), cmp("silu forward", out, dout_, n, TOL_ELEM);
    silu_backward(g, dout, x, n), cu_silu_backward(D, dg, ddout, dx_, n), cmp("silu backward", g, dg, n, TOL_ELEM);
    gelu_forward(out, x, n), cu_gelu_forward(D, dout_, dx_, n), cmp("gelu forward", out, dout_, n, TOL_ELEM);
    gelu_backward(g, dout, x, n), cu_gelu_backward(D, dg, ddout, dx_, n), cmp("gelu backward", g, dg, n, TOL_ELEM);
    float *y = h_rand(n, 1.0f), *dy = up(y, n);
    add_forward(out, x, y, n), cu_add_forward(D, dout_, dx_, dy, n), cmp("add", out, dout_, n, 0);
    // g carries the backward ops' rounding differences: not exact
    accumulate(g, y, n), cu_accumulate(D, dg, dy, n), cmp("accumulate", g, dg, n, TOL_ELEM);

    // GEGLU: x [N, 2H]
    int N = 37, H = 70;
    size_t nx = (size_t)N * 2 * H, no = (size_t)N * H;
    float *gx = h_rand(nx, 3.0f), *gd = h_rand(no, 1.0f), *gdx0 = h_rand(nx, 1.0f);
    float *dgx = up(gx, nx), *dgd = up(gd, no), *dgo = dev_alloc(D, no), *dgdx = up(gdx0, nx);
    float *go = xmalloc(no * sizeof(float)), *gdx = h_copy(gdx0, nx);
    geglu_forward(go, gx, N, H), cu_geglu_forward(D, dgo, dgx, N, H), cmp("geglu forward", go, dgo, no, TOL_ELEM);
    geglu_backward(gdx, gd, gx, N, H), cu_geglu_backward(D, dgdx, dgd, dgx, N, H);
    cmp("geglu backward", gdx, dgdx, nx, TOL_ELEM);

    float *ptrs[] = {dx_, ddout, dout_, dg, dy, dgx, dgd, dgo, dgdx};
    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++) dev_free(D, ptrs[i]);
    free(x), free(dout), free(g0), free(out), free(g), free(y), free(gx), free(gd), free(gdx0), free(go), free(gdx);
}

static void test_layout(void) {
    int B = 3, C = 5, Cb = 7, H = 9, W = 11, HW = H * W;
    size_t na = (size_t)B * C * HW, nb = (size_t)B * Cb * HW, nc = na + nb;
    float *a = h_rand(na, 1), *b = h_rand(nb, 1), *o = xmalloc(nc * 4), *dc = h_rand(nc, 1);
    float *da0 = h_rand(na, 1), *db0 = h_rand(nb, 1), *da = h_copy(da0, na), *db = h_copy(db0, nb);
    float *a_ = up(a, na), *b_ = up(b, nb), *o_ = dev_alloc(D, nc), *dc_ = up(dc, nc), *da_ = up(da0, na),
          *db_ = up(db0, nb);
    concat_channels_forward(o, a, b, B, C, Cb, HW), cu_concat_channels_forward(D, o_, a_, b_, B, C, Cb, HW);
    cmp("concat forward", o, o_, nc, 0);
    concat_channels_backward(da, db, dc, B, C, Cb, HW), cu_concat_channels_backward(D, da_, db_, dc_, B, C, Cb, HW);
    cmp("concat backward (a)", da, da_, na, 0), cmp("concat backward (b)", db, db_, nb, 0);

    // transposes on [B, C, N] with sizes not multiples of the 32-wide tile
    int Ct = 45, Nt = 70;
    size_t nt = (size_t)B * Ct * Nt;
    float *t = h_rand(nt, 1), *to = xmalloc(nt * 4), *tg0 = h_rand(nt, 1), *tg = h_copy(tg0, nt);
    float *t_ = up(t, nt), *to_ = dev_alloc(D, nt), *tg_ = up(tg0, nt);
    transpose_cn_forward(to, t, B, Ct, Nt), cu_transpose_cn_forward(D, to_, t_, B, Ct, Nt);
    cmp("transpose [B,C,N]->[B,N,C]", to, to_, nt, 0);
    transpose_cn_backward(tg, t, B, Ct, Nt), cu_transpose_cn_backward(D, tg_, t_, B, Ct, Nt);
    cmp("transpose cn backward", tg, tg_, nt, 0);
    transpose_nc_forward(to, t, B, Nt, Ct), cu_transpose_nc_forward(D, to_, t_, B, Nt, Ct);
    cmp("transpose [B,N,C]->[B,C,N]", to, to_, nt, 0);
    transpose_nc_backward(tg, t, B, Nt, Ct), cu_transpose_nc_backward(D, tg_, t_, B, Nt, Ct);
    cmp("transpose nc backward", tg, tg_, nt, 0);

    // per-channel bias (the resnet's time embedding)
    float *v = h_rand((size_t)B * C, 1), *v_ = up(v, (size_t)B * C), *dv0 = h_rand((size_t)B * C, 1);
    float *dv = h_copy(dv0, (size_t)B * C), *dv_ = up(dv0, (size_t)B * C);
    add_channel_bias_forward(o, a, v, B, C, HW), cu_add_channel_bias_forward(D, o_, a_, v_, B, C, HW);
    cmp("channel bias forward", o, o_, na, 0);
    add_channel_bias_backward(da, dv, dc, B, C, HW), cu_add_channel_bias_backward(D, da_, dv_, dc_, B, C, HW);
    cmp("channel bias backward (x)", da, da_, na, 0), cmp("channel bias backward (v)", dv, dv_, (size_t)B * C, TOL_RED);

    // nearest x2 upsampling
    size_t nu = na * 4;
    float *u = xmalloc(nu * 4), *du = h_rand(nu, 1), *u_ = dev_alloc(D, nu), *du_ = up(du, nu);
    upsample2x_forward(u, a, B, C, H, W), cu_upsample2x_forward(D, u_, a_, B, C, H, W);
    cmp("upsample2x forward", u, u_, nu, 0);
    upsample2x_backward(da, du, B, C, H, W), cu_upsample2x_backward(D, da_, du_, B, C, H, W);
    cmp("upsample2x backward", da, da_, na, TOL_ELEM);

    // timestep embedding, both orders, with and without the shift, odd dim
    float ts[4] = {0, 1, 499, 999}, *ts_ = up(ts, 4);
    int dims[] = {320, 33};
    for (int di = 0; di < 2; di++)
        for (int flip = 0; flip < 2; flip++) {
            int dim = dims[di];
            float *e = xmalloc((size_t)4 * dim * 4), *e_ = dev_alloc(D, (size_t)4 * dim);
            timestep_embedding(e, ts, 4, dim, flip, (float)(1 - flip));
            cu_timestep_embedding(D, e_, ts_, 4, dim, flip, (float)(1 - flip));
            char what[64];
            snprintf(what, sizeof what, "timestep embedding dim %d flip %d", dim, flip);
            cmp(what, e, e_, (size_t)4 * dim, 2e-6);  // sin/cos of args up to 999: libm vs CUDA
            free(e), dev_free(D, e_);
        }
    float *ps[] = {a_, b_, o_, dc_, da_, db_, t_, to_, tg_, v_, dv_, u_, du_, ts_};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) dev_free(D, ps[i]);
    free(a), free(b), free(o), free(dc), free(da0), free(db0), free(da), free(db), free(t), free(to), free(tg0);
    free(tg), free(v), free(dv0), free(dv), free(u), free(du);
}

static void test_norms(void) {
    int B = 2, C = 12, HW = 77, G = 4;
    size_t n = (size_t)B * C * HW, ng = (size_t)B * G;
    for (int silu = 0; silu < 2; silu++) {
        float *x = h_rand(n, 2.0f), *gm = h_pos(C), *bt = h_rand(C, 0.5f), *dout = h_rand(n, 1);
        for (size_t i = 0; i < n; i++) x[i] += 3.0f;  // a mean far from 0: the two-pass variance matters
        float *out = xmalloc(n * 4), *mean = xmalloc(ng * 4), *rstd = xmalloc(ng * 4);
        float *dx0 = h_rand(n, 1), *dg0 = h_rand(C, 1), *db0 = h_rand(C, 1);
        float *dx = h_copy(dx0, n), *dg = h_copy(dg0, C), *db = h_copy(db0, C);
        float *x_ = up(x, n), *gm_ = up(gm, C), *bt_ = up(bt, C), *dout_ = up(dout, n), *out_ = dev_alloc(D, n);
        float *mean_ = dev_alloc(D, ng), *rstd_ = dev_alloc(D, ng), *dx_ = up(dx0, n), *dg_ = up(dg0, C),
              *db_ = up(db0, C);
        if (silu) {
            groupnorm_silu_forward(out, mean, rstd, x, gm, bt, B, C, HW, G, 1e-5f);
            cu_groupnorm_silu_forward(D, out_, mean_, rstd_, x_, gm_, bt_, B, C, HW, G, 1e-5f);
            groupnorm_silu_backward(dx, dg, db, dout, x, mean, rstd, gm, bt, B, C, HW, G);
            cu_groupnorm_silu_backward(D, dx_, dg_, db_, dout_, x_, mean_, rstd_, gm_, bt_, B, C, HW, G);
        } else {
            groupnorm_forward(out, mean, rstd, x, gm, bt, B, C, HW, G, 1e-5f);
            cu_groupnorm_forward(D, out_, mean_, rstd_, x_, gm_, bt_, B, C, HW, G, 1e-5f);
            groupnorm_backward(dx, dg, db, dout, x, mean, rstd, gm, B, C, HW, G);
            cu_groupnorm_backward(D, dx_, dg_, db_, dout_, x_, mean_, rstd_, gm_, B, C, HW, G);
        }
        const char *nm = silu ? "groupnorm+silu" : "groupnorm";
        char w[6][64];
        const char *parts[] = {"forward", "mean", "rstd", "dx", "dgamma", "dbeta"};
        for (int i = 0; i < 6; i++) snprintf(w[i], sizeof w[i], "%s %s", nm, parts[i]);
        cmp(w[0], out, out_, n, TOL_RED), cmp(w[1], mean, mean_, ng, TOL_RED), cmp(w[2], rstd, rstd_, ng, TOL_RED);
        cmp(w[3], dx, dx_, n, TOL_RED), cmp(w[4], dg, dg_, C, TOL_RED), cmp(w[5], db, db_, C, TOL_RED);
        float *ps[] = {x_, gm_, bt_, dout_, out_, mean_, rstd_, dx_, dg_, db_};
        for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) dev_free(D, ps[i]);
        free(x), free(gm), free(bt), free(dout), free(out), free(mean), free(rstd), free(dx0), free(dg0), free(db0);
        free(dx), free(dg), free(db);
    }
    // LayerNorm: more rows than one 64-row slice of the parameter reduction
    int N = 150, Cl = 40;
    size_t nl = (size_t)N * Cl;
    float *x = h_rand(nl, 2.0f), *gm = h_pos(Cl), *bt = h_rand(Cl, 0.5f), *dout = h_rand(nl, 1);
    float *out = xmalloc(nl * 4), *mean = xmalloc(N * 4), *rstd = xmalloc(N * 4);
    float *dx0 = h_rand(nl, 1), *dg0 = h_rand(Cl, 1), *db0 = h_rand(Cl, 1);
    float *dx = h_copy(dx0, nl), *dg = h_copy(dg0, Cl), *db = h_copy(db0, Cl);
    float *x_ = up(x, nl), *gm_ = up(gm, Cl), *bt_ = up(bt, Cl), *dout_ = up(dout, nl), *out_ = dev_alloc(D, nl);
    float *mean_ = dev_alloc(D, N), *rstd_ = dev_alloc(D, N), *dx_ = up(dx0, nl), *dg_ = up(dg0, Cl),
          *db_ = up(db0, Cl);
    layernorm_forward(out, mean, rstd, x, gm, bt, N, Cl, 1e-5f);
    cu_layernorm_forward(D, out_, mean_, rstd_, x_, gm_, bt_, N, Cl, 1e-5f);
    layernorm_backward(dx, dg, db, dout, x, mean, rstd, gm, N, Cl);
    cu_layernorm_backward(D, dx_, dg_, db_, dout_, x_, mean_, rstd_, gm_, N, Cl);
    cmp("layernorm forward", out, out_, nl, TOL_RED), cmp("layernorm rstd", rstd, rstd_, N, TOL_RED);
    cmp("layernorm dx", dx, dx_, nl, TOL_RED), cmp("layernorm dgamma", dg, dg_, Cl, TOL_RED);
    cmp("layernorm dbeta", db, db_, Cl, TOL_RED);
    float *ps[] = {x_, gm_, bt_, dout_, out_, mean_, rstd_, dx_, dg_, db_};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) dev_free(D, ps[i]);
    free(x), free(gm), free(bt), free(dout), free(out), free(mean), free(rstd), free(dx0), free(dg0), free(db0);
    free(dx), free(dg), free(db);
}

static void test_linear(double tol, const char *tag) {
    int N = 150, C = 48, OC = 40;  // N past one 64-row slice of the bias reduction
    size_t nx = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    float *x = h_rand(nx, 1), *w = h_rand(nw, 0.3f), *b = h_rand(OC, 1), *res = h_rand(no, 1), *dout = h_rand(no, 1);
    float *out = xmalloc(no * 4), *dx0 = h_rand(nx, 1), *dw0 = h_rand(nw, 1), *db0 = h_rand(OC, 1);
    float *dx = h_copy(dx0, nx), *dw = h_copy(dw0, nw), *db = h_copy(db0, OC);
    float *x_ = up(x, nx), *w_ = up(w, nw), *b_ = up(b, OC), *res_ = up(res, no), *dout_ = up(dout, no);
    float *out_ = dev_alloc(D, no), *dx_ = up(dx0, nx), *dw_ = up(dw0, nw), *db_ = up(db0, OC);
    char what[80];
    linear_forward(out, x, w, b, N, C, OC), cu_linear_forward(D, out_, x_, w_, b_, N, C, OC);
    snprintf(what, sizeof what, "linear forward (%s)", tag), cmp(what, out, out_, no, tol);
    linear_residual_forward(out, x, w, b, res, N, C, OC);
    cu_linear_residual_forward(D, out_, x_, w_, b_, res_, N, C, OC);
    snprintf(what, sizeof what, "linear + residual (%s)", tag), cmp(what, out, out_, no, tol);
    linear_backward(dx, dw, db, dout, x, w, N, C, OC), cu_linear_backward(D, dx_, dw_, db_, dout_, x_, w_, N, C, OC);
    snprintf(what, sizeof what, "linear dx (%s)", tag), cmp(what, dx, dx_, nx, tol);
    snprintf(what, sizeof what, "linear dw (%s)", tag), cmp(what, dw, dw_, nw, tol);
    snprintf(what, sizeof what, "linear db (%s)", tag), cmp(what, db, db_, OC, TOL_RED);
    float *ps[] = {x_, w_, b_, res_, dout_, out_, dx_, dw_, db_};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) dev_free(D, ps[i]);
    free(x), free(w), free(b), free(res), free(dout), free(out), free(dx0), free(dw0), free(db0), free(dx), free(dw);
    free(db);
}

static void test_linear_fp32(void) { test_linear(TOL_RED, "fp32"); }

// Every conv case on the context's current convolution path (dev_conv): forward,
// dx, dw, db against the CPU within tol; with `repeat`, the backward once more
// from the same starting gradients must give the same bits (the cuDNN path
// takes deterministic algorithms only).
static void conv_cases(const char *tag, double tol, int repeat) {
    struct {
        int B, Cin, H, W, Cout, k, stride, pad;
    } cs[] = {{2, 5, 9, 7, 6, 3, 1, 1}, {3, 4, 9, 8, 5, 3, 2, 1}, {2, 6, 5, 5, 3, 1, 1, 0}, {1, 3, 6, 6, 4, 1, 2, 0}};
    for (size_t t = 0; t < sizeof cs / sizeof *cs; t++) {
        int B = cs[t].B, Ci = cs[t].Cin, H = cs[t].H, W = cs[t].W, Co = cs[t].Cout, k = cs[t].k, st = cs[t].stride,
            pd = cs[t].pad;
        int Ho = conv2d_out_size(H, k, st, pd), Wo = conv2d_out_size(W, k, st, pd);
        size_t nx = (size_t)B * Ci * H * W, nw = (size_t)Co * Ci * k * k, no = (size_t)B * Co * Ho * Wo;
        float *x = h_rand(nx, 1), *w = h_rand(nw, 0.3f), *b = h_rand(Co, 1), *dout = h_rand(no, 1);
        float *out = xmalloc(no * 4), *dx0 = h_rand(nx, 1), *dw0 = h_rand(nw, 1), *db0 = h_rand(Co, 1);
        float *dx = h_copy(dx0, nx), *dw = h_copy(dw0, nw), *db = h_copy(db0, Co);
        float *scratch = xmalloc(conv2d_scratch_floats(Ci, H, W, k, st, pd) * 4 + 4);
        float *x_ = up(x, nx), *w_ = up(w, nw), *b_ = up(b, Co), *dout_ = up(dout, no), *out_ = dev_alloc(D, no);
        float *dx_ = up(dx0, nx), *dw_ = up(dw0, nw), *db_ = up(db0, Co);
        conv2d_forward(out, x, w, b, B, Ci, H, W, Co, k, st, pd, scratch);
        cu_conv2d_forward(D, out_, x_, w_, b_, B, Ci, H, W, Co, k, st, pd);
        conv2d_backward(dx, dw, db, dout, x, w, B, Ci, H, W, Co, k, st, pd, scratch);
        cu_conv2d_backward(D, dx_, dw_, db_, dout_, x_, w_, B, Ci, H, W, Co, k, st, pd);
        char what[4][96];
        const char *part[] = {"forward", "dx", "dw", "db"};
        for (int i = 0; i < 4; i++)
            snprintf(what[i], sizeof what[i], "conv %dx%d s%d p%d %s (%s)", k, k, st, pd, part[i], tag);
        cmp(what[0], out, out_, no, tol), cmp(what[1], dx, dx_, nx, tol);
        cmp(what[2], dw, dw_, nw, tol), cmp(what[3], db, db_, Co, TOL_RED);
        if (repeat) {
            float *first_dx = xmalloc(nx * 4), *first_dw = xmalloc(nw * 4), *again = xmalloc((nx > nw ? nx : nw) * 4);
            dev_download(D, first_dx, dx_, nx), dev_download(D, first_dw, dw_, nw);
            dev_upload(D, dx_, dx0, nx), dev_upload(D, dw_, dw0, nw), dev_upload(D, db_, db0, Co);
            cu_conv2d_backward(D, dx_, dw_, db_, dout_, x_, w_, B, Ci, H, W, Co, k, st, pd);
            dev_download(D, again, dx_, nx);
            int same = !memcmp(again, first_dx, nx * 4);
            dev_download(D, again, dw_, nw);
            same = same && !memcmp(again, first_dw, nw * 4);
            EXPECT(same, "conv %dx%d s%d p%d (%s): the backward did not repeat bit for bit", k, k, st, pd, tag);
            printf("%-4s conv %dx%d s%d p%d backward repeats bit for bit (%s)\n", same ? "ok" : "FAIL", k, k, st, pd,
                   tag);
            free(first_dx), free(first_dw), free(again);
        }
        float *ps[] = {x_, w_, b_, dout_, out_, dx_, dw_, db_};
        for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) dev_free(D, ps[i]);
        free(x), free(w), free(b), free(dout), free(out), free(dx0), free(dw0), free(db0), free(dx), free(dw);
        free(db), free(scratch);
    }
}

// Both convolution paths: conv.cu's im2col + cuBLAS, and cuDNN where the build
// has it (on the emulator, its emulated cuDNN), which must not fall back.
static void test_conv(void) {
    conv_cases("im2col", TOL_RED, 1);
    if (!dev_has_cudnn()) {
        printf("skip conv on cuDNN: this build has none\n");
        return;
    }
    Error e = {0};
    if (dev_set_conv(D, DEV_CONV_CUDNN, &e)) {
        EXPECT(0, "cuDNN did not start: %s", e.msg);
        return;
    }
    long fell0 = dev_conv_fallbacks(D);
    conv_cases("cudnn", TOL_RED, 1);
    long fell = dev_conv_fallbacks(D) - fell0;
    // a GPU's cuDNN may lack a deterministic algorithm for a shape (the GEMM path
    // then runs and the cases above still check it); the emulated one never does
    if (dev_is_emulated()) EXPECT(fell == 0, "%ld cuDNN convolution calls fell back to im2col", fell);
    printf("%-4s conv on cuDNN: %ld of its calls fell back to im2col\n", fell && dev_is_emulated() ? "FAIL" : "ok",
           fell);
    dev_set_conv(D, DEV_CONV_GEMM, &e);
}

// Attention against the CPU's attention_flash_* on the context's current
// attention path and precision, within tol; each case runs forward and backward.
// Returns the number of cases.
static int attention_cases(double tol, const char *tag) {
    // ragged row counts, head sizes below/above/at multiples of the 32 lanes
    // and of the fused kernel's 16-wide tiles; on a GPU also SD-1.5's first
    // self- and cross-attention shapes at 32x32 latents (the emulator runs a
    // shuffle as two block barriers: too slow there)
    // tq: query rows per tile of the cuBLAS path (the tile budget set to fit
    // that many; 0: the default, one tile here)
    struct {
        int B, Nq, Nk, C, nh, tq;
    } cs[] = {{1, 19, 23, 80, 2, 0},  {1, 19, 23, 80, 2, 4},    {1, 30, 7, 96, 3, 7},     {2, 9, 21, 128, 2, 1},
              {1, 5, 5, 160, 1, 0},   {2, 13, 11, 320, 1, 5},   {1, 70, 90, 80, 2, 0},    {1, 1024, 1024, 320, 8, 0},
              {2, 1024, 77, 320, 8, 0}, {1, 1024, 1024, 320, 8, 100}};
    size_t ncase = sizeof cs / sizeof *cs - (dev_is_emulated() ? 3 : 0);
    size_t tile0 = dev_attention_tile_floats(D);
    for (size_t t = 0; t < ncase; t++) {
        int B = cs[t].B, Nq = cs[t].Nq, Nk = cs[t].Nk, C = cs[t].C, nh = cs[t].nh;
        dev_set_attention_tile_floats(D, cs[t].tq ? (size_t)cs[t].tq * nh * Nk : tile0);
        size_t nq = (size_t)B * Nq * C, nk = (size_t)B * Nk * C, nl = (size_t)B * nh * Nq;
        float *q = h_rand(nq, 2), *k = h_rand(nk, 2), *v = h_rand(nk, 1), *dout = h_rand(nq, 1);
        float *out = xmalloc(nq * 4), *lse = xmalloc(nl * 4);
        float *dq0 = h_rand(nq, 1), *dk0 = h_rand(nk, 1), *dv0 = h_rand(nk, 1);
        float *dq = h_copy(dq0, nq), *dk = h_copy(dk0, nk), *dv = h_copy(dv0, nk);
        float *sc = xmalloc(attention_flash_scratch_floats(B, nh, Nq, Nk, ATTN_TILE_Q, ATTN_TILE_K) * 4);
        float *q_ = up(q, nq), *k_ = up(k, nk), *v_ = up(v, nk), *dout_ = up(dout, nq), *out_ = dev_alloc(D, nq);
        float *lse_ = dev_alloc(D, nl), *dq_ = up(dq0, nq), *dk_ = up(dk0, nk), *dv_ = up(dv0, nk);
        attention_flash_forward(out, lse, q, k, v, B, Nq, Nk, C, nh, ATTN_TILE_Q, ATTN_TILE_K, sc);
        cu_attention_forward(D, out_, lse_, q_, k_, v_, B, Nq, Nk, C, nh);
        attention_flash_backward(dq, dk, dv, dout, q, k, v, out, lse, B, Nq, Nk, C, nh, ATTN_TILE_Q, ATTN_TILE_K, sc);
        cu_attention_backward(D, dq_, dk_, dv_, dout_, q_, k_, v_, out_, lse_, B, Nq, Nk, C, nh);
        char what[5][80];
        const char *part[] = {"out", "lse", "dq", "dk", "dv"};
        for (int i = 0; i < 5; i++)
            snprintf(what[i], sizeof what[i], "attention%s %dx%d C%d h%d tq%d %s", tag, Nq, Nk, C, nh, cs[t].tq,
                     part[i]);
        cmp(what[0], out, out_, nq, tol), cmp(what[1], lse, lse_, nl, tol);
        cmp(what[2], dq, dq_, nq, tol), cmp(what[3], dk, dk_, nk, tol), cmp(what[4], dv, dv_, nk, tol);
        float *ps[] = {q_, k_, v_, dout_, out_, lse_, dq_, dk_, dv_};
        for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) dev_free(D, ps[i]);
        free(q), free(k), free(v), free(dout), free(out), free(lse), free(dq0), free(dk0), free(dv0), free(dq);
        free(dk), free(dv), free(sc);
    }
    dev_set_attention_tile_floats(D, tile0);
    return (int)ncase;
}

// Backward with only dq, or only dk and dv, asked for (NULL for the rest) gives
// those gradients bit for bit as the call asking for all three, on the
// context's current path.
static void attention_partial(const char *tag) {
    int B = 2, Nq = 21, Nk = 19, C = 96, nh = 2;
    size_t nq = (size_t)B * Nq * C, nk = (size_t)B * Nk * C, nl = (size_t)B * nh * Nq;
    float *q = h_rand(nq, 2), *k = h_rand(nk, 2), *v = h_rand(nk, 1), *g = h_rand(nq, 1);
    float *q_ = up(q, nq), *k_ = up(k, nk), *v_ = up(v, nk), *g_ = up(g, nq), *o_ = dev_alloc(D, nq);
    float *l_ = dev_alloc(D, nl), *dq[2], *dk[2], *dv[2];
    cu_attention_forward(D, o_, l_, q_, k_, v_, B, Nq, Nk, C, nh);
    for (int i = 0; i < 2; i++) {
        dq[i] = dev_alloc(D, nq), dk[i] = dev_alloc(D, nk), dv[i] = dev_alloc(D, nk);
        dev_zero(D, dq[i], nq), dev_zero(D, dk[i], nk), dev_zero(D, dv[i], nk);
    }
    cu_attention_backward(D, dq[0], dk[0], dv[0], g_, q_, k_, v_, o_, l_, B, Nq, Nk, C, nh);
    cu_attention_backward(D, dq[1], NULL, NULL, g_, q_, k_, v_, o_, l_, B, Nq, Nk, C, nh);
    cu_attention_backward(D, NULL, dk[1], dv[1], g_, q_, k_, v_, o_, l_, B, Nq, Nk, C, nh);
    const char *name[] = {"dq", "dk", "dv"};
    float **bufs[] = {dq, dk, dv};
    for (int j = 0; j < 3; j++) {
        size_t n = j ? nk : nq;
        float *a = xmalloc(n * 4), *b = xmalloc(n * 4);
        dev_download(D, a, bufs[j][0], n), dev_download(D, b, bufs[j][1], n);
        int same = !memcmp(a, b, n * 4);
        EXPECT(same, "attention%s backward: %s alone differs from %s with the others", tag, name[j], name[j]);
        printf("%-4s attention%s backward: %s asked for alone = with the others, bit for bit\n", same ? "ok" : "FAIL",
               tag, name[j]);
        free(a), free(b);
    }
    float *ps[] = {q_, k_, v_, g_, o_, l_, dq[0], dk[0], dv[0], dq[1], dk[1], dv[1]};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) dev_free(D, ps[i]);
    free(q), free(k), free(v), free(g);
}

static void test_attention(void) {
    attention_cases(TOL_ATTN, "");
    attention_partial("");
}

// The fused kernel (attention_fused.cu) at TF32 and BF16 against the CPU's
// fp32: every case must run fused (counted), not fall back to cuBLAS.
static void test_attention_fused(void) {
    struct {
        GemmPrecision p;
        double tol;
        const char *tag;
    } ps[] = {{GEMM_TF32, TOL_ATTN_TF32, " fused tf32"}, {GEMM_BF16, TOL_ATTN_BF16, " fused bf16"}};
    dev_set_attention(D, DEV_ATTN_FUSED);
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) {
        dev_set_precision(D, ps[i].p);
        long before = dev_attention_fused_calls(D);
        int ncase = attention_cases(ps[i].tol, ps[i].tag);
        long ran = dev_attention_fused_calls(D) - before;
        attention_partial(ps[i].tag);
        EXPECT(ran == 2 * ncase, "fused attention at %s ran %ld of %d calls", gemm_precision_name(ps[i].p), ran,
               2 * ncase);
        printf("%-4s fused attention at %s ran %ld of %d calls\n", ran == 2 * ncase ? "ok" : "FAIL",
               gemm_precision_name(ps[i].p), ran, 2 * ncase);
    }
    // at fp32 the fused kernel does not run (no fp32 tensor-core path): the cuBLAS tiles do
    dev_set_precision(D, GEMM_FP32);
    long before = dev_attention_fused_calls(D);
    attention_cases(TOL_ATTN, " fused-mode fp32");
    EXPECT(dev_attention_fused_calls(D) == before, "fused attention ran at fp32");
    dev_set_attention(D, DEV_ATTN_TILED);
}

static void test_losses(void) {
    size_t n = 70001;
    float *a = h_rand(n, 1), *b = h_rand(n, 1), *a_ = up(a, n), *b_ = up(b, n);
    cmp_scalar("mse forward", mse_forward(a, b, n), cu_mse_forward(D, a_, b_, n), 1e-12);
    float *da0 = h_rand(n, 1), *db0 = h_rand(n, 1), *da = h_copy(da0, n), *db = h_copy(db0, n);
    float *da_ = up(da0, n), *db_ = up(db0, n);
    mse_backward(da, db, a, b, n, 0.7f), cu_mse_backward(D, da_, db_, a_, b_, n, 0.7f);
    cmp("mse backward (a)", da, da_, n, TOL_ELEM), cmp("mse backward (b)", db, db_, n, TOL_ELEM);

    // the distillation feature term: 3 samples of 1000, one all-zero teacher sample
    int bs = 3;
    size_t m = 1000;
    float *S = h_rand(bs * m, 1), *T = h_rand(bs * m, 1);
    memset(T + m, 0, m * sizeof(float));
    float *S_ = up(S, bs * m), *T_ = up(T, bs * m);
    for (int normalized = 0; normalized < 2; normalized++) {
        float *g0 = h_rand(bs * m, 1), *g = h_copy(g0, bs * m), *g_ = up(g0, bs * m);
        double raw, nrm, raw_, nrm_;
        feat_term(S, T, bs, m, normalized, 8.0, 0.3f, &raw, &nrm, g);
        cu_feat_term(D, S_, T_, bs, m, normalized, 8.0, 0.3f, &raw_, &nrm_, g_);
        cmp_scalar(normalized ? "feature term raw (normalized)" : "feature term raw", raw, raw_, 1e-12);
        cmp_scalar(normalized ? "feature term norm (normalized)" : "feature term norm", nrm, nrm_, 1e-12);
        cmp(normalized ? "feature term dS (normalized)" : "feature term dS (raw)", g, g_, bs * m, TOL_ELEM);
        free(g0), free(g), dev_free(D, g_);
    }

    // gradient norm and clipping
    float *gr = h_rand(n, 0.01f), *gr_ = up(gr, n);
    double nc = grad_norm(gr, n);
    cmp_scalar("gradient norm", nc, cu_grad_norm(D, gr_, n), 1e-12);
    double pc = grad_clip(gr, n, nc / 4), pg = cu_clip(D, gr_, n, nc / 4);
    cmp_scalar("clip: norm before", pc, pg, 1e-12);
    cmp("clip: clipped gradients", gr, gr_, n, TOL_ELEM);

    // AdamW (three updates, so the bias corrections move) and the EMA
    float *p = h_rand(n, 1), *p_ = up(p, n), *m0 = xcalloc(n, 4), *v0 = xcalloc(n, 4);
    float *m_ = up(m0, n), *v_ = up(v0, n), *ema = h_copy(p, n), *ema_ = up(p, n);
    AdamW aw = {.n = n, .m = m0, .v = v0, .ema = ema, .step = 0, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                .weight_decay = 0.01, .ema_decay = 0.99};
    for (int s = 0; s < 3; s++) {
        float *g = h_rand(n, 0.1f), *g_ = up(g, n);
        adamw_step(&aw, p, g, 1e-3);
        cu_adamw_step(D, p_, g_, m_, v_, n, 1e-3, aw.step, 0.9, 0.999, 1e-8, 0.01);
        adamw_ema_update(&aw, p);
        cu_ema_update(D, ema_, p_, n, 0.99);
        free(g), dev_free(D, g_);
    }
    cmp("adamw params", p, p_, n, TOL_ELEM), cmp("adamw m", m0, m_, n, TOL_ELEM), cmp("adamw v", v0, v_, n, TOL_ELEM);
    cmp("ema", ema, ema_, n, TOL_ELEM);
    float *ps[] = {a_, b_, da_, db_, S_, T_, gr_, p_, m_, v_, ema_};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) dev_free(D, ps[i]);
    free(a), free(b), free(da0), free(db0), free(da), free(db), free(S), free(T), free(gr), free(p), free(m0);
    free(v0), free(ema);
}

// The precision knob must change the products (BF16 is not silently FP32) and
// stay within its bound: relative RMS of a K=512 product against fp32.
static void test_precision(void) {
    int M = 64, N = 48, K = 512;
    float *A = h_rand((size_t)M * K, 1), *B = h_rand((size_t)K * N, 1), *C = xmalloc((size_t)M * N * 4);
    gemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    float *A_ = up(A, (size_t)M * K), *B_ = up(B, (size_t)K * N), *C_ = dev_alloc(D, (size_t)M * N);
    struct {
        GemmPrecision p;
        double bound;
    } ps[] = {{GEMM_FP32, 1e-6}, {GEMM_TF32, 2e-3}, {GEMM_BF16, 1.5e-2}};
    for (int i = 0; i < 3; i++) {
        dev_set_precision(D, ps[i].p);
        dev_gemm(D, 0, 0, M, N, K, 1.0f, A_, K, B_, N, 0.0f, C_, N);
        char what[64];
        snprintf(what, sizeof what, "gemm precision %s", gemm_precision_name(ps[i].p));
        cmp(what, C, C_, (size_t)M * N, ps[i].bound);
        if (ps[i].p == GEMM_BF16) differs_from_fp32("gemm bf16", C, C_, (size_t)M * N, 1e-4);
    }
    dev_set_precision(D, GEMM_FP32);
    // linear layers through the same knob
    dev_set_precision(D, GEMM_BF16);
    test_linear(1.5e-2, "bf16");
    dev_set_precision(D, GEMM_FP32);
    // cuDNN's convolutions through the same knob: TF32 at tf32 (and at bf16, on
    // fp32 tensors), FP32 at fp32; on the emulator the TF32 rounding must show
    Error e = {0};
    if (dev_has_cudnn() && !dev_set_conv(D, DEV_CONV_CUDNN, &e)) {
        int Bc = 2, Ci = 32, Hc = 12, Co = 16;  // K = 288 per output
        size_t nx = (size_t)Bc * Ci * Hc * Hc, nw = (size_t)Co * Ci * 9, no = (size_t)Bc * Co * Hc * Hc;
        float *x = h_rand(nx, 1), *w = h_rand(nw, 0.3f), *o = xmalloc(no * 4), *o32 = xmalloc(no * 4);
        float *sc = xmalloc(conv2d_scratch_floats(Ci, Hc, Hc, 3, 1, 1) * 4 + 4);
        conv2d_forward(o, x, w, NULL, Bc, Ci, Hc, Hc, Co, 3, 1, 1, sc);
        float *x_ = up(x, nx), *w_ = up(w, nw), *o_ = dev_alloc(D, no);
        cu_conv2d_forward(D, o_, x_, w_, NULL, Bc, Ci, Hc, Hc, Co, 3, 1, 1);
        cmp("conv cudnn precision fp32", o, o_, no, TOL_RED);
        dev_download(D, o32, o_, no);
        GemmPrecision fast[] = {GEMM_TF32, GEMM_BF16};
        for (int i = 0; i < 2; i++) {
            dev_set_precision(D, fast[i]);
            cu_conv2d_forward(D, o_, x_, w_, NULL, Bc, Ci, Hc, Hc, Co, 3, 1, 1);
            char what[64];
            snprintf(what, sizeof what, "conv cudnn precision %s (TF32)", gemm_precision_name(fast[i]));
            cmp(what, o, o_, no, 2e-3);
            snprintf(what, sizeof what, "conv cudnn %s", gemm_precision_name(fast[i]));
            if (dev_is_emulated()) differs_from_fp32(what, o32, o_, no, 1e-5);
        }
        dev_set_precision(D, GEMM_FP32);
        dev_set_conv(D, DEV_CONV_GEMM, &e);
        dev_free(D, x_), dev_free(D, w_), dev_free(D, o_);
        free(x), free(w), free(o), free(o32), free(sc);
    } else if (dev_has_cudnn()) {
        EXPECT(0, "cuDNN did not start: %s", e.msg);
    }
    dev_free(D, A_), dev_free(D, B_), dev_free(D, C_);
    free(A), free(B), free(C);
}

int main(void) {
    int rc = gpu_test_start();
    if (rc) return rc;
    tu_rng_seed(&rng, 1);
    Error e = {0};
    D = dev_open(0, GEMM_FP32, &e);
    if (!D) {
        fprintf(stderr, "FAIL: %s\n", e.msg);
        return 1;
    }
    char what[256];
    dev_describe(D, what, sizeof what);
    printf("device: %s%s\n", what, dev_is_emulated() ? " (emulated on the host: not a GPU result)" : "");
    struct {
        const char *name;
        void (*fn)(void);
    } groups[] = {{"elementwise", test_elementwise}, {"layout", test_layout}, {"norms", test_norms},
                  {"linear", test_linear_fp32},    {"conv", test_conv},     {"attention", test_attention},
                  {"attention_fused", test_attention_fused},
                  {"losses", test_losses},         {"precision", test_precision}};
    for (size_t i = 0; i < sizeof groups / sizeof *groups; i++) {
        double t0 = now_s();
        groups[i].fn();
        printf("-- %s: %.2f s\n", groups[i].name, now_s() - t0);
    }
    dev_close(D);
    return tu_report("test_gpu_ops");
}
