// kernels.h — forward and backward of every layer the U-Net is made of.
// Conventions (all kernels):
//  * fp32, row-major, images NCHW, token sequences [B, N, C].
//  * forward writes (=) its outputs; backward ACCUMULATES (+=) into every
//    gradient it produces (dx, dweight, dbias), so residual branches and skip
//    connections just add up. Any gradient pointer may be NULL = not needed.
//  * `scratch` arguments are caller-owned work buffers of the size the
//    matching *_scratch_floats() returns.
// Each kernel lives in its own file (conv2d.c, groupnorm.c, ...) with its
// forward and backward side by side.
#ifndef LD_KERNELS_H
#define LD_KERNELS_H
#include <stddef.h>

// ---- conv2d.c: square kernel k (1 or 3), stride 1 or 2, zero padding `pad`.
// x [B,Cin,H,W], w [Cout,Cin,k,k], b [Cout] or NULL, out [B,Cout,Ho,Wo],
// Ho = (H + 2*pad - k)/stride + 1. 1x1 stride-1: a GEMM per sample; otherwise oneDNN where the
// build has it (LD_HAVE_DNNL), else im2col + GEMM per sample (conv2d.c says why).
static inline int conv2d_out_size(int n, int k, int stride, int pad) { return (n + 2 * pad - k) / stride + 1; }
size_t conv2d_scratch_floats(int Cin, int H, int W, int k, int stride, int pad);
void conv2d_forward(float *out, const float *x, const float *w, const float *b, int B, int Cin,
                    int H, int W, int Cout, int k, int stride, int pad, float *scratch);
void conv2d_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                     const float *w, int B, int Cin, int H, int W, int Cout, int k, int stride,
                     int pad, float *scratch);
// The algorithms behind conv2d_forward/backward (CONV_ALGO_DEFAULT: the one this
// build picks per shape), named so tests and tests/bench/bench_conv.c can run each:
// im2col = per sample im2col + GEMM; im2col-batched = several samples per GEMM
// (scratch from conv2d_algo_scratch_floats, bounded); onednn-* = oneDNN on NCHW,
// or on its own blocked layouts with reorders (only where LD_HAVE_DNNL).
typedef enum {
    CONV_ALGO_DEFAULT = 0,
    CONV_ALGO_IM2COL,
    CONV_ALGO_IM2COL_BATCHED,
    CONV_ALGO_DNNL,
    CONV_ALGO_DNNL_BLOCKED
} ConvAlgo;
int conv2d_algo_available(ConvAlgo a);
const char *conv2d_algo_name(ConvAlgo a);
size_t conv2d_algo_scratch_floats(ConvAlgo a, int B, int Cin, int H, int W, int Cout, int k, int stride, int pad);
void conv2d_forward_algo(ConvAlgo a, float *out, const float *x, const float *w, const float *b, int B, int Cin,
                         int H, int W, int Cout, int k, int stride, int pad, float *scratch);
void conv2d_backward_algo(ConvAlgo a, float *dx, float *dw, float *db, const float *dout, const float *x,
                          const float *w, int B, int Cin, int H, int W, int Cout, int k, int stride, int pad,
                          float *scratch);
// One line for `info` and the benches: which algorithm conv2d_forward/backward use.
void conv2d_backend_describe(char *buf, size_t n);
// Whether CONV_ALGO_DEFAULT is oneDNN's blocked layouts for this kernel shape.
int conv2d_default_blocked(int k, int stride, int pad);
// db [Cout] += dout [B,Cout,P] summed over the batch and positions (every
// algorithm's bias gradient), in a fixed order.
void conv2d_bias_backward(float *db, const float *dout, int B, int Cout, int P);

// ---- resnet_inner.c: a ResNet block's interior, conv1 (3x3, Cin -> Cout, on
// a1 = silu(gn1(x)) [B,Cin,H,W]) + tp [B,Cout] -> GroupNorm+SiLU (G groups) ->
// conv2 (3x3, Cout -> Cout) into out [B,Cout,H,W], with its saved h (conv1 + tp)
// and a2 (silu(gn2(h))) in oneDNN's blocked layout of block blk (conv2d_dnnl.h),
// where the convolutions run on oneDNN's blocked layouts anyway; a1, out and
// their gradients stay NCHW. resnet_inner_block returns blk (8 or 16) where
// this build and CPU serve a block of Cout channels, 0 where the NCHW kernels
// must (always 0 without oneDNN, whose builds lack the two below). Forward
// writes out, h, m2, r2 [B*G], a2; backward adds into da1, dtp and the weight
// gradients (any of dw1..db2 may be NULL), with 2*B*Cout*H*W floats of scratch.
int resnet_inner_block(int Cout);
void resnet_inner_forward(float *out, float *h, float *m2, float *r2, float *a2, const float *a1, const float *tp,
                          const float *w1, const float *b1, const float *g2, const float *be2, const float *w2,
                          const float *b2, int B, int Cin, int H, int W, int Cout, int G, float eps, int blk);
