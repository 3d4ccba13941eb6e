// bench_step.c — time of one training step's forward + backward of the U-Net
// of a job file, at a given batch, and the achieved GFLOP/s (2 x MACs x 3 for
// forward + backward) next to a measured SGEMM rate on this machine.
// usage: bench_step JOB.cfg BATCH [REPEATS] [--forward-only] [--config-out FILE] [--set key=value ...]
//   --forward-only  times the forward pass alone (scoring's pass), no backward
//   --config-out    also writes the model's diffusers config JSON to FILE, so
//                   tests/bench/bench_torch.py can build the same U-Net
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_args.h"
#include "io/config.h"
#include "model/model_json.h"
#include "kernels/gemm.h"
#include "model/init.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "kernels/runtime.h"
#include "model/unet.h"

// The machine's SGEMM rate: the best of 7 timings of 3 products each, so that
// one slow spell of this shared VM (a single 50 ms timing once read half the
// rate) does not make the step look like more than 100% of it.
static double sgemm_gflops(void) {
    int n = 1024, reps = 3;
    float *a = calloc((size_t)n * n, 4), *b = calloc((size_t)n * n, 4), *c = calloc((size_t)n * n, 4);
    gemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n);
    double best = 1e30;
    for (int t = 0; t < 7; t++) {
        double t0 = now_s();
        for (int i = 0; i < reps; i++) gemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * (double)n * reps / best / 1e9;
}

int main(int argc, char **argv) {
    runtime_fix_blas_kernels(argv);  // as laptop-diff does: see runtime.h
    if (argc < 3) {
        fprintf(stderr, "usage: bench_step JOB.cfg BATCH [REPEATS] [--forward-only] [--config-out FILE] [--set key=value ...]\n");
        return 2;
    }
    int B = atoi(argv[2]), reps = argc > 3 && argv[3][0] != '-' ? atoi(argv[3]) : 3;
    const char *sets[32], *config_out = NULL;
    int ns = 0, forward_only = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc && ns < 32) sets[ns++] = argv[++i];
        else if (!strcmp(argv[i], "--config-out") && i + 1 < argc) config_out = argv[++i];
        else if (!strcmp(argv[i], "--forward-only")) forward_only = 1;
        else if (i > 3 || argv[i][0] == '-') {
            fprintf(stderr, "bench_step: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    JobConfig jc;
    Error e;
    if (job_config_load(&jc, argv[1], sets, ns, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    char device[320];
    // as laptop-diff's one rank
    if (runtime_select_device(jc.runtime.device, jc.runtime.precision, jc.runtime.gpu_conv, jc.runtime.gpu_attention,
                              jc.runtime.cpu_gemm, 0,
                              NULL, NULL, device, sizeof device, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    int threads = runtime_set_threads(jc.runtime.threads, 1);
    UNet *u = unet_create(&jc.model, NULL, &e);
    if (!u) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    unet_init_params(u, 1);
    if (config_out && bench_write_config(&jc.model, config_out, "bench_step")) return 1;
    const ModelConfig *m = &jc.model;
    int H = m->sample_size, L = m->context_length, D = m->cross_attention_dim;
    size_t nx = (size_t)B * m->in_channels * H * H, no = (size_t)B * m->out_channels * H * H;
    float *x = malloc(nx * 4), *ctx = malloc((size_t)B * L * D * 4), *out = malloc(no * 4), *t = malloc((size_t)B * 4);
    rng_normal_fill(x, nx, 1, RNG_MISC, 0);
    rng_normal_fill(ctx, (size_t)B * L * D, 1, RNG_MISC, nx);
    for (int i = 0; i < B; i++) t[i] = (float)(37 * i % 1000);
    double best_f = 1e30, best_b = 1e30;
    for (int r = 0; r < reps + 1; r++) {  // first round warms up
        double t0 = now_s();
        if (unet_forward(u, out, x, t, ctx, B, H, H, L, NULL, &e)) return 1;
        double t1 = now_s();
        if (!forward_only) {
            unet_zero_grad(u);
            unet_backward(u, out, NULL);
        }
        double t2 = now_s();
        if (r) {
            if (t1 - t0 < best_f) best_f = t1 - t0;
            if (t2 - t1 < best_b) best_b = t2 - t1;
        }
    }
    double macs = (double)unet_total_macs(u) * B * ((double)H * H / ((double)m->sample_size * m->sample_size));
    double peak = sgemm_gflops();
    printf("model %s: %zu params, %.3f GMACs/sample at %dx%d; batch %d, %d threads; GEMMs on %s\n", argv[1],
           u->pt.total, macs / B / 1e9, H, H, B, threads, device);
    char conv[160];
    conv2d_backend_describe(conv, sizeof conv);
    printf("convolutions: %s\n", conv);
    printf("forward  %.3f s  (%.1f GFLOP/s)\n", best_f, 2 * macs / best_f / 1e9);
    if (forward_only) {
        printf("forward reaches %.0f%% of SGEMM 1024^3 on this machine (%.1f GFLOP/s)\n",
               100 * 2 * macs / best_f / 1e9 / peak, peak);
        unet_free(u);
        free(x), free(ctx), free(out), free(t);
        return 0;
    }
    printf("backward %.3f s  (%.1f GFLOP/s)\n", best_b, 4 * macs / best_b / 1e9);
    printf("step     %.3f s  (%.1f samples/s); SGEMM 1024^3 on this machine: %.1f GFLOP/s; step reaches %.0f%% of it\n",
           best_f + best_b, B / (best_f + best_b), peak, 100 * 6 * macs / (best_f + best_b) / 1e9 / peak);
    unet_free(u);
    free(x), free(ctx), free(out), free(t);
    return 0;
}
