// bench_libs_conv.c — 3x3 convolution forward in oneDNN (conv2d.c's path) against
// libxsmm 1.17's direct convolution (libxsmm_dnn_*), issue #13 item 1. Built with
// bench_libs only where libxsmm-dev is installed; the program never links it.
// libxsmm convolves its own layouts: activations blocked by 16 channels
// (N, C/16, H, W, 16) with the zero rim stored in the input buffer, filters
// blocked likewise. Three timings per shape:
//   onednn-blocked oneDNN on its own layouts, reorders in and out every call:
//                  what conv2d_forward picks for 3x3 (CONV_ALGO_DEFAULT), the baseline
//   onednn         conv2d_forward_algo(CONV_ALGO_DNNL): oneDNN on our NCHW/OIHW
//   xsmm           libxsmm_dnn_execute_st on data already in its layouts
//                  (the best case: a network kept in libxsmm's layouts throughout)
//   xsmm+copy      the same plus the copy of NCHW x into the padded blocked input
//                  and of the output back to NCHW (what conv2d_forward's NCHW
//                  contract would cost); the filter copy is left out (once a step)
// Results are checked against onednn (NCHW) first (max |y - y_ref| / max |y_ref|); shapes
// whose channels are not multiples of 16 (the teacher's conv_in and conv_out)
// are skipped, as libxsmm's layout needs whole blocks. Variants are interleaved
// per repeat and the best repeat counts.
// usage: bench_libs_conv [REPEATS] [THREADS] [teacher|sd15|all]
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxsmm.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "kernels/runtime.h"

#include "bench_args.h"

typedef struct {
    const char *set;
    int B, Cin, H, Cout, s;
} Shape;

// The 3x3 shapes of tests/bench/bench_conv.c (teacher at batch 32, SD-1.5).
static const Shape shapes[] = {
    {"teacher", 32, 16, 32, 16, 1}, {"teacher", 32, 48, 32, 16, 1}, {"teacher", 32, 32, 32, 32, 1},
    {"teacher", 32, 16, 32, 16, 2}, {"teacher", 32, 32, 16, 32, 1}, {"teacher", 32, 96, 16, 32, 1},
    {"teacher", 32, 64, 16, 64, 1}, {"teacher", 32, 64, 8, 64, 1},  {"teacher", 32, 128, 8, 64, 1},
    {"teacher", 32, 64, 4, 64, 1},  {"teacher", 32, 128, 4, 64, 1},
    {"sd15", 2, 320, 32, 320, 1},   {"sd15", 2, 640, 16, 640, 1},   {"sd15", 2, 1280, 8, 1280, 1},
    {"sd15", 2, 320, 32, 320, 2},   {"sd15", 1, 320, 64, 320, 1},
};

enum { V_DNNL_BLOCKED, V_DNNL, V_XSMM, V_XSMM_COPY, NVAR };
static const char *var_name[NVAR] = {"onednn-blocked", "onednn", "xsmm", "xsmm+copy"};

typedef struct {
    libxsmm_dnn_layer *layer;
    libxsmm_dnn_tensor *in, *filter, *out;
    float *in_buf, *filter_buf, *out_buf, *xpad, *scratch;
    int threads;
} Xsmm;

static void check(libxsmm_dnn_err_t st, const char *what) {
    if (st != LIBXSMM_DNN_SUCCESS && st != LIBXSMM_DNN_WARN_FALLBACK) {
        fprintf(stderr, "bench_libs_conv: %s: %s\n", what, libxsmm_dnn_get_error(st));
        exit(1);
    }
}

static libxsmm_dnn_tensor *tensor(Xsmm *X, libxsmm_dnn_tensor_type type, float **buf) {
    libxsmm_dnn_err_t st;
    libxsmm_dnn_tensor_datalayout *l = libxsmm_dnn_create_tensor_datalayout(X->layer, type, &st);
    check(st, "datalayout");
    *buf = libxsmm_aligned_malloc(libxsmm_dnn_get_tensor_size(l, &st), 64);
    check(st, "tensor size");
    libxsmm_dnn_tensor *t = libxsmm_dnn_link_tensor(l, *buf, &st);
    check(st, "link tensor");
    check(libxsmm_dnn_bind_tensor(X->layer, t, type), "bind tensor");
    libxsmm_dnn_destroy_tensor_datalayout(l);
    return t;
}

