// resnet.c — see resnet.h.
#include "model/resnet.h"

#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"

void resnet_init(Resnet *r, ParamTable *pt, const char *prefix, int cin, int cout, int temb_dim,
                 int groups, float eps) {
    memset(r, 0, sizeof *r);
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
    r->cin = cin;
    r->cout = cout;
    r->temb_dim = temb_dim;
    r->groups = groups;
    r->eps = eps;
    r->cand = -1;
    r->first_tensor = pt->n;
    // Registration order follows diffusers' module order.
    r->n1w = params_add(pt, prefix, "norm1.weight", 1, cin, 0, 0, 0);
    r->n1b = params_add(pt, prefix, "norm1.bias", 1, cin, 0, 0, 0);
    r->c1w = params_add(pt, prefix, "conv1.weight", 4, cout, cin, 3, 3);
    r->c1b = params_add(pt, prefix, "conv1.bias", 1, cout, 0, 0, 0);
    r->tw = params_add(pt, prefix, "time_emb_proj.weight", 2, cout, temb_dim, 0, 0);
    r->tb = params_add(pt, prefix, "time_emb_proj.bias", 1, cout, 0, 0, 0);
    r->n2w = params_add(pt, prefix, "norm2.weight", 1, cout, 0, 0, 0);
    r->n2b = params_add(pt, prefix, "norm2.bias", 1, cout, 0, 0, 0);
    r->c2w = params_add(pt, prefix, "conv2.weight", 4, cout, cout, 3, 3);
    r->c2b = params_add(pt, prefix, "conv2.bias", 1, cout, 0, 0, 0);
    r->has_shortcut = cin != cout;
    if (r->has_shortcut) {
        r->sw = params_add(pt, prefix, "conv_shortcut.weight", 4, cout, cin, 1, 1);
        r->sb = params_add(pt, prefix, "conv_shortcut.bias", 1, cout, 0, 0, 0);
    }
    r->end_tensor = pt->n;
}

void resnet_forward(Resnet *r, const LayerCtx *c, float *out, const float *x,
                    const float *silu_temb, int B, int H, int W) {
    const float *p = c->params;
    int HW = H * W, ci = r->cin, co = r->cout;
    size_t nin = (size_t)B * ci * HW, nout = (size_t)B * co * HW;
    r->B = B, r->H = H, r->W = W;
    r->x = x;
    r->silu_temb = silu_temb;
    r->m1 = arena_alloc(c->acts, (size_t)B * r->groups);
    r->r1 = arena_alloc(c->acts, (size_t)B * r->groups);
    r->a1 = arena_alloc(c->acts, nin);
    r->h = arena_alloc(c->acts, nout);
    r->m2 = arena_alloc(c->acts, (size_t)B * r->groups);
    r->r2 = arena_alloc(c->acts, (size_t)B * r->groups);
    r->a2 = arena_alloc(c->acts, nout);

    BK(c->be, groupnorm_silu_forward, r->a1, r->m1, r->r1, x, p + r->n1w, p + r->n1b, B, ci, HW, r->groups, r->eps);
    // time embedding, projected per sample and broadcast over H, W
    float *tp = arena_alloc(c->work, (size_t)B * co);
    BK(c->be, linear_forward, tp, silu_temb, p + r->tw, p + r->tb, B, r->temb_dim, co);
    r->inner_layout = c->be->resnet_inner_layout ? BK(c->be, resnet_inner_layout, co) : 0;
    if (r->inner_layout) {
        BK(c->be, resnet_inner_forward, out, r->h, r->m2, r->r2, r->a2, r->a1, tp, p + r->c1w, p + r->c1b,
           p + r->n2w, p + r->n2b, p + r->c2w, p + r->c2b, B, ci, H, W, co, r->groups, r->eps, r->inner_layout);
    } else {
        BK(c->be, conv2d_forward, r->h, r->a1, p + r->c1w, p + r->c1b, B, ci, H, W, co, 3, 1, 1);
        BK(c->be, add_channel_bias_forward, r->h, r->h, tp, B, co, HW);
        BK(c->be, groupnorm_silu_forward, r->a2, r->m2, r->r2, r->h, p + r->n2w, p + r->n2b, B, co, HW, r->groups,
           r->eps);
        BK(c->be, conv2d_forward, out, r->a2, p + r->c2w, p + r->c2b, B, co, H, W, co, 3, 1, 1);
    }
    if (r->has_shortcut) {
        float *sc = arena_alloc(c->work, nout);
        BK(c->be, conv2d_forward, sc, x, p + r->sw, p + r->sb, B, ci, H, W, co, 1, 1, 0);
        BK(c->be, add_forward, out, out, sc, nout);
    } else {
        BK(c->be, add_forward, out, out, x, nout);
    }
}

