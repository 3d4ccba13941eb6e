// backend.h — the one interface the model computes through, so unet.c,
// resnet.c and transformer.c do not fork by device: where tensors live (the
// memory ops, also handed to the arenas) and every op a U-Net layer runs, with
// kernels.h's arguments and rules (forward writes, backward accumulates, NULL
// gradient = not needed) minus the scratch buffers, which a backend keeps
// itself. The CPU backend (backend_cpu.c) is kernels.h and the reference; the
// CUDA one (src/cuda/backend_cuda.c) runs src/cuda/ops.h on device memory.
//
// Call as BK(be, op, args...). On a backend with on_device set, every tensor
// pointer an op or the model takes is device memory: the host reads one only
// through download.
#ifndef LD_BACKEND_H
#define LD_BACKEND_H
#include <stddef.h>

#include "core/arena.h"

typedef struct Backend Backend;
struct Backend {
    const char *name;  // "cpu", "cuda"
    int on_device;     // tensors are device memory
    void *ctx;         // the backend's own state (its scratch; the CUDA context)
    int refs;          // holders (backend_retain / backend_free); 1 when created
    MemOps mem;        // alloc/free/zero in floats (mem.ctx == ctx); the CPU's are malloc-compatible
                       // (64-byte aligned, freed by free()), so host buffers pass between the two
    void (*copy)(void *ctx, float *dst, const float *src, size_t n);
    void (*upload)(void *ctx, float *dst, const float *host, size_t n);
    void (*download)(void *ctx, float *host, const float *src, size_t n);
    void (*destroy)(Backend *be);
    size_t (*work_floats)(void *ctx);  // the size its work buffer has grown to (benchmarks report it)

