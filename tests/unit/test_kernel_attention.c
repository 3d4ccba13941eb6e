// test_kernel_attention.c — multi-head attention with diffusers' interleaved
// heads: output and saved probabilities against a double loop, dq/dk/dv against
// finite differences of it (self- and cross-attention shapes, several head
// counts), gradients pre-filled to check accumulation.
#include "kernel_check.h"
#include "kernels/kernels.h"

typedef struct {
    int B, Nq, Nk, C, nh;
    double *q, *k, *v, *R, *out, *probs, *row;
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
                  xmalloc(nq * sizeof(double)), xmalloc(np * sizeof(double)), xmalloc(Nk * sizeof(double))};
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

    free(q), free(k), free(v), free(R), free(out), free(probs), free(scratch);
    free(dq), free(dk), free(dv), free(dq0), free(dk0), free(dv0), free(dq1), free(dk1), free(dv1);
    free(gq), free(gk), free(gv);
    free(c.q), free(c.k), free(c.v), free(c.R), free(c.out), free(c.probs), free(c.row);
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
    return tu_report("test_kernel_attention");
}
