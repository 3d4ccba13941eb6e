// resnet_inner.c — the interior of a ResNet block (conv1 -> + time embedding
// -> GroupNorm+SiLU -> conv2) with its two inner activations, h and a2, held in
// oneDNN's blocked layout (aBcd16b with AVX-512, aBcd8b with AVX2: blk
// channels of a pixel side by side) instead of NCHW. On NCHW tensors every 3x3
// convolution reorders its input into that layout and its output back; here
// conv1 writes h and conv2 reads a2 as they are, and in backward conv2 writes
// da2 and conv1 reads dh as they are: five reorders fewer per block and step.
// The GroupNorm+SiLU and bias kernels below work on that layout directly: a
// pixel's blk channels are one vector, so they need no transpose.
//
// Element (b, c, p) of a blocked [B, C, HW] tensor sits at
// ((b * C/blk + c/blk) * HW + p) * blk + c % blk. Sums run in float over 8
// pixels at a time and then in double, per channel, and are combined into
// group and batch sums in a fixed order: the results do not depend on the
// thread count. They differ from groupnorm.c's NCHW sums only by rounding.
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>

#include "core/common.h"
#include "kernels/conv2d_dnnl.h"
#include "kernels/vecmath.h"

#define BLK_MAX 16
#define PIX_BLOCK 8

// s[l] = sum over the HW pixels of channel l of one block xb [HW][blk] (of
// f = x - m[l] squared where m is given).
LD_INLINE void block_sums(double *s, const float *xb, const float *m, int HW, int blk) {
    for (int l = 0; l < blk; l++) s[l] = 0.0;
    for (int p0 = 0; p0 < HW; p0 += PIX_BLOCK) {
        float a[BLK_MAX] = {0};
        int pe = p0 + PIX_BLOCK < HW ? p0 + PIX_BLOCK : HW;
        for (int p = p0; p < pe; p++) {
            const float *xp = xb + (size_t)p * blk;
            if (m) {
#pragma omp simd
                for (int l = 0; l < blk; l++) a[l] += (xp[l] - m[l]) * (xp[l] - m[l]);
            } else {
#pragma omp simd
                for (int l = 0; l < blk; l++) a[l] += xp[l];
            }
        }
        for (int l = 0; l < blk; l++) s[l] += a[l];
    }
}

// The blocked kernels take blocks of 8 or 16 channels that tile C: a caller's
// bug otherwise, so it stops the process naming the kernel.
static void check_blk(const char *who, int blk, int C, int G) {
    if ((blk != 8 && blk != 16) || C % blk || (G && C % G))
        FATAL("%s: channel block %d, %d channels, %d groups: want a block of 8 or 16 that divides C (and G | C)",
              who, blk, C, G);
}

// Per channel (b*C + c) of each group's statistics: the group sums of s over its
// channels, in channel order, divided by cg * HW.
static void group_means(double *gm, const double *s, int B, int C, int G, int HW) {
    int cg = C / G;
    for (int bg = 0; bg < B * G; bg++) {
        double t = 0.0;
        for (int j = 0; j < cg; j++) t += s[(size_t)bg * cg + j];
        gm[bg] = t / ((double)cg * HW);
    }
}

LD_VEC_CLONES void groupnorm_silu_forward_blk(float *out, float *mean, float *rstd, const float *x,
                                              const float *gamma, const float *beta, int B, int C, int HW, int G,
                                              float eps, int blk) {
    check_blk("groupnorm_silu_forward_blk", blk, C, G);
    int nb = C / blk, cg = C / G;
    size_t nc = (size_t)B * C;
    double *s = xmalloc(nc * sizeof(double)), *gs = xmalloc((size_t)B * G * sizeof(double));
    float *mc = xmalloc(2 * nc * sizeof(float)), *sc = mc + nc;  // per (b, c): its group's mean; r * gamma
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int q = 0; q < B * nb; q++) block_sums(s + (size_t)q * blk, x + (size_t)q * HW * blk, NULL, HW, blk);
#pragma omp single
        {
            group_means(gs, s, B, C, G, HW);
            for (size_t i = 0; i < nc; i++) mc[i] = (float)gs[i / cg];
        }
#pragma omp for schedule(static)
        for (int q = 0; q < B * nb; q++)
            block_sums(s + (size_t)q * blk, x + (size_t)q * HW * blk, mc + (size_t)q * blk, HW, blk);
#pragma omp single
        {
            for (int bg = 0; bg < B * G; bg++) mean[bg] = mc[(size_t)bg * cg];
            group_means(gs, s, B, C, G, HW);
            for (int bg = 0; bg < B * G; bg++) rstd[bg] = (float)(1.0 / sqrt(gs[bg] + eps));
            for (size_t i = 0; i < nc; i++) sc[i] = rstd[i / cg] * gamma[i % C];
        }
