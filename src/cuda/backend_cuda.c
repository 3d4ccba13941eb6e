// backend_cuda.c — the CUDA backend (kernels/backend.h): src/cuda/ops.h on
// device memory through one DevCtx, which the backend owns. Each entry
// forwards to its device op; dev_scratch is the work buffer.
#include "cuda/backend_cuda.h"

#include <stdlib.h>
#include <string.h>

#include "cuda/ops.h"
#if defined(LD_NCCL) || defined(LD_CUDA_EMU)
#define LD_HAVE_NCCL 1
#include "cuda/nccl_sum.h"
#endif

typedef struct {
    Backend be;
    DevCtx *d;
    char conv_note[256];  // why runtime.gpu_conv "auto" left cuDNN out, for the start-up line
} CudaBackend;

static float *g_alloc(void *ctx, size_t n) { return dev_alloc((DevCtx *)ctx, n); }
static void g_free(void *ctx, void *p) { dev_free((DevCtx *)ctx, p); }
static void g_zero(void *ctx, float *p, size_t n) { dev_zero((DevCtx *)ctx, p, n); }
static void g_copy(void *ctx, float *dst, const float *src, size_t n) {
    if (n && dst != src) dev_copy((DevCtx *)ctx, dst, src, n);
}
static void g_upload(void *ctx, float *dst, const float *host, size_t n) { dev_upload((DevCtx *)ctx, dst, host, n); }
static void g_download(void *ctx, float *host, const float *src, size_t n) {
    dev_download((DevCtx *)ctx, host, src, n);
}
static size_t g_work_floats(void *ctx) { return dev_scratch_floats((DevCtx *)ctx); }
static void g_destroy(Backend *be) {
    CudaBackend *c = (CudaBackend *)be;
    dev_close(c->d);
    free(c);
}

