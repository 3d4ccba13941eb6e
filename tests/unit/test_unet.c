// test_unet.c — whole-network checks that need no reference file: removal
// semantics (bypassing a layer == building the network without it, parameter
// and MAC accounting), at both granularities (a removed BasicTransformerBlock
// == that block with its output projections zeroed; backward through a pruned
// block stack against finite differences), re-listing candidates at the other
// granularity, determinism of repeated passes, shape errors; the same with
// SDXL's text_time conditioning. Gradients of the
// whole network are checked against diffusers in test_reference.c.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "model/unet.h"

static void tiny_config(ModelConfig *m, int linear) {
    tu_tiny_model(m, 2, 3, 8, 2);
    m->transformer_layers[0] = linear ? 2 : 1;
    m->use_linear_projection = linear;
}

enum { B = 2, H = 8, W = 8, L = 3 };

enum { P = 5 };  // pooled width of the text_time variant (addition_time_embed_dim 4: 5 + 6 * 4 = 29)

typedef struct {
    float sample[B * 2 * H * W], t[B], ctx[B * L * 6], R[B * 3 * H * W], pooled[B * P], time_ids[B * 6];
} Inputs;

static void make_inputs(Inputs *in, const UNet *u, TuRng *r) {
    tu_fill(r, in->sample, sizeof in->sample / sizeof(float), -1, 1);
    in->t[0] = 17, in->t[1] = 640;
    tu_fill(r, in->ctx, sizeof in->ctx / sizeof(float), -1, 1);
    tu_fill(r, in->R, sizeof in->R / sizeof(float), -1, 1);
    tu_fill(r, in->pooled, sizeof in->pooled / sizeof(float), -1, 1);
    for (int b = 0; b < B; b++) unet_neutral_time_ids(in->time_ids + 6 * b, 512 + 64 * b, 768);
    (void)u;
}

static void init_params(UNet *u, TuRng *r) {
    for (int i = 0; i < u->pt.n; i++) {
        const ParamTensor *t = &u->pt.t[i];
        float *p = u->params + t->offset;
        int is_norm_w = strstr(t->name, "norm") && strstr(t->name, ".weight");
        float fan = t->ndim >= 2 ? (float)(t->numel / (size_t)t->shape[0]) : 1.0f;
        for (size_t j = 0; j < t->numel; j++)
            p[j] = is_norm_w ? 1.0f + tu_uniform(r, -0.2f, 0.2f)
                             : tu_uniform(r, -1, 1) * (t->ndim >= 2 ? 1.2f / sqrtf(fan) : 0.1f);
    }
}

