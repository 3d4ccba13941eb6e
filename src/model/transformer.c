// transformer.c — see transformer.h.
#include "model/transformer.h"

#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "kernels/kernels.h"

static const float GN_EPS = 1e-6f;  // Transformer2DModel's GroupNorm
static const float LN_EPS = 1e-5f;  // BasicTransformerBlock's LayerNorms

void transformer_init(Transformer *t, ParamTable *pt, const char *prefix, int C, int heads,
                      int n_layers, int linear_proj, int cross_dim, int groups) {
    transformer_init_pruned(t, pt, prefix, C, heads, n_layers, linear_proj, cross_dim, groups, NULL);
}

void transformer_init_pruned(Transformer *t, ParamTable *pt, const char *prefix, int C, int heads, int n_layers,
                             int linear_proj, int cross_dim, int groups, const uint8_t *absent_blocks) {
    memset(t, 0, sizeof *t);
    snprintf(t->prefix, sizeof t->prefix, "%s", prefix);
    t->C = C, t->heads = heads, t->n_layers = n_layers, t->linear_proj = linear_proj;
    t->cross_dim = cross_dim, t->groups = groups, t->cand = -1;
    t->first_tensor = pt->n;
    t->gnw = params_add(pt, prefix, "norm.weight", 1, C, 0, 0, 0);
    t->gnb = params_add(pt, prefix, "norm.bias", 1, C, 0, 0, 0);
    if (linear_proj)
        t->piw = params_add(pt, prefix, "proj_in.weight", 2, C, C, 0, 0);
    else
        t->piw = params_add(pt, prefix, "proj_in.weight", 4, C, C, 1, 1);
    t->pib = params_add(pt, prefix, "proj_in.bias", 1, C, 0, 0, 0);
    t->blk = xcalloc((size_t)n_layers, sizeof *t->blk);
    for (int i = 0; i < n_layers; i++) {
        TBlock *b = &t->blk[i];
        b->cand = -1;
        b->first_tensor = b->end_tensor = pt->n;
        if (absent_blocks && absent_blocks[i]) {
            b->skip = 1;
            continue;
        }
        b->present = 1;
        char p[LD_NAME_MAX];
        snprintf(p, sizeof p, "%s.transformer_blocks.%d", prefix, i);
        b->n1w = params_add(pt, p, "norm1.weight", 1, C, 0, 0, 0);
        b->n1b = params_add(pt, p, "norm1.bias", 1, C, 0, 0, 0);
        b->q1 = params_add(pt, p, "attn1.to_q.weight", 2, C, C, 0, 0);
        b->k1 = params_add(pt, p, "attn1.to_k.weight", 2, C, C, 0, 0);
        b->v1 = params_add(pt, p, "attn1.to_v.weight", 2, C, C, 0, 0);
        b->o1w = params_add(pt, p, "attn1.to_out.0.weight", 2, C, C, 0, 0);
        b->o1b = params_add(pt, p, "attn1.to_out.0.bias", 1, C, 0, 0, 0);
        b->n2w = params_add(pt, p, "norm2.weight", 1, C, 0, 0, 0);
        b->n2b = params_add(pt, p, "norm2.bias", 1, C, 0, 0, 0);
        b->q2 = params_add(pt, p, "attn2.to_q.weight", 2, C, C, 0, 0);
        b->k2 = params_add(pt, p, "attn2.to_k.weight", 2, C, cross_dim, 0, 0);
        b->v2 = params_add(pt, p, "attn2.to_v.weight", 2, C, cross_dim, 0, 0);
        b->o2w = params_add(pt, p, "attn2.to_out.0.weight", 2, C, C, 0, 0);
        b->o2b = params_add(pt, p, "attn2.to_out.0.bias", 1, C, 0, 0, 0);
        b->n3w = params_add(pt, p, "norm3.weight", 1, C, 0, 0, 0);
        b->n3b = params_add(pt, p, "norm3.bias", 1, C, 0, 0, 0);
        b->f0w = params_add(pt, p, "ff.net.0.proj.weight", 2, 8 * C, C, 0, 0);
        b->f0b = params_add(pt, p, "ff.net.0.proj.bias", 1, 8 * C, 0, 0, 0);
        b->f2w = params_add(pt, p, "ff.net.2.weight", 2, C, 4 * C, 0, 0);
        b->f2b = params_add(pt, p, "ff.net.2.bias", 1, C, 0, 0, 0);
        b->end_tensor = pt->n;
    }
    if (linear_proj)
        t->pow = params_add(pt, prefix, "proj_out.weight", 2, C, C, 0, 0);
    else
        t->pow = params_add(pt, prefix, "proj_out.weight", 4, C, C, 1, 1);
    t->pob = params_add(pt, prefix, "proj_out.bias", 1, C, 0, 0, 0);
    t->end_tensor = pt->n;
}