static void g_conv2d_forward(void *ctx, float *out, const float *x, const float *w, const float *b, int B, int Cin,
                             int H, int W, int Cout, int k, int stride, int pad) {
    cu_conv2d_forward((DevCtx *)ctx, out, x, w, b, B, Cin, H, W, Cout, k, stride, pad);
}
static void g_conv2d_backward(void *ctx, float *dx, float *dw, float *db, const float *dout, const float *x,
                              const float *w, int B, int Cin, int H, int W, int Cout, int k, int stride, int pad) {
    cu_conv2d_backward((DevCtx *)ctx, dx, dw, db, dout, x, w, B, Cin, H, W, Cout, k, stride, pad);
}
static void g_groupnorm_forward(void *ctx, float *out, float *mean, float *rstd, const float *x, const float *gamma,
                                const float *beta, int B, int C, int HW, int G, float eps) {
    cu_groupnorm_forward((DevCtx *)ctx, out, mean, rstd, x, gamma, beta, B, C, HW, G, eps);
}
static void g_groupnorm_backward(void *ctx, float *dx, float *dgamma, float *dbeta, const float *dout,
                                 const float *x, const float *mean, const float *rstd, const float *gamma, int B,
                                 int C, int HW, int G) {
    cu_groupnorm_backward((DevCtx *)ctx, dx, dgamma, dbeta, dout, x, mean, rstd, gamma, B, C, HW, G);
}
static void g_groupnorm_silu_forward(void *ctx, float *out, float *mean, float *rstd, const float *x,
                                     const float *gamma, const float *beta, int B, int C, int HW, int G, float eps) {
    cu_groupnorm_silu_forward((DevCtx *)ctx, out, mean, rstd, x, gamma, beta, B, C, HW, G, eps);
}
static void g_groupnorm_silu_backward(void *ctx, float *dx, float *dgamma, float *dbeta, const float *dout,
                                      const float *x, const float *mean, const float *rstd, const float *gamma,
                                      const float *beta, int B, int C, int HW, int G) {
    cu_groupnorm_silu_backward((DevCtx *)ctx, dx, dgamma, dbeta, dout, x, mean, rstd, gamma, beta, B, C, HW, G);
}
static void g_layernorm_forward(void *ctx, float *out, float *mean, float *rstd, const float *x, const float *gamma,
                                const float *beta, int N, int C, float eps) {
    cu_layernorm_forward((DevCtx *)ctx, out, mean, rstd, x, gamma, beta, N, C, eps);
}
static void g_layernorm_backward(void *ctx, float *dx, float *dgamma, float *dbeta, const float *dout,
                                 const float *x, const float *mean, const float *rstd, const float *gamma, int N,
                                 int C) {
    cu_layernorm_backward((DevCtx *)ctx, dx, dgamma, dbeta, dout, x, mean, rstd, gamma, N, C);
}
static void g_linear_forward(void *ctx, float *out, const float *x, const float *w, const float *b, int N, int C,
                             int OC) {
    cu_linear_forward((DevCtx *)ctx, out, x, w, b, N, C, OC);
}
static void g_linear_residual_forward(void *ctx, float *out, const float *x, const float *w, const float *b,
                                      const float *res, int N, int C, int OC) {
    cu_linear_residual_forward((DevCtx *)ctx, out, x, w, b, res, N, C, OC);
}
static void g_linear_backward(void *ctx, float *dx, float *dw, float *db, const float *dout, const float *x,
                              const float *w, int N, int C, int OC) {
    cu_linear_backward((DevCtx *)ctx, dx, dw, db, dout, x, w, N, C, OC);
}
static void g_silu_forward(void *ctx, float *out, const float *x, size_t n) {
    cu_silu_forward((DevCtx *)ctx, out, x, n);
}
static void g_silu_backward(void *ctx, float *dx, const float *dout, const float *x, size_t n) {
    cu_silu_backward((DevCtx *)ctx, dx, dout, x, n);
}
static void g_geglu_forward(void *ctx, float *out, const float *x, int N, int H) {
    cu_geglu_forward((DevCtx *)ctx, out, x, N, H);
}
static void g_geglu_backward(void *ctx, float *dx, const float *dout, const float *x, int N, int H) {
    cu_geglu_backward((DevCtx *)ctx, dx, dout, x, N, H);
}
static void g_attention_forward(void *ctx, float *out, float *lse, const float *q, const float *k, const float *v,
                                int B, int Nq, int Nk, int C, int nh) {
    cu_attention_forward((DevCtx *)ctx, out, lse, q, k, v, B, Nq, Nk, C, nh);
}
static void g_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                 const float *k, const float *v, const float *out, const float *lse, int B, int Nq,
                                 int Nk, int C, int nh) {
    cu_attention_backward((DevCtx *)ctx, dq, dk, dv, dout, q, k, v, out, lse, B, Nq, Nk, C, nh);
}
static void g_upsample2x_forward(void *ctx, float *out, const float *x, int B, int C, int H, int W) {
    cu_upsample2x_forward((DevCtx *)ctx, out, x, B, C, H, W);
}
static void g_upsample2x_backward(void *ctx, float *dx, const float *dout, int B, int C, int H, int W) {
    cu_upsample2x_backward((DevCtx *)ctx, dx, dout, B, C, H, W);
}
static void g_concat_channels_forward(void *ctx, float *out, const float *a, const float *b, int B, int Ca, int Cb,
                                      int HW) {
    cu_concat_channels_forward((DevCtx *)ctx, out, a, b, B, Ca, Cb, HW);
}
static void g_concat_channels_backward(void *ctx, float *da, float *db, const float *dout, int B, int Ca, int Cb,
                                       int HW) {
    cu_concat_channels_backward((DevCtx *)ctx, da, db, dout, B, Ca, Cb, HW);
}
static void g_transpose_cn_forward(void *ctx, float *out, const float *x, int B, int C, int N) {
    cu_transpose_cn_forward((DevCtx *)ctx, out, x, B, C, N);
}
static void g_transpose_cn_backward(void *ctx, float *dx, const float *dout, int B, int C, int N) {
    cu_transpose_cn_backward((DevCtx *)ctx, dx, dout, B, C, N);
}
static void g_transpose_nc_forward(void *ctx, float *out, const float *x, int B, int N, int C) {
    cu_transpose_nc_forward((DevCtx *)ctx, out, x, B, N, C);
}
static void g_transpose_nc_backward(void *ctx, float *dx, const float *dout, int B, int N, int C) {
    cu_transpose_nc_backward((DevCtx *)ctx, dx, dout, B, N, C);
}
static void g_add_forward(void *ctx, float *out, const float *a, const float *b, size_t n) {
    cu_add_forward((DevCtx *)ctx, out, a, b, n);
}
static void g_accumulate(void *ctx, float *dst, const float *src, size_t n) {
    cu_accumulate((DevCtx *)ctx, dst, src, n);
}
static void g_add_channel_bias_forward(void *ctx, float *out, const float *x, const float *v, int B, int C, int HW) {
    cu_add_channel_bias_forward((DevCtx *)ctx, out, x, v, B, C, HW);
}
static void g_add_channel_bias_backward(void *ctx, float *dx, float *dv, const float *dout, int B, int C, int HW) {
    cu_add_channel_bias_backward((DevCtx *)ctx, dx, dv, dout, B, C, HW);
}
static void g_timestep_embedding(void *ctx, float *out, const float *t, int B, int dim, int flip_sin_to_cos,
                                 float freq_shift) {
    cu_timestep_embedding((DevCtx *)ctx, out, t, B, dim, flip_sin_to_cos, freq_shift);
}
static double g_mse_forward(void *ctx, const float *a, const float *b, size_t n) {
    return cu_mse_forward((DevCtx *)ctx, a, b, n);
}
static void g_mse_backward(void *ctx, float *da, float *db, const float *a, const float *b, size_t n, float scale) {
    cu_mse_backward((DevCtx *)ctx, da, db, a, b, n, scale);
}
static void g_feat_term(void *ctx, const float *S, const float *T, int b, size_t n, int normalized, double denom,
                        float scale, double *raw, double *norm, float *dS) {
    cu_feat_term((DevCtx *)ctx, S, T, b, n, normalized, denom, scale, raw, norm, dS);
}
static double g_grad_norm(void *ctx, const float *g, size_t n) { return cu_grad_norm((DevCtx *)ctx, g, n); }
static double g_grad_clip(void *ctx, float *g, size_t n, double max_norm) {
    return cu_clip((DevCtx *)ctx, g, n, max_norm);
}
static void g_adamw_update(void *ctx, float *params, const float *grads, float *m, float *v, size_t n, double lr,
                           long step, double beta1, double beta2, double eps, double weight_decay) {
    cu_adamw_step((DevCtx *)ctx, params, grads, m, v, n, lr, step, beta1, beta2, eps, weight_decay);
}
static void g_ema_update(void *ctx, float *ema, const float *params, size_t n, double decay) {
    cu_ema_update((DevCtx *)ctx, ema, params, n, decay);
}