// Bypassing candidates in the full network must equal building it without
// them: outputs and the kept parameters' gradients bit for bit, parameters and
// MACs down by the removed candidates' counts.
static void check_pruned_equals_bypassed(int linear, Granularity g, int text_time) {
    ModelConfig m;
    tiny_config(&m, linear);
    if (text_time)
        m.addition_embed_type = ADD_EMBED_TEXT_TIME, m.addition_time_embed_dim = 4,
        m.projection_class_embeddings_input_dim = P + 6 * 4;
    Error e;
    UNet *full = unet_create_at(&m, g, NULL, &e);
    CHECK(full);
    TuRng r;
    tu_rng_seed(&r, 99);
    init_params(full, &r);
    uint8_t rm[64] = {0};
    int nrm = 0;
    for (int c = 0; c < full->n_cands; c++)  // every third, and at block granularity every other block
        if (c % 3 == 0 || (full->cands[c].kind == CAND_BLOCK && c % 2)) rm[c] = 1, nrm++;
    UNet *small = unet_create_at(&m, g, rm, &e);
    CHECK(small);
    EXPECT(small->n_cands == full->n_cands, "candidate indices must not shift");
    EXPECT(small->pt.total < full->pt.total, "pruned network has fewer parameters");
    size_t removed = 0;
    for (int c = 0; c < full->n_cands; c++)
        if (rm[c]) removed += (size_t)full->cands[c].params;
    EXPECT(full->pt.total - small->pt.total == removed, "parameter difference %zu == removed %zu",
           full->pt.total - small->pt.total, removed);
    long long macs = unet_total_macs(full), nblk = 0;
    for (int c = 0; c < full->n_cands; c++) {
        if (rm[c]) macs -= full->cands[c].macs;
        nblk += rm[c] && full->cands[c].kind == CAND_BLOCK;
    }
    EXPECT(unet_total_macs(small) == macs, "MACs of the pruned network %lld == total - removed %lld",
           unet_total_macs(small), macs);
    EXPECT(g == GRAN_LAYER || nblk > 0, "block granularity: some removed candidates are blocks (%lld)", nblk);
    for (int i = 0; i < small->pt.n; i++) {
        const ParamTensor *t = &small->pt.t[i];
        const ParamTensor *f = params_find(&full->pt, t->name);
        EXPECT(f && f->numel == t->numel, "%s exists in the full network", t->name);
        if (f) memcpy(small->params + t->offset, full->params + f->offset, t->numel * sizeof(float));
    }
    Inputs in;
    make_inputs(&in, full, &r);
    float o1[B * 3 * H * W], o2[B * 3 * H * W];
    UNetAdded add = {in.pooled, in.time_ids};
    EXPECT(full->pooled_dim == (text_time ? P : 0), "pooled width %d", full->pooled_dim);
    CHECK(unet_forward_added(full, o1, in.sample, in.t, in.ctx, &add, B, H, W, L, rm, &e) == 0);
    CHECK(unet_forward_added(small, o2, in.sample, in.t, in.ctx, &add, B, H, W, L, NULL, &e) == 0);
    EXPECT(memcmp(o1, o2, sizeof o1) == 0, "%s: pruned forward equals bypassed forward bit for bit (%d removed)",
           granularity_name(g), nrm);
    // backward: every kept parameter's gradient the same, the removed ones' zero in the full network
    unet_zero_grad(full), unet_zero_grad(small);
    unet_backward(full, in.R, NULL);
    CHECK(unet_forward_added(small, o2, in.sample, in.t, in.ctx, &add, B, H, W, L, NULL, &e) == 0);
    unet_backward(small, in.R, NULL);
    int same = 1;
    for (int i = 0; i < small->pt.n; i++) {
        const ParamTensor *t = &small->pt.t[i], *f = params_find(&full->pt, t->name);
        same &= !memcmp(small->grads + t->offset, full->grads + f->offset, t->numel * sizeof(float));
    }
    EXPECT(same, "%s: kept parameters' gradients equal bit for bit", granularity_name(g));
    double gone = 0;
    for (int i = 0; i < full->pt.n; i++)
        if (!params_find(&small->pt, full->pt.t[i].name))
            for (size_t j = 0; j < full->pt.t[i].numel; j++) gone += fabs(full->grads[full->pt.t[i].offset + j]);
    EXPECT(gone == 0, "%s: bypassed parameters get no gradient (%g)", granularity_name(g), gone);
    CHECK(unet_forward_added(full, o1, in.sample, in.t, in.ctx, &add, B, H, W, L, rm, &e) == 0);
    // and a second pass of the same network is bitwise repeatable
    CHECK(unet_forward_added(full, o2, in.sample, in.t, in.ctx, &add, B, H, W, L, rm, &e) == 0);
    EXPECT(memcmp(o1, o2, sizeof o1) == 0, "repeated forward is deterministic");
    if (text_time) {  // the added conditioning matters, and is required
        in.time_ids[1] += 1;
        CHECK(unet_forward_added(full, o2, in.sample, in.t, in.ctx, &add, B, H, W, L, rm, &e) == 0);
        EXPECT(memcmp(o1, o2, sizeof o1) != 0, "a time id changes the output");
        EXPECT(unet_forward(full, o2, in.sample, in.t, in.ctx, B, H, W, L, NULL, &e) != 0 &&
                   strstr(e.msg, "text_time"),
               "text_time without pooled/time ids: %s", e.msg);
    } else {  // a model without it ignores it
        CHECK(unet_forward(full, o2, in.sample, in.t, in.ctx, B, H, W, L, rm, &e) == 0);
        EXPECT(memcmp(o1, o2, sizeof o1) == 0, "added conditioning ignored without text_time");
    }
    // shape errors are reported, not crashed on
    EXPECT(unet_forward(full, o2, in.sample, in.t, in.ctx, B, 7, 8, L, NULL, &e) != 0 && strstr(e.msg, "multiples of 2"),
           "odd size rejected: %s", e.msg);
    unet_free(full);
    unet_free(small);
}