#pragma omp for schedule(static)
        for (int q = 0; q < B * nb; q++) {
            const float *xb = x + (size_t)q * HW * blk, *m = mc + (size_t)q * blk, *k = sc + (size_t)q * blk;
            const float *sh = beta + (size_t)(q % nb) * blk;
            float *ob = out + (size_t)q * HW * blk;
            for (int p = 0; p < HW; p++) {
#pragma omp simd
                for (int l = 0; l < blk; l++) {
                    // as groupnorm.c: centre, then scale and shift
                    float n = (xb[(size_t)p * blk + l] - m[l]) * k[l] + sh[l];
                    ob[(size_t)p * blk + l] = n * ld_sigmoidf(n);
                }
            }
        }
    }
    free(s), free(gs), free(mc);
}

// Writes dx (not adds: it is resnet_inner_backward's own buffer; the first
// pass keeps the gradient of gn(x) there for the second), adds into dgamma and
// dbeta.
LD_VEC_CLONES void groupnorm_silu_backward_blk(float *dx, float *dgamma, float *dbeta, const float *dout,
                                               const float *x, const float *mean, const float *rstd,
                                               const float *gamma, const float *beta, int B, int C, int HW, int G,
                                               int blk) {
    check_blk("groupnorm_silu_backward_blk", blk, C, G);
    int nb = C / blk, cg = C / G;
    size_t nc = (size_t)B * C;
    double *ps = xmalloc(2 * nc * sizeof(double)), *pb = ps + nc;  // per (b, c): sum d * xhat, sum d
    float *mc = xmalloc(5 * nc * sizeof(float)), *rc = mc + nc, *sc = rc + nc, *ca = sc + nc, *cb = ca + nc;
    for (size_t i = 0; i < nc; i++) {
        mc[i] = mean[i / cg], rc[i] = rstd[i / cg];
        sc[i] = rc[i] * gamma[i % C];
    }
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int q = 0; q < B * nb; q++) {
            size_t o = (size_t)q * HW * blk, c0 = (size_t)q * blk;
            const float *m = mc + c0, *r = rc + c0, *k = sc + c0, *bt = beta + (size_t)(q % nb) * blk;
            double as[BLK_MAX] = {0}, ab[BLK_MAX] = {0};
            for (int p0 = 0; p0 < HW; p0 += PIX_BLOCK) {
                float fs[BLK_MAX] = {0}, fb[BLK_MAX] = {0};
                int pe = p0 + PIX_BLOCK < HW ? p0 + PIX_BLOCK : HW;
                for (int p = p0; p < pe; p++) {
                    const float *xp = x + o + (size_t)p * blk, *dp = dout + o + (size_t)p * blk;
                    float *np = dx + o + (size_t)p * blk;
#pragma omp simd
                    for (int l = 0; l < blk; l++) {
                        float xh = (xp[l] - m[l]) * r[l], n = (xp[l] - m[l]) * k[l] + bt[l], s = ld_sigmoidf(n);
                        float dv = dp[l] * s * (1.0f + n * (1.0f - s));
                        np[l] = dv;
                        fs[l] += dv * xh;
                        fb[l] += dv;
                    }
                }
                for (int l = 0; l < blk; l++) as[l] += fs[l], ab[l] += fb[l];
            }
            for (int l = 0; l < blk; l++) ps[c0 + l] = as[l], pb[c0 + l] = ab[l];
        }
#pragma omp single
        {
            // dx = rstd * (gamma d - mean(gamma d) - xhat * mean(gamma d xhat)) over the group
            double gsize = (double)cg * HW;
            for (int bg = 0; bg < B * G; bg++) {
                double sg = 0.0, sgx = 0.0;
                for (int j = 0; j < cg; j++) {
                    size_t i = (size_t)bg * cg + j;
                    sg += gamma[i % C] * pb[i];
                    sgx += gamma[i % C] * ps[i];
                }
                for (int j = 0; j < cg; j++) {
                    size_t i = (size_t)bg * cg + j;
                    ca[i] = (float)(sg / gsize), cb[i] = (float)(sgx / gsize);
                }
            }
            for (int c = 0; c < C; c++) {
                double tg = 0.0, tb = 0.0;
                for (int b = 0; b < B; b++) tg += ps[(size_t)b * C + c], tb += pb[(size_t)b * C + c];
                if (dgamma) dgamma[c] += (float)tg;
                if (dbeta) dbeta[c] += (float)tb;
            }
        }
