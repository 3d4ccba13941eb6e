// backend_cpu.c — the CPU backend (backend.h): kernels.h on host memory. Each
// entry forwards to its kernel; convolution and attention take their work
// buffer from the backend's Scratch, sized per call by the kernel's own rule.
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "kernels/backend.h"
#include "kernels/kernels.h"

typedef struct {
    Backend be;
    Scratch scratch;
} CpuBackend;

static float *cpu_alloc(void *ctx, size_t n) {
    (void)ctx;
    void *p = NULL;
    if (posix_memalign(&p, 64, (n ? n : 16) * sizeof(float)) != 0) FATAL("out of memory allocating %zu floats", n);
    return p;
}
static void cpu_free(void *ctx, void *p) {
    (void)ctx;
    free(p);
}
static void cpu_zero(void *ctx, float *p, size_t n) {
    (void)ctx;
    if (n) memset(p, 0, n * sizeof(float));
}
static void cpu_copy(void *ctx, float *dst, const float *src, size_t n) {
    (void)ctx;
    if (n && dst != src) memmove(dst, src, n * sizeof(float));
}
static size_t cpu_work_floats(void *ctx) { return ((CpuBackend *)ctx)->scratch.cap; }
static void cpu_destroy(Backend *be) {
    CpuBackend *c = (CpuBackend *)be;
    scratch_free(&c->scratch);
    free(c);
}

static void cpu_conv2d_forward(void *ctx, float *out, const float *x, const float *w, const float *b, int B, int Cin,
                               int H, int W, int Cout, int k, int stride, int pad) {
    Scratch *s = &((CpuBackend *)ctx)->scratch;
    conv2d_forward(out, x, w, b, B, Cin, H, W, Cout, k, stride, pad,
                   scratch_get(s, conv2d_scratch_floats(Cin, H, W, k, stride, pad)));
}
static void cpu_conv2d_backward(void *ctx, float *dx, float *dw, float *db, const float *dout, const float *x,
                                const float *w, int B, int Cin, int H, int W, int Cout, int k, int stride, int pad) {
    Scratch *s = &((CpuBackend *)ctx)->scratch;
    conv2d_backward(dx, dw, db, dout, x, w, B, Cin, H, W, Cout, k, stride, pad,
                    scratch_get(s, conv2d_scratch_floats(Cin, H, W, k, stride, pad)));
}
#ifdef LD_HAVE_DNNL
// The ResNet interior in oneDNN's blocked layout (resnet_inner.c); without
// oneDNN the backend leaves these NULL and resnet.c runs the separate ops.
static int cpu_resnet_inner_layout(void *ctx, int Cout) {
    (void)ctx;
    return resnet_inner_block(Cout);
}
static void cpu_resnet_inner_forward(void *ctx, float *out, float *h, float *m2, float *r2, float *a2,
                                     const float *a1, const float *tp, const float *w1, const float *b1,
                                     const float *g2, const float *be2, const float *w2, const float *b2, int B,
                                     int Cin, int H, int W, int Cout, int G, float eps, int layout) {
    (void)ctx;
    resnet_inner_forward(out, h, m2, r2, a2, a1, tp, w1, b1, g2, be2, w2, b2, B, Cin, H, W, Cout, G, eps, layout);
}
static void cpu_resnet_inner_backward(void *ctx, float *da1, float *dtp, float *dw1, float *db1, float *dg2,
                                      float *dbe2, float *dw2, float *db2, const float *dout, const float *a1,
                                      const float *h, const float *m2, const float *r2, const float *a2,
                                      const float *w1, const float *g2, const float *be2, const float *w2, int B,
                                      int Cin, int H, int W, int Cout, int G, int layout) {
    Scratch *s = &((CpuBackend *)ctx)->scratch;
    resnet_inner_backward(da1, dtp, dw1, db1, dg2, dbe2, dw2, db2, dout, a1, h, m2, r2, a2, w1, g2, be2, w2, B, Cin,
                          H, W, Cout, G, layout, scratch_get(s, (size_t)2 * B * Cout * H * W));
}
#endif
static void cpu_attention_forward(void *ctx, float *out, float *lse, const float *q, const float *k, const float *v,
                                  int B, int Nq, int Nk, int C, int nh) {
    Scratch *s = &((CpuBackend *)ctx)->scratch;
    float *sc = scratch_get(s, attention_flash_scratch_floats(B, nh, Nq, Nk, ATTN_TILE_Q, ATTN_TILE_K));
    attention_flash_forward(out, lse, q, k, v, B, Nq, Nk, C, nh, ATTN_TILE_Q, ATTN_TILE_K, sc);
}
static void cpu_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                   const float *k, const float *v, const float *out, const float *lse, int B, int Nq,
                                   int Nk, int C, int nh) {
    Scratch *s = &((CpuBackend *)ctx)->scratch;
    float *sc = scratch_get(s, attention_flash_scratch_floats(B, nh, Nq, Nk, ATTN_TILE_Q, ATTN_TILE_K));
    attention_flash_backward(dq, dk, dv, dout, q, k, v, out, lse, B, Nq, Nk, C, nh, ATTN_TILE_Q, ATTN_TILE_K, sc);
}

