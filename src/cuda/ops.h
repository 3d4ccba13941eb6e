// ops.h — every U-Net op, loss and optimizer update on device pointers: the
// GPU twin of kernels/kernels.h (same arguments, same layouts, same rules:
// forward writes, backward ACCUMULATES into each gradient, NULL = not needed),
// with the DevCtx whose stream runs it first. The CPU kernels are the
// reference: tests/gpu/test_gpu_ops.c checks each op against its CPU twin.
//
// Reductions have a fixed order (block size and grid fixed per shape), so a
// GPU result repeats run to run; no floating-point atomics anywhere. The files:
// elementwise.cu (activations, layout glue, resampling, timestep embedding),
// norm.cu (GroupNorm, GroupNorm+SiLU, LayerNorm), conv.cu (linear, conv2d as
// im2col + cuBLAS), attention.cu (memory-efficient attention on cuBLAS),
// attention_fused.cu (the same fused on tensor cores), loss.cu (MSE,
// the normalized feature term, gradient norm and clipping), optim.cu (AdamW, EMA).
#ifndef LD_CUDA_OPS_H
#define LD_CUDA_OPS_H
#include <stddef.h>

#include "cuda/dev.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- elementwise.cu ----
void cu_silu_forward(DevCtx *d, float *out, const float *x, size_t n);
void cu_silu_backward(DevCtx *d, float *dx, const float *dout, const float *x, size_t n);
void cu_gelu_forward(DevCtx *d, float *out, const float *x, size_t n);
void cu_gelu_backward(DevCtx *d, float *dx, const float *dout, const float *x, size_t n);
void cu_geglu_forward(DevCtx *d, float *out, const float *x, int N, int H);
void cu_geglu_backward(DevCtx *d, float *dx, const float *dout, const float *x, int N, int H);
void cu_add_forward(DevCtx *d, float *out, const float *a, const float *b, size_t n);
void cu_accumulate(DevCtx *d, float *dst, const float *src, size_t n);
void cu_scale(DevCtx *d, float *x, float s, size_t n);
void cu_add_channel_bias_forward(DevCtx *d, float *out, const float *x, const float *v, int B, int C, int HW);
void cu_add_channel_bias_backward(DevCtx *d, float *dx, float *dv, const float *dout, int B, int C, int HW);
void cu_concat_channels_forward(DevCtx *d, float *out, const float *a, const float *b, int B, int Ca, int Cb, int HW);
void cu_concat_channels_backward(DevCtx *d, float *da, float *db, const float *dout, int B, int Ca, int Cb, int HW);
void cu_transpose_cn_forward(DevCtx *d, float *out, const float *x, int B, int C, int N);
void cu_transpose_cn_backward(DevCtx *d, float *dx, const float *dout, int B, int C, int N);
void cu_transpose_nc_forward(DevCtx *d, float *out, const float *x, int B, int N, int C);
void cu_transpose_nc_backward(DevCtx *d, float *dx, const float *dout, int B, int N, int C);
void cu_upsample2x_forward(DevCtx *d, float *out, const float *x, int B, int C, int H, int W);
void cu_upsample2x_backward(DevCtx *d, float *dx, const float *dout, int B, int C, int H, int W);
void cu_timestep_embedding(DevCtx *d, float *out, const float *t, int B, int dim, int flip_sin_to_cos,
                           float freq_shift);

// ---- norm.cu ----
void cu_groupnorm_forward(DevCtx *d, float *out, float *mean, float *rstd, const float *x, const float *gamma,
                          const float *beta, int B, int C, int HW, int G, float eps);
void cu_groupnorm_backward(DevCtx *d, float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                           const float *mean, const float *rstd, const float *gamma, int B, int C, int HW, int G);
void cu_groupnorm_silu_forward(DevCtx *d, float *out, float *mean, float *rstd, const float *x, const float *gamma,
                               const float *beta, int B, int C, int HW, int G, float eps);
