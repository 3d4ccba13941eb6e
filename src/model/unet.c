// unet.c — see unet.h. Builds the block tree from the config and runs the
// whole network forward and backward, including the skip connections that
// tie down blocks to up blocks and the removal semantics of DESIGN §3.
#include "model/unet.h"

#include <string.h>

#include "kernels/kernels.h"

// ---------------------------------------------------------------- building

typedef struct {
    UNet *u;
    const uint8_t *absent;
    Granularity gran;
    int next;  // index of the next candidate, in enumerate()'s order
} Builder;

// Whether the next candidate is to be left out of the build.
static int take_absent(Builder *b) {
    int i = b->next++;
    return b->absent && b->absent[i];
}

static int validate(const ModelConfig *m, Error *e) {
    if (m->n_blocks < 1 || m->n_blocks > LD_MAX_BLOCKS)
        return errorf(e, "model: %d blocks; expected 1..%d", m->n_blocks, LD_MAX_BLOCKS);
    if (m->layers_per_block < 1) return errorf(e, "model.layers_per_block must be >= 1");
    if (m->in_channels < 1 || m->out_channels < 1) return errorf(e, "model: in/out channels must be >= 1");
    if (m->norm_num_groups < 1) return errorf(e, "model.norm_num_groups must be >= 1");
    if (!m->mid_cross) return errorf(e, "model.mid_block_type: only UNetMidBlock2DCrossAttn is supported");
    for (int i = 0; i < m->n_blocks; i++) {
        int c = m->block_out_channels[i];
        if (c < 1 || c % m->norm_num_groups)
            return errorf(e, "model.block_out_channels[%d] = %d is not a positive multiple of norm_num_groups = %d",
                          i, c, m->norm_num_groups);
        if (m->heads[i] < 1 || c % m->heads[i])
            return errorf(e, "model.attention_head_dim[%d] = %d heads does not divide %d channels", i,
                          m->heads[i], c);
        if (m->transformer_layers[i] < 1)
            return errorf(e, "model.transformer_layers_per_block[%d] must be >= 1", i);
        if (m->down_cross[i] != m->up_cross[m->n_blocks - 1 - i])
            return errorf(e, "model: up block %d must mirror down block %d (cross-attention or not)",
                          m->n_blocks - 1 - i, i);
    }
    if (m->cross_attention_dim < 1) return errorf(e, "model.cross_attention_dim must be >= 1");
    if (m->addition_embed_type != ADD_EMBED_NONE && m->addition_embed_type != ADD_EMBED_TEXT_TIME)
        return errorf(e, "model.addition_embed_type: only none or \"text_time\" is supported");
    if (m->addition_embed_type == ADD_EMBED_TEXT_TIME &&
        (m->addition_time_embed_dim < 2 || m->addition_time_embed_dim % 2 || model_pooled_dim(m) < 1 ||
         m->freq_shift >= m->addition_time_embed_dim / 2))
        return errorf(e, "model: text_time needs an even addition_time_embed_dim (%d) above 2 * freq_shift (%g) and "
                         "projection_class_embeddings_input_dim (%d) above 6 times it",
                      m->addition_time_embed_dim, (double)m->freq_shift, m->projection_class_embeddings_input_dim);
    return 0;
}

// A resnet is a candidate when removal keeps shapes (see DESIGN §3).
static int resnet_removable(const Resnet *r, StageKind stage) {
    return stage == STAGE_UP ? r->hidden_ch == r->cout : r->cin == r->cout;
}

static void build_resnet(Builder *b, Resnet *r, const char *prefix, int cin, int cout,
                         int hidden_ch, StageKind stage) {
    UNet *u = b->u;
    const ModelConfig *m = &u->cfg;
    int removable = stage == STAGE_UP ? hidden_ch == cout : cin == cout;
    int present = !(removable && take_absent(b));
    if (present) {
        resnet_init(r, &u->pt, prefix, cin, cout, u->temb_dim, m->norm_num_groups, m->norm_eps);
    } else {  // shape only: no parameters, never run
        memset(r, 0, sizeof *r);
        snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
        r->cin = cin, r->cout = cout, r->temb_dim = u->temb_dim;
        r->has_shortcut = cin != cout;
    }
    r->cand = -1;  // set by enumerate()
    r->hidden_ch = stage == STAGE_UP ? hidden_ch : 0;
}

// Whether a Transformer2DModel is a candidate as a whole at granularity g;
// otherwise each of its BasicTransformerBlocks is (a stack of >= 2 at "block").
static int attn_whole(const Transformer *t, Granularity g) { return g == GRAN_LAYER || t->n_layers < 2; }

static void build_attn(Builder *b, Transformer *t, const char *prefix, int C, int heads, int layers) {
    UNet *u = b->u;
    const ModelConfig *m = &u->cfg;
    if (b->gran == GRAN_BLOCK && layers >= 2) {  // always built; some of its blocks may be absent
        uint8_t *blk_absent = xcalloc((size_t)layers, 1);
        for (int k = 0; k < layers; k++) blk_absent[k] = (uint8_t)take_absent(b);
        transformer_init_pruned(t, &u->pt, prefix, C, heads, layers, m->use_linear_projection,
                                m->cross_attention_dim, m->norm_num_groups, blk_absent);
        free(blk_absent);
    } else if (!take_absent(b)) {
        transformer_init(t, &u->pt, prefix, C, heads, layers, m->use_linear_projection,
                         m->cross_attention_dim, m->norm_num_groups);
    } else {
        memset(t, 0, sizeof *t);
        snprintf(t->prefix, sizeof t->prefix, "%s", prefix);
        t->C = C, t->heads = heads, t->n_layers = layers, t->cross_dim = m->cross_attention_dim;
        t->linear_proj = m->use_linear_projection;
    }
    t->cand = -1;
}

static int resnet_built(const Resnet *r) { return r->end_tensor > r->first_tensor; }
static int attn_built(const Transformer *t) { return t->blk != NULL; }

// ---------------------------------------------------------------- candidates