#pragma omp for schedule(static)
        for (int q = 0; q < B * nb; q++) {
            size_t o = (size_t)q * HW * blk, c0 = (size_t)q * blk;
            const float *m = mc + c0, *r = rc + c0, *a = ca + c0, *bc = cb + c0, *gm = gamma + (size_t)(q % nb) * blk;
            for (int p = 0; p < HW; p++) {
                const float *xp = x + o + (size_t)p * blk;
                float *dp = dx + o + (size_t)p * blk;
#pragma omp simd
                for (int l = 0; l < blk; l++) {
                    float xh = (xp[l] - m[l]) * r[l];
                    dp[l] = r[l] * (dp[l] * gm[l] - a[l] - xh * bc[l]);
                }
            }
        }
    }
    free(ps), free(mc);
}

// h [B, C, HW] blocked += v [B, C], broadcast over the pixels.
LD_VEC_CLONES void add_channel_bias_blk(float *h, const float *v, int B, int C, int HW, int blk) {
    check_blk("add_channel_bias_blk", blk, C, 0);
    int nb = C / blk;
#pragma omp parallel for schedule(static)
    for (int q = 0; q < B * nb; q++) {
        const float *vb = v + (size_t)q * blk;  // (b, block) q starts at channel b*C + (q % nb)*blk = q*blk
        float *hb = h + (size_t)q * HW * blk;
        for (int p = 0; p < HW; p++) {
#pragma omp simd
            for (int l = 0; l < blk; l++) hb[(size_t)p * blk + l] += vb[l];
        }
    }
}

// dv [B, C] += sum over the pixels of d, and db [C] += its sum over the batch
// (either may be NULL): the time embedding's and conv1's bias gradients.
LD_VEC_CLONES void channel_sums_blk(float *dv, float *db, const float *d, int B, int C, int HW, int blk) {
    check_blk("channel_sums_blk", blk, C, 0);
    int nb = C / blk;
    double *s = xmalloc((size_t)B * C * sizeof(double));
#pragma omp parallel for schedule(static)
    for (int q = 0; q < B * nb; q++) block_sums(s + (size_t)q * blk, d + (size_t)q * HW * blk, NULL, HW, blk);
    for (size_t i = 0; dv && i < (size_t)B * C; i++) dv[i] += (float)s[i];
    for (int c = 0; db && c < C; c++) {
        double t = 0.0;
        for (int b = 0; b < B; b++) t += s[(size_t)b * C + c];
        db[c] += (float)t;
    }
    free(s);
}

#ifdef LD_HAVE_DNNL
int resnet_inner_block(int Cout) {
    int blk = conv2d_default_blocked(3, 1, 1) ? conv2d_dnnl_act_block() : 0;
    return blk && Cout % blk == 0 ? blk : 0;
}

void resnet_inner_forward(float *out, float *h, float *m2, float *r2, float *a2, const float *a1, const float *tp,
                          const float *w1, const float *b1, const float *g2, const float *be2, const float *w2,
                          const float *b2, int B, int Cin, int H, int W, int Cout, int G, float eps, int blk) {
    int HW = H * W;
    conv2d_dnnl_forward_fmt(h, blk, a1, 0, w1, b1, B, Cin, H, W, Cout, 3, 1, 1, 1);
    add_channel_bias_blk(h, tp, B, Cout, HW, blk);
    groupnorm_silu_forward_blk(a2, m2, r2, h, g2, be2, B, Cout, HW, G, eps, blk);
    conv2d_dnnl_forward_fmt(out, 0, a2, blk, w2, b2, B, Cout, H, W, Cout, 3, 1, 1, 1);
}

void resnet_inner_backward(float *da1, float *dtp, float *dw1, float *db1, float *dg2, float *dbe2, float *dw2,
                           float *db2, const float *dout, const float *a1, const float *h, const float *m2,
                           const float *r2, const float *a2, const float *w1, const float *g2, const float *be2,
                           const float *w2, int B, int Cin, int H, int W, int Cout, int G, int blk, float *scratch) {
    int HW = H * W;
    float *da2 = scratch, *dh = scratch + (size_t)B * Cout * HW;
    if (db2) conv2d_bias_backward(db2, dout, B, Cout, HW);
    conv2d_dnnl_backward_fmt(da2, blk, 1, dw2, dout, 0, a2, w2, B, Cout, H, W, Cout, 3, 1, 1, 1);
    groupnorm_silu_backward_blk(dh, dg2, dbe2, da2, h, m2, r2, g2, be2, B, Cout, HW, G, blk);
    channel_sums_blk(dtp, db1, dh, B, Cout, HW, blk);
    conv2d_dnnl_backward_fmt(da1, 0, 0, dw1, dh, blk, a1, w1, B, Cin, H, W, Cout, 3, 1, 1, 1);
}
#else
// Without oneDNN the convolutions are NCHW, so resnet.c runs the NCHW kernels
// (resnet_inner_forward/backward exist only in builds with oneDNN).
int resnet_inner_block(int Cout) {
    (void)Cout;
    return 0;
}
#endif
