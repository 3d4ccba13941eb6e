// conv2d_dnnl.c — conv2d forward / backward-data / backward-weights on oneDNN
// (the library PyTorch's CPU convolutions use), with one cached primitive per
// shape. oneDNN dispatches on the CPU's ISA at run time (AVX2, AVX-512, AMX),
// so one binary is tuned for whichever x86 it runs on. Built only with
// LD_HAVE_DNNL; conv2d.c decides when to call it.
#include "kernels/conv2d_dnnl.h"

#ifdef LD_HAVE_DNNL
#include <dnnl_debug.h>
#include <omp.h>
#include <string.h>

#include "core/common.h"
#include "kernels/kernels.h"
#include "kernels/runtime.h"

#define DNNL_CHECK(call)                                                                  \
    do {                                                                                  \
        dnnl_status_t st_ = (call);                                                       \
        if (st_ != dnnl_success) FATAL("oneDNN: %s failed: %s", #call, dnnl_status2str(st_)); \
    } while (0)


static void md_init(dnnl_memory_desc_t *md, int n, int c, int h, int w, dnnl_format_tag_t tag) {
    dnnl_dims_t d = {n, c, h, w};
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, tag));
}

// The tag of an activation the caller holds in channel blocks of blk (0: NCHW).
static dnnl_format_tag_t act_tag(int blk) {
    return blk == 16 ? dnnl_aBcd16b : blk == 8 ? dnnl_aBcd8b : dnnl_abcd;
}

// What an argument is to the caller: read, written, or a gradient it
// accumulates (the primitive's result is added onto the caller's buffer).
enum { ARG_IN, ARG_OUT, ARG_OUT_ADDED };

// Adds argument `arg` of pd, with user memory of layout `user_md`: where pd wants
// another layout, a memory of it and the reorder (user -> prim for inputs,
// prim -> user for outputs). For ARG_OUT_ADDED that reorder adds onto the
// caller's buffer (a sum post-op: user += prim, one float add per element as a
// separate loop would do), so no copy in between.
static void add_arg(DnnlCtx *ctx, DnnlConvPrim *p, const_dnnl_primitive_desc_t pd, dnnl_query_t q, int index,
                    int arg, int role, const dnnl_memory_desc_t *user_md) {
    DnnlArg *a = &p->args[p->nargs++];
    memset(a, 0, sizeof *a);
    int output = role != ARG_IN;
    a->arg = arg, a->output = output, a->add = role == ARG_OUT_ADDED;
    DNNL_CHECK(dnnl_memory_create(&a->user, user_md, ctx->engine, DNNL_MEMORY_NONE));
    const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(pd, q, index);
    if (dnnl_memory_desc_equal(pmd, user_md)) return;
    DNNL_CHECK(dnnl_memory_create(&a->prim, pmd, ctx->engine, DNNL_MEMORY_NONE));
    a->floats = (dnnl_memory_desc_get_size(pmd) + 63) / 64 * 16;
    dnnl_primitive_desc_t rpd;
    if (output) {
        dnnl_primitive_attr_t attr = NULL;
        if (role == ARG_OUT_ADDED) {
            dnnl_post_ops_t po;
            DNNL_CHECK(dnnl_primitive_attr_create(&attr));
            DNNL_CHECK(dnnl_post_ops_create(&po));
            DNNL_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
            DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
            DNNL_CHECK(dnnl_post_ops_destroy(po));
            a->accumulate = 1;
        }
        DNNL_CHECK(dnnl_reorder_primitive_desc_create(&rpd, pmd, ctx->engine, user_md, ctx->engine, attr));
        if (attr) DNNL_CHECK(dnnl_primitive_attr_destroy(attr));
    } else {
        DNNL_CHECK(dnnl_reorder_primitive_desc_create(&rpd, user_md, ctx->engine, pmd, ctx->engine, NULL));
    }
    DNNL_CHECK(dnnl_primitive_create(&a->reorder, rpd));
    DNNL_CHECK(dnnl_primitive_desc_destroy(rpd));
}

static void prim_destroy(DnnlConvPrim *p) {
    for (int i = 0; i < p->nargs; i++) {
        DnnlArg *a = &p->args[i];
        dnnl_memory_destroy(a->user);
        if (a->prim) dnnl_memory_destroy(a->prim);
        if (a->reorder) dnnl_primitive_destroy(a->reorder);
    }
    dnnl_primitive_destroy(p->conv);
    memset(p, 0, sizeof *p);
}