void resnet_inner_backward(float *da1, float *dtp, float *dw1, float *db1, float *dg2, float *dbe2, float *dw2,
                           float *db2, const float *dout, const float *a1, const float *h, const float *m2,
                           const float *r2, const float *a2, const float *w1, const float *g2, const float *be2,
                           const float *w2, int B, int Cin, int H, int W, int Cout, int G, int blk, float *scratch);
// The blocked kernels it runs (tested against the NCHW ones): forward writes
// out, mean, rstd; backward writes dx and adds into dgamma/dbeta; the bias
// adds v [B,C] onto h; channel_sums_blk adds d's per-(b, c) sums into dv and
// their batch sums into db (either may be NULL).
void groupnorm_silu_forward_blk(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                                const float *beta, int B, int C, int HW, int G, float eps, int blk);
void groupnorm_silu_backward_blk(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                                 const float *mean, const float *rstd, const float *gamma, const float *beta, int B,
                                 int C, int HW, int G, int blk);
void add_channel_bias_blk(float *h, const float *v, int B, int C, int HW, int blk);
void channel_sums_blk(float *dv, float *db, const float *d, int B, int C, int HW, int blk);

// ---- groupnorm.c: x [B,C,HW], G groups (C % G == 0), affine gamma/beta [C].
// mean/rstd [B*G] are saved by forward for backward. Biased variance (as torch).
void groupnorm_forward(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                       const float *beta, int B, int C, int HW, int G, float eps);
void groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                        const float *mean, const float *rstd, const float *gamma, int B, int C,
                        int HW, int G);
// GroupNorm then SiLU in one kernel: out = silu(groupnorm(x)). Saves mean/rstd
// only (no normalised copy); backward takes dout = d out and recomputes
// groupnorm(x) from x, mean, rstd, gamma and beta. Same accumulation rules.
void groupnorm_silu_forward(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                            const float *beta, int B, int C, int HW, int G, float eps);
void groupnorm_silu_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                             const float *mean, const float *rstd, const float *gamma, const float *beta,
                             int B, int C, int HW, int G);

// ---- layernorm.c: x [N,C] normalised over C, affine gamma/beta [C]; mean/rstd [N] saved.
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                       const float *beta, int N, int C, float eps);
void layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                        const float *mean, const float *rstd, const float *gamma, int N, int C);

// ---- linear.c: out [N,OC] = x [N,C] @ w[OC,C]^T + b[OC] (b may be NULL).
void linear_forward(float *out, const float *x, const float *w, const float *b, int N, int C, int OC);
void linear_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                     const float *w, int N, int C, int OC);
// out = res + x @ w^T + b, the residual add folded into the GEMM's accumulation
// (out may alias res). Its backward is linear_backward plus dout into d res.
void linear_residual_forward(float *out, const float *x, const float *w, const float *b, const float *res, int N,
                             int C, int OC);

// ---- activations.c: elementwise over n values; exp and Phi from vecmath.h
// (vectorised, error bounds stated there), not libm.
void silu_forward(float *out, const float *x, size_t n);
void silu_backward(float *dx, const float *dout, const float *x, size_t n);
void gelu_forward(float *out, const float *x, size_t n);  // exact: x * Phi(x), erf form
void gelu_backward(float *dx, const float *dout, const float *x, size_t n);
// GEGLU: x [N, 2H] -> out [N, H] = x[:, :H] * gelu(x[:, H:])  (diffusers' chunk order).
void geglu_forward(float *out, const float *x, int N, int H);
void geglu_backward(float *dx, const float *dout, const float *x, int N, int H);

// ---- attention.c: multi-head scaled dot-product attention, scale = (C/nh)^-0.5.
// q [B,Nq,C], k/v [B,Nk,C] with heads interleaved as diffusers does (head h
// owns channels h*d .. h*d+d-1), out [B,Nq,C], probs [B,nh,Nq,Nk] saved (softmax).
void attention_forward(float *out, float *probs, const float *q, const float *k, const float *v,
                       int B, int Nq, int Nk, int C, int nh);
size_t attention_scratch_floats(int Nq, int Nk);
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *probs, int B, int Nq, int Nk,
                        int C, int nh, float *scratch);
// The same attention without the probability matrix (FlashAttention's scheme):
// forward saves out and lse [B,nh,Nq] (log-sum-exp of each query row's scaled
// logits); backward recomputes the probabilities tile by tile from q, k, lse and
// needs out. Query tiles of tq rows, key tiles of tk columns; scratch holds
// attention_flash_scratch_floats(B, nh, Nq, Nk, tq, tk) floats for both
// directions: O(Nq + tq*tk) for each thread the call uses (one per thread, at
// most one per sample-head pair; omp_get_max_threads() at the call counts).
// Backward accumulates like attention_backward (any gradient may be NULL). The
// result does not depend on the thread count.
#define ATTN_TILE_Q 256
#define ATTN_TILE_K 256
size_t attention_flash_scratch_floats(int B, int nh, int Nq, int Nk, int tq, int tk);
void attention_flash_forward(float *out, float *lse, const float *q, const float *k, const float *v, int B,
                             int Nq, int Nk, int C, int nh, int tq, int tk, float *scratch);