static Candidate *cand_push(UNet *u, const char *name, CandKind kind, StageKind stage, int block, int present) {
    u->cands = xrealloc(u->cands, (size_t)(u->n_cands + 1) * sizeof *u->cands);
    Candidate *c = &u->cands[u->n_cands++];
    memset(c, 0, sizeof *c);
    // names are diffusers prefixes, far shorter than the field; a longer one is a bug here
    if (snprintf(c->name, sizeof c->name, "%s", name) >= (int)sizeof c->name) FATAL("candidate name too long: %s", name);
    c->kind = kind, c->stage = stage, c->block = block, c->present = present, c->tblock = -1;
    return c;
}

static int stage_size(const UNet *u, StageKind stage, int block) {
    int n = u->cfg.n_blocks;
    return u->cfg.sample_size >> (stage == STAGE_DOWN ? block : stage == STAGE_MID ? n - 1 : n - 1 - block);
}

static void enum_resnet(UNet *u, Resnet *r, StageKind stage, int block) {
    r->cand = -1;
    if (!resnet_removable(r, stage)) return;
    int s = stage_size(u, stage, block), present = resnet_built(r);
    r->cand = u->n_cands;
    Candidate *c = cand_push(u, r->prefix, CAND_RESNET, stage, block, present);
    c->res = r;
    c->params = present ? (long long)params_count_range(&u->pt, r->first_tensor, r->end_tensor) : 0;
    c->macs = resnet_macs(r, s, s);
}

static void enum_attn(UNet *u, Transformer *t, StageKind stage, int block, Granularity g) {
    int s = stage_size(u, stage, block), L = u->cfg.context_length;
    t->cand = -1;
    if (attn_whole(t, g)) {
        if (t->blk)
            for (int k = 0; k < t->n_layers; k++) t->blk[k].cand = -1;
        t->cand = u->n_cands;
        Candidate *c = cand_push(u, t->prefix, CAND_ATTENTION, stage, block, attn_built(t));
        c->attn = t;
        c->params = c->present ? (long long)params_count_range(&u->pt, t->first_tensor, t->end_tensor) : 0;
        c->macs = transformer_macs(t, s, s, L);
        return;
    }
    char name[LD_NAME_MAX + 32];
    for (int k = 0; k < t->n_layers; k++) {
        TBlock *b = &t->blk[k];
        snprintf(name, sizeof name, "%s.transformer_blocks.%d", t->prefix, k);
        b->cand = u->n_cands;
        Candidate *c = cand_push(u, name, CAND_BLOCK, stage, block, b->present);
        c->attn = t, c->tblock = k;
        c->params = b->present ? (long long)params_count_range(&u->pt, b->first_tensor, b->end_tensor) : 0;
        c->macs = tblock_macs(t, s, s, L);
    }
}

// The candidate list of a built tree at granularity g, in execution order
// (the order build_* consumes `absent` flags in).
static void enumerate(UNet *u, Granularity g) {
    const ModelConfig *m = &u->cfg;
    int n = m->n_blocks;
    free(u->cands);
    u->cands = NULL, u->n_cands = 0, u->gran = g;
    for (int i = 0; i < n; i++) {
        Block *blk = &u->down[i];
        for (int j = 0; j < blk->n_layers; j++) {
            enum_resnet(u, &blk->res[j], STAGE_DOWN, i);
            if (blk->attn) enum_attn(u, &blk->attn[j], STAGE_DOWN, i, g);
        }
    }
    enum_resnet(u, &u->mid_res[0], STAGE_MID, 0);
    enum_attn(u, &u->mid_attn, STAGE_MID, 0, g);
    enum_resnet(u, &u->mid_res[1], STAGE_MID, 0);
    for (int i = 0; i < n; i++) {
        Block *blk = &u->up[i];
        for (int j = 0; j < blk->n_layers; j++) {
            enum_resnet(u, &blk->res[j], STAGE_UP, i);
            if (blk->attn) enum_attn(u, &blk->attn[j], STAGE_UP, i, g);
        }
    }
    free(u->bypass);
    u->bypass = xcalloc((size_t)u->n_cands + 1, 1);
    u->have_forward = 0;  // the last forward's flags are indexed by the old list
}

// Every Transformer2DModel of the tree (down, mid, up), for the checks below.
static int all_attn(const UNet *u, const Transformer **out) {
    int k = 0;
    for (int i = 0; i < u->cfg.n_blocks; i++)
        for (int j = 0; u->down[i].attn && j < u->down[i].n_layers; j++) out[k++] = &u->down[i].attn[j];
    out[k++] = &u->mid_attn;
    for (int i = 0; i < u->cfg.n_blocks; i++)
        for (int j = 0; u->up[i].attn && j < u->up[i].n_layers; j++) out[k++] = &u->up[i].attn[j];
    return k;
}

static int max_attn(const UNet *u) { return 1 + 2 * u->cfg.n_blocks * (u->cfg.layers_per_block + 1); }

int unet_set_granularity(UNet *u, Granularity g, Error *e) {
    if (g == u->gran) return 0;
    const Transformer **ts = xcalloc((size_t)max_attn(u), sizeof *ts);
    int n = all_attn(u, ts), rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const Transformer *t = ts[i];
        if (t->n_layers < 2) continue;
        if (!attn_built(t))  // its norm and projections are gone too: no block-level equivalent
            rc = errorf(e, "%s was removed as a whole Transformer2DModel: this model can be pruned further only at "
                           "prune.granularity = \"layer\"", t->prefix);
        for (int k = 0; attn_built(t) && k < t->n_layers && !rc; k++)
            if (!t->blk[k].present)
                rc = errorf(e, "%s.transformer_blocks.%d was removed as a single block: this model can be pruned "
                               "further only at prune.granularity = \"block\"", t->prefix, k);
    }
    free(ts);
    if (!rc) enumerate(u, g);
    return rc;
}

int unet_count_candidates(const UNet *u, Granularity g) {
    const Transformer **ts = xcalloc((size_t)max_attn(u), sizeof *ts);
    int n = all_attn(u, ts), count = 0;
    for (int i = 0; i < n; i++) count += attn_whole(ts[i], g) ? 1 : ts[i]->n_layers;
    free(ts);
    for (int c = 0; c < u->n_cands; c++) count += u->cands[c].kind == CAND_RESNET;
    return count;
}

const char *cand_kind_name(CandKind k) {
    return k == CAND_RESNET ? "resnet" : k == CAND_ATTENTION ? "attention" : "block";
}

const char *granularity_name(Granularity g) { return g == GRAN_BLOCK ? "block" : "layer"; }