// A bypassed BasicTransformerBlock is the identity on its tokens: exactly what
// the block computes with its three output projections (attn1.to_out.0,
// attn2.to_out.0, ff.net.2) zeroed, since each adds its branch to the
// residual stream. Checked bit for bit on the outputs, for each block.
static void check_block_is_identity(void) {
    ModelConfig m;
    tiny_config(&m, 1);
    Error e;
    UNet *u = unet_create_at(&m, GRAN_BLOCK, NULL, &e);
    CHECK(u);
    TuRng r;
    tu_rng_seed(&r, 5);
    init_params(u, &r);
    Inputs in;
    make_inputs(&in, u, &r);
    float o1[B * 3 * H * W], o2[B * 3 * H * W], o0[B * 3 * H * W];
    CHECK(unet_forward(u, o0, in.sample, in.t, in.ctx, B, H, W, L, NULL, &e) == 0);
    static const char *const OUTS[] = {"attn1.to_out.0.weight", "attn1.to_out.0.bias", "attn2.to_out.0.weight",
                                       "attn2.to_out.0.bias", "ff.net.2.weight", "ff.net.2.bias"};
    float *saved = xmalloc(u->pt.total * sizeof(float));
    memcpy(saved, u->params, u->pt.total * sizeof(float));
    int nblk = 0;
    for (int c = 0; c < u->n_cands; c++) {
        if (u->cands[c].kind != CAND_BLOCK) continue;
        nblk++;
        uint8_t skip[64] = {0};
        CHECK(u->n_cands <= 64);
        skip[c] = 1;
        CHECK(unet_forward(u, o1, in.sample, in.t, in.ctx, B, H, W, L, skip, &e) == 0);
        int zeroed = 0;
        for (int k = 0; k < 6; k++) {
            char name[LD_NAME_MAX + 64];
            snprintf(name, sizeof name, "%s.%s", u->cands[c].name, OUTS[k]);
            const ParamTensor *t = params_find(&u->pt, name);
            if (t) memset(u->params + t->offset, 0, t->numel * sizeof(float)), zeroed++;
        }
        EXPECT(zeroed == 6, "%s has its 6 output tensors (%d)", u->cands[c].name, zeroed);
        CHECK(unet_forward(u, o2, in.sample, in.t, in.ctx, B, H, W, L, NULL, &e) == 0);
        memcpy(u->params, saved, u->pt.total * sizeof(float));
        EXPECT(!memcmp(o1, o2, sizeof o1), "%s bypassed == its output projections zeroed, bit for bit", u->cands[c].name);
        EXPECT(memcmp(o0, o1, sizeof o1), "%s bypassed changes the output", u->cands[c].name);
    }
    EXPECT(nblk == 10, "tiny linear model: 5 stacks of 2 (down 0: 2, up 1: 3) give 10 block candidates (%d)", nblk);
    free(saved);
    unet_free(u);
}

