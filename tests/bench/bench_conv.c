// bench_conv.c — the convolution algorithms of conv2d.c side by side in one run
// (issue #13 item 1): per-sample im2col + GEMM, batched im2col (several samples
// per GEMM, column buffer capped), oneDNN on NCHW, oneDNN on its own blocked
// layouts (with the reorders). Forward, backward-data and backward-weights
// separately, for the 3x3 / 1x1 shapes of the default teacher (jobs/fmnist_teacher.cfg)
// at batch 32 and a few SD-1.5 shapes; GFLOP/s next to the SGEMM rate measured
// in the same run. Algorithms are interleaved per repeat (A B C D A B C D ...)
// and the best repeat counts, so a loaded machine hurts them alike.
// usage: bench_conv [REPEATS] [THREADS] [teacher|sd15|all]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "kernels/runtime.h"

#include "bench_args.h"

typedef struct {
    const char *set;
    int B, Cin, H, Cout, k, s, count;  // count: how many convolutions of this shape one U-Net pass has
} Shape;

// The default teacher (block_out_channels 16/32/64/64, 2 layers per block, 32x32,
// skip concatenations in the up path), counted from its architecture.
static const Shape shapes[] = {
    {"teacher", 32, 1, 32, 16, 3, 1, 1},     // conv_in
    {"teacher", 32, 16, 32, 16, 3, 1, 7},    // down0 resnets, up3 conv2
    {"teacher", 32, 48, 32, 16, 3, 1, 1},    // up3 resnet0 conv1 (skip concat)
    {"teacher", 32, 32, 32, 16, 3, 1, 2},    // up3 resnet1/2 conv1
    {"teacher", 32, 32, 32, 32, 3, 1, 1},    // up2 upsampler conv
    {"teacher", 32, 16, 32, 16, 3, 2, 1},    // down0 downsampler
    {"teacher", 32, 16, 32, 1, 3, 1, 1},     // conv_out
    {"teacher", 32, 48, 32, 16, 1, 1, 1},    // up3 resnet0 shortcut (1x1)
    {"teacher", 32, 32, 32, 16, 1, 1, 2},    // up3 resnet1/2 shortcuts
    {"teacher", 32, 32, 16, 32, 3, 1, 6},    // down1 / up2 resnets
    {"teacher", 32, 16, 16, 32, 3, 1, 1},    // down1 resnet0 conv1
    {"teacher", 32, 96, 16, 32, 3, 1, 1},    // up2 resnet0 conv1
    {"teacher", 32, 64, 16, 32, 3, 1, 1},    // up2 resnet1 conv1
    {"teacher", 32, 48, 16, 32, 3, 1, 1},    // up2 resnet2 conv1
    {"teacher", 32, 64, 16, 64, 3, 1, 1},    // up1 upsampler conv
    {"teacher", 32, 32, 16, 32, 3, 2, 1},    // down1 downsampler
    {"teacher", 32, 64, 8, 64, 3, 1, 7},     // down2 / up1 resnets, up0 upsampler
    {"teacher", 32, 128, 8, 64, 3, 1, 2},    // up1 resnet0/1 conv1
    {"teacher", 32, 96, 8, 64, 3, 1, 1},     // up1 resnet2 conv1
    {"teacher", 32, 32, 8, 64, 3, 1, 1},     // down2 resnet0 conv1
    {"teacher", 32, 16, 16, 32, 1, 1, 1},    // down1 resnet0 shortcut (1x1)
    {"teacher", 32, 96, 16, 32, 1, 1, 1},    // up2 resnet0 shortcut
    {"teacher", 32, 64, 16, 32, 1, 1, 1},    // up2 resnet1 shortcut
    {"teacher", 32, 48, 16, 32, 1, 1, 1},    // up2 resnet2 shortcut
    {"teacher", 32, 32, 8, 64, 1, 1, 1},     // down2 resnet0 shortcut
    {"teacher", 32, 128, 8, 64, 1, 1, 2},    // up1 resnet0/1 shortcuts
    {"teacher", 32, 96, 8, 64, 1, 1, 1},     // up1 resnet2 shortcut
    {"teacher", 32, 128, 4, 64, 1, 1, 3},    // up0 resnet shortcuts
    // (the transformers' proj_in/proj_out are 1x1 too, but run as linear layers on the tokens)
    {"teacher", 32, 64, 4, 64, 3, 1, 11},    // down3 / mid / up0 resnets
    {"teacher", 32, 128, 4, 64, 3, 1, 3},    // up0 resnet conv1
    // SD-1.5 (block_out_channels 320/640/1280/1280) at 32x32 latents, batch 2 (the scoring pass) ...
    {"sd15", 2, 320, 32, 320, 3, 1, 0},
    {"sd15", 2, 640, 16, 640, 3, 1, 0},
    {"sd15", 2, 1280, 8, 1280, 3, 1, 0},
    {"sd15", 2, 640, 32, 320, 3, 1, 0},
    {"sd15", 2, 320, 32, 320, 3, 2, 0},
    {"sd15", 2, 320, 32, 320, 1, 1, 0},
    // ... and at 64x64 latents, batch 1 (the largest activation: chunking and the cap)
    {"sd15", 1, 320, 64, 320, 3, 1, 0},
};

static const ConvAlgo algos[] = {CONV_ALGO_IM2COL, CONV_ALGO_IM2COL_BATCHED, CONV_ALGO_DNNL, CONV_ALGO_DNNL_BLOCKED};
#define NALG (int)(sizeof algos / sizeof *algos)