void cu_groupnorm_silu_backward(DevCtx *d, float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                                const float *mean, const float *rstd, const float *gamma, const float *beta, int B,
                                int C, int HW, int G);
void cu_layernorm_forward(DevCtx *d, float *out, float *mean, float *rstd, const float *x, const float *gamma,
                          const float *beta, int N, int C, float eps);
void cu_layernorm_backward(DevCtx *d, float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                           const float *mean, const float *rstd, const float *gamma, int N, int C);

// ---- conv.cu ----
void cu_linear_forward(DevCtx *d, float *out, const float *x, const float *w, const float *b, int N, int C, int OC);
void cu_linear_residual_forward(DevCtx *d, float *out, const float *x, const float *w, const float *b,
                                const float *res, int N, int C, int OC);
void cu_linear_backward(DevCtx *d, float *dx, float *dw, float *db, const float *dout, const float *x,
                        const float *w, int N, int C, int OC);
// conv2d through cuDNN where the context says so (dev_set_conv), else as im2col
// over a chunk of samples into dev_scratch + one strided-batched GEMM.
void cu_conv2d_forward(DevCtx *d, float *out, const float *x, const float *w, const float *b, int B, int Cin, int H,
                       int W, int Cout, int k, int stride, int pad);
void cu_conv2d_backward(DevCtx *d, float *dx, float *dw, float *db, const float *dout, const float *x,
                        const float *w, int B, int Cin, int H, int W, int Cout, int k, int stride, int pad);

// ---- attention.cu: kernels.h's attention_flash_* (out [B,Nq,C], lse [B,nh,Nq];
// backward recomputes probabilities from q, k, lse) in query tiles of
// dev_attention_tile_floats, the products on cuBLAS; any head size.
void cu_attention_forward(DevCtx *d, float *out, float *lse, const float *q, const float *k, const float *v, int B,
                          int Nq, int Nk, int C, int nh);
void cu_attention_backward(DevCtx *d, float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *out, const float *lse, int B, int Nq, int Nk,
                           int C, int nh);
// attention_fused.cu: the same in one kernel per direction on tensor cores,
// which cu_attention_* run instead where the context's attention is
// DEV_ATTN_FUSED and cu_attention_fused_fits (TF32 or BF16 precision, keys,
// and a head that fits a block's shared memory). Backward takes attention.cu's
// Dsum ([B, nh, Nq]: dout . out per row).
int cu_attention_fused_fits(DevCtx *d, int Nq, int Nk, int C, int nh);
void cu_attention_fused_forward(DevCtx *d, float *out, float *lse, const float *q, const float *k, const float *v,
                                int B, int Nq, int Nk, int C, int nh);
void cu_attention_fused_backward(DevCtx *d, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                 const float *k, const float *v, const float *lse, const float *Dsum, int B, int Nq,
                                 int Nk, int C, int nh);

// ---- loss.cu ----
double cu_mse_forward(DevCtx *d, const float *a, const float *b, size_t n);
void cu_mse_backward(DevCtx *d, float *da, float *db, const float *a, const float *b, size_t n, float scale);
// feat_term (kernels/kernels.h) on device tensors; raw and norm come back to the host.
void cu_feat_term(DevCtx *d, const float *S, const float *T, int b, size_t n, int normalized, double denom,
                  float scale, double *raw, double *norm, float *dS);
// grad_norm / grad_clip (kernels/kernels.h) on a device gradient buffer.
double cu_grad_norm(DevCtx *d, const float *g, size_t n);
double cu_clip(DevCtx *d, float *g, size_t n, double max_norm);

// ---- optim.cu: adamw_step's update with the scalars it derives from (lr, step) ----
void cu_adamw_step(DevCtx *d, float *params, const float *grads, float *m, float *v, size_t n, double lr,
                   long step, double beta1, double beta2, double eps, double weight_decay);
void cu_ema_update(DevCtx *d, float *ema, const float *params, size_t n, double decay);

#ifdef __cplusplus
}
#endif
#endif