void transformer_free(Transformer *t) {
    free(t->blk);
    t->blk = NULL;
}

// One BasicTransformerBlock on tokens x [B,S,C] -> out [B,S,C].
static void tblock_forward(const Transformer *t, TBlock *b, const LayerCtx *c, float *out,
                           const float *x, int B, int S, int L) {
    const float *p = c->params;
    int C = t->C, N = B * S, nh = t->heads;
    size_t n = (size_t)N * C;
    Arena *a = c->acts;
    b->t = x;
    // self-attention
    b->l1 = arena_alloc(a, n), b->m1 = arena_alloc(a, N), b->r1 = arena_alloc(a, N);
    BK(c->be, layernorm_forward, b->l1, b->m1, b->r1, x, p + b->n1w, p + b->n1b, N, C, LN_EPS);
    b->q = arena_alloc(a, n), b->k = arena_alloc(a, n), b->v = arena_alloc(a, n);
    BK(c->be, linear_forward, b->q, b->l1, p + b->q1, NULL, N, C, C);
    BK(c->be, linear_forward, b->k, b->l1, p + b->k1, NULL, N, C, C);
    BK(c->be, linear_forward, b->v, b->l1, p + b->v1, NULL, N, C, C);
    // tiled attention: saves a1 and a log-sum-exp per query row, not the [B,nh,S,S] probabilities
    b->lse1 = arena_alloc(a, (size_t)B * nh * S);
    b->a1 = arena_alloc(a, n);
    BK(c->be, attention_forward, b->a1, b->lse1, b->q, b->k, b->v, B, S, S, C, nh);
    b->t1 = arena_alloc(a, n);
    BK(c->be, linear_residual_forward, b->t1, b->a1, p + b->o1w, p + b->o1b, x, N, C, C);
    // cross-attention on the context
    b->l2 = arena_alloc(a, n), b->m2 = arena_alloc(a, N), b->r2 = arena_alloc(a, N);
    BK(c->be, layernorm_forward, b->l2, b->m2, b->r2, b->t1, p + b->n2w, p + b->n2b, N, C, LN_EPS);
    size_t nc = (size_t)B * L * C;
    b->qc = arena_alloc(a, n), b->kc = arena_alloc(a, nc), b->vc = arena_alloc(a, nc);
    BK(c->be, linear_forward, b->qc, b->l2, p + b->q2, NULL, N, C, C);
    BK(c->be, linear_forward, b->kc, t->ctx, p + b->k2, NULL, B * L, t->cross_dim, C);
    BK(c->be, linear_forward, b->vc, t->ctx, p + b->v2, NULL, B * L, t->cross_dim, C);
    b->lse2 = arena_alloc(a, (size_t)B * nh * S);
    b->a2 = arena_alloc(a, n);
    BK(c->be, attention_forward, b->a2, b->lse2, b->qc, b->kc, b->vc, B, S, L, C, nh);
    b->t2 = arena_alloc(a, n);
    BK(c->be, linear_residual_forward, b->t2, b->a2, p + b->o2w, p + b->o2b, b->t1, N, C, C);
    // GEGLU feed-forward
    b->l3 = arena_alloc(a, n), b->m3 = arena_alloc(a, N), b->r3 = arena_alloc(a, N);
    BK(c->be, layernorm_forward, b->l3, b->m3, b->r3, b->t2, p + b->n3w, p + b->n3b, N, C, LN_EPS);
    b->f0 = arena_alloc(a, 8 * n);
    BK(c->be, linear_forward, b->f0, b->l3, p + b->f0w, p + b->f0b, N, C, 8 * C);
    b->gg = arena_alloc(a, 4 * n);
    BK(c->be, geglu_forward, b->gg, b->f0, N, 4 * C);
    BK(c->be, linear_residual_forward, out, b->gg, p + b->f2w, p + b->f2b, b->t2, N, 4 * C, C);
    b->out = out;
}