static double sgemm_gflops(void) {
    int n = 1024;
    float *a = xcalloc((size_t)n * n, 4), *b = xcalloc((size_t)n * n, 4), *c = xcalloc((size_t)n * n, 4);
    gemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n);
    double best = 1e30;
    for (int i = 0; i < 5; i++) {
        double t0 = now_s();
        gemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

int main(int argc, char **argv) {
    int reps, threads;
    const char *which;
    bench_args(argc, argv, &reps, &threads, &which);
    char backend[256];
    conv2d_backend_describe(backend, sizeof backend);
    double peak = sgemm_gflops();
    printf("bench_conv: %d threads, best of %d; conv2d_forward/backward in this build: %s\n", threads, reps, backend);
    printf("SGEMM 1024^3 this run: %.1f GFLOP/s\n", peak);
    int avail[NALG];
    printf("%-8s %4s %5s %4s %5s %2s %2s %3s %-4s", "set", "B", "Cin", "H", "Cout", "k", "s", "cnt", "dir");
    for (int a = 0; a < NALG; a++) {
        avail[a] = conv2d_algo_available(algos[a]);
        printf(" %15s", conv2d_algo_name(algos[a]));
    }
    printf("   (ms, GFLOP/s)\n");
    double total[3][NALG] = {{0}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *S = &shapes[si];
        if (strcmp(which, "all") && strcmp(which, S->set)) continue;
        int pad = S->k / 2, Ho = conv2d_out_size(S->H, S->k, S->s, pad);
        size_t nx = (size_t)S->B * S->Cin * S->H * S->H, ny = (size_t)S->B * S->Cout * Ho * Ho;
        size_t nw = (size_t)S->Cout * S->Cin * S->k * S->k;
        double flops = 2.0 * (double)ny * S->Cin * S->k * S->k;
        float *x = xmalloc(nx * 4), *w = xmalloc(nw * 4), *b = xmalloc((size_t)S->Cout * 4);
        float *y = xmalloc(ny * 4), *dy = xmalloc(ny * 4), *dx = xcalloc(nx, 4), *dw = xcalloc(nw, 4);
        rng_normal_fill(x, nx, 1, RNG_MISC, 1);
        rng_normal_fill(w, nw, 1, RNG_MISC, 2);
        rng_normal_fill(b, S->Cout, 1, RNG_MISC, 3);
        rng_normal_fill(dy, ny, 1, RNG_MISC, 4);
        size_t ns = 0;
        for (int a = 0; a < NALG; a++) {
            size_t n = conv2d_algo_scratch_floats(algos[a], S->B, S->Cin, S->H, S->H, S->Cout, S->k, S->s, pad);
            if (n > ns) ns = n;
        }
        float *scratch = xmalloc(ns * 4 + 4);
        double best[3][NALG];
        for (int d = 0; d < 3; d++)
            for (int a = 0; a < NALG; a++) best[d][a] = 1e30;
        for (int r = 0; r < reps + 1; r++)  // round 0 warms up (first touch, primitive creation)
            for (int d = 0; d < 3; d++)
                for (int a = 0; a < NALG; a++) {
                    if (!avail[a]) continue;
                    double t0 = now_s();
                    if (d == 0)
                        conv2d_forward_algo(algos[a], y, x, w, b, S->B, S->Cin, S->H, S->H, S->Cout, S->k, S->s, pad,
                                            scratch);
                    else
                        conv2d_backward_algo(algos[a], d == 1 ? dx : NULL, d == 2 ? dw : NULL, NULL, dy, x, w, S->B,
                                             S->Cin, S->H, S->H, S->Cout, S->k, S->s, pad, scratch);
                    double dt = now_s() - t0;
                    if (r && dt < best[d][a]) best[d][a] = dt;
                }
        static const char *const dn[3] = {"fwd", "bwdd", "bwdw"};
        for (int d = 0; d < 3; d++) {
            printf("%-8s %4d %5d %4d %5d %2d %2d %3d %-4s", S->set, S->B, S->Cin, S->H, S->Cout, S->k, S->s, S->count,
                   dn[d]);
            for (int a = 0; a < NALG; a++) {
                if (!avail[a]) {
                    printf(" %15s", "-");
                    continue;
                }
                printf("  %7.3f %6.1f", best[d][a] * 1e3, flops / best[d][a] / 1e9);
                total[d][a] += best[d][a] * S->count;
            }
            printf("\n");
        }
        free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(scratch);
    }
    if (!strcmp(which, "all") || !strcmp(which, "teacher")) {
        printf("teacher, all its convolutions of one step (shape time x count), ms:\n");
        static const char *const dn[3] = {"forward", "backward-data", "backward-weights"};
        double step[NALG] = {0};
        for (int d = 0; d < 3; d++) {
            printf("  %-17s", dn[d]);
            for (int a = 0; a < NALG; a++) {
                step[a] += total[d][a];
                if (avail[a]) printf(" %s %.1f", conv2d_algo_name(algos[a]), total[d][a] * 1e3);
            }
            printf("\n");
        }
        printf("  %-17s", "sum");
        for (int a = 0; a < NALG; a++)
            if (avail[a]) printf(" %s %.1f (%.2fx im2col)", conv2d_algo_name(algos[a]), step[a] * 1e3, step[a] / step[0]);
        printf("\n");
    }
    return 0;
}