// xblk / yblk: the caller holds x (src, diff_src) / y (dst, diff_dst) in channel
// blocks of that size (0: NCHW); the primitive is then made for that layout, so
// it reads or writes the caller's buffer with no reorder. set_dx: backward-data
// writes dx instead of adding onto it.
static void make_prim(DnnlCtx *ctx, DnnlConvPrim *p, int dir, int B, int Cin, int H, int W, int Cout, int k,
                      int s, int pad, int bias, int blocked, int xblk, int yblk, int set_dx) {
    int Ho = conv2d_out_size(H, k, s, pad), Wo = conv2d_out_size(W, k, s, pad);
    dnnl_memory_desc_t x_u, w_u, b_u, y_u, x_a, w_a, y_a;
    md_init(&x_u, B, Cin, H, W, act_tag(xblk));
    md_init(&w_u, Cout, Cin, k, k, dnnl_abcd);
    md_init(&y_u, B, Cout, Ho, Wo, act_tag(yblk));
    dnnl_dims_t bd = {Cout};
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&b_u, 1, bd, dnnl_f32, dnnl_a));
    dnnl_format_tag_t t = blocked ? dnnl_format_tag_any : dnnl_abcd;
    md_init(&x_a, B, Cin, H, W, xblk ? act_tag(xblk) : t);
    md_init(&w_a, Cout, Cin, k, k, t);
    md_init(&y_a, B, Cout, Ho, Wo, yblk ? act_tag(yblk) : t);
    dnnl_dims_t strides = {s, s}, pl = {pad, pad};
    // Right padding as oneDNN counts it: what the last window reaches past the input.
    dnnl_dims_t pr = {(Ho - 1) * s + k - H - pad, (Wo - 1) * s + k - W - pad};
    // Backward needs a forward primitive descriptor as its hint.
    dnnl_convolution_desc_t fd, cd;
    DNNL_CHECK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &x_a, &w_a,
                                                  bias && dir == DNNL_CONV_FWD ? &b_u : NULL, &y_a, strides, pl, pr));
    dnnl_primitive_desc_t fpd, pd;
    DNNL_CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, ctx->engine, NULL));
    memset(p, 0, sizeof *p);
    if (dir == DNNL_CONV_FWD) {
        pd = fpd;
        add_arg(ctx, p, pd, dnnl_query_src_md, 0, DNNL_ARG_SRC, ARG_IN, &x_u);
        add_arg(ctx, p, pd, dnnl_query_weights_md, 0, DNNL_ARG_WEIGHTS, ARG_IN, &w_u);
        if (bias) add_arg(ctx, p, pd, dnnl_query_weights_md, 1, DNNL_ARG_BIAS, ARG_IN, &b_u);
        add_arg(ctx, p, pd, dnnl_query_dst_md, 0, DNNL_ARG_DST, ARG_OUT, &y_u);
    } else if (dir == DNNL_CONV_BWD_DATA) {
        DNNL_CHECK(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &x_a, &w_a, &y_a, strides,
                                                            pl, pr));
        DNNL_CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, ctx->engine, fpd));
        add_arg(ctx, p, pd, dnnl_query_diff_dst_md, 0, DNNL_ARG_DIFF_DST, ARG_IN, &y_u);
        add_arg(ctx, p, pd, dnnl_query_weights_md, 0, DNNL_ARG_WEIGHTS, ARG_IN, &w_u);
        add_arg(ctx, p, pd, dnnl_query_diff_src_md, 0, DNNL_ARG_DIFF_SRC, set_dx ? ARG_OUT : ARG_OUT_ADDED, &x_u);
    } else {
        DNNL_CHECK(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &x_a, &w_a, NULL, &y_a,
                                                               strides, pl, pr));
        DNNL_CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, ctx->engine, fpd));
        add_arg(ctx, p, pd, dnnl_query_src_md, 0, DNNL_ARG_SRC, ARG_IN, &x_u);
        add_arg(ctx, p, pd, dnnl_query_diff_dst_md, 0, DNNL_ARG_DIFF_DST, ARG_IN, &y_u);
        add_arg(ctx, p, pd, dnnl_query_diff_weights_md, 0, DNNL_ARG_DIFF_WEIGHTS, ARG_OUT_ADDED, &w_u);
    }
    DNNL_CHECK(dnnl_primitive_create(&p->conv, pd));
    if (pd != fpd) DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    DNNL_CHECK(dnnl_primitive_desc_destroy(fpd));
}

