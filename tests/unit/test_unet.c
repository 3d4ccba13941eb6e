// test_unet.c — whole-network checks that need no reference file: removal
// semantics (bypassing a layer == building the network without it, parameter
// accounting), determinism of repeated passes, shape errors; the same with
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

// Bypassing candidates in the full network must equal building it without them.
static void check_pruned_equals_bypassed(int text_time) {
    ModelConfig m;
    tiny_config(&m, 0);
    if (text_time)
        m.addition_embed_type = ADD_EMBED_TEXT_TIME, m.addition_time_embed_dim = 4,
        m.projection_class_embeddings_input_dim = P + 6 * 4;
    Error e;
    UNet *full = unet_create(&m, NULL, &e);
    CHECK(full);
    TuRng r;
    tu_rng_seed(&r, 99);
    init_params(full, &r);
    uint8_t rm[64] = {0};
    int nrm = 0;
    for (int c = 0; c < full->n_cands; c += 3) rm[c] = 1, nrm++;
    UNet *small = unet_create(&m, rm, &e);
    CHECK(small);
    EXPECT(small->n_cands == full->n_cands, "candidate indices must not shift");
    EXPECT(small->pt.total < full->pt.total, "pruned network has fewer parameters");
    size_t removed = 0;
    for (int c = 0; c < full->n_cands; c++)
        if (rm[c]) removed += (size_t)full->cands[c].params;
    EXPECT(full->pt.total - small->pt.total == removed, "parameter difference %zu == removed %zu",
           full->pt.total - small->pt.total, removed);
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
    EXPECT(memcmp(o1, o2, sizeof o1) == 0, "pruned forward equals bypassed forward bit for bit (%d removed)", nrm);
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

int main(void) {
    check_pruned_equals_bypassed(0);
    check_pruned_equals_bypassed(1);
    return tu_report("test_unet");
}
