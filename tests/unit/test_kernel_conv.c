// test_kernel_conv.c — conv2d forward against a direct double loop, and its
// backward (dx, dw, db) against finite differences of that loop, over 3x3,
// strided, unpadded and 1x1 shapes. Gradients are pre-filled to check that
// backward accumulates. Run once per convolution algorithm of this build
// (kernels.h's ConvAlgo: the default, per-sample and batched im2col, oneDNN).
#include "kernel_check.h"
#include "kernels/kernels.h"

typedef struct {
    int B, Cin, H, W, Cout, k, s, p, Ho, Wo;
    double *x, *w, *b, *R, *out;  // b may be NULL
} ConvCase;

static void ref_conv(ConvCase *c) {
    for (int n = 0; n < c->B; n++)
        for (int co = 0; co < c->Cout; co++)
            for (int oy = 0; oy < c->Ho; oy++)
                for (int ox = 0; ox < c->Wo; ox++) {
                    double s = c->b ? c->b[co] : 0;
                    for (int ci = 0; ci < c->Cin; ci++)
                        for (int ki = 0; ki < c->k; ki++)
                            for (int kj = 0; kj < c->k; kj++) {
                                int iy = oy * c->s - c->p + ki, ix = ox * c->s - c->p + kj;
                                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
                                s += c->x[((n * c->Cin + ci) * c->H + iy) * c->W + ix] *
                                     c->w[((co * c->Cin + ci) * c->k + ki) * c->k + kj];
                            }
                    c->out[((n * c->Cout + co) * c->Ho + oy) * c->Wo + ox] = s;
                }
}

static double conv_loss(void *ctx) {
    ConvCase *c = ctx;
    ref_conv(c);
    return kc_dot(c->out, c->R, (size_t)c->B * c->Cout * c->Ho * c->Wo);
}

static ConvAlgo algo;  // the algorithm under test (main's loop)

static void check_conv(TuRng *rng, int B, int Cin, int H, int W, int Cout, int k, int s, int p,
                       int bias, int grads) {
    ConvCase c = {B, Cin, H, W, Cout, k, s, p, conv2d_out_size(H, k, s, p), conv2d_out_size(W, k, s, p),
                  0, 0, 0, 0, 0};
    size_t nx = (size_t)B * Cin * H * W, nw = (size_t)Cout * Cin * k * k;
    size_t no = (size_t)B * Cout * c.Ho * c.Wo;
    float *x = kc_rand(rng, nx, -1, 1), *w = kc_rand(rng, nw, -0.5f, 0.5f);
    float *b = bias ? kc_rand(rng, Cout, -1, 1) : NULL;
    float *R = kc_rand(rng, no, -1, 1);
    float *out = xmalloc(no * sizeof(float));
    float *scratch = xmalloc(conv2d_algo_scratch_floats(algo, B, Cin, H, W, Cout, k, s, p) * sizeof(float) + 4);
    c.x = kc_dup(x, nx);
    c.w = kc_dup(w, nw);
    c.b = bias ? kc_dup(b, Cout) : NULL;
    c.R = kc_dup(R, no);
    c.out = xmalloc(no * sizeof(double));
    char tag[128];
    snprintf(tag, sizeof tag, "conv[%s] B%d Cin%d %dx%d Cout%d k%d s%d p%d%s", conv2d_algo_name(algo), B, Cin, H, W,
             Cout, k, s, p, bias ? "" : " nobias");

    conv2d_forward_algo(algo, out, x, w, b, B, Cin, H, W, Cout, k, s, p, scratch);
    ref_conv(&c);
    kc_expect_close(kc_rel_err(out, c.out, no, 1e-3), KC_FWD_TOL, "%s forward", tag);

    if (grads) {
        float *dx = kc_rand(rng, nx, -1, 1), *dw = kc_rand(rng, nw, -1, 1);
        float *db = kc_rand(rng, Cout, -1, 1);
        float *dx0 = kc_fcopy(dx, nx), *dw0 = kc_fcopy(dw, nw), *db0 = kc_fcopy(db, Cout);
        conv2d_backward_algo(algo, dx, dw, bias ? db : NULL, R, x, w, B, Cin, H, W, Cout, k, s, p, scratch);
        double *gx = xmalloc(nx * sizeof(double)), *gw = xmalloc(nw * sizeof(double));
        kc_fd_grad(conv_loss, &c, c.x, nx, gx);
        kc_fd_grad(conv_loss, &c, c.w, nw, gw);
        kc_expect_close(kc_rel_err_acc(dx, dx0, gx, nx, 1e-3), KC_BWD_TOL, "%s dx", tag);
        kc_expect_close(kc_rel_err_acc(dw, dw0, gw, nw, 1e-3), KC_BWD_TOL, "%s dw", tag);
        if (bias) {
            double *gb = xmalloc(Cout * sizeof(double));
            kc_fd_grad(conv_loss, &c, c.b, Cout, gb);
            kc_expect_close(kc_rel_err_acc(db, db0, gb, Cout, 1e-3), KC_BWD_TOL, "%s db", tag);
            free(gb);
        } else {
            EXPECT(memcmp(db, db0, Cout * sizeof(float)) == 0, "%s: NULL db touched", tag);
        }
        // Each gradient alone (others NULL) must equal its share of the full call.
        float *dx1 = kc_fcopy(dx0, nx), *dw1 = kc_fcopy(dw0, nw);
        conv2d_backward_algo(algo, dx1, NULL, NULL, R, x, w, B, Cin, H, W, Cout, k, s, p, scratch);
        conv2d_backward_algo(algo, NULL, dw1, NULL, R, x, w, B, Cin, H, W, Cout, k, s, p, scratch);
        EXPECT(memcmp(dx1, dx, nx * sizeof(float)) == 0, "%s: dx alone differs", tag);
        EXPECT(memcmp(dw1, dw, nw * sizeof(float)) == 0, "%s: dw alone differs", tag);
        free(dx1), free(dw1), free(gx), free(gw);
        free(dx), free(dw), free(db), free(dx0), free(dw0), free(db0);
    }
    free(x), free(w), free(b), free(R), free(out), free(scratch);
    free(c.x), free(c.w), free(c.b), free(c.R), free(c.out);
}