// The cached primitive for this call, made on a miss (the least recently used
// entry makes room when the cache is full).
static DnnlConvPrim *get_prim(int dir, int B, int Cin, int H, int W, int Cout, int k, int s, int pad, int bias,
                              int blocked, int xblk, int yblk, int set_dx) {
    DnnlCtx *ctx = runtime_dnnl();
    int key[DNNL_KEY_INTS] = {dir,     B,   Cin,  H,    W,    Cout,  k, s, pad, bias, blocked, omp_get_max_threads(),
                              xblk, yblk, set_dx};
    DnnlConvPrim *victim = &ctx->cache[0];
    for (int i = 0; i < ctx->n; i++) {
        DnnlConvPrim *p = &ctx->cache[i];
        if (!memcmp(p->key, key, sizeof key)) {
            p->last_use = ++ctx->clock;
            return p;
        }
        if (p->last_use < victim->last_use) victim = p;
    }
    DnnlConvPrim *p = ctx->n < DNNL_CONV_CACHE ? &ctx->cache[ctx->n++] : (prim_destroy(victim), victim);
    make_prim(ctx, p, dir, B, Cin, H, W, Cout, k, s, pad, bias, blocked, xblk, yblk, set_dx);
    memcpy(p->key, key, sizeof key);
    p->last_use = ++ctx->clock;
    return p;
}

// Floats of work buffer run_prim needs for p's own layouts, less those of
// arguments the caller hands over already in them (ready[i] != NULL).
static size_t prim_ws(const DnnlConvPrim *p, float *const *ready) {
    size_t n = 0;
    for (int i = 0; i < p->nargs; i++)
        if (!ready || !ready[i]) n += p->args[i].floats;
    return n;
}

// Runs a's reorder, whose memories already hold their buffers: user -> prim
// for an input, prim -> user for an output.
static void run_reorder(const DnnlArg *a) {
    dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, a->output ? a->prim : a->user},
                            {DNNL_ARG_TO, a->output ? a->user : a->prim}};
    DNNL_CHECK(dnnl_primitive_execute(a->reorder, runtime_dnnl()->stream, 2, r));
}

// Runs p on the caller's buffers (in the order of p->args), reordering where its
// layout differs, through ws (prim_ws(p, ready) floats, 64-byte aligned). An
// input with ready[i] set is already in the primitive's layout there (one
// reorder serving two primitives), and is not reordered again.
static void run_prim(DnnlConvPrim *p, void *const *bufs, float *ws, float *const *ready) {
    DnnlCtx *ctx = runtime_dnnl();
    dnnl_exec_arg_t ea[4];
    for (int i = 0; i < p->nargs; i++) {
        DnnlArg *a = &p->args[i];
        int pre = ready && ready[i];
        DNNL_CHECK(dnnl_memory_set_data_handle(a->user, bufs[i]));
        if (a->prim) {
            DNNL_CHECK(dnnl_memory_set_data_handle(a->prim, pre ? ready[i] : ws));
            if (!pre) ws += a->floats;
        }
        ea[i].arg = a->arg;
        ea[i].memory = a->prim ? a->prim : a->user;
        if (a->reorder && !a->output && !pre) run_reorder(a);
    }
    DNNL_CHECK(dnnl_primitive_execute(p->conv, ctx->stream, p->nargs, ea));
    for (int i = 0; i < p->nargs; i++)
        if (p->args[i].reorder && p->args[i].output) run_reorder(&p->args[i]);
    DNNL_CHECK(dnnl_stream_wait(ctx->stream));
}

// The context's work buffer, at least `floats` long and 64-byte aligned (what
// oneDNN's blocked layouts want); it only grows, to the largest single call.
static float *work(size_t floats) {
    DnnlCtx *ctx = runtime_dnnl();
    if (ctx->work_floats < floats) {
        free(ctx->work);
        if (posix_memalign((void **)&ctx->work, 64, floats * sizeof(float)))
            FATAL("out of memory: %zu bytes for the oneDNN work buffer", floats * sizeof(float));
        ctx->work_floats = floats;
    }
    return ctx->work;
}