// Backward through a stack with blocks absent (one, and both: the
// Transformer2DModel is then GroupNorm, proj_in, proj_out and the residual)
// against central differences of loss = sum(out * R), in double-checked float.
static void check_pruned_stack_gradients(void) {
    ModelConfig m;
    tiny_config(&m, 1);
    Error e;
    UNet *full = unet_create_at(&m, GRAN_BLOCK, NULL, &e);
    CHECK(full);
    // down_blocks.0.attentions.0: both blocks absent; up_blocks.1.attentions.1: its block 0 absent
    uint8_t rm[64] = {0};
    const char *names[] = {"down_blocks.0.attentions.0.transformer_blocks.0", "down_blocks.0.attentions.0.transformer_blocks.1",
                           "up_blocks.1.attentions.1.transformer_blocks.0"};
    for (int k = 0; k < 3; k++) {
        int found = 0;
        for (int c = 0; c < full->n_cands; c++)
            if (!strcmp(full->cands[c].name, names[k])) rm[c] = 1, found = 1;
        EXPECT(found, "%s is a candidate", names[k]);
    }
    UNet *u = unet_create_at(&m, GRAN_BLOCK, rm, &e);
    CHECK(u);
    TuRng r;
    tu_rng_seed(&r, 21);
    init_params(u, &r);
    Inputs in;
    make_inputs(&in, u, &r);
    int prev = tu_set_threads(1);
    size_t nout = (size_t)B * 3 * H * W;
    float *out = xmalloc(nout * sizeof(float));
    CHECK(unet_forward(u, out, in.sample, in.t, in.ctx, B, H, W, L, NULL, &e) == 0);
    unet_zero_grad(u);
    unet_backward(u, in.R, NULL);
    // tensors around and inside the pruned stacks
    const char *probe[] = {"down_blocks.0.attentions.0.proj_in.weight", "down_blocks.0.attentions.0.norm.weight",
                           "down_blocks.0.attentions.0.proj_out.bias", "up_blocks.1.attentions.1.transformer_blocks.1.ff.net.2.weight",
                           "up_blocks.1.attentions.1.transformer_blocks.1.attn1.to_q.weight", "up_blocks.1.attentions.1.proj_in.weight",
                           "down_blocks.0.resnets.0.conv1.weight"};
    double worst = 0;
    for (int k = 0; k < 7; k++) {
        const ParamTensor *t = params_find(&u->pt, probe[k]);
        EXPECT(t != NULL, "%s kept", probe[k]);
        if (!t) continue;
        for (int q = 0; q < 3; q++) {
            size_t j = (size_t)(q * 7919 + 13) % t->numel;
            float *p = u->params + t->offset + j, old = *p, h = 1e-2f;
            double lp = 0, lm = 0;
            *p = old + h;
            CHECK(unet_forward(u, out, in.sample, in.t, in.ctx, B, H, W, L, NULL, &e) == 0);
            for (size_t i = 0; i < nout; i++) lp += (double)out[i] * in.R[i];
            *p = old - h;
            CHECK(unet_forward(u, out, in.sample, in.t, in.ctx, B, H, W, L, NULL, &e) == 0);
            for (size_t i = 0; i < nout; i++) lm += (double)out[i] * in.R[i];
            *p = old;
            double fd = (lp - lm) / (2.0 * h), g = u->grads[t->offset + j];
            double err = fabs(fd - g) / fmax(fabs(g), 1e-1);
            worst = fmax(worst, err);
            EXPECT(err < 2e-2, "%s[%zu]: finite difference %.6g, backward %.6g", probe[k], j, fd, g);
        }
    }
    printf("pruned block stacks: backward vs central differences, worst relative error %.2e\n", worst);
    tu_set_threads(prev);
    free(out);
    unet_free(u), unet_free(full);
}