int main(void) {
    static const ConvAlgo algos[] = {CONV_ALGO_DEFAULT, CONV_ALGO_IM2COL, CONV_ALGO_IM2COL_BATCHED, CONV_ALGO_DNNL,
                                     CONV_ALGO_DNNL_BLOCKED};
    for (size_t ai = 0; ai < sizeof algos / sizeof *algos; ai++) {
        algo = algos[ai];
        if (!conv2d_algo_available(algo)) continue;
        TuRng rng;
        tu_rng_seed(&rng, 1234);
        check_conv(&rng, 2, 3, 5, 7, 4, 3, 1, 1, 1, 1);   // 3x3 same, H != W
        check_conv(&rng, 2, 2, 7, 6, 3, 3, 2, 1, 1, 1);   // downsampler: stride 2 pad 1, odd H
        check_conv(&rng, 3, 2, 6, 5, 3, 3, 2, 1, 0, 1);   // stride 2, odd W, no bias
        check_conv(&rng, 2, 3, 5, 6, 2, 3, 1, 0, 1, 1);   // valid (unpadded) 3x3
        check_conv(&rng, 3, 5, 4, 3, 2, 1, 1, 0, 1, 1);   // 1x1: plain GEMM path
        check_conv(&rng, 2, 4, 3, 5, 6, 1, 1, 0, 0, 1);   // 1x1, Cout > Cin, no bias
        check_conv(&rng, 2, 3, 7, 5, 2, 1, 2, 0, 1, 1);   // 1x1 stride 2 goes through im2col
        check_conv(&rng, 1, 2, 2, 3, 3, 3, 1, 2, 1, 1);   // padding larger than the image edge
        check_conv(&rng, 2, 16, 17, 12, 24, 3, 1, 1, 1, 0);  // larger, forward only
        check_conv(&rng, 2, 16, 17, 12, 8, 3, 2, 1, 1, 0);
    }
    return tu_report("test_kernel_conv");
}