void resnet_backward(Resnet *r, const LayerCtx *c, float *dx, float *dsilu_temb,
                     const float *dout) {
    const float *p = c->params;
    float *g = c->grads;
    int B = r->B, H = r->H, W = r->W, HW = H * W, ci = r->cin, co = r->cout;
    size_t nin = (size_t)B * ci * HW, nout = (size_t)B * co * HW;
    ArenaMark mark = arena_mark(c->work);

    // shortcut branch
    if (r->has_shortcut)
        BK(c->be, conv2d_backward, dx, g + r->sw, g + r->sb, dout, r->x, p + r->sw, B, ci, H, W, co, 1, 1, 0);
    else
        BK(c->be, accumulate, dx, dout, nout);
    // main branch, in reverse
    float *dtp = arena_zeros(c->work, (size_t)B * co);
    float *da1 = arena_zeros(c->work, nin);
    if (r->inner_layout) {
        BK(c->be, resnet_inner_backward, da1, dtp, g + r->c1w, g + r->c1b, g + r->n2w, g + r->n2b, g + r->c2w,
           g + r->c2b, dout, r->a1, r->h, r->m2, r->r2, r->a2, p + r->c1w, p + r->n2w, p + r->n2b, p + r->c2w, B, ci,
           H, W, co, r->groups, r->inner_layout);
    } else {
        float *da2 = arena_zeros(c->work, nout);
        BK(c->be, conv2d_backward, da2, g + r->c2w, g + r->c2b, dout, r->a2, p + r->c2w, B, co, H, W, co, 3, 1, 1);
        float *dh = arena_zeros(c->work, nout);
        BK(c->be, groupnorm_silu_backward, dh, g + r->n2w, g + r->n2b, da2, r->h, r->m2, r->r2, p + r->n2w,
           p + r->n2b, B, co, HW, r->groups);
        BK(c->be, add_channel_bias_backward, NULL, dtp, dh, B, co, HW);
        BK(c->be, conv2d_backward, da1, g + r->c1w, g + r->c1b, dh, r->a1, p + r->c1w, B, ci, H, W, co, 3, 1, 1);
    }
    BK(c->be, linear_backward, dsilu_temb, g + r->tw, g + r->tb, dtp, r->silu_temb, p + r->tw, B, r->temb_dim, co);
    BK(c->be, groupnorm_silu_backward, dx, g + r->n1w, g + r->n1b, da1, r->x, r->m1, r->r1, p + r->n1w, p + r->n1b, B,
       ci, HW, r->groups);
    arena_release(c->work, mark);
}

long long resnet_macs(const Resnet *r, int H, int W) {
    // in doubles: every term is a non-negative integer, exact while the sum stays below 2^53
    double HW = (double)H * W;
    double m = HW * r->cout * r->cin * 9 + HW * r->cout * r->cout * 9 + (double)r->cout * r->temb_dim;
    if (r->has_shortcut) m += HW * r->cout * r->cin;
    return m < LD_MACS_EXACT ? (long long)m : -1;
}