static void tblock_backward(const Transformer *t, TBlock *b, const LayerCtx *c, float *dx,
                            const float *dout) {
    const float *p = c->params;
    float *g = c->grads;
    int C = t->C, B = t->B, S = t->H * t->W, L = t->L, N = B * S, nh = t->heads;
    size_t n = (size_t)N * C, nc = (size_t)B * L * C;
    Arena *w = c->work;
    ArenaMark mark = arena_mark(w);
    // feed-forward branch; dt2 is the residual stream's gradient at t2
    float *dt2 = arena_alloc(w, n);
    BK(c->be, copy, dt2, dout, n);
    float *dgg = arena_zeros(w, 4 * n);
    BK(c->be, linear_backward, dgg, g + b->f2w, g + b->f2b, dout, b->gg, p + b->f2w, N, 4 * C, C);
    float *df0 = arena_zeros(w, 8 * n);
    BK(c->be, geglu_backward, df0, dgg, b->f0, N, 4 * C);
    float *dl = arena_zeros(w, n);
    BK(c->be, linear_backward, dl, g + b->f0w, g + b->f0b, df0, b->l3, p + b->f0w, N, C, 8 * C);
    BK(c->be, layernorm_backward, dt2, g + b->n3w, g + b->n3b, dl, b->t2, b->m3, b->r3, p + b->n3w, N, C);
    // cross-attention branch
    float *dt1 = arena_alloc(w, n);
    BK(c->be, copy, dt1, dt2, n);
    float *da = arena_zeros(w, n);
    BK(c->be, linear_backward, da, g + b->o2w, g + b->o2b, dt2, b->a2, p + b->o2w, N, C, C);
    float *dq = arena_zeros(w, n), *dkc = arena_zeros(w, nc), *dvc = arena_zeros(w, nc);
    BK(c->be, attention_backward, dq, dkc, dvc, da, b->qc, b->kc, b->vc, b->a2, b->lse2, B, S, L, C, nh);
    bk_zero(c->be, dl, n);
    BK(c->be, linear_backward, dl, g + b->q2, NULL, dq, b->l2, p + b->q2, N, C, C);
    BK(c->be, linear_backward, NULL, g + b->k2, NULL, dkc, t->ctx, p + b->k2, B * L, t->cross_dim, C);
    BK(c->be, linear_backward, NULL, g + b->v2, NULL, dvc, t->ctx, p + b->v2, B * L, t->cross_dim, C);
    BK(c->be, layernorm_backward, dt1, g + b->n2w, g + b->n2b, dl, b->t1, b->m2, b->r2, p + b->n2w, N, C);
    // self-attention branch
    BK(c->be, accumulate, dx, dt1, n);
    bk_zero(c->be, da, n);
    BK(c->be, linear_backward, da, g + b->o1w, g + b->o1b, dt1, b->a1, p + b->o1w, N, C, C);
    float *dk = arena_zeros(w, n), *dv = arena_zeros(w, n);
    bk_zero(c->be, dq, n);
    BK(c->be, attention_backward, dq, dk, dv, da, b->q, b->k, b->v, b->a1, b->lse1, B, S, S, C, nh);
    bk_zero(c->be, dl, n);
    BK(c->be, linear_backward, dl, g + b->q1, NULL, dq, b->l1, p + b->q1, N, C, C);
    BK(c->be, linear_backward, dl, g + b->k1, NULL, dk, b->l1, p + b->k1, N, C, C);
    BK(c->be, linear_backward, dl, g + b->v1, NULL, dv, b->l1, p + b->v1, N, C, C);
    BK(c->be, layernorm_backward, dx, g + b->n1w, g + b->n1b, dl, b->t, b->m1, b->r1, p + b->n1w, N, C);
    arena_release(w, mark);
}