_Static_assert((int)PRECISION_TF32 == (int)GEMM_TF32 && (int)PRECISION_BF16 == (int)GEMM_BF16,
               "runtime.h's Precision names GemmPrecision's values");

Backend *backend_cuda_create(int device, GemmPrecision precision, GpuConv conv, GpuAttention attn, Error *e) {
    if (attn == GPU_ATTN_FUSED && precision == GEMM_FP32) {
        errorf(e, "runtime.gpu_attention = \"fused\" runs on tensor cores: it needs runtime.precision \"tf32\" or "
                  "\"bf16\" (at \"fp32\" attention runs in cuBLAS query tiles: runtime.gpu_attention \"auto\" or "
                  "\"tiled\")");
        return NULL;
    }
    DevCtx *d = dev_open(device, precision, e);
    if (!d) return NULL;
    // "auto" too: the fused kernel declines, per call, at fp32 or where a head does not fit
    dev_set_attention(d, attn == GPU_ATTN_TILED ? DEV_ATTN_TILED : DEV_ATTN_FUSED);
    Error ce = {0};
    if (conv == GPU_CONV_CUDNN && dev_set_conv(d, DEV_CONV_CUDNN, &ce)) {
        errorf(e, "runtime.gpu_conv = \"cudnn\": %s; \"gemm\" convolves with im2col + cuBLAS instead", ce.msg);
        dev_close(d);
        return NULL;
    }
    CudaBackend *c = xcalloc(1, sizeof *c);
    if (conv == GPU_CONV_AUTO && dev_has_cudnn() && dev_set_conv(d, DEV_CONV_CUDNN, &ce))
        snprintf(c->conv_note, sizeof c->conv_note, "; runtime.gpu_conv \"auto\" left cuDNN out: %.200s", ce.msg);
    Backend *be = &c->be;
    c->d = d;
    be->name = "cuda";
    be->refs = 1;
    be->on_device = 1;
    be->ctx = d;
    be->mem = (MemOps){d, g_alloc, g_free, g_zero};
    be->copy = g_copy, be->upload = g_upload, be->download = g_download;
    be->destroy = g_destroy, be->work_floats = g_work_floats;
    be->conv2d_forward = g_conv2d_forward;
    be->conv2d_backward = g_conv2d_backward;
    be->groupnorm_forward = g_groupnorm_forward;
    be->groupnorm_backward = g_groupnorm_backward;
    be->groupnorm_silu_forward = g_groupnorm_silu_forward;
    be->groupnorm_silu_backward = g_groupnorm_silu_backward;
    be->layernorm_forward = g_layernorm_forward;
    be->layernorm_backward = g_layernorm_backward;
    be->linear_forward = g_linear_forward;
    be->linear_residual_forward = g_linear_residual_forward;
    be->linear_backward = g_linear_backward;
    be->silu_forward = g_silu_forward;
    be->silu_backward = g_silu_backward;
    be->geglu_forward = g_geglu_forward;
    be->geglu_backward = g_geglu_backward;
    be->attention_forward = g_attention_forward;
    be->attention_backward = g_attention_backward;
    be->upsample2x_forward = g_upsample2x_forward;
    be->upsample2x_backward = g_upsample2x_backward;
    be->concat_channels_forward = g_concat_channels_forward;
    be->concat_channels_backward = g_concat_channels_backward;
    be->transpose_cn_forward = g_transpose_cn_forward;
    be->transpose_cn_backward = g_transpose_cn_backward;
    be->transpose_nc_forward = g_transpose_nc_forward;
    be->transpose_nc_backward = g_transpose_nc_backward;
    be->add_forward = g_add_forward;
    be->accumulate = g_accumulate;
    be->add_channel_bias_forward = g_add_channel_bias_forward;
    be->add_channel_bias_backward = g_add_channel_bias_backward;
    be->timestep_embedding = g_timestep_embedding;
    be->mse_forward = g_mse_forward, be->mse_backward = g_mse_backward, be->feat_term = g_feat_term;
    be->grad_norm = g_grad_norm, be->grad_clip = g_grad_clip, be->adamw_update = g_adamw_update;
    be->ema_update = g_ema_update;
    return be;
}

