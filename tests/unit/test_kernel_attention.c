// test_kernel_attention.c — multi-head attention with diffusers' interleaved
// heads: output and saved probabilities against a double loop, dq/dk/dv against
// finite differences of it (self- and cross-attention shapes, several head
// counts), gradients pre-filled to check accumulation. The tiled
// (FlashAttention-style) kernel the same way, at tile sizes that do not divide
// Nq or Nk, and against the reference kernel; its scratch size is asserted.
#include <omp.h>

#include "kernel_check.h"
#include "kernels/kernels.h"

typedef struct {
    int B, Nq, Nk, C, nh;
    double *q, *k, *v, *R, *out, *probs, *row, *lse;
} AttnCase;

static void ref_attention(AttnCase *c) {
    int d = c->C / c->nh;
    double scale = 1 / sqrt((double)d);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->nh; h++)
            for (int i = 0; i < c->Nq; i++) {
                const double *qi = c->q + ((size_t)b * c->Nq + i) * c->C + h * d;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < c->Nk; j++) {
                    const double *kj = c->k + ((size_t)b * c->Nk + j) * c->C + h * d;
                    double s = 0;
                    for (int t = 0; t < d; t++) s += qi[t] * kj[t];
                    c->row[j] = s * scale;
                    if (c->row[j] > mx) mx = c->row[j];
                }
                for (int j = 0; j < c->Nk; j++) sum += (c->row[j] = exp(c->row[j] - mx));
                c->lse[((size_t)b * c->nh + h) * c->Nq + i] = mx + log(sum);
                double *p = c->probs + (((size_t)b * c->nh + h) * c->Nq + i) * c->Nk;
                for (int j = 0; j < c->Nk; j++) p[j] = c->row[j] / sum;
                double *o = c->out + ((size_t)b * c->Nq + i) * c->C + h * d;
                for (int t = 0; t < d; t++) {
                    double s = 0;
                    for (int j = 0; j < c->Nk; j++) s += p[j] * c->v[((size_t)b * c->Nk + j) * c->C + h * d + t];
                    o[t] = s;
                }
            }
}

static double attn_loss(void *ctx) {
    AttnCase *c = ctx;
    ref_attention(c);
    return kc_dot(c->out, c->R, (size_t)c->B * c->Nq * c->C);
}