// Candidate lists at both granularities and switching between them.
static void check_granularity_lists(void) {
    ModelConfig m;
    tiny_config(&m, 1);
    Error e;
    UNet *lay = unet_create(&m, NULL, &e), *blk = unet_create_at(&m, GRAN_BLOCK, NULL, &e);
    CHECK(lay && blk);
    int stacks2 = 0, extra = 0;
    for (int c = 0; c < lay->n_cands; c++)
        if (lay->cands[c].kind == CAND_ATTENTION && lay->cands[c].attn->n_layers >= 2)
            stacks2++, extra += lay->cands[c].attn->n_layers - 1;
    EXPECT(stacks2 > 0 && blk->n_cands == lay->n_cands + extra, "block list %d = layer list %d + %d", blk->n_cands,
           lay->n_cands, extra);
    EXPECT(unet_count_candidates(lay, GRAN_BLOCK) == blk->n_cands && unet_count_candidates(blk, GRAN_LAYER) == lay->n_cands,
           "counts at the other granularity (%d, %d)", unet_count_candidates(lay, GRAN_BLOCK),
           unet_count_candidates(blk, GRAN_LAYER));
    EXPECT(unet_total_macs(lay) == unet_total_macs(blk), "total MACs do not depend on the granularity");
    long long pl = 0, pb = 0, ml = 0, mb = 0;
    for (int c = 0; c < lay->n_cands; c++) pl += lay->cands[c].params, ml += lay->cands[c].macs;
    for (int c = 0; c < blk->n_cands; c++) pb += blk->cands[c].params, mb += blk->cands[c].macs;
    EXPECT(pb < pl && mb < ml, "a stack's norm and projections are not in any block candidate");
    // switching a whole network re-lists exactly the other list
    EXPECT(unet_set_granularity(lay, GRAN_BLOCK, &e) == 0, "to block: %s", e.msg);
    int same = lay->n_cands == blk->n_cands;
    for (int c = 0; same && c < blk->n_cands; c++)
        same = !strcmp(lay->cands[c].name, blk->cands[c].name) && lay->cands[c].kind == blk->cands[c].kind &&
               lay->cands[c].params == blk->cands[c].params && lay->cands[c].macs == blk->cands[c].macs;
    EXPECT(same, "layer -> block re-list == built at block");
    EXPECT(unet_set_granularity(lay, GRAN_LAYER, &e) == 0, "back to layer: %s", e.msg);
    // a network without a single block cannot be re-listed at layer granularity, one without a stack not at block
    uint8_t rm[64] = {0};
    int bc = -1, ac = -1;
    for (int c = 0; c < blk->n_cands; c++) bc = bc < 0 && blk->cands[c].kind == CAND_BLOCK ? c : bc;
    for (int c = 0; c < lay->n_cands; c++)
        ac = ac < 0 && lay->cands[c].kind == CAND_ATTENTION && lay->cands[c].attn->n_layers >= 2 ? c : ac;
    rm[bc] = 1;
    UNet *pb1 = unet_create_at(&m, GRAN_BLOCK, rm, &e);
    CHECK(pb1);
    EXPECT(unet_set_granularity(pb1, GRAN_LAYER, &e) != 0 && strstr(e.msg, "transformer_blocks") &&
               strstr(e.msg, "prune.granularity = \"block\""), "a removed block refuses layer granularity: %s", e.msg);
    memset(rm, 0, sizeof rm);
    rm[ac] = 1;
    UNet *pl1 = unet_create(&m, rm, &e);
    CHECK(pl1);
    EXPECT(unet_set_granularity(pl1, GRAN_BLOCK, &e) != 0 && strstr(e.msg, lay->cands[ac].name) &&
               strstr(e.msg, "prune.granularity = \"layer\""), "a removed stack refuses block granularity: %s", e.msg);
    EXPECT(granularity_of_names("mid_block.resnets.0,up_blocks.1.attentions.0.transformer_blocks.1") == GRAN_BLOCK &&
               granularity_of_names("mid_block.resnets.0,up_blocks.1.attentions.0") == GRAN_LAYER &&
               granularity_of_names(NULL) == GRAN_LAYER, "granularity of removed names");
    unet_free(pb1), unet_free(pl1), unet_free(lay), unet_free(blk);
}

int main(void) {
    check_pruned_equals_bypassed(0, GRAN_LAYER, 0);
    check_pruned_equals_bypassed(0, GRAN_LAYER, 1);
    check_pruned_equals_bypassed(1, GRAN_LAYER, 0);
    check_pruned_equals_bypassed(1, GRAN_BLOCK, 0);
    check_pruned_equals_bypassed(1, GRAN_BLOCK, 1);
    check_block_is_identity();
    check_pruned_stack_gradients();
    check_granularity_lists();
    return tu_report("test_unet");
}