// The rest forward unchanged.
static void cpu_groupnorm_forward(void *ctx, float *out, float *mean, float *rstd, const float *x,
                                  const float *gamma, const float *beta, int B, int C, int HW, int G, float eps) {
    (void)ctx;
    groupnorm_forward(out, mean, rstd, x, gamma, beta, B, C, HW, G, eps);
}
static void cpu_groupnorm_backward(void *ctx, float *dx, float *dgamma, float *dbeta, const float *dout,
                                   const float *x, const float *mean, const float *rstd, const float *gamma, int B,
                                   int C, int HW, int G) {
    (void)ctx;
    groupnorm_backward(dx, dgamma, dbeta, dout, x, mean, rstd, gamma, B, C, HW, G);
}
static void cpu_groupnorm_silu_forward(void *ctx, float *out, float *mean, float *rstd, const float *x,
                                       const float *gamma, const float *beta, int B, int C, int HW, int G, float eps) {
    (void)ctx;
    groupnorm_silu_forward(out, mean, rstd, x, gamma, beta, B, C, HW, G, eps);
}
static void cpu_groupnorm_silu_backward(void *ctx, float *dx, float *dgamma, float *dbeta, const float *dout,
                                        const float *x, const float *mean, const float *rstd, const float *gamma,
                                        const float *beta, int B, int C, int HW, int G) {
    (void)ctx;
    groupnorm_silu_backward(dx, dgamma, dbeta, dout, x, mean, rstd, gamma, beta, B, C, HW, G);
}
static void cpu_layernorm_forward(void *ctx, float *out, float *mean, float *rstd, const float *x,
                                  const float *gamma, const float *beta, int N, int C, float eps) {
    (void)ctx;
    layernorm_forward(out, mean, rstd, x, gamma, beta, N, C, eps);
}
static void cpu_layernorm_backward(void *ctx, float *dx, float *dgamma, float *dbeta, const float *dout,
                                   const float *x, const float *mean, const float *rstd, const float *gamma, int N,
                                   int C) {
    (void)ctx;
    layernorm_backward(dx, dgamma, dbeta, dout, x, mean, rstd, gamma, N, C);
}
static void cpu_linear_forward(void *ctx, float *out, const float *x, const float *w, const float *b, int N, int C,
                               int OC) {
    (void)ctx;
    linear_forward(out, x, w, b, N, C, OC);
}
static void cpu_linear_residual_forward(void *ctx, float *out, const float *x, const float *w, const float *b,
                                        const float *res, int N, int C, int OC) {
    (void)ctx;
    linear_residual_forward(out, x, w, b, res, N, C, OC);
}
static void cpu_linear_backward(void *ctx, float *dx, float *dw, float *db, const float *dout, const float *x,
                                const float *w, int N, int C, int OC) {
    (void)ctx;
    linear_backward(dx, dw, db, dout, x, w, N, C, OC);
}
static void cpu_silu_forward(void *ctx, float *out, const float *x, size_t n) {
    (void)ctx;
    silu_forward(out, x, n);
}
static void cpu_silu_backward(void *ctx, float *dx, const float *dout, const float *x, size_t n) {
    (void)ctx;
    silu_backward(dx, dout, x, n);
}
static void cpu_geglu_forward(void *ctx, float *out, const float *x, int N, int H) {
    (void)ctx;
    geglu_forward(out, x, N, H);
}
static void cpu_geglu_backward(void *ctx, float *dx, const float *dout, const float *x, int N, int H) {
    (void)ctx;
    geglu_backward(dx, dout, x, N, H);
}
static void cpu_upsample2x_forward(void *ctx, float *out, const float *x, int B, int C, int H, int W) {
    (void)ctx;
    upsample2x_forward(out, x, B, C, H, W);
}
static void cpu_upsample2x_backward(void *ctx, float *dx, const float *dout, int B, int C, int H, int W) {
    (void)ctx;
    upsample2x_backward(dx, dout, B, C, H, W);
}
static void cpu_concat_channels_forward(void *ctx, float *out, const float *a, const float *b, int B, int Ca, int Cb,
                                        int HW) {
    (void)ctx;
    concat_channels_forward(out, a, b, B, Ca, Cb, HW);
}
static void cpu_concat_channels_backward(void *ctx, float *da, float *db, const float *dout, int B, int Ca, int Cb,
                                         int HW) {
    (void)ctx;
    concat_channels_backward(da, db, dout, B, Ca, Cb, HW);
}
static void cpu_transpose_cn_forward(void *ctx, float *out, const float *x, int B, int C, int N) {
    (void)ctx;
    transpose_cn_forward(out, x, B, C, N);
}
static void cpu_transpose_cn_backward(void *ctx, float *dx, const float *dout, int B, int C, int N) {
    (void)ctx;
    transpose_cn_backward(dx, dout, B, C, N);
}
static void cpu_transpose_nc_forward(void *ctx, float *out, const float *x, int B, int N, int C) {
    (void)ctx;
    transpose_nc_forward(out, x, B, N, C);
}
static void cpu_transpose_nc_backward(void *ctx, float *dx, const float *dout, int B, int N, int C) {
    (void)ctx;
    transpose_nc_backward(dx, dout, B, N, C);
}
static void cpu_add_forward(void *ctx, float *out, const float *a, const float *b, size_t n) {
    (void)ctx;
    add_forward(out, a, b, n);
}
static void cpu_accumulate(void *ctx, float *dst, const float *src, size_t n) {
    (void)ctx;
    accumulate(dst, src, n);
}
static void cpu_add_channel_bias_forward(void *ctx, float *out, const float *x, const float *v, int B, int C, int HW) {
    (void)ctx;
    add_channel_bias_forward(out, x, v, B, C, HW);
}
static void cpu_add_channel_bias_backward(void *ctx, float *dx, float *dv, const float *dout, int B, int C, int HW) {
    (void)ctx;
    add_channel_bias_backward(dx, dv, dout, B, C, HW);
}
static void cpu_timestep_embedding(void *ctx, float *out, const float *t, int B, int dim, int flip_sin_to_cos,
                                   float freq_shift) {
    (void)ctx;
    timestep_embedding(out, t, B, dim, flip_sin_to_cos, freq_shift);
}
static double cpu_mse_forward(void *ctx, const float *a, const float *b, size_t n) {
    (void)ctx;
    return mse_forward(a, b, n);
}
static void cpu_mse_backward(void *ctx, float *da, float *db, const float *a, const float *b, size_t n, float scale) {
    (void)ctx;
    mse_backward(da, db, a, b, n, scale);
}
static void cpu_feat_term(void *ctx, const float *S, const float *T, int b, size_t n, int normalized, double denom,
                          float scale, double *raw, double *norm, float *dS) {
    (void)ctx;
    feat_term(S, T, b, n, normalized, denom, scale, raw, norm, dS);
}
static double cpu_grad_norm(void *ctx, const float *g, size_t n) {
    (void)ctx;
    return grad_norm(g, n);
}
static double cpu_grad_clip(void *ctx, float *g, size_t n, double max_norm) {
    (void)ctx;
    return grad_clip(g, n, max_norm);
}
static void cpu_adamw_update(void *ctx, float *params, const float *grads, float *m, float *v, size_t n, double lr,
                             long step, double beta1, double beta2, double eps, double weight_decay) {
    (void)ctx;
    adamw_update(params, grads, m, v, n, lr, step, beta1, beta2, eps, weight_decay);
}
static void cpu_ema_update(void *ctx, float *ema, const float *params, size_t n, double decay) {
    (void)ctx;
    ema_update(ema, params, n, decay);
}