// The layer for one shape; 0 where libxsmm declines it.
static int xsmm_make(Xsmm *X, const Shape *S, int threads) {
    libxsmm_dnn_conv_desc d = {0};
    d.N = S->B, d.C = S->Cin, d.H = d.W = S->H, d.K = S->Cout, d.R = d.S = 3, d.u = d.v = S->s;
    d.pad_h = d.pad_w = d.pad_h_in = d.pad_w_in = 1;  // direct convolution wants the rim stored
    d.threads = threads;
    d.datatype_in = d.datatype_out = LIBXSMM_DNN_DATATYPE_F32;
    d.buffer_format = d.filter_format = LIBXSMM_DNN_TENSOR_FORMAT_LIBXSMM;
    d.algo = LIBXSMM_DNN_CONV_ALGO_DIRECT;
    d.options = LIBXSMM_DNN_CONV_OPTION_OVERWRITE;
    d.fuse_ops = LIBXSMM_DNN_CONV_FUSE_NONE;
    libxsmm_dnn_err_t st;
    memset(X, 0, sizeof *X);
    X->threads = threads;
    X->layer = libxsmm_dnn_create_conv_layer(d, &st);
    if (!X->layer || (st != LIBXSMM_DNN_SUCCESS && st != LIBXSMM_DNN_WARN_FALLBACK)) {
        printf("  (libxsmm declines: %s)\n", libxsmm_dnn_get_error(st));
        return 0;
    }
    X->in = tensor(X, LIBXSMM_DNN_REGULAR_INPUT, &X->in_buf);
    X->filter = tensor(X, LIBXSMM_DNN_REGULAR_FILTER, &X->filter_buf);
    X->out = tensor(X, LIBXSMM_DNN_REGULAR_OUTPUT, &X->out_buf);
    size_t scratch = libxsmm_dnn_get_scratch_size(X->layer, LIBXSMM_DNN_COMPUTE_KIND_ALL, &st);
    check(st, "scratch size");
    X->scratch = libxsmm_aligned_malloc(scratch ? scratch : 64, 64);
    check(libxsmm_dnn_bind_scratch(X->layer, LIBXSMM_DNN_COMPUTE_KIND_ALL, X->scratch), "bind scratch");
    X->xpad = xcalloc((size_t)S->B * S->Cin * (S->H + 2) * (S->H + 2), 4);  // rim stays zero
    return 1;
}

static void xsmm_free(Xsmm *X) {
    libxsmm_dnn_release_scratch(X->layer, LIBXSMM_DNN_COMPUTE_KIND_ALL);
    libxsmm_dnn_release_tensor(X->layer, LIBXSMM_DNN_REGULAR_INPUT);
    libxsmm_dnn_release_tensor(X->layer, LIBXSMM_DNN_REGULAR_FILTER);
    libxsmm_dnn_release_tensor(X->layer, LIBXSMM_DNN_REGULAR_OUTPUT);
    libxsmm_dnn_destroy_tensor(X->in), libxsmm_dnn_destroy_tensor(X->filter), libxsmm_dnn_destroy_tensor(X->out);
    libxsmm_dnn_destroy_conv_layer(X->layer);
    libxsmm_free(X->in_buf), libxsmm_free(X->filter_buf), libxsmm_free(X->out_buf), libxsmm_free(X->scratch);
    free(X->xpad);
}

static void xsmm_copy_in(Xsmm *X, const Shape *S, const float *x) {
    int H = S->H, Hp = H + 2;
    for (long c = 0; c < (long)S->B * S->Cin; c++)
        for (int i = 0; i < H; i++)
            memcpy(X->xpad + (c * Hp + i + 1) * Hp + 1, x + (c * H + i) * H, (size_t)H * 4);
    check(libxsmm_dnn_copyin_tensor(X->in, X->xpad, LIBXSMM_DNN_TENSOR_FORMAT_NCHW), "copy in");
}

static void xsmm_run(Xsmm *X) {
#pragma omp parallel num_threads(X->threads)
    libxsmm_dnn_execute_st(X->layer, LIBXSMM_DNN_COMPUTE_KIND_FWD, 0, omp_get_thread_num());
}