Granularity granularity_of_names(const char *names) {
    return names && strstr(names, ".transformer_blocks.") ? GRAN_BLOCK : GRAN_LAYER;
}

UNet *unet_create(const ModelConfig *cfg, const uint8_t *absent, Error *e) {
    return unet_create_at(cfg, GRAN_LAYER, absent, e);
}

UNet *unet_create_at(const ModelConfig *cfg, Granularity gran, const uint8_t *absent, Error *e) {
    if (validate(cfg, e)) return NULL;
    UNet *u = xcalloc(1, sizeof *u);
    u->be = backend_cpu_create();
    u->acts.mem = u->work.mem = u->rec.mem = &u->be->mem;
    u->cfg = *cfg;
    const ModelConfig *m = &u->cfg;
    Builder b = {u, absent, gran, 0};
    int n = m->n_blocks, L = m->layers_per_block;
    const int *ch = m->block_out_channels;
    char p[LD_NAME_MAX];
    u->temb_dim = 4 * ch[0];

    u->conv_in_w = params_add(&u->pt, "conv_in", "weight", 4, ch[0], m->in_channels, 3, 3);
    u->conv_in_b = params_add(&u->pt, "conv_in", "bias", 1, ch[0], 0, 0, 0);
    u->t1_w = params_add(&u->pt, "time_embedding.linear_1", "weight", 2, u->temb_dim, ch[0], 0, 0);
    u->t1_b = params_add(&u->pt, "time_embedding.linear_1", "bias", 1, u->temb_dim, 0, 0, 0);
    u->t2_w = params_add(&u->pt, "time_embedding.linear_2", "weight", 2, u->temb_dim, u->temb_dim, 0, 0);
    u->t2_b = params_add(&u->pt, "time_embedding.linear_2", "bias", 1, u->temb_dim, 0, 0, 0);
    // diffusers' order: add_embedding follows time_embedding
    u->pooled_dim = model_pooled_dim(m);
    if (u->pooled_dim > 0) {
        u->add_in_dim = m->projection_class_embeddings_input_dim;
        u->a1_w = params_add(&u->pt, "add_embedding.linear_1", "weight", 2, u->temb_dim, u->add_in_dim, 0, 0);
        u->a1_b = params_add(&u->pt, "add_embedding.linear_1", "bias", 1, u->temb_dim, 0, 0, 0);
        u->a2_w = params_add(&u->pt, "add_embedding.linear_2", "weight", 2, u->temb_dim, u->temb_dim, 0, 0);
        u->a2_b = params_add(&u->pt, "add_embedding.linear_2", "bias", 1, u->temb_dim, 0, 0, 0);
    }

    // down blocks
    for (int i = 0; i < n; i++) {
        Block *blk = &u->down[i];
        blk->cin = i == 0 ? ch[0] : ch[i - 1];
        blk->cout = ch[i];
        blk->n_layers = L;
        blk->res = xcalloc((size_t)L, sizeof *blk->res);
        if (m->down_cross[i]) blk->attn = xcalloc((size_t)L, sizeof *blk->attn);
        blk->layer_in = xcalloc((size_t)2 * L, sizeof *blk->layer_in);
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            build_resnet(&b, &blk->res[j], p, j == 0 ? blk->cin : blk->cout, blk->cout, 0, STAGE_DOWN);
            if (blk->attn) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                build_attn(&b, &blk->attn[j], p, blk->cout, m->heads[i], m->transformer_layers[i]);
            }
        }
        blk->has_sampler = i < n - 1;
        if (blk->has_sampler) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            blk->samp_w = params_add(&u->pt, p, "weight", 4, blk->cout, blk->cout, 3, 3);
            blk->samp_b = params_add(&u->pt, p, "bias", 1, blk->cout, 0, 0, 0);
        }
    }
    // mid block: resnet, attention, resnet at the innermost width
    int cm = ch[n - 1];
    build_resnet(&b, &u->mid_res[0], "mid_block.resnets.0", cm, cm, 0, STAGE_MID);
    build_attn(&b, &u->mid_attn, "mid_block.attentions.0", cm, m->heads[n - 1], m->transformer_layers[n - 1]);
    build_resnet(&b, &u->mid_res[1], "mid_block.resnets.1", cm, cm, 0, STAGE_MID);
    // up blocks, widths reversed; each resnet takes cat([hidden, skip])
    int prev = ch[n - 1];
    for (int i = 0; i < n; i++) {
        Block *blk = &u->up[i];
        int rev = n - 1 - i;
        int out = ch[rev], in = ch[rev - 1 >= 0 ? rev - 1 : 0];
        blk->cin = prev;
        blk->cout = out;
        blk->n_layers = L + 1;
        blk->res = xcalloc((size_t)L + 1, sizeof *blk->res);
        if (m->up_cross[i]) blk->attn = xcalloc((size_t)L + 1, sizeof *blk->attn);
        blk->layer_in = xcalloc((size_t)2 * (L + 1), sizeof *blk->layer_in);
        for (int j = 0; j <= L; j++) {
            int skip_ch = j == L ? in : out;
            int hidden = j == 0 ? prev : out;
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            build_resnet(&b, &blk->res[j], p, hidden + skip_ch, out, hidden, STAGE_UP);
            if (blk->attn) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                build_attn(&b, &blk->attn[j], p, out, m->heads[rev], m->transformer_layers[rev]);
            }
        }
        blk->has_sampler = i < n - 1;
        if (blk->has_sampler) {
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            blk->samp_w = params_add(&u->pt, p, "weight", 4, out, out, 3, 3);
            blk->samp_b = params_add(&u->pt, p, "bias", 1, out, 0, 0, 0);
        }
        prev = out;
    }
    u->norm_out_w = params_add(&u->pt, "conv_norm_out", "weight", 1, ch[0], 0, 0, 0);
    u->norm_out_b = params_add(&u->pt, "conv_norm_out", "bias", 1, ch[0], 0, 0, 0);
    u->conv_out_w = params_add(&u->pt, "conv_out", "weight", 4, m->out_channels, ch[0], 3, 3);
    u->conv_out_b = params_add(&u->pt, "conv_out", "bias", 1, m->out_channels, 0, 0, 0);

    u->params = xcalloc(u->pt.total, sizeof(float));
    // u->grads comes with the first unet_zero_grad or backward: a frozen
    // teacher never needs one (3.4 GB at SD-1.5 scale)
    enumerate(u, gran);
    CHECK(u->n_cands == b.next);  // the build consumed one absent flag per candidate
    u->max_skips = 1 + n * (L + 1);
    u->skip_data = xcalloc((size_t)u->max_skips, sizeof *u->skip_data);
    u->skip_C = xcalloc((size_t)u->max_skips, sizeof *u->skip_C);
    u->skip_HW = xcalloc((size_t)u->max_skips, sizeof *u->skip_HW);

    // taps: every down block, the mid block, every up block
    for (int i = 0; i < n; i++) snprintf(u->taps[u->n_taps++].name, sizeof u->taps[0].name, "down.%d", i);
    snprintf(u->taps[u->n_taps++].name, sizeof u->taps[0].name, "mid");
    for (int i = 0; i < n; i++) snprintf(u->taps[u->n_taps++].name, sizeof u->taps[0].name, "up.%d", i);
    if (unet_total_macs(u) < 0) {  // a silent 64-bit wrap would hand the knapsack negative costs
        errorf(e, "model.sample_size = %d: the U-Net's MAC count at this size exceeds 2^53 (%.1e), beyond exact "
                  "counting; use a smaller model.sample_size", m->sample_size, LD_MACS_EXACT);
        unet_free(u);
        return NULL;
    }
    return u;
}