static void add_into(float *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

// Whether p's result reaches the caller's buffer with no add loop: its reorder
// adds it there, or (set_dx) the primitive or its reorder writes it there.
static int written_direct(const DnnlConvPrim *p) { return p->args[2].accumulate || !p->args[2].add; }

// Work floats run_added needs for p adding onto n floats.
static size_t added_ws(const DnnlConvPrim *p, float *const *ready, size_t n) {
    return prim_ws(p, ready) + (written_direct(p) ? 0 : n);
}

// Runs a backward primitive on inputs in0, in1 and adds its result (the third
// argument, ARG_OUT_ADDED) onto dst's n floats: through its reorder where it
// has one, else from the work buffer wk (added_ws floats) after the
// primitive's own layouts. A result made with set_dx is written into dst.
static void run_added(DnnlConvPrim *p, const float *in0, const float *in1, float *dst, size_t n,
                      float *const *ready, float *wk) {
    int direct = written_direct(p);
    float *res = direct ? dst : wk + prim_ws(p, ready);
    void *bufs[3] = {(void *)in0, (void *)in1, res};
    run_prim(p, bufs, wk, ready);
    if (!direct) add_into(dst, res, n);
}

// Samples per chunk: as many as keep the larger activation (input or output)
// under runtime_conv_chunk_floats(). The work buffer for dx is one such chunk,
// so memory stays bounded at SD-1.5 64x64 latents with any batch.
static int chunk(int B, size_t per_sample) {
    size_t nb = runtime_conv_chunk_floats() / (per_sample ? per_sample : 1);
    if (nb < 1) nb = 1;
    return nb < (size_t)B ? (int)nb : B;
}

void conv2d_dnnl_forward(float *out, const float *x, const float *w, const float *b, int B, int Cin, int H, int W,
                         int Cout, int k, int stride, int pad, int blocked) {
    conv2d_dnnl_forward_fmt(out, 0, x, 0, w, b, B, Cin, H, W, Cout, k, stride, pad, blocked);
}

void conv2d_dnnl_forward_fmt(float *out, int out_blk, const float *x, int x_blk, const float *w, const float *b, int B,
                             int Cin, int H, int W, int Cout, int k, int stride, int pad, int blocked) {
    int Ho = conv2d_out_size(H, k, stride, pad), Wo = conv2d_out_size(W, k, stride, pad);
    size_t xs = (size_t)Cin * H * W, ys = (size_t)Cout * Ho * Wo;
    int nb = chunk(B, xs > ys ? xs : ys);
    for (int n0 = 0; n0 < B; n0 += nb) {
        int m = B - n0 < nb ? B - n0 : nb;
        DnnlConvPrim *p = get_prim(DNNL_CONV_FWD, m, Cin, H, W, Cout, k, stride, pad, b != NULL, blocked, x_blk,
                                   out_blk, 0);
        void *bufs[4] = {(void *)(x + n0 * xs), (void *)w, (void *)b, out + n0 * ys};
        if (!b) bufs[2] = bufs[3];  // no bias argument: dst is the third
        run_prim(p, bufs, work(prim_ws(p, NULL)), NULL);
    }
}

// Whether dout's reorder serves both backward primitives: both want it in the
// same layout, other than the caller's.
static int dout_shared(const DnnlConvPrim *pw, const DnnlConvPrim *pd) {
    if (!pw || !pd || !pw->args[1].prim || !pd->args[0].prim) return 0;
    const dnnl_memory_desc_t *a, *b;
    DNNL_CHECK(dnnl_memory_get_memory_desc(pw->args[1].prim, &a));
    DNNL_CHECK(dnnl_memory_get_memory_desc(pd->args[0].prim, &b));
    return dnnl_memory_desc_equal(a, b);
}

void conv2d_dnnl_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int B, int Cin,
                          int H, int W, int Cout, int k, int stride, int pad, int blocked) {
    conv2d_dnnl_backward_fmt(dx, 0, 0, dw, dout, 0, x, w, B, Cin, H, W, Cout, k, stride, pad, blocked);
}

