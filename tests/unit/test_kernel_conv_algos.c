// test_kernel_conv_algos.c — every convolution algorithm of this build (kernels.h's
// ConvAlgo: batched im2col, oneDNN on NCHW and on its blocked layouts, the default)
// against per-sample im2col on odd shapes (stride 2, padding, 1x1, 3x3, odd H/W),
// forward, backward-data, backward-weights, with a chunk size small enough that
// every batch here is cut into several chunks. Also: the default's forward of a
// sample does not depend on the batch around it, bit for bit (ranks holding
// uneven shards of a batch rely on it: tests/cli/test_sample.sh, test_prune.sh).
#include "kernel_check.h"
#include "kernels/kernels.h"
#include "kernels/runtime.h"

// max |a - b| / max(max |b|, 1): the difference measured against the result's scale.
#define ALGO_TOL 1e-5

static double nerr(const float *a, const float *b, size_t n) {
    double scale = 1, err = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= err)) err = isnan(d) ? INFINITY : d;
    }
    return err / scale;
}

static void check_shape(TuRng *rng, int B, int Cin, int H, int W, int Cout, int k, int s, int p, int bias) {
    int Ho = conv2d_out_size(H, k, s, p), Wo = conv2d_out_size(W, k, s, p);
    size_t nx = (size_t)B * Cin * H * W, nw = (size_t)Cout * Cin * k * k, ny = (size_t)B * Cout * Ho * Wo;
    float *x = kc_rand(rng, nx, -1, 1), *w = kc_rand(rng, nw, -0.5f, 0.5f), *dy = kc_rand(rng, ny, -1, 1);
    float *b = bias ? kc_rand(rng, Cout, -1, 1) : NULL;
    float *dx0 = kc_rand(rng, nx, -1, 1), *dw0 = kc_rand(rng, nw, -1, 1), *db0 = kc_rand(rng, Cout, -1, 1);
    // the reference: per-sample im2col
    float *y_r = xmalloc(ny * 4), *dx_r = kc_fcopy(dx0, nx), *dw_r = kc_fcopy(dw0, nw), *db_r = kc_fcopy(db0, Cout);
    float *sc = xmalloc(conv2d_algo_scratch_floats(CONV_ALGO_IM2COL, B, Cin, H, W, Cout, k, s, p) * 4);
    conv2d_forward_algo(CONV_ALGO_IM2COL, y_r, x, w, b, B, Cin, H, W, Cout, k, s, p, sc);
    conv2d_backward_algo(CONV_ALGO_IM2COL, dx_r, dw_r, db_r, dy, x, w, B, Cin, H, W, Cout, k, s, p, sc);
    free(sc);
    static const ConvAlgo algos[] = {CONV_ALGO_DEFAULT, CONV_ALGO_IM2COL_BATCHED, CONV_ALGO_DNNL,
                                     CONV_ALGO_DNNL_BLOCKED};
    for (size_t ai = 0; ai < sizeof algos / sizeof *algos; ai++) {
        ConvAlgo a = algos[ai];
        if (!conv2d_algo_available(a)) continue;
        char tag[160];
        snprintf(tag, sizeof tag, "%s B%d Cin%d %dx%d Cout%d k%d s%d p%d%s", conv2d_algo_name(a), B, Cin, H, W,
                 Cout, k, s, p, bias ? "" : " nobias");
        float *y = xmalloc(ny * 4), *dx = kc_fcopy(dx0, nx), *dw = kc_fcopy(dw0, nw), *db = kc_fcopy(db0, Cout);
        float *scr = xmalloc(conv2d_algo_scratch_floats(a, B, Cin, H, W, Cout, k, s, p) * 4 + 4);
        conv2d_forward_algo(a, y, x, w, b, B, Cin, H, W, Cout, k, s, p, scr);
        conv2d_backward_algo(a, dx, dw, db, dy, x, w, B, Cin, H, W, Cout, k, s, p, scr);
        kc_expect_close(nerr(y, y_r, ny), ALGO_TOL, "%s forward vs im2col", tag);
        kc_expect_close(nerr(dx, dx_r, nx), ALGO_TOL, "%s dx (accumulated) vs im2col", tag);
        kc_expect_close(nerr(dw, dw_r, nw), ALGO_TOL, "%s dw (accumulated) vs im2col", tag);
        EXPECT(memcmp(db, db_r, Cout * 4) == 0, "%s: db differs from im2col's", tag);
        // the forward of samples [0, m) and [m, B) on their own: the same bits as in the whole batch
        if (a == CONV_ALGO_DEFAULT && B > 1) {
            int m = B / 2 + 1;
            float *y2 = xmalloc(ny * 4);
            size_t xs = (size_t)Cin * H * W, ys = (size_t)Cout * Ho * Wo;
            conv2d_forward_algo(a, y2, x, w, b, m, Cin, H, W, Cout, k, s, p, scr);
            conv2d_forward_algo(a, y2 + m * ys, x + m * xs, w, b, B - m, Cin, H, W, Cout, k, s, p, scr);
            EXPECT(memcmp(y2, y, ny * 4) == 0, "%s: forward of a batch split %d + %d differs from the whole batch",
                   tag, m, B - m);
            free(y2);
        }
        free(y), free(dx), free(dw), free(db), free(scr);
    }
    free(x), free(w), free(dy), free(b), free(dx0), free(dw0), free(db0), free(y_r), free(dx_r), free(dw_r),
        free(db_r);
}

int main(void) {
    TuRng rng;
    tu_rng_seed(&rng, 4321);
    // 3000 floats per chunk: every batch below is cut (a sample's larger activation is 300 to 2800 floats)
    runtime_set_conv_chunk_floats(3000);
    for (int t = 1; t <= 2; t++) {
        runtime_set_threads(t, 1);
        check_shape(&rng, 7, 5, 13, 11, 6, 3, 1, 1, 1);   // 3x3 same, odd H and W, Cin/Cout not multiples of 8
        check_shape(&rng, 5, 4, 15, 9, 7, 3, 2, 1, 1);    // stride-2 downsampler, odd sizes
        check_shape(&rng, 6, 3, 10, 13, 5, 3, 2, 1, 0);   // stride 2, no bias
        check_shape(&rng, 4, 6, 9, 9, 3, 3, 1, 0, 1);     // unpadded 3x3
        check_shape(&rng, 9, 24, 7, 5, 17, 1, 1, 0, 1);   // 1x1: the GEMM path
        check_shape(&rng, 5, 3, 9, 7, 4, 1, 2, 0, 1);     // 1x1 stride 2
        check_shape(&rng, 3, 20, 8, 8, 33, 3, 1, 1, 1);   // more channels than one SIMD block (16)
        check_shape(&rng, 4, 2, 3, 4, 3, 3, 1, 2, 1);     // padding wider than the image edge
    }
    // one sample and one chunk for all (the default chunk size)
    runtime_set_conv_chunk_floats((size_t)8 << 20);
    check_shape(&rng, 1, 16, 12, 12, 16, 3, 1, 1, 1);
    check_shape(&rng, 32, 16, 16, 16, 32, 3, 1, 1, 1);  // the teacher's 16x16 stage at batch 32
    return tu_report("test_kernel_conv_algos");
}