int main(int argc, char **argv) {
    int reps, threads;
    const char *which;
    bench_args(argc, argv, &reps, &threads, &which);
    libxsmm_init();
    if (!conv2d_algo_available(CONV_ALGO_DNNL)) {
        fprintf(stderr, "bench_libs_conv: this build has no oneDNN (LD_HAVE_DNNL)\n");
        return 1;
    }
    printf("bench_libs_conv: %d threads, best of %d; libxsmm %s target %s; forward 3x3 pad 1\n", threads, reps,
           LIBXSMM_VERSION, libxsmm_get_target_arch());
    printf("%-8s %3s %5s %3s %5s %2s %7s", "set", "B", "Cin", "H", "Cout", "s", "relerr");
    for (int v = 0; v < NVAR; v++) printf(" %14s", var_name[v]);
    printf("   (ms; onednn-blocked GFLOP/s; its time / variant time, >1 = faster)\n");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *S = &shapes[si];
        if (strcmp(which, "all") && strcmp(which, S->set)) continue;
        int Ho = conv2d_out_size(S->H, 3, S->s, 1);
        size_t nx = (size_t)S->B * S->Cin * S->H * S->H, ny = (size_t)S->B * S->Cout * Ho * Ho;
        size_t nw = (size_t)S->Cout * S->Cin * 9;
        double flops = 2.0 * (double)ny * S->Cin * 9;
        float *x = xmalloc(nx * 4), *w = xmalloc(nw * 4), *ref = xmalloc(ny * 4), *y = xmalloc(ny * 4);
        rng_normal_fill(x, nx, 1, RNG_MISC, 1);
        rng_normal_fill(w, nw, 1, RNG_MISC, 2);
        size_t ns = conv2d_algo_scratch_floats(CONV_ALGO_DNNL_BLOCKED, S->B, S->Cin, S->H, S->H, S->Cout, 3, S->s, 1);
        float *scratch = xmalloc((ns ? ns : 1) * 4);
        conv2d_forward_algo(CONV_ALGO_DNNL, ref, x, w, NULL, S->B, S->Cin, S->H, S->H, S->Cout, 3, S->s, 1, scratch);
        double rmax = 0;
        for (size_t i = 0; i < ny; i++) rmax = fmax(rmax, fabs(ref[i]));
        Xsmm X;
        int have = S->Cin % 16 == 0 && S->Cout % 16 == 0 && xsmm_make(&X, S, threads);
        double err = 0, e;
        conv2d_forward_algo(CONV_ALGO_DNNL_BLOCKED, y, x, w, NULL, S->B, S->Cin, S->H, S->H, S->Cout, 3, S->s, 1,
                            scratch);
        e = 0;
        for (size_t i = 0; i < ny; i++) e = fmax(e, fabs((double)y[i] - ref[i]));
        err = fmax(err, e / rmax);
        if (have) {
            check(libxsmm_dnn_copyin_tensor(X.filter, w, LIBXSMM_DNN_TENSOR_FORMAT_KCRS), "filter copy in");
            xsmm_copy_in(&X, S, x);
            memset(y, 0xff, ny * 4);
            xsmm_run(&X);
            check(libxsmm_dnn_copyout_tensor(X.out, y, LIBXSMM_DNN_TENSOR_FORMAT_NCHW), "copy out");
            e = 0;
            for (size_t i = 0; i < ny; i++) e = fmax(e, fabs((double)y[i] - ref[i]));
            err = fmax(err, e / rmax);
        }
        if (!(err <= 1e-4)) {
            fprintf(stderr, "bench_libs_conv: wrong result (relerr %.2e)\n", err);
            return 1;
        }
        int calls = (int)fmin(1000, fmax(1, 2e9 / flops));
        double best[NVAR];
        for (int v = 0; v < NVAR; v++) best[v] = 1e30;
        for (int r = 0; r < reps; r++)
            for (int v = 0; v < NVAR; v++) {
                if (v >= V_XSMM && !have) continue;
                double t0 = now_s();
                for (int c = 0; c < calls; c++) switch (v) {
                    case V_DNNL:
                    case V_DNNL_BLOCKED:
                        conv2d_forward_algo(v == V_DNNL ? CONV_ALGO_DNNL : CONV_ALGO_DNNL_BLOCKED, y, x, w, NULL,
                                            S->B, S->Cin, S->H, S->H, S->Cout, 3, S->s, 1, scratch);
                        break;
                    case V_XSMM:
                        xsmm_run(&X);
                        break;
                    case V_XSMM_COPY:
                        xsmm_copy_in(&X, S, x);
                        xsmm_run(&X);
                        libxsmm_dnn_copyout_tensor(X.out, y, LIBXSMM_DNN_TENSOR_FORMAT_NCHW);
                        break;
                    }
                double dt = (now_s() - t0) / calls;
                if (dt < best[v]) best[v] = dt;
            }
        printf("%-8s %3d %5d %3d %5d %2d %7.1e", S->set, S->B, S->Cin, S->H, S->Cout, S->s, err);
        for (int v = 0; v < NVAR; v++)
            if (best[v] < 1e29) printf(" %14.3f", best[v] * 1e3);
            else printf(" %14s", "-");
        printf("   %6.1f GF/s;", flops / best[V_DNNL_BLOCKED] / 1e9);
        for (int v = 1; v < NVAR; v++)
            if (best[v] < 1e29) printf(" %.2f", best[V_DNNL_BLOCKED] / best[v]);
            else printf(" -");
        printf("\n");
        fflush(stdout);
        if (have) xsmm_free(&X);
        free(x), free(w), free(ref), free(y), free(scratch);
    }
    libxsmm_finalize();
    return 0;
}