void conv2d_dnnl_backward_fmt(float *dx, int dx_blk, int set_dx, float *dw, const float *dout, int dout_blk,
                              const float *x, const float *w, int B, int Cin, int H, int W, int Cout, int k,
                              int stride, int pad, int blocked) {
    int Ho = conv2d_out_size(H, k, stride, pad), Wo = conv2d_out_size(W, k, stride, pad);
    size_t xs = (size_t)Cin * H * W, ys = (size_t)Cout * Ho * Wo, nw = (size_t)Cout * Cin * k * k;
    int nb = chunk(B, xs > ys ? xs : ys);
    // oneDNN writes its results; kernels.h's backward adds them (run_added).
    for (int n0 = 0; n0 < B; n0 += nb) {
        int m = B - n0 < nb ? B - n0 : nb;
        // x is read by backward-weights only, dx written by backward-data only:
        // each primitive's layout of it follows dx_blk.
        DnnlConvPrim *pw = dw ? get_prim(DNNL_CONV_BWD_WEIGHTS, m, Cin, H, W, Cout, k, stride, pad, 0, blocked, dx_blk,
                                         dout_blk, 0)
                              : NULL;
        DnnlConvPrim *pd = dx ? get_prim(DNNL_CONV_BWD_DATA, m, Cin, H, W, Cout, k, stride, pad, 0, blocked, dx_blk,
                                         dout_blk, set_dx)
                              : NULL;
        // dout is argument 1 of backward-weights and 0 of backward-data: where
        // both want the same layout, it is reordered once, into the work
        // buffer's head, and both read it there.
        const float *dn = dout + n0 * ys;
        int shared = dout_shared(pw, pd);
        // The shared copy (the same size for both) moves out of each one's own work.
        size_t head = shared ? pw->args[1].floats : 0;
        size_t need_w = pw ? added_ws(pw, NULL, nw) - head : 0;
        size_t need_d = pd ? added_ws(pd, NULL, (size_t)m * xs) - head : 0;
        float *wk = work(head + (need_w > need_d ? need_w : need_d));
        float *rw[3] = {NULL, NULL, NULL}, *rd[3] = {NULL, NULL, NULL};
        if (shared) {
            DnnlArg *a = &pw->args[1];
            rw[1] = rd[0] = wk;
            DNNL_CHECK(dnnl_memory_set_data_handle(a->user, (void *)dn));
            DNNL_CHECK(dnnl_memory_set_data_handle(a->prim, wk));
            run_reorder(a);
        }
        if (pw) run_added(pw, x + n0 * xs, dn, dw, nw, rw, wk + head);
        if (pd) run_added(pd, dn, w, dx + n0 * xs, (size_t)m * xs, rd, wk + head);
    }
}

int conv2d_dnnl_act_block(void) {
    DnnlCtx *ctx = runtime_dnnl();
    if (!ctx->act_blk) {
        // A 3x3 convolution of 64 channels, as the U-Nets' interiors have: the
        // layout oneDNN picks for its activations on this CPU.
        dnnl_memory_desc_t x, w, y, b16, b8;
        md_init(&x, 1, 64, 8, 8, dnnl_format_tag_any);
        md_init(&w, 64, 64, 3, 3, dnnl_format_tag_any);
        md_init(&y, 1, 64, 8, 8, dnnl_format_tag_any);
        md_init(&b16, 1, 64, 8, 8, dnnl_aBcd16b);
        md_init(&b8, 1, 64, 8, 8, dnnl_aBcd8b);
        dnnl_dims_t st = {1, 1}, pd = {1, 1};
        dnnl_convolution_desc_t cd;
        dnnl_primitive_desc_t p;
        DNNL_CHECK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &x, &w,
                                                      NULL, &y, st, pd, pd));
        DNNL_CHECK(dnnl_primitive_desc_create(&p, &cd, NULL, ctx->engine, NULL));
        const dnnl_memory_desc_t *src = dnnl_primitive_desc_query_md(p, dnnl_query_src_md, 0);
        const dnnl_memory_desc_t *dst = dnnl_primitive_desc_query_md(p, dnnl_query_dst_md, 0);
        ctx->act_blk = -1;
        if (dnnl_memory_desc_equal(src, &b16) && dnnl_memory_desc_equal(dst, &b16)) ctx->act_blk = 16;
        if (dnnl_memory_desc_equal(src, &b8) && dnnl_memory_desc_equal(dst, &b8)) ctx->act_blk = 8;
        DNNL_CHECK(dnnl_primitive_desc_destroy(p));
    }
    return ctx->act_blk > 0 ? ctx->act_blk : 0;
}

int conv2d_dnnl_version(char *buf, size_t n) {
    const dnnl_version_t *d = dnnl_version();
    snprintf(buf, n, "oneDNN %d.%d.%d", d->major, d->minor, d->patch);
    return 1;
}
#else
int conv2d_dnnl_act_block(void) { return 0; }
int conv2d_dnnl_version(char *buf, size_t n) {
    if (n) buf[0] = 0;
    return 0;
}
#endif
