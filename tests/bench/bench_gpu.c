// bench_gpu.c — the GPU backend's performance mode (issue #14): the measured
// cuBLAS GEMM rate at FP32, TF32 and BF16; the time of each op at SD-1.5's
// full-resolution shapes; and one training step's forward + backward of a job
// file's U-Net on the CUDA backend with its TFLOP/s (2 x MACs x 3) against the
// measured GEMM rate of the same precision. Built with LD_CUDA only (against
// the real backend); a benchmark, not a test: it reports, never asserts.
// usage: bench_gpu JOB.cfg BATCH [REPEATS] [fp32|tf32|bf16] [--ops-only] [--config-out FILE] [--set key=value ...]
//   --config-out  writes the model's diffusers config JSON, for tests/bench/bench_torch.py's GPU run
// Times are wall clock around dev_sync'ed calls, best of REPEATS after a warm-up.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "core/rng.h"
#include "cuda/backend_cuda.h"
#include "cuda/ops.h"
#include "io/config.h"
#include "model/init.h"
#include "model/unet.h"

static DevCtx *D;
static int reps = 3;

static float *dev_randn(size_t n, uint64_t seed) {
    float *h = xmalloc(n * sizeof(float)), *d = dev_alloc(D, n);
    rng_normal_fill(h, n, seed, RNG_MISC, 0);
    dev_upload(D, d, h, n);
    free(h);
    return d;
}

// best wall time of fn over reps runs after one warm-up, the device drained around each
#define TIME_BEST(best, ...)                      \
    do {                                          \
        best = 1e30;                              \
        for (int r_ = 0; r_ <= reps; r_++) {      \
            dev_sync(D);                          \
            double t0_ = now_s();                 \
            __VA_ARGS__;                          \
            dev_sync(D);                          \
            double dt_ = now_s() - t0_;           \
            if (r_ && dt_ < best) best = dt_;     \
        }                                         \
    } while (0)

// the emulator runs this only as a smoke check: small shapes there
static int gemm_n(void) { return dev_is_emulated() ? 256 : 8192; }
static double gemm_tflops(GemmPrecision p) {
    int n = gemm_n();
    float *a = dev_randn((size_t)n * n, 1), *b = dev_randn((size_t)n * n, 2), *c = dev_alloc(D, (size_t)n * n);
    dev_set_precision(D, p);
    double t;
    TIME_BEST(t, dev_gemm(D, 0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n));
    dev_free(D, a), dev_free(D, b), dev_free(D, c);
    return 2.0 * n * n * (double)n / t / 1e12;
}

static void op_line(const char *what, double t, double flops) {
    if (flops > 0)
        printf("  %-62s %8.3f ms  %7.2f TFLOP/s\n", what, t * 1e3, flops / t / 1e12);
    else
        printf("  %-62s %8.3f ms\n", what, t * 1e3);
}