DevCtx *backend_cuda_dev(const Backend *be) { return ((const CudaBackend *)be)->d; }

// runtime.h's DeviceBackend entries over the functions above.
static Backend *p_create(int device, Precision precision, GpuConv conv, GpuAttention attn, Error *e) {
    return backend_cuda_create(device, (GemmPrecision)precision, conv, attn, e);
}
static void p_describe(const Backend *be, char *buf, size_t n) {
    dev_describe(backend_cuda_dev(be), buf, n);
    size_t used = strlen(buf);
    if (used < n) snprintf(buf + used, n - used, "%s", ((const CudaBackend *)be)->conv_note);
}
static void p_device_id(const Backend *be, char *buf, size_t n) { dev_pci_id(backend_cuda_dev(be), buf, n); }

#ifdef LD_HAVE_NCCL
static Comm *p_sum_comm(Backend *be, Comm *host, Error *e) { return nccl_sum_create(host, backend_cuda_dev(be), e); }
#define SUM_COMM p_sum_comm, nccl_sum_free, nccl_sum_version
#else
#define SUM_COMM NULL, NULL, NULL  // built without NCCL: the GPUs sum through host memory
#endif

const DeviceBackend *backend_cuda_device(void) {
    // the emulator under its own name, so no start-up line can pass it off as a GPU
    static const DeviceBackend gpu = {"CUDA", dev_count, p_create, p_describe, SUM_COMM, p_device_id};
    static const DeviceBackend emu = {"CUDA emulator", dev_count, p_create, p_describe, SUM_COMM, p_device_id};
    return dev_is_emulated() ? &emu : &gpu;
}