void transformer_forward(Transformer *t, const LayerCtx *c, float *out, const float *x,
                         const float *ctx, int B, int H, int W, int L) {
    const float *p = c->params;
    int C = t->C, S = H * W;
    size_t n = (size_t)B * C * S;
    Arena *a = c->acts;
    t->B = B, t->H = H, t->W = W, t->L = L;
    t->x = x, t->ctx = ctx;
    t->gn = arena_alloc(a, n);
    t->gm = arena_alloc(a, (size_t)B * t->groups);
    t->gr = arena_alloc(a, (size_t)B * t->groups);
    BK(c->be, groupnorm_forward, t->gn, t->gm, t->gr, x, p + t->gnw, p + t->gnb, B, C, S, t->groups, GN_EPS);
    // proj_in/proj_out run as linear layers on the tokens, for both kinds: a
    // 1x1 convolution's weight [C, C, 1, 1] is the linear one [C, C] in the same
    // memory, and on the tokens it is one GEMM over all B*S positions, not one
    // small GEMM per sample (the teacher's 4x4 stages: 16 columns each).
    float *tok = arena_alloc(a, n);
    t->tin = arena_alloc(a, n);
    BK(c->be, transpose_cn_forward, t->tin, t->gn, B, C, S);
    BK(c->be, linear_forward, tok, t->tin, p + t->piw, p + t->pib, B * S, C, C);
    for (int i = 0; i < t->n_layers; i++) {
        t->blk[i].out = NULL;
        if (t->blk[i].skip || !t->blk[i].present) continue;  // removed: identity on the tokens
        float *next = arena_alloc(a, n);
        tblock_forward(t, &t->blk[i], c, next, tok, B, S, L);
        tok = next;
    }
    t->tok_last = tok;
    float *lo = arena_alloc(c->work, n);
    BK(c->be, linear_forward, lo, tok, p + t->pow, p + t->pob, B * S, C, C);
    BK(c->be, transpose_nc_forward, out, lo, B, S, C);
    BK(c->be, add_forward, out, out, x, n);
}

void transformer_backward(Transformer *t, const LayerCtx *c, float *dx, const float *dout) {
    const float *p = c->params;
    float *g = c->grads;
    int B = t->B, H = t->H, W = t->W, C = t->C, S = H * W;
    size_t n = (size_t)B * C * S;
    Arena *w = c->work;
    ArenaMark mark = arena_mark(w);
    BK(c->be, accumulate, dx, dout, n);  // residual
    float *dtok = arena_zeros(w, n);  // [B,S,C]
    float *dlo = arena_zeros(w, n);
    BK(c->be, transpose_nc_backward, dlo, dout, B, S, C);
    BK(c->be, linear_backward, dtok, g + t->pow, g + t->pob, dlo, t->tok_last, p + t->pow, B * S, C, C);
    for (int i = t->n_layers - 1; i >= 0; i--) {
        if (t->blk[i].skip || !t->blk[i].present) continue;  // identity: the gradient passes unchanged
        float *dprev = arena_zeros(w, n);
        tblock_backward(t, &t->blk[i], c, dprev, dtok);
        dtok = dprev;
    }
    float *dgn = arena_zeros(w, n);
    float *dtin = arena_zeros(w, n);
    BK(c->be, linear_backward, dtin, g + t->piw, g + t->pib, dtok, t->tin, p + t->piw, B * S, C, C);
    BK(c->be, transpose_cn_backward, dgn, dtin, B, C, S);
    BK(c->be, groupnorm_backward, dx, g + t->gnw, g + t->gnb, dgn, t->x, t->gm, t->gr, p + t->gnw, B, C, S, t->groups);
    arena_release(w, mark);
}

// in doubles: every term is a non-negative integer, exact while the sum stays below 2^53
static double block_macs(const Transformer *t, int H, int W, int L) {
    double S = (double)H * W, C = t->C;
    return 4 * S * C * C + 2 * S * S * C                                   // self-attention
           + 2 * S * C * C + 2 * (double)L * t->cross_dim * C + 2 * S * L * C  // cross
           + 12 * S * C * C;                                                // GEGLU feed-forward
}

long long tblock_macs(const Transformer *t, int H, int W, int L) {
    double m = block_macs(t, H, W, L);
    return m < LD_MACS_EXACT ? (long long)m : -1;
}

long long transformer_macs(const Transformer *t, int H, int W, int L) {
    double S = (double)H * W, C = t->C, m = 2 * S * C * C;
    for (int i = 0; i < t->n_layers; i++)
        if (!t->blk || t->blk[i].present) m += block_macs(t, H, W, L);  // blk NULL: an absent layer's shape
    return m < LD_MACS_EXACT ? (long long)m : -1;
}