// Parameter and gradient buffers live in the backend's memory; the CPU
// backend's is malloc's (backend.h), so a CPU U-Net's buffers are plain host
// memory and a caller's buffer can be adopted.
static void free_buf(UNet *u, void *p) {
    if (p) u->be->mem.free(u->be->ctx, p);
}

void unet_adopt_params(UNet *u, float *params) {
    CHECK(!u->be->on_device);  // a device U-Net owns its device copy of the weights
    if (!u->params_borrowed) free_buf(u, u->params);
    u->params = params, u->params_borrowed = 1;
}

void unet_use_backend(UNet *u, Backend *be) {
    CHECK(!u->be->on_device);  // from the CPU (where weights are loaded) onto another backend, once
    float *params = be->mem.alloc(be->ctx, u->pt.total);
    be->upload(be->ctx, params, u->params, u->pt.total);
    if (!u->params_borrowed) free_buf(u, u->params);
    free_buf(u, u->grads);
    u->params = params, u->params_borrowed = 0, u->grads = NULL;
    arena_free(&u->acts), arena_free(&u->work), arena_free(&u->rec);
    backend_free(u->be);
    u->be = be;
    u->acts.mem = u->work.mem = u->rec.mem = &be->mem;
    u->have_forward = 0;
}

UNet *unet_copy_to(const UNet *src, Backend *be, Error *e) {
    CHECK(!src->be->on_device);
    uint8_t *absent = xcalloc((size_t)src->n_cands + 1, 1);
    for (int i = 0; i < src->n_cands; i++) absent[i] = !src->cands[i].present;
    UNet *u = unet_create_at(&src->cfg, src->gran, absent, e);
    free(absent);
    if (!u) {
        backend_free(be);
        return NULL;
    }
    CHECK(u->pt.total == src->pt.total);
    unet_adopt_params(u, src->params);  // borrowed for the upload only: unet_use_backend leaves it
    unet_use_backend(u, be);
    u->keep = src->keep;
    return u;
}

static void free_block(Block *b) {
    if (b->attn)
        for (int j = 0; j < b->n_layers; j++) transformer_free(&b->attn[j]);
    free(b->res);
    free(b->attn);
    free(b->layer_in);
}

void unet_free(UNet *u) {
    if (!u) return;
    for (int i = 0; i < u->cfg.n_blocks; i++) {
        free_block(&u->down[i]);
        free_block(&u->up[i]);
    }
    transformer_free(&u->mid_attn);
    params_free(&u->pt);
    if (!u->params_borrowed) free_buf(u, u->params);
    free_buf(u, u->grads);
    free(u->cands);
    free(u->bypass);
    free(u->skip_data);
    free(u->skip_C);
    free(u->skip_HW);
    arena_free(&u->acts);
    arena_free(&u->work);
    arena_free(&u->rec);
    backend_free(u->be);
    free(u);
}

UNetKeep unet_set_keep(UNet *u, UNetKeep k) {
    UNetKeep old = u->keep;
    u->keep = k;
    return old;
}

void unet_zero_grad(UNet *u) {
    if (!u->grads) u->grads = u->be->mem.alloc(u->be->ctx, u->pt.total);
    bk_zero(u->be, u->grads, u->pt.total);
}

// m < 0 (beyond exact counting) pushes the total past the limit.
static void add_macs(double *tot, long long m) { *tot += m < 0 ? LD_MACS_EXACT : (double)m; }

long long unet_total_macs(const UNet *u) {
    const ModelConfig *m = &u->cfg;
    int n = m->n_blocks, s0 = m->sample_size, ctx = m->context_length;
    // in doubles, as resnet_macs: exact below 2^53, -1 beyond (refused by unet_create).
    // Every built layer of the tree, so the sum does not depend on the granularity.
    double tot = (double)s0 * s0 * m->block_out_channels[0] * (m->in_channels + m->out_channels) * 9;
    tot += (double)u->temb_dim * (m->block_out_channels[0] + u->temb_dim);
    if (u->pooled_dim > 0) tot += (double)u->temb_dim * (u->add_in_dim + u->temb_dim);
    for (int i = 0; i < n; i++) {
        const Block *d = &u->down[i], *up = &u->up[i];
        int sd = s0 >> i, su = s0 >> (n - 1 - i);
        for (int j = 0; j < d->n_layers; j++) {
            if (resnet_built(&d->res[j])) add_macs(&tot, resnet_macs(&d->res[j], sd, sd));
            if (d->attn && attn_built(&d->attn[j])) add_macs(&tot, transformer_macs(&d->attn[j], sd, sd, ctx));
        }
        for (int j = 0; j < up->n_layers; j++) {
            if (resnet_built(&up->res[j])) add_macs(&tot, resnet_macs(&up->res[j], su, su));
            if (up->attn && attn_built(&up->attn[j])) add_macs(&tot, transformer_macs(&up->attn[j], su, su, ctx));
        }
        if (d->has_sampler) tot += (double)(sd / 2) * (sd / 2) * d->cout * d->cout * 9;
        if (up->has_sampler) tot += (double)(2 * su) * (2 * su) * up->cout * up->cout * 9;
    }
    int sm = s0 >> (n - 1);
    for (int k = 0; k < 2; k++)
        if (resnet_built(&u->mid_res[k])) add_macs(&tot, resnet_macs(&u->mid_res[k], sm, sm));
    if (attn_built(&u->mid_attn)) add_macs(&tot, transformer_macs(&u->mid_attn, sm, sm, ctx));
    return tot < LD_MACS_EXACT ? (long long)tot : -1;
}