    void (*conv2d_forward)(void *ctx, float *out, const float *x, const float *w, const float *b, int B, int Cin,
                           int H, int W, int Cout, int k, int stride, int pad);
    void (*conv2d_backward)(void *ctx, float *dx, float *dw, float *db, const float *dout, const float *x,
                            const float *w, int B, int Cin, int H, int W, int Cout, int k, int stride, int pad);
    void (*groupnorm_forward)(void *ctx, float *out, float *mean, float *rstd, const float *x, const float *gamma,
                              const float *beta, int B, int C, int HW, int G, float eps);
    void (*groupnorm_backward)(void *ctx, float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                               const float *mean, const float *rstd, const float *gamma, int B, int C, int HW, int G);
    void (*groupnorm_silu_forward)(void *ctx, float *out, float *mean, float *rstd, const float *x,
                                   const float *gamma, const float *beta, int B, int C, int HW, int G, float eps);
    void (*groupnorm_silu_backward)(void *ctx, float *dx, float *dgamma, float *dbeta, const float *dout,
                                    const float *x, const float *mean, const float *rstd, const float *gamma,
                                    const float *beta, int B, int C, int HW, int G);
    void (*layernorm_forward)(void *ctx, float *out, float *mean, float *rstd, const float *x, const float *gamma,
                              const float *beta, int N, int C, float eps);
    void (*layernorm_backward)(void *ctx, float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                               const float *mean, const float *rstd, const float *gamma, int N, int C);
    void (*linear_forward)(void *ctx, float *out, const float *x, const float *w, const float *b, int N, int C,
                           int OC);
    void (*linear_residual_forward)(void *ctx, float *out, const float *x, const float *w, const float *b,
                                    const float *res, int N, int C, int OC);
    void (*linear_backward)(void *ctx, float *dx, float *dw, float *db, const float *dout, const float *x,
                            const float *w, int N, int C, int OC);
    void (*silu_forward)(void *ctx, float *out, const float *x, size_t n);
    void (*silu_backward)(void *ctx, float *dx, const float *dout, const float *x, size_t n);
    void (*geglu_forward)(void *ctx, float *out, const float *x, int N, int H);
    void (*geglu_backward)(void *ctx, float *dx, const float *dout, const float *x, int N, int H);
    // memory-efficient attention: out [B,Nq,C] and lse [B,nh,Nq] saved, probabilities recomputed
    void (*attention_forward)(void *ctx, float *out, float *lse, const float *q, const float *k, const float *v,
                              int B, int Nq, int Nk, int C, int nh);
    void (*attention_backward)(void *ctx, float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, const float *out, const float *lse, int B, int Nq,
                               int Nk, int C, int nh);
    void (*upsample2x_forward)(void *ctx, float *out, const float *x, int B, int C, int H, int W);
    void (*upsample2x_backward)(void *ctx, float *dx, const float *dout, int B, int C, int H, int W);
    void (*concat_channels_forward)(void *ctx, float *out, const float *a, const float *b, int B, int Ca, int Cb,
                                    int HW);
    void (*concat_channels_backward)(void *ctx, float *da, float *db, const float *dout, int B, int Ca, int Cb,
                                     int HW);
    void (*transpose_cn_forward)(void *ctx, float *out, const float *x, int B, int C, int N);
    void (*transpose_cn_backward)(void *ctx, float *dx, const float *dout, int B, int C, int N);
    void (*transpose_nc_forward)(void *ctx, float *out, const float *x, int B, int N, int C);
    void (*transpose_nc_backward)(void *ctx, float *dx, const float *dout, int B, int N, int C);
    void (*add_forward)(void *ctx, float *out, const float *a, const float *b, size_t n);
    void (*accumulate)(void *ctx, float *dst, const float *src, size_t n);
    void (*add_channel_bias_forward)(void *ctx, float *out, const float *x, const float *v, int B, int C, int HW);
    void (*add_channel_bias_backward)(void *ctx, float *dx, float *dv, const float *dout, int B, int C, int HW);
    // Optional (NULL: resnet.c runs a ResNet block's conv1, bias, GroupNorm+SiLU and conv2 as the ops
    // above): the block's interior as one op that keeps its saved h and a2 in a layout of the backend's own
    // (kernels.h's resnet_inner_*). resnet_inner_layout returns that layout for a block of Cout channels
    // (the same every call), or 0 where the block must run as separate ops; forward and backward are
    // handed it back.
    int (*resnet_inner_layout)(void *ctx, int Cout);
    void (*resnet_inner_forward)(void *ctx, float *out, float *h, float *m2, float *r2, float *a2, const float *a1,
                                 const float *tp, const float *w1, const float *b1, const float *g2,
                                 const float *be2, const float *w2, const float *b2, int B, int Cin, int H, int W,
                                 int Cout, int G, float eps, int layout);
    void (*resnet_inner_backward)(void *ctx, float *da1, float *dtp, float *dw1, float *db1, float *dg2,
                                  float *dbe2, float *dw2, float *db2, const float *dout, const float *a1,
                                  const float *h, const float *m2, const float *r2, const float *a2, const float *w1,
                                  const float *g2, const float *be2, const float *w2, int B, int Cin, int H, int W,
                                  int Cout, int G, int layout);
    // losses: the sums come back to the host
    double (*mse_forward)(void *ctx, const float *a, const float *b, size_t n);
    void (*mse_backward)(void *ctx, float *da, float *db, const float *a, const float *b, size_t n, float scale);
    void (*feat_term)(void *ctx, const float *S, const float *T, int b, size_t n, int normalized, double denom,
                      float scale, double *raw, double *norm, float *dS);
    // the optimizer on the flat parameter/gradient buffers (kernels.h's optim.c)
    double (*grad_norm)(void *ctx, const float *g, size_t n);
    double (*grad_clip)(void *ctx, float *g, size_t n, double max_norm);
    void (*adamw_update)(void *ctx, float *params, const float *grads, float *m, float *v, size_t n, double lr,
                         long step, double beta1, double beta2, double eps, double weight_decay);
    void (*ema_update)(void *ctx, float *ema, const float *params, size_t n, double decay);
    void (*timestep_embedding)(void *ctx, float *out, const float *t, int B, int dim, int flip_sin_to_cos,
                               float freq_shift);
};

#define BK(be, op, ...) ((be)->op((be)->ctx, __VA_ARGS__))
static inline void bk_zero(const Backend *be, float *p, size_t n) { be->mem.zero(be->ctx, p, n); }

// The CPU backend: kernels.h on host memory, with its own scratch buffer.
Backend *backend_cpu_create(void);
// One more holder of be (returns be). A teacher and its student on one device
// share one backend, so their ops run on one stream, in order: on two, the
// student's loss could read the teacher's taps before they are written.
Backend *backend_retain(Backend *be);
// Drops one holder; the last one destroys the backend. NULL is fine.
void backend_free(Backend *be);
#endif