static void check_attention(TuRng *rng, int B, int Nq, int Nk, int C, int nh, float qrange) {
    size_t nq = (size_t)B * Nq * C, nk = (size_t)B * Nk * C, np = (size_t)B * nh * Nq * Nk;
    float *q = kc_rand(rng, nq, -qrange, qrange), *k = kc_rand(rng, nk, -qrange, qrange);
    float *v = kc_rand(rng, nk, -1, 1), *R = kc_rand(rng, nq, -1, 1);
    float *out = xmalloc(nq * sizeof(float)), *probs = xmalloc(np * sizeof(float));
    float *scratch = xmalloc(attention_scratch_floats(Nq, Nk) * sizeof(float));
    AttnCase c = {B, Nq, Nk, C, nh, kc_dup(q, nq), kc_dup(k, nk), kc_dup(v, nk), kc_dup(R, nq),
                  xmalloc(nq * sizeof(double)), xmalloc(np * sizeof(double)), xmalloc(Nk * sizeof(double)),
                  xmalloc((size_t)B * nh * Nq * sizeof(double))};
    char tag[96];
    snprintf(tag, sizeof tag, "attention B%d Nq%d Nk%d C%d nh%d range %g", B, Nq, Nk, C, nh, qrange);

    attention_forward(out, probs, q, k, v, B, Nq, Nk, C, nh);
    ref_attention(&c);
    kc_expect_close(kc_rel_err(out, c.out, nq, 1e-3), KC_FWD_TOL, "%s out", tag);
    kc_expect_close(kc_rel_err(probs, c.probs, np, 1e-3), KC_FWD_TOL, "%s probs", tag);

    float *dq = kc_rand(rng, nq, -1, 1), *dk = kc_rand(rng, nk, -1, 1), *dv = kc_rand(rng, nk, -1, 1);
    float *dq0 = kc_fcopy(dq, nq), *dk0 = kc_fcopy(dk, nk), *dv0 = kc_fcopy(dv, nk);
    attention_backward(dq, dk, dv, R, q, k, v, probs, B, Nq, Nk, C, nh, scratch);
    double *gq = xmalloc(nq * sizeof(double)), *gk = xmalloc(nk * sizeof(double));
    double *gv = xmalloc(nk * sizeof(double));
    kc_fd_grad(attn_loss, &c, c.q, nq, gq);
    kc_fd_grad(attn_loss, &c, c.k, nk, gk);
    kc_fd_grad(attn_loss, &c, c.v, nk, gv);
    kc_expect_close(kc_rel_err_acc(dq, dq0, gq, nq, 1e-3), KC_BWD_TOL, "%s dq", tag);
    kc_expect_close(kc_rel_err_acc(dk, dk0, gk, nk, 1e-3), KC_BWD_TOL, "%s dk", tag);
    kc_expect_close(kc_rel_err_acc(dv, dv0, gv, nk, 1e-3), KC_BWD_TOL, "%s dv", tag);
    // Gradients one at a time (the others NULL) equal the full call.
    float *dq1 = kc_fcopy(dq0, nq), *dk1 = kc_fcopy(dk0, nk), *dv1 = kc_fcopy(dv0, nk);
    attention_backward(dq1, NULL, NULL, R, q, k, v, probs, B, Nq, Nk, C, nh, scratch);
    attention_backward(NULL, dk1, NULL, R, q, k, v, probs, B, Nq, Nk, C, nh, scratch);
    attention_backward(NULL, NULL, dv1, R, q, k, v, probs, B, Nq, Nk, C, nh, scratch);
    EXPECT(memcmp(dq1, dq, nq * sizeof(float)) == 0, "%s: dq alone differs", tag);
    EXPECT(memcmp(dk1, dk, nk * sizeof(float)) == 0, "%s: dk alone differs", tag);
    EXPECT(memcmp(dv1, dv, nk * sizeof(float)) == 0, "%s: dv alone differs", tag);


    // The tiled kernel at tile sizes that split Nq and Nk unevenly, and at the default tiles.
    int tiles[][2] = {{1, 1}, {2, 3}, {3, 2}, {4, 4}, {ATTN_TILE_Q, ATTN_TILE_K}};
    size_t nl = (size_t)B * nh * Nq;
    for (size_t ti = 0; ti < sizeof tiles / sizeof *tiles; ti++) {
        int tq = tiles[ti][0], tk = tiles[ti][1];
        char tt[128];
        snprintf(tt, sizeof tt, "%s flash tq%d tk%d", tag, tq, tk);
        float *fs = xmalloc(attention_flash_scratch_floats(B, nh, Nq, Nk, tq, tk) * sizeof(float));
        float *fo = xmalloc(nq * sizeof(float)), *lse = xmalloc(nl * sizeof(float));
        attention_flash_forward(fo, lse, q, k, v, B, Nq, Nk, C, nh, tq, tk, fs);
        kc_expect_close(kc_rel_err(fo, c.out, nq, 1e-3), KC_FWD_TOL, "%s out", tt);
        kc_expect_close(kc_rel_err(lse, c.lse, nl, 1e-3), KC_FWD_TOL, "%s lse", tt);
        double *dout = kc_dup(out, nq);  // the reference kernel's output, in double
        kc_expect_close(kc_rel_err(fo, dout, nq, 1e-3), KC_FWD_TOL, "%s out vs attention_forward", tt);
        float *fq = kc_fcopy(dq0, nq), *fk = kc_fcopy(dk0, nk), *fv = kc_fcopy(dv0, nk);
        attention_flash_backward(fq, fk, fv, R, q, k, v, fo, lse, B, Nq, Nk, C, nh, tq, tk, fs);
        kc_expect_close(kc_rel_err_acc(fq, dq0, gq, nq, 1e-3), KC_BWD_TOL, "%s dq", tt);
        kc_expect_close(kc_rel_err_acc(fk, dk0, gk, nk, 1e-3), KC_BWD_TOL, "%s dk", tt);
        kc_expect_close(kc_rel_err_acc(fv, dv0, gv, nk, 1e-3), KC_BWD_TOL, "%s dv", tt);
        // against the reference kernel's gradients (float, so a tighter bound than finite differences)
        double *rq = kc_dup(dq, nq), *rk = kc_dup(dk, nk), *rv = kc_dup(dv, nk);
        for (size_t i = 0; i < nq; i++) rq[i] -= dq0[i];  // the reference's own contribution
        for (size_t i = 0; i < nk; i++) rk[i] -= dk0[i], rv[i] -= dv0[i];
        kc_expect_close(kc_rel_err_acc(fq, dq0, rq, nq, 1e-3), 1e-4, "%s dq vs attention_backward", tt);
        kc_expect_close(kc_rel_err_acc(fk, dk0, rk, nk, 1e-3), 1e-4, "%s dk vs attention_backward", tt);
        kc_expect_close(kc_rel_err_acc(fv, dv0, rv, nk, 1e-3), 1e-4, "%s dv vs attention_backward", tt);
        // one gradient at a time equals the full call, bit for bit
        float *f1 = kc_fcopy(dq0, nq), *f2 = kc_fcopy(dk0, nk), *f3 = kc_fcopy(dv0, nk);
        attention_flash_backward(f1, NULL, NULL, R, q, k, v, fo, lse, B, Nq, Nk, C, nh, tq, tk, fs);
        attention_flash_backward(NULL, f2, NULL, R, q, k, v, fo, lse, B, Nq, Nk, C, nh, tq, tk, fs);
        attention_flash_backward(NULL, NULL, f3, R, q, k, v, fo, lse, B, Nq, Nk, C, nh, tq, tk, fs);
        EXPECT(memcmp(f1, fq, nq * sizeof(float)) == 0, "%s: dq alone differs", tt);
        EXPECT(memcmp(f2, fk, nk * sizeof(float)) == 0, "%s: dk alone differs", tt);
        EXPECT(memcmp(f3, fv, nk * sizeof(float)) == 0, "%s: dv alone differs", tt);
        // one thread gives the same bits as two: the thread count only picks who does a row
        int nt = omp_get_max_threads();
        omp_set_num_threads(1);
        float *o1 = xmalloc(nq * sizeof(float)), *l1 = xmalloc(nl * sizeof(float));
        attention_flash_forward(o1, l1, q, k, v, B, Nq, Nk, C, nh, tq, tk, fs);
        float *g1 = kc_fcopy(dq0, nq), *gk1 = kc_fcopy(dk0, nk), *gv1 = kc_fcopy(dv0, nk);
        attention_flash_backward(g1, gk1, gv1, R, q, k, v, fo, lse, B, Nq, Nk, C, nh, tq, tk, fs);
        omp_set_num_threads(nt);
        EXPECT(memcmp(o1, fo, nq * sizeof(float)) == 0 && memcmp(l1, lse, nl * sizeof(float)) == 0,
               "%s: forward at 1 thread differs from %d threads", tt, nt);
        EXPECT(memcmp(g1, fq, nq * sizeof(float)) == 0 && memcmp(gk1, fk, nk * sizeof(float)) == 0 &&
                   memcmp(gv1, fv, nk * sizeof(float)) == 0,
               "%s: dq, dk, dv at 1 thread differ from %d threads", tt, nt);
        free(gk1), free(gv1);
        free(fs), free(fo), free(lse), free(dout), free(fq), free(fk), free(fv), free(rq), free(rk), free(rv);
        free(f1), free(f2), free(f3), free(o1), free(l1), free(g1);
    }

    free(q), free(k), free(v), free(R), free(out), free(probs), free(scratch);
    free(dq), free(dk), free(dv), free(dq0), free(dk0), free(dv0), free(dq1), free(dk1), free(dv1);
    free(gq), free(gk), free(gv);
    free(c.q), free(c.k), free(c.v), free(c.R), free(c.out), free(c.probs), free(c.row), free(c.lse);
}