// ---------------------------------------------------------------- forward

static LayerCtx ctx_of(UNet *u) {
    LayerCtx c = {u->params, u->grads, &u->acts, &u->work, u->be};
    return c;
}

// Where a layer's forward puts its interior: the pass's arenas when the forward
// keeps everything; else the recompute arena, emptied first (the previous
// layer's interior is dead by then: forward only, or recomputed before use).
static LayerCtx interior_ctx(UNet *u) {
    if (u->fwd_keep == UNET_KEEP_ALL) return ctx_of(u);
    arena_reset(&u->rec);
    LayerCtx c = {u->params, u->grads, &u->rec, &u->rec, u->be};
    return c;
}

// One layer's forward, called by the forward pass and again, under
// UNET_KEEP_INPUTS, by the backward just before the layer's backward: the same
// code on the same inputs, so what the backward reads is bit-identical.
// An up-block resnet's cat([hidden, skip]) is part of its interior.
static void resnet_layer_forward(UNet *u, Resnet *r, float *o, const float *x, const float *skip, int skc, int B,
                                 int hh, int ww) {
    LayerCtx c = interior_ctx(u);
    if (skip) {
        float *cat = arena_alloc(c.acts, (size_t)B * (r->hidden_ch + skc) * hh * ww);
        BK(u->be, concat_channels_forward, cat, x, skip, B, r->hidden_ch, skc, hh * ww);
        x = cat;
    }
    if (!o) o = arena_alloc(c.acts, (size_t)B * r->cout * hh * ww);  // a recompute: the output is known
    resnet_forward(r, &c, o, x, u->silu_temb, B, hh, ww);
}

static void push_skip(UNet *u, int *top, float *h, int C, int HW) {
    CHECK(*top < u->max_skips);
    u->skip_data[*top] = h, u->skip_C[*top] = C, u->skip_HW[*top] = HW;
    (*top)++;
    if (*top > u->n_skips) u->n_skips = *top;
}

static void note_io(UNet *u, int cand, const float *in, const float *out, int C, int H, int W) {
    if (cand < 0) return;
    Candidate *cd = &u->cands[cand];
    cd->in = in, cd->out = out, cd->C = C, cd->H = H, cd->W = W;
}

static int runs(const UNet *u, int cand) { return cand < 0 || !u->bypass[cand]; }

void unet_neutral_time_ids(float *time_ids, int H, int W) {
    const float v[LD_TIME_IDS] = {(float)H, (float)W, 0, 0, (float)H, (float)W};
    memcpy(time_ids, v, sizeof v);
}

// A Transformer2DModel on h: its blocks' skip flags from this pass's bypass
// (kept for backward), the layer, then what each block candidate received and
// produced (token-major [B,S,C]: the same count per sample as [C,H,W]).
static void attn_forward(UNet *u, Transformer *t, float *o, const float *h, int B, int hh, int ww, int L) {
    for (int k = 0; k < t->n_layers; k++) {
        TBlock *b = &t->blk[k];
        b->skip = !b->present || (b->cand >= 0 && u->bypass[b->cand]);
    }
    LayerCtx c = interior_ctx(u);
    transformer_forward(t, &c, o, h, u->context, B, hh, ww, L);
    note_io(u, t->cand, h, o, t->C, hh, ww);
    for (int k = 0; k < t->n_layers && u->fwd_keep == UNET_KEEP_ALL; k++)  // else interior: not kept
        if (t->blk[k].out) note_io(u, t->blk[k].cand, t->blk[k].t, t->blk[k].out, t->C, hh, ww);
}

// Under UNET_KEEP_INPUTS, before a layer's backward: its interior again (the
// block skip flags are the forward's; the output is dropped).
static void resnet_recompute(UNet *u, Resnet *r, const float *skip, int skc, const float *hidden) {
    if (u->fwd_keep != UNET_KEEP_INPUTS) return;
    resnet_layer_forward(u, r, NULL, skip ? hidden : r->x, skip, skc, r->B, r->H, r->W);
}

static void attn_recompute(UNet *u, Transformer *t) {
    if (u->fwd_keep != UNET_KEEP_INPUTS) return;
    LayerCtx c = interior_ctx(u);
    float *o = arena_alloc(c.acts, (size_t)t->B * t->C * t->H * t->W);
    transformer_forward(t, &c, o, t->x, t->ctx, t->B, t->H, t->W, t->L);
}

int unet_forward(UNet *u, float *out, const float *sample, const float *timesteps,
                 const float *context, int B, int H, int W, int L, const uint8_t *skip, Error *e) {
    return unet_forward_added(u, out, sample, timesteps, context, NULL, B, H, W, L, skip, e);
}