void attention_flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *out, const float *lse, int B, int Nq, int Nk, int C,
                              int nh, int tq, int tk, float *scratch);

// ---- resample.c: nearest-neighbour x2 upsampling, x [B,C,H,W] -> out [B,C,2H,2W].
void upsample2x_forward(float *out, const float *x, int B, int C, int H, int W);
void upsample2x_backward(float *dx, const float *dout, int B, int C, int H, int W);

// ---- tensor_ops.c: layout and arithmetic glue.
// concat along channels: a [B,Ca,HW], b [B,Cb,HW] -> out [B,Ca+Cb,HW]; backward splits.
void concat_channels_forward(float *out, const float *a, const float *b, int B, int Ca, int Cb, int HW);
void concat_channels_backward(float *da, float *db, const float *dout, int B, int Ca, int Cb, int HW);
// [B,C,N] <-> [B,N,C]; the backward of one is the other (accumulating).
void transpose_cn_forward(float *out, const float *x, int B, int C, int N);  // [B,C,N] -> [B,N,C]
void transpose_cn_backward(float *dx, const float *dout, int B, int C, int N);
void transpose_nc_forward(float *out, const float *x, int B, int N, int C);  // [B,N,C] -> [B,C,N]
void transpose_nc_backward(float *dx, const float *dout, int B, int N, int C);
// out = a + b (out may alias a or b); backward is adding dout to both.
void add_forward(float *out, const float *a, const float *b, size_t n);
void accumulate(float *dst, const float *src, size_t n);  // dst += src
// out[b,c,hw] = x[b,c,hw] + v[b,c] (per-channel broadcast, the resnet's time embedding).
void add_channel_bias_forward(float *out, const float *x, const float *v, int B, int C, int HW);
void add_channel_bias_backward(float *dx, float *dv, const float *dout, int B, int C, int HW);

// ---- timestep.c: sinusoidal embedding as diffusers' get_timestep_embedding
// (max_period 10000, scale 1): t [B] -> out [B,dim], half = dim/2 frequencies
// exp(-ln(10000)*j/(half - freq_shift)); [sin, cos], or [cos, sin] when flip_sin_to_cos.
void timestep_embedding(float *out, const float *t, int B, int dim, int flip_sin_to_cos, float freq_shift);

// ---- mse.c: mean over n of (a-b)^2; backward adds scale * d/da into da (and
// -scale * d/da into db when db != NULL), scale being the upstream gradient.
double mse_forward(const float *a, const float *b, size_t n);
void mse_backward(float *da, float *db, const float *a, const float *b, size_t n, float scale);
// Distillation's feature terms of one tap for b samples of n elements each:
// raw = mean over all b*n elements of (S-T)^2; norm = sum over samples of
// ||S_s - T_s||^2 / ||T_s||^2 divided by `denom` (the global batch).
// dS (may be NULL) receives += scale * d(term)/dS, the term being the
// normalized one when normalized, else raw * b / denom (its global-mean share).
void feat_term(const float *S, const float *T, int b, size_t n, int normalized, double denom, float scale, double *raw,
               double *norm, float *dS);

// ---- optim.c: the optimizer's element math (train/adamw.h has AdamW's formulas).
// grad_norm: sqrt(sum g^2), accumulated in double over fixed 64K-element chunks
// summed in chunk order: the same bits whatever the thread count.
// grad_clip: torch's clip_grad_norm_: coef = max_norm / (norm + 1e-6); when
// coef < 1 the gradients are multiplied by (float)coef; max_norm <= 0: no
// clipping. Returns the norm before clipping.
// adamw_update: one AdamW update, `step` the 1-based update number.
// ema_update: ema = decay * ema + (1 - decay) * params.
double grad_norm(const float *g, size_t n);
double grad_clip(float *g, size_t n, double max_norm);
void adamw_update(float *params, const float *grads, float *m, float *v, size_t n, double lr, long step,
                  double beta1, double beta2, double eps, double weight_decay);
void ema_update(float *ema, const float *params, size_t n, double decay);

// ---- pool.c: global average pooling, x [B,C,HW] -> out [B,C] = mean over HW.
void global_avgpool_forward(float *out, const float *x, int B, int C, int HW);
void global_avgpool_backward(float *dx, const float *dout, int B, int C, int HW);

// ---- xent.c: softmax cross-entropy, logits [N,K] -> probs [N,K] (softmax);
// returns the mean over N of -log probs[n, labels[n]] (labels NULL: just the
// softmax, returns 0). Backward adds scale * (probs - onehot(labels)) into
// dlogits: scale 1/N is the gradient of the mean.
double softmax_xent_forward(float *probs, const float *logits, const int *labels, int N, int K);
void softmax_xent_backward(float *dlogits, const float *probs, const int *labels, int N, int K, float scale);
#endif