// SD-1.5's first stage at HxH latents (64: 4096 tokens), batch B: 320 channels, 8 heads.
static void ops(int B, int H) {
    int C = 320, HW = H * H, G = 32, N = B * HW, L = 77, nh = 8;
    size_t n = (size_t)B * C * HW;
    float *x = dev_randn(n, 3), *y = dev_alloc(D, n), *g = dev_alloc(D, n), *w = dev_randn((size_t)C * C * 9, 4);
    float *bias = dev_randn(C, 5), *gm = dev_randn(C, 6), *mean = dev_alloc(D, (size_t)B * G);
    float *rstd = dev_alloc(D, (size_t)B * G), *mN = dev_alloc(D, N), *rN = dev_alloc(D, N);
    float *dw = dev_alloc(D, (size_t)C * C * 9), *db = dev_alloc(D, C);
    double t, mac3 = 2.0 * B * HW * (double)C * C * 9;
    // both convolution paths, the context's own (runtime.gpu_conv) first
    DevConv own = dev_conv(D), paths[2] = {own, own == DEV_CONV_CUDNN ? DEV_CONV_GEMM : DEV_CONV_CUDNN};
    for (int i = 0; i < 2; i++) {
        Error ce = {0};
        if (dev_set_conv(D, paths[i], &ce)) {
            printf("  conv 3x3 on %s: not here (%s)\n", paths[i] == DEV_CONV_CUDNN ? "cuDNN" : "im2col", ce.msg);
            continue;
        }
        char lib[64], what[128];
        dev_conv_describe(D, lib, sizeof lib);
        long fell = dev_conv_fallbacks(D);
        TIME_BEST(t, cu_conv2d_forward(D, y, x, w, bias, B, C, H, H, C, 3, 1, 1));
        snprintf(what, sizeof what, "conv 3x3 320->320 forward (%s)", lib);
        op_line(what, t, mac3);
        TIME_BEST(t, cu_conv2d_backward(D, g, dw, db, y, x, w, B, C, H, H, C, 3, 1, 1));
        snprintf(what, sizeof what, "conv 3x3 320->320 backward, dx dw db (%s)", lib);
        op_line(what, t, 2 * mac3);
        if (dev_conv_fallbacks(D) > fell) printf("  (cuDNN fell back to im2col for this shape)\n");
    }
    Error ce = {0};
    dev_set_conv(D, own, &ce);
    TIME_BEST(t, cu_groupnorm_silu_forward(D, y, mean, rstd, x, gm, bias, B, C, HW, G, 1e-5f));
    op_line("groupnorm+silu forward", t, 0);
    TIME_BEST(t, cu_groupnorm_silu_backward(D, g, dw, db, y, x, mean, rstd, gm, bias, B, C, HW, G));
    op_line("groupnorm+silu backward", t, 0);
    TIME_BEST(t, cu_layernorm_forward(D, y, mN, rN, x, gm, bias, N, C, 1e-5f));
    op_line("layernorm forward [tokens x 320]", t, 0);
    TIME_BEST(t, cu_layernorm_backward(D, g, dw, db, y, x, mN, rN, gm, N, C));
    op_line("layernorm backward", t, 0);
    TIME_BEST(t, cu_linear_forward(D, y, x, w, bias, N, C, C));
    op_line("linear 320->320 on the tokens, forward", t, 2.0 * N * C * C);
    float *q = dev_randn(n, 7), *k = dev_randn(n, 8), *v = dev_randn(n, 9), *lse = dev_alloc(D, (size_t)B * nh * HW);
    float *dq = dev_alloc(D, n), *dk = dev_alloc(D, n), *dv = dev_alloc(D, n);
    double att = 2.0 * 2 * B * (double)HW * HW * C;
    float *kc = dev_randn((size_t)B * L * C, 10), *vc = dev_randn((size_t)B * L * C, 11);
    // both attention paths, the context's own (runtime.gpu_attention) first
    DevAttn aown = dev_attention(D), apaths[2] = {aown, aown == DEV_ATTN_FUSED ? DEV_ATTN_TILED : DEV_ATTN_FUSED};
    for (int i = 0; i < 2; i++) {
        dev_set_attention(D, apaths[i]);
        long fused0 = dev_attention_fused_calls(D);
        const char *how = apaths[i] == DEV_ATTN_FUSED ? "fused" : "cuBLAS tiles";
        char what[128];
        TIME_BEST(t, cu_attention_forward(D, y, lse, q, k, v, B, HW, HW, C, nh));
        snprintf(what, sizeof what, "self-attention, 8 heads of 40, forward (%s)", how);
        op_line(what, t, att);
        TIME_BEST(t, cu_attention_backward(D, dq, dk, dv, g, q, k, v, y, lse, B, HW, HW, C, nh));
        snprintf(what, sizeof what, "self-attention backward, recomputing P (%s)", how);
        op_line(what, t, 2.5 * att);
        TIME_BEST(t, cu_attention_forward(D, y, lse, q, kc, vc, B, HW, L, C, nh));
        snprintf(what, sizeof what, "cross-attention to 77 tokens, forward (%s)", how);
        op_line(what, t, 2.0 * 2 * B * (double)HW * L * C);
        if (apaths[i] == DEV_ATTN_FUSED && dev_attention_fused_calls(D) == fused0)
            printf("  (the fused kernel declined: it runs at tf32 and bf16 only; these are the cuBLAS tiles)\n");
    }
    dev_set_attention(D, aown);
    float *ps[] = {x, y, g, w, bias, gm, mean, rstd, mN, rN, dw, db, q, k, v, lse, dq, dk, dv, kc, vc};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) dev_free(D, ps[i]);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_gpu JOB.cfg BATCH [REPEATS] [fp32|tf32|bf16] [--ops-only] [--config-out FILE] "
                        "[--set key=value ...]\n");
        return 2;
    }
    int B = atoi(argv[2]), ops_only = 0, ns = 0;
    GemmPrecision prec = GEMM_FP32;
    const char *sets[32], *config_out = NULL;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc && ns < 32) sets[ns++] = argv[++i];
        else if (!strcmp(argv[i], "--ops-only")) ops_only = 1;
        else if (!strcmp(argv[i], "--config-out") && i + 1 < argc) config_out = argv[++i];
        else if (!strcmp(argv[i], "fp32")) prec = GEMM_FP32;
        else if (!strcmp(argv[i], "tf32")) prec = GEMM_TF32;
        else if (!strcmp(argv[i], "bf16")) prec = GEMM_BF16;
        else if (i == 3 && atoi(argv[i]) > 0) reps = atoi(argv[i]);
        else {
            fprintf(stderr, "bench_gpu: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    Error e;
    JobConfig jc;
    if (job_config_load(&jc, argv[1], sets, ns, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    if (config_out && bench_write_config(&jc.model, config_out, "bench_gpu")) return 1;
    Backend *be = backend_cuda_create(0, prec, jc.runtime.gpu_conv, jc.runtime.gpu_attention, &e);
    if (!be) {
        fprintf(stderr, "bench_gpu: %s\n", e.msg);
        return 1;
    }
    D = backend_cuda_dev(be);
    char what[256];
    dev_describe(D, what, sizeof what);
    printf("bench_gpu: %s%s\n", what, dev_is_emulated() ? " -- EMULATED on the host: these are not GPU timings" : "");
    double peak[3];
    for (int p = 0; p < 3; p++) {
        peak[p] = gemm_tflops((GemmPrecision)p);
        printf("cuBLAS GEMM %d^3 %s: %.1f TFLOP/s\n", gemm_n(), gemm_precision_name((GemmPrecision)p), peak[p]);
    }
    dev_set_precision(D, prec);
    int oh = dev_is_emulated() ? 8 : 64;
    printf("ops at SD-1.5's first stage, %dx%d latents, batch %d, GEMMs %s:\n", oh, oh, B, gemm_precision_name(prec));
    ops(B, oh);
    if (ops_only) {
        backend_free(be);
        return 0;
    }
    UNet *u = unet_create(&jc.model, NULL, &e);
    if (!u) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    unet_init_params(u, 1);
    unet_use_backend(u, be);  // the U-Net owns the backend from here
    const ModelConfig *m = &jc.model;
    int H = m->sample_size, L = m->context_length;
    size_t nx = (size_t)B * m->in_channels * H * H, no = (size_t)B * m->out_channels * H * H;
    float *x = dev_randn(nx, 12), *ctx = dev_randn((size_t)B * L * m->cross_attention_dim, 13);
    float *out = dev_alloc(D, no), *t = dev_alloc(D, (size_t)B), *ht = xmalloc((size_t)B * sizeof(float));
    for (int i = 0; i < B; i++) ht[i] = (float)(37 * i % 1000);
    dev_upload(D, t, ht, (size_t)B);
    double tf, tb;
    long fused0 = dev_attention_fused_calls(D);
    TIME_BEST(tf, if (unet_forward(u, out, x, t, ctx, B, H, H, L, NULL, &e)) FATAL("%s", e.msg));
    long fused_per_fwd = (dev_attention_fused_calls(D) - fused0) / (reps + 1);  // TIME_BEST runs reps + 1
    TIME_BEST(tb, unet_forward(u, out, x, t, ctx, B, H, H, L, NULL, &e); unet_zero_grad(u);
              unet_backward(u, out, NULL));
    tb -= tf;  // the second timing is forward + backward
    double macs = (double)unet_total_macs(u) * B;
    printf("model %s: %zu params, %.3f GMACs/sample at %dx%d, batch %d, GEMMs %s\n", argv[1], u->pt.total,
           macs / B / 1e9, H, H, B, gemm_precision_name(prec));
    printf("forward  %.4f s  (%.2f TFLOP/s)\n", tf, 2 * macs / tf / 1e12);
    printf("backward %.4f s  (%.2f TFLOP/s)\n", tb, 4 * macs / tb / 1e12);
    printf("step     %.4f s  (%.2f TFLOP/s, %.0f%% of the measured %s GEMM rate)\n", tf + tb,
           6 * macs / (tf + tb) / 1e12, 100 * 6 * macs / (tf + tb) / 1e12 / peak[prec], gemm_precision_name(prec));
    char lib[64];
    dev_conv_describe(D, lib, sizeof lib);
    printf("convolutions on %s, %ld calls fell back to im2col\n", lib, dev_conv_fallbacks(D));
    printf("attention %s: %ld of the forward's calls fused\n",
           dev_attention(D) == DEV_ATTN_FUSED ? "fused where it fits (runtime.gpu_attention)" : "in cuBLAS tiles",
           fused_per_fwd);
    dev_free(D, x), dev_free(D, ctx), dev_free(D, out), dev_free(D, t);
    free(ht);
    unet_free(u);
    return 0;
}