int unet_forward_added(UNet *u, float *out, const float *sample, const float *timesteps, const float *context,
                       const UNetAdded *add, int B, int H, int W, int L, const uint8_t *skip, Error *e) {
    const ModelConfig *m = &u->cfg;
    int n = m->n_blocks, f = 1 << (n - 1);
    if (B < 1 || H < f || W < f || H % f || W % f)
        return errorf(e, "U-Net input %dx%d: height and width must be positive multiples of %d", H, W, f);
    if (L < 1 || !context) return errorf(e, "U-Net input: a context of at least one token is required");
    if (u->pooled_dim > 0 && (!add || !add->pooled || !add->time_ids))
        return errorf(e, "U-Net input: this model has addition_embed_type \"text_time\" (SDXL) and needs the pooled "
                         "text embedding [B,%d] and the time ids [B,%d] beside the context",
                      u->pooled_dim, LD_TIME_IDS);
    arena_reset(&u->acts);
    arena_reset(&u->work);
    u->fwd_keep = u->keep;
    const float *p = u->params;
    u->B = B, u->H = H, u->W = W, u->L = L;
    for (int i = 0; i < u->n_cands; i++) {
        u->bypass[i] = !u->cands[i].present || (skip && skip[i]);
        u->cands[i].in = u->cands[i].out = NULL;
    }
    // the context and sample are copied: backward must not depend on caller buffers
    u->context = arena_alloc(&u->acts, (size_t)B * L * m->cross_attention_dim);
    BK(u->be, copy, (float *)u->context, context, (size_t)B * L * m->cross_attention_dim);
    u->sample = arena_alloc(&u->acts, (size_t)B * m->in_channels * H * W);
    BK(u->be, copy, u->sample, sample, (size_t)B * m->in_channels * H * W);

    // time embedding; SiLU(temb) is shared by every resnet's time_emb_proj
    int c0 = m->block_out_channels[0], td = u->temb_dim;
    u->t_emb0 = arena_alloc(&u->acts, (size_t)B * c0);
    BK(u->be, timestep_embedding, u->t_emb0, timesteps, B, c0, m->flip_sin_to_cos, m->freq_shift);
    u->t_h1 = arena_alloc(&u->acts, (size_t)B * td);
    BK(u->be, linear_forward, u->t_h1, u->t_emb0, p + u->t1_w, p + u->t1_b, B, c0, td);
    u->t_a1 = arena_alloc(&u->acts, (size_t)B * td);
    BK(u->be, silu_forward, u->t_a1, u->t_h1, (size_t)B * td);
    u->temb = arena_alloc(&u->acts, (size_t)B * td);
    BK(u->be, linear_forward, u->temb, u->t_a1, p + u->t2_w, p + u->t2_b, B, td, td);
    if (u->pooled_dim > 0) {  // emb = emb + add_embedding(cat(pooled, add_time_proj(time_ids)))
        int P = u->pooled_dim, ad = m->addition_time_embed_dim, K = u->add_in_dim;
        float *tp = arena_alloc(&u->work, (size_t)B * LD_TIME_IDS * ad);
        BK(u->be, timestep_embedding, tp, add->time_ids, B * LD_TIME_IDS, ad, m->flip_sin_to_cos, m->freq_shift);
        u->add_in = arena_alloc(&u->acts, (size_t)B * K);
        for (int b = 0; b < B; b++) {
            BK(u->be, copy, u->add_in + (size_t)b * K, add->pooled + (size_t)b * P, (size_t)P);
            BK(u->be, copy, u->add_in + (size_t)b * K + P, tp + (size_t)b * LD_TIME_IDS * ad, (size_t)LD_TIME_IDS * ad);
        }
        u->add_h1 = arena_alloc(&u->acts, (size_t)B * td);
        BK(u->be, linear_forward, u->add_h1, u->add_in, p + u->a1_w, p + u->a1_b, B, K, td);
        u->add_a1 = arena_alloc(&u->acts, (size_t)B * td);
        BK(u->be, silu_forward, u->add_a1, u->add_h1, (size_t)B * td);
        float *aug = arena_alloc(&u->work, (size_t)B * td);
        BK(u->be, linear_forward, aug, u->add_a1, p + u->a2_w, p + u->a2_b, B, td, td);
        BK(u->be, accumulate, u->temb, aug, (size_t)B * td);
    }
    u->silu_temb = arena_alloc(&u->acts, (size_t)B * td);
    BK(u->be, silu_forward, u->silu_temb, u->temb, (size_t)B * td);

    int top = 0;  // skip stack depth; entries stay recorded for backward
    u->n_skips = 0;
    float *h = arena_alloc(&u->acts, (size_t)B * c0 * H * W);
    BK(u->be, conv2d_forward, h, u->sample, p + u->conv_in_w, p + u->conv_in_b, B, m->in_channels, H, W, c0, 3, 1, 1);
    int hh = H, ww = W, tap = 0;
    push_skip(u, &top, h, c0, hh * ww);

    for (int i = 0; i < n; i++) {
        Block *blk = &u->down[i];
        blk->H = hh, blk->W = ww;
        for (int j = 0; j < blk->n_layers; j++) {
            Resnet *r = &blk->res[j];
            blk->layer_in[2 * j] = h;
            if (runs(u, r->cand)) {
                float *o = arena_alloc(&u->acts, (size_t)B * r->cout * hh * ww);
                resnet_layer_forward(u, r, o, h, NULL, 0, B, hh, ww);
                note_io(u, r->cand, h, o, r->cout, hh, ww);
                h = o;
            }
            if (blk->attn) {
                Transformer *t = &blk->attn[j];
                blk->layer_in[2 * j + 1] = h;
                if (runs(u, t->cand)) {
                    float *o = arena_alloc(&u->acts, (size_t)B * t->C * hh * ww);
                    attn_forward(u, t, o, h, B, hh, ww, L);
                    h = o;
                }
            }
            push_skip(u, &top, h, blk->cout, hh * ww);
        }
        if (blk->has_sampler) {
            blk->samp_in = h;
            float *o = arena_alloc(&u->acts, (size_t)B * blk->cout * (hh / 2) * (ww / 2));
            BK(u->be, conv2d_forward, o, h, p + blk->samp_w, p + blk->samp_b, B, blk->cout, hh, ww, blk->cout, 3, 2, 1);
            h = o, hh /= 2, ww /= 2;
            push_skip(u, &top, h, blk->cout, hh * ww);
        }
        u->taps[tap++] = (Tap){.C = blk->cout, .H = hh, .W = ww, .data = h};
        snprintf(u->taps[tap - 1].name, sizeof u->taps[0].name, "down.%d", i);
    }

    int cm = m->block_out_channels[n - 1];
    size_t nm = (size_t)B * cm * hh * ww;
    if (runs(u, u->mid_res[0].cand)) {
        float *o = arena_alloc(&u->acts, nm);
        resnet_layer_forward(u, &u->mid_res[0], o, h, NULL, 0, B, hh, ww);
        note_io(u, u->mid_res[0].cand, h, o, cm, hh, ww);
        h = o;
    }
    if (runs(u, u->mid_attn.cand)) {
        float *o = arena_alloc(&u->acts, nm);
        attn_forward(u, &u->mid_attn, o, h, B, hh, ww, L);
        h = o;
    }
    if (runs(u, u->mid_res[1].cand)) {
        float *o = arena_alloc(&u->acts, nm);
        resnet_layer_forward(u, &u->mid_res[1], o, h, NULL, 0, B, hh, ww);
        note_io(u, u->mid_res[1].cand, h, o, cm, hh, ww);
        h = o;
    }
    u->taps[tap++] = (Tap){.name = "mid", .C = cm, .H = hh, .W = ww, .data = h};

    for (int i = 0; i < n; i++) {
        Block *blk = &u->up[i];
        blk->H = hh, blk->W = ww;
        size_t hw = (size_t)hh * ww;
        for (int j = 0; j < blk->n_layers; j++) {
            Resnet *r = &blk->res[j];
            --top;
            float *sk = u->skip_data[top];
            int skc = u->skip_C[top];
            blk->layer_in[2 * j] = h;
            if (runs(u, r->cand)) {
                float *o = arena_alloc(&u->acts, (size_t)B * r->cout * hw);
                resnet_layer_forward(u, r, o, h, sk, skc, B, hh, ww);
                note_io(u, r->cand, h, o, r->cout, hh, ww);
                h = o;
            }  // removed: the hidden state passes through, the popped skip is dropped
            if (blk->attn) {
                Transformer *t = &blk->attn[j];
                blk->layer_in[2 * j + 1] = h;
                if (runs(u, t->cand)) {
                    float *o = arena_alloc(&u->acts, (size_t)B * t->C * hw);
                    attn_forward(u, t, o, h, B, hh, ww, L);
                    h = o;
                }
            }
        }
        if (blk->has_sampler) {
            blk->samp_in = arena_alloc(&u->acts, (size_t)B * blk->cout * hw * 4);
            BK(u->be, upsample2x_forward, blk->samp_in, h, B, blk->cout, hh, ww);
            hh *= 2, ww *= 2;
            float *o = arena_alloc(&u->acts, (size_t)B * blk->cout * hh * ww);
            BK(u->be, conv2d_forward, o, blk->samp_in, p + blk->samp_w, p + blk->samp_b, B, blk->cout, hh, ww,
               blk->cout, 3, 1, 1);
            h = o;
        }
        u->taps[tap++] = (Tap){.C = blk->cout, .H = hh, .W = ww, .data = h};
        snprintf(u->taps[tap - 1].name, sizeof u->taps[0].name, "up.%d", i);
    }
    CHECK(top == 0);

    // output head: GroupNorm, SiLU, conv_out
    size_t n0 = (size_t)B * c0 * H * W;
    u->no_in = h;
    u->no_mean = arena_alloc(&u->acts, (size_t)B * m->norm_num_groups);
    u->no_rstd = arena_alloc(&u->acts, (size_t)B * m->norm_num_groups);
    u->no_act = arena_alloc(&u->acts, n0);
    BK(u->be, groupnorm_silu_forward, u->no_act, u->no_mean, u->no_rstd, h, p + u->norm_out_w, p + u->norm_out_b, B, c0,
       H * W, m->norm_num_groups, m->norm_eps);
    BK(u->be, conv2d_forward, out, u->no_act, p + u->conv_out_w, p + u->conv_out_b, B, c0, H, W, m->out_channels, 3, 1,
       1);
    u->have_forward = 1;
    return 0;
}