Backend *backend_cpu_create(void) {
    CpuBackend *c = xcalloc(1, sizeof *c);
    Backend *be = &c->be;
    be->name = "cpu";
    be->refs = 1;
    be->on_device = 0;
    be->ctx = c;
    be->mem = (MemOps){c, cpu_alloc, cpu_free, cpu_zero};
    be->copy = cpu_copy, be->upload = cpu_copy, be->download = cpu_copy;
    be->destroy = cpu_destroy, be->work_floats = cpu_work_floats;
    be->conv2d_forward = cpu_conv2d_forward;
    be->conv2d_backward = cpu_conv2d_backward;
    be->groupnorm_forward = cpu_groupnorm_forward;
    be->groupnorm_backward = cpu_groupnorm_backward;
    be->groupnorm_silu_forward = cpu_groupnorm_silu_forward;
    be->groupnorm_silu_backward = cpu_groupnorm_silu_backward;
    be->layernorm_forward = cpu_layernorm_forward;
    be->layernorm_backward = cpu_layernorm_backward;
    be->linear_forward = cpu_linear_forward;
    be->linear_residual_forward = cpu_linear_residual_forward;
    be->linear_backward = cpu_linear_backward;
    be->silu_forward = cpu_silu_forward;
    be->silu_backward = cpu_silu_backward;
    be->geglu_forward = cpu_geglu_forward;
    be->geglu_backward = cpu_geglu_backward;
    be->attention_forward = cpu_attention_forward;
    be->attention_backward = cpu_attention_backward;
    be->upsample2x_forward = cpu_upsample2x_forward;
    be->upsample2x_backward = cpu_upsample2x_backward;
    be->concat_channels_forward = cpu_concat_channels_forward;
    be->concat_channels_backward = cpu_concat_channels_backward;
    be->transpose_cn_forward = cpu_transpose_cn_forward;
    be->transpose_cn_backward = cpu_transpose_cn_backward;
    be->transpose_nc_forward = cpu_transpose_nc_forward;
    be->transpose_nc_backward = cpu_transpose_nc_backward;
    be->add_forward = cpu_add_forward;
    be->accumulate = cpu_accumulate;
    be->add_channel_bias_forward = cpu_add_channel_bias_forward;
    be->add_channel_bias_backward = cpu_add_channel_bias_backward;
#ifdef LD_HAVE_DNNL
    be->resnet_inner_layout = cpu_resnet_inner_layout;
    be->resnet_inner_forward = cpu_resnet_inner_forward;
    be->resnet_inner_backward = cpu_resnet_inner_backward;
#endif
    be->timestep_embedding = cpu_timestep_embedding;
    be->mse_forward = cpu_mse_forward, be->mse_backward = cpu_mse_backward, be->feat_term = cpu_feat_term;
    be->grad_norm = cpu_grad_norm, be->grad_clip = cpu_grad_clip, be->adamw_update = cpu_adamw_update;
    be->ema_update = cpu_ema_update;
    return be;
}

Backend *backend_retain(Backend *be) {
    be->refs++;
    return be;
}

void backend_free(Backend *be) {
    if (be && --be->refs == 0) be->destroy(be);
}