// The tiled kernel's scratch is O(Nq + tile^2): SD-1.5's 64x64 latents (4096
// tokens) need 2*256*256 + 4096 floats, where the probabilities would be 4096^2.
static void check_flash_sizes(void) {
    EXPECT(attention_flash_scratch_floats(1, 1, 4096, 4096, 256, 256) == 2 * 256 * 256 + 4096, "scratch at 4096 tokens");
    EXPECT(attention_flash_scratch_floats(1, 1, 16384, 16384, 256, 256) == 2 * 256 * 256 + 16384, "scratch at 16384");
    EXPECT(attention_flash_scratch_floats(1, 1, 4096, 77, 256, 256) == 2 * 256 * 77 + 4096, "scratch, cross-attention");
    // tiles larger than the problem shrink to it
    EXPECT(attention_flash_scratch_floats(1, 1, 5, 7, 256, 256) == 2 * 5 * 7 + 5, "scratch, small");
    EXPECT(attention_flash_scratch_floats(1, 1, 9, 1, 4, 4) == 2 * 4 * 1 + 9, "scratch, Nk = 1");
    // one worker's share per thread, at most one per (sample, head) pair
    int t = omp_get_max_threads(), w = t < 12 ? t : 12;
    EXPECT(attention_flash_scratch_floats(3, 4, 5, 7, 256, 256) == (size_t)w * (2 * 5 * 7 + 5),
           "scratch for 3 samples x 4 heads at %d threads", t);
    EXPECT(attention_flash_scratch_floats(1, 1, 5, 7, 256, 256) == 2 * 5 * 7 + 5, "one pair: one worker");
    for (int n = 512; n <= 65536; n *= 2)
        EXPECT(attention_flash_scratch_floats(1, 1, n, n, 256, 256) - (size_t)n == 2 * 256 * 256,
               "scratch at %d tokens grows with Nq only", n);
}

int main(void) {
    TuRng rng;
    tu_rng_seed(&rng, 2024);
    check_attention(&rng, 2, 6, 6, 8, 2, 1);     // self-attention
    check_attention(&rng, 2, 5, 7, 12, 3, 1);    // cross-attention, Nq != Nk
    check_attention(&rng, 3, 4, 9, 6, 1, 1);     // a single head
    check_attention(&rng, 1, 7, 3, 16, 8, 1);    // head dim 2, Nk < Nq
    check_attention(&rng, 2, 3, 5, 8, 4, 6);     // peaked softmax (large logits)
    check_attention(&rng, 1, 1, 1, 4, 2, 1);     // a single key: probabilities all 1
    check_attention(&rng, 2, 7, 1, 6, 2, 1);     // Nk = 1 with several query rows
    check_attention(&rng, 1, 11, 13, 8, 2, 4);   // several tiles both ways, peaked
    check_attention(&rng, 2, 20, 37, 32, 2, 2);  // rows past 8 lanes with a tail (vector loops)
    check_flash_sizes();
    return tu_report("test_kernel_attention");
}