// ---------------------------------------------------------------- backward

static void add_tap_grad(const UNet *u, float *dh, const float *const *dtaps, int t, size_t n) {
    if (dtaps && dtaps[t]) BK(u->be, accumulate, dh, dtaps[t], n);
}

// Gradient buffer of skip entry k, created on first use.
static float *dskip(UNet *u, float **ds, int k, int B) {
    if (!ds[k]) ds[k] = arena_zeros(&u->work, (size_t)B * u->skip_C[k] * u->skip_HW[k]);
    return ds[k];
}

// The gradients at [from, total) are final (UNet.grads_final).
static void grads_final(UNet *u, size_t from) {
    if (u->grads_final) u->grads_final(u->grads_final_ctx, from);
}

void unet_backward(UNet *u, const float *dout, const float *const *dtaps) {
    CHECK(u->have_forward);
    CHECK(u->fwd_keep != UNET_KEEP_NONE);  // a forward-only pass kept nothing to differentiate
    if (!u->grads) unet_zero_grad(u);  // accumulating into a fresh buffer: zeros
    const ModelConfig *m = &u->cfg;
    const float *p = u->params;
    float *g = u->grads;
    int n = m->n_blocks, B = u->B, H = u->H, W = u->W, c0 = m->block_out_channels[0], td = u->temb_dim;
    arena_reset(&u->work);
    LayerCtx c = ctx_of(u);
    float **ds = xcalloc((size_t)u->n_skips, sizeof *ds);  // gradients at the skip entries
    float *dstemb = arena_zeros(&u->work, (size_t)B * td);

    // output head
    size_t n0 = (size_t)B * c0 * H * W;
    float *dact = arena_zeros(&u->work, n0);
    BK(u->be, conv2d_backward, dact, g + u->conv_out_w, g + u->conv_out_b, dout, u->no_act, p + u->conv_out_w, B, c0, H,
       W, m->out_channels, 3, 1, 1);
    float *dh = arena_zeros(&u->work, n0);
    BK(u->be, groupnorm_silu_backward, dh, g + u->norm_out_w, g + u->norm_out_b, dact, u->no_in, u->no_mean, u->no_rstd,
       p + u->norm_out_w, p + u->norm_out_b, B, c0, H * W, m->norm_num_groups);
    grads_final(u, u->norm_out_w);

    // up blocks, last first; skips were popped top-down, so walk their indices upwards
    int k = 0, tap = u->n_taps - 1, hh = H, ww = W;
    for (int i = n - 1; i >= 0; i--) {
        Block *blk = &u->up[i];
        add_tap_grad(u, dh, dtaps, tap--, (size_t)B * blk->cout * hh * ww);
        if (blk->has_sampler) {
            float *dup = arena_zeros(&u->work, (size_t)B * blk->cout * hh * ww);
            BK(u->be, conv2d_backward, dup, g + blk->samp_w, g + blk->samp_b, dh, blk->samp_in, p + blk->samp_w, B,
               blk->cout, hh, ww, blk->cout, 3, 1, 1);
            hh /= 2, ww /= 2;
            dh = arena_zeros(&u->work, (size_t)B * blk->cout * hh * ww);
            BK(u->be, upsample2x_backward, dh, dup, B, blk->cout, hh, ww);
            grads_final(u, blk->samp_w);
        }
        size_t hw = (size_t)hh * ww;
        for (int j = blk->n_layers - 1; j >= 0; j--, k++) {
            if (blk->attn && runs(u, blk->attn[j].cand)) {
                float *d = arena_zeros(&u->work, (size_t)B * blk->cout * hw);
                attn_recompute(u, &blk->attn[j]);
                transformer_backward(&blk->attn[j], &c, d, dh);
                dh = d;
                grads_final(u, blk->attn[j].gnw);
            }
            Resnet *r = &blk->res[j];
            if (runs(u, r->cand)) {
                int skc = u->skip_C[k];
                resnet_recompute(u, r, u->skip_data[k], skc, blk->layer_in[2 * j]);
                float *dcat = arena_zeros(&u->work, (size_t)B * (r->hidden_ch + skc) * hw);
                resnet_backward(r, &c, dcat, dstemb, dh);
                dh = arena_zeros(&u->work, (size_t)B * r->hidden_ch * hw);
                BK(u->be, concat_channels_backward, dh, dskip(u, ds, k, B), dcat, B, r->hidden_ch, skc, (int)hw);
                grads_final(u, r->n1w);
            }
        }
    }

    // mid block
    int cm = m->block_out_channels[n - 1];
    size_t nm = (size_t)B * cm * hh * ww;
    add_tap_grad(u, dh, dtaps, tap--, nm);
    if (runs(u, u->mid_res[1].cand)) {
        float *d = arena_zeros(&u->work, nm);
        resnet_recompute(u, &u->mid_res[1], NULL, 0, NULL);
        resnet_backward(&u->mid_res[1], &c, d, dstemb, dh);
        dh = d;
        grads_final(u, u->mid_res[1].n1w);
    }
    if (runs(u, u->mid_attn.cand)) {
        float *d = arena_zeros(&u->work, nm);
        attn_recompute(u, &u->mid_attn);
        transformer_backward(&u->mid_attn, &c, d, dh);
        dh = d;
        grads_final(u, u->mid_attn.gnw);
    }
    if (runs(u, u->mid_res[0].cand)) {
        float *d = arena_zeros(&u->work, nm);
        resnet_recompute(u, &u->mid_res[0], NULL, 0, NULL);
        resnet_backward(&u->mid_res[0], &c, d, dstemb, dh);
        dh = d;
        grads_final(u, u->mid_res[0].n1w);
    }

    // down blocks, last first; skip entries were pushed bottom-up, so walk them down
    k = u->n_skips - 1;
    for (int i = n - 1; i >= 0; i--) {
        Block *blk = &u->down[i];
        add_tap_grad(u, dh, dtaps, tap--, (size_t)B * blk->cout * hh * ww);
        if (blk->has_sampler) {
            if (ds[k]) BK(u->be, accumulate, dh, ds[k], (size_t)B * blk->cout * hh * ww);
            k--;
            float *d = arena_zeros(&u->work, (size_t)B * blk->cout * hh * ww * 4);
            BK(u->be, conv2d_backward, d, g + blk->samp_w, g + blk->samp_b, dh, blk->samp_in, p + blk->samp_w, B,
               blk->cout, 2 * hh, 2 * ww, blk->cout, 3, 2, 1);
            dh = d, hh *= 2, ww *= 2;
            grads_final(u, blk->samp_w);
        }
        size_t hw = (size_t)hh * ww;
        for (int j = blk->n_layers - 1; j >= 0; j--) {
            if (ds[k]) BK(u->be, accumulate, dh, ds[k], (size_t)B * blk->cout * hw);
            k--;
            if (blk->attn && runs(u, blk->attn[j].cand)) {
                float *d = arena_zeros(&u->work, (size_t)B * blk->cout * hw);
                attn_recompute(u, &blk->attn[j]);
                transformer_backward(&blk->attn[j], &c, d, dh);
                dh = d;
                grads_final(u, blk->attn[j].gnw);
            }
            Resnet *r = &blk->res[j];
            if (runs(u, r->cand)) {
                float *d = arena_zeros(&u->work, (size_t)B * r->cin * hw);
                resnet_recompute(u, r, NULL, 0, NULL);
                resnet_backward(r, &c, d, dstemb, dh);
                dh = d;
                grads_final(u, r->n1w);
            }
        }
    }
    CHECK(k == 0 && tap == -1);
    if (ds[0]) BK(u->be, accumulate, dh, ds[0], n0);
    BK(u->be, conv2d_backward, NULL, g + u->conv_in_w, g + u->conv_in_b, dh, u->sample, p + u->conv_in_w, B,
       m->in_channels, H, W, c0, 3, 1, 1);

    // time embedding: every resnet's projection fed back into SiLU(temb)
    float *dtemb = arena_zeros(&u->work, (size_t)B * td);
    BK(u->be, silu_backward, dtemb, dstemb, u->temb, (size_t)B * td);
    float *da1 = arena_zeros(&u->work, (size_t)B * td);
    BK(u->be, linear_backward, da1, g + u->t2_w, g + u->t2_b, dtemb, u->t_a1, p + u->t2_w, B, td, td);
    float *dh1 = arena_zeros(&u->work, (size_t)B * td);
    BK(u->be, silu_backward, dh1, da1, u->t_h1, (size_t)B * td);
    BK(u->be, linear_backward, NULL, g + u->t1_w, g + u->t1_b, dh1, u->t_emb0, p + u->t1_w, B, c0, td);
    if (u->pooled_dim > 0) {  // the same gradient reaches add_embedding; pooled and time ids are inputs
        float *dd1 = arena_zeros(&u->work, (size_t)B * td);
        BK(u->be, linear_backward, dd1, g + u->a2_w, g + u->a2_b, dtemb, u->add_a1, p + u->a2_w, B, td, td);
        float *ddh = arena_zeros(&u->work, (size_t)B * td);
        BK(u->be, silu_backward, ddh, dd1, u->add_h1, (size_t)B * td);
        BK(u->be, linear_backward, NULL, g + u->a1_w, g + u->a1_b, ddh, u->add_in, p + u->a1_w, B, u->add_in_dim, td);
    }
    // conv_in and the embeddings lead the layout and finish last
    grads_final(u, 0);
    free(ds);
}
