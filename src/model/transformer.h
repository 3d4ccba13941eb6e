// transformer.h — diffusers' Transformer2DModel (GroupNorm eps 1e-6, proj_in as
// 1x1 conv or linear, N BasicTransformerBlocks, proj_out, + input) and its
// BasicTransformerBlock (LN -> self-attention, LN -> cross-attention on the
// context, LN -> GEGLU feed-forward; each added to the residual stream).
#ifndef LD_TRANSFORMER_H
#define LD_TRANSFORMER_H
#include <stdint.h>

#include "model/layer.h"

typedef struct {
    int present;                 // 0: built without it (a removed block): no parameters, never run
    int skip;                    // 1: passed over in the last/next forward (absent, or bypassed for one pass)
    int cand;                    // candidate index at block granularity, else -1
    int first_tensor, end_tensor;
    size_t n1w, n1b, q1, k1, v1, o1w, o1b;
    size_t n2w, n2b, q2, k2, v2, o2w, o2b;
    size_t n3w, n3b, f0w, f0b, f2w, f2b;
    // saved by forward ([N = B*S, ...] token-major; lse1/lse2 [B, heads, S], the
    // attention rows' log-sum-exp, which with a1/a2 is all the backward needs)
    const float *t;
    float *l1, *m1, *r1, *q, *k, *v, *lse1, *a1, *t1;
    float *l2, *m2, *r2, *qc, *kc, *vc, *lse2, *a2, *t2;
    float *l3, *m3, *r3, *f0, *gg;
    float *out;  // the block's output tokens (what a skip would replace by t)
} TBlock;

typedef struct Transformer {
    char prefix[LD_NAME_MAX];
    int C, heads, n_layers, cross_dim, groups;
    int linear_proj;  // proj_in/proj_out stored as [C, C] (linear) or [C, C, 1, 1] (1x1 conv); both run as linear
    int first_tensor, end_tensor;
    size_t gnw, gnb, piw, pib, pow, pob;
    TBlock *blk;
    int cand;
    // saved by forward
    int B, H, W, L;
    const float *x, *ctx;
    float *gn, *gm, *gr, *tin, *tok_last;  // tin: proj_in input, tokens [B,S,C]; tok_last: proj_out input
} Transformer;

void transformer_init(Transformer *t, ParamTable *pt, const char *prefix, int C, int heads,
                      int n_layers, int linear_proj, int cross_dim, int groups);
// The same with some BasicTransformerBlocks absent (absent_blocks[n_layers] or
// NULL): they get no parameters and pass their tokens through unchanged.
void transformer_init_pruned(Transformer *t, ParamTable *pt, const char *prefix, int C, int heads, int n_layers,
                             int linear_proj, int cross_dim, int groups, const uint8_t *absent_blocks);
void transformer_free(Transformer *t);
// x [B,C,H,W] (kept by pointer until backward), ctx [B,L,cross_dim]. Blocks
// with skip set are identity on the token stream (DESIGN §3); backward follows
// the flags of the forward.
void transformer_forward(Transformer *t, const LayerCtx *c, float *out, const float *x,
                         const float *ctx, int B, int H, int W, int L);
// Accumulates into dx [B,C,H,W] and the gradients (the context gets none: it is an input).
void transformer_backward(Transformer *t, const LayerCtx *c, float *dx, const float *dout);
// MACs of the present blocks plus proj_in/proj_out; -1 at or beyond LD_MACS_EXACT.
long long transformer_macs(const Transformer *t, int H, int W, int L);
long long tblock_macs(const Transformer *t, int H, int W, int L);  // one BasicTransformerBlock
#endif
