// unet.h — diffusers' UNet2DConditionModel, built from a ModelConfig as a small
// tree of plain structs. Parameters live in one contiguous buffer (and their
// gradients in another of the same layout), each tensor under its diffusers
// name, so a checkpoint maps 1:1 and one all-reduce covers every gradient.
//
// SDXL's text_time conditioning (addition_embed_type): add_embedding turns the
// pooled text embedding and the 6 time ids into a term added to the time
// embedding; unet_forward_added takes them (UNetAdded).
//
// Candidates are the removable layers (DESIGN §3): ResnetBlock2Ds whose removal
// keeps shapes, and every Transformer2DModel (granularity "layer") or, at
// "block", every single BasicTransformerBlock of a stack of >= 2 (a stack of
// one stays a whole-Transformer2DModel candidate, as in the reference
// fixtures). A U-Net is built either whole or *pruned* (given candidates
// absent: no parameters, no compute); candidate indices always refer to the
// full architecture at the U-Net's granularity, so a student and its teacher
// agree.
#ifndef LD_UNET_H
#define LD_UNET_H
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/common.h"
#include "model/model_config.h"
#include "core/params.h"
#include "kernels/backend.h"
#include "model/resnet.h"
#include "model/transformer.h"

typedef enum { CAND_RESNET = 0, CAND_ATTENTION = 1, CAND_BLOCK = 2 } CandKind;
typedef enum { GRAN_LAYER = 0, GRAN_BLOCK = 1 } Granularity;  // prune.granularity
typedef enum { STAGE_DOWN = 0, STAGE_MID = 1, STAGE_UP = 2 } StageKind;

typedef struct {
    char name[LD_NAME_MAX];  // diffusers prefix, e.g. "up_blocks.1.attentions.2"
    CandKind kind;
    StageKind stage;
    int block;               // index of the down/up block (0 for mid)
    long long params;        // parameters of the layer
    long long macs;          // multiply-accumulates at cfg.sample_size, batch 1
    int present;             // 0 when this U-Net was built without it
    Resnet *res;             // the layer (one of the two is set)
    Transformer *attn;       // CAND_ATTENTION: the layer; CAND_BLOCK: the Transformer2DModel holding it
    int tblock;              // CAND_BLOCK: the block's index in attn->blk, else -1
    // Last forward, when the layer ran: what it received (for an up-block
    // resnet, the hidden state before the skip concat: what removal passes on)
    // and what it produced; [B, C, H, W] with C = the layer's output width
    // (a block: its tokens [B, H*W, C], the same count per sample).
    const float *in, *out;
    int C, H, W;
} Candidate;

// One feature tap: the output of a down block, the mid block or an up block.
typedef struct {
    char name[16];  // "down.0", "mid", "up.2"
    int C, H, W;    // per-sample shape of the last forward
    float *data;    // [B,C,H,W], valid until the next forward
} Tap;

// A down or up block: resnets, optional attentions after each, optional sampler.
typedef struct {
    int n_layers;       // resnets (down: layers_per_block, up: +1)
    Resnet *res;        // [n_layers]
    Transformer *attn;  // [n_layers] or NULL (DownBlock2D / UpBlock2D)
    int has_sampler;
    size_t samp_w, samp_b;
    int cin, cout;      // channels entering and leaving the block
    // saved by forward
    int H, W;           // spatial size inside the block (before its sampler)
    float *samp_in;     // sampler's input (up: after the nearest x2)
    float **layer_in;   // [2*n_layers] inputs of each resnet / attention
} Block;

// What a forward keeps for a backward (UNet.keep, read at the start of each
// forward). Layer = a ResnetBlock2D or a Transformer2DModel.
//   ALL:    every layer's interior activations (the fastest backward).
//   INPUTS: only each layer's input and output (train.recompute): the backward
//           runs a layer's forward again, the same ops in the same order on the
//           same input, into one reusable arena (UNet.rec) just before that
//           layer's backward, so the gradients are bit-identical to ALL's for
//           one more forward's time.
//   NONE:   forward only (a frozen teacher, scoring, sampling): the interiors
//           share that one arena layer after layer; a backward is refused.
// With INPUTS or NONE a BasicTransformerBlock candidate's in/out (interior
// tokens) are not kept: NULL. Taps and every other candidate's in/out are.
typedef enum { UNET_KEEP_ALL = 0, UNET_KEEP_INPUTS = 1, UNET_KEEP_NONE = 2 } UNetKeep;

typedef struct {
    ModelConfig cfg;
    ParamTable pt;
    float *params, *grads;  // pt.total floats each; grads NULL until the first zero_grad/backward
    int params_borrowed;    // params is someone else's buffer (unet_adopt_params): unet_free leaves it

    int temb_dim;  // 4 * block_out_channels[0]
    size_t conv_in_w, conv_in_b, t1_w, t1_b, t2_w, t2_b, norm_out_w, norm_out_b, conv_out_w,
        conv_out_b;
    // text_time (SDXL): add_embedding.linear_1/2; pooled_dim 0 when the model has none
    int pooled_dim, add_in_dim;
    size_t a1_w, a1_b, a2_w, a2_b;
    Block down[LD_MAX_BLOCKS], up[LD_MAX_BLOCKS];
    Resnet mid_res[2];
    Transformer mid_attn;
    // skip connections of the last forward, in push order
    float **skip_data;
    int *skip_C, *skip_HW, n_skips, max_skips;

    Candidate *cands;
    int n_cands;
    Granularity gran;  // what the candidates are

    Tap taps[2 * LD_MAX_BLOCKS + 1];
    int n_taps;

    // forward state kept for backward
    UNetKeep keep;      // what the next forward keeps (UNET_KEEP_ALL unless set)
    UNetKeep fwd_keep;  // what the last forward kept
    Arena acts, work;
    Arena rec;          // one layer's interior at a time when a forward keeps less than ALL
    Backend *be;        // where the tensors live and the ops run (owned; the CPU unless unet_use_backend)
    int B, H, W, L;
    uint8_t *bypass;  // per candidate, 1 = not run in the last forward (removed or absent)
    const float *context;
    float *t_emb0, *t_h1, *t_a1, *temb, *silu_temb;
    float *add_in, *add_h1, *add_a1;  // text_time: [pooled, add_time_proj(time_ids)], linear_1, SiLU
    float *sample, *no_in, *no_mean, *no_rstd, *no_act;  // no_act = silu(norm_out(no_in))
    int have_forward;

    // Optional (NULL: none): called by unet_backward each time the gradients
    // of the parameters at offsets [from, pt.total) have their final value
    // for this backward, with from falling call by call, ending with 0. The
    // parameter layout (conv_in, embeddings, down, mid, up, head) is the
    // reverse of the order backward finishes them, so what is final is always
    // a suffix. Lets a data-parallel trainer start summing a gradient bucket
    // while backward goes on; the model knows nothing of ranks.
    void (*grads_final)(void *ctx, size_t from);
    void *grads_final_ctx;
} UNet;

// Builds the architecture. `absent` (one flag per candidate of the full
// architecture at granularity g, or NULL) lists layers this network does not
// have at all. Parameters are zero; load or initialise them. NULL + e on a bad
// config. unet_create is granularity "layer".
UNet *unet_create_at(const ModelConfig *cfg, Granularity g, const uint8_t *absent, Error *e);
UNet *unet_create(const ModelConfig *cfg, const uint8_t *absent, Error *e);
// Re-lists the candidates of a built U-Net at granularity g (parameters and
// compute unchanged). Refused (-1 + e) when what is absent has no equivalent
// at g: a whole Transformer2DModel of >= 2 blocks at "block", a single block
// at "layer".
int unet_set_granularity(UNet *u, Granularity g, Error *e);
// How many candidates the full architecture has at granularity g.
int unet_count_candidates(const UNet *u, Granularity g);
const char *cand_kind_name(CandKind k);     // "resnet", "attention", "block"
const char *granularity_name(Granularity g);  // "layer", "block"
// The granularity a "removed" list was made at: "block" when it names a
// BasicTransformerBlock (such names exist only there), else "layer".
Granularity granularity_of_names(const char *names);
void unet_free(UNet *u);
// Makes `params` (pt.total floats, owned by the caller, who frees it after
// unet_free) the parameter buffer; the model's own zero buffer is freed. For a
// teacher whose weights live in memory shared by the ranks of a node.
void unet_adopt_params(UNet *u, float *params);

// Moves a U-Net on the CPU backend onto backend `be` (taking ownership of it; a
// U-Net already on a device is a programmer error): its parameters
// are copied into be's memory, gradients and activations start there. On a
// device backend every tensor pointer unet_forward/backward take or fill
// (sample, timesteps, context, added conditioning, out, dout, dtaps, taps,
// candidates' in/out, params, grads) is device memory; host code reads them
// through be->download.
void unet_use_backend(UNet *u, Backend *be);
// A second U-Net of src's architecture (candidates, granularity, keep) with
// src's weights, on backend be (taking ownership of it): the device copy of a
// teacher whose host copy the run keeps for its other stages. NULL + e.
UNet *unet_copy_to(const UNet *src, Backend *be, Error *e);

// Sets what the following forwards keep (see UNetKeep); returns the previous setting.
UNetKeep unet_set_keep(UNet *u, UNetKeep k);

// Zeroes u->grads, allocating it on first use.
void unet_zero_grad(UNet *u);
long long unet_total_macs(const UNet *u);  // -1 at or beyond LD_MACS_EXACT (unet_create refuses that)

// SDXL's added conditioning, per sample: what a model with addition_embed_type
// "text_time" needs beside the context (ignored by any other model).
typedef struct {
    const float *pooled;    // [B, P]: the pooled text embedding (P = model_pooled_dim)
    const float *time_ids;  // [B, 6]: original size, crop offset, target size
} UNetAdded;

// Forward. sample [B,in,H,W], timesteps [B], context [B,L,cross_dim], out
// [B,out,H,W]. skip (one flag per candidate, or NULL): layers bypassed for this
// pass only, with DESIGN §3's removal semantics. Fills u->taps. H and W must be
// divisible by 2^(n_blocks-1). Returns -1 + e on a shape error.
int unet_forward(UNet *u, float *out, const float *sample, const float *timesteps,
                 const float *context, int B, int H, int W, int L, const uint8_t *skip, Error *e);
// The same with the added conditioning (add may be NULL for a model without
// it; a text_time model without it is an error).
int unet_forward_added(UNet *u, float *out, const float *sample, const float *timesteps, const float *context,
                       const UNetAdded *add, int B, int H, int W, int L, const uint8_t *skip, Error *e);
// SDXL's neutral micro-conditioning for an H x W sample: (H, W, 0, 0, H, W),
// for data that carries none (Fashion-MNIST, sampling without a dataset).
void unet_neutral_time_ids(float *time_ids, int H, int W);

// Backward of the last forward: dout [B,out,H,W]; dtaps (u->n_taps entries,
// each [B,C,H,W] or NULL; the array may be NULL) are extra gradients arriving at
// the taps (feature distillation). Accumulates into u->grads. The last forward
// must have kept UNET_KEEP_ALL or UNET_KEEP_INPUTS (the latter recomputes).
// Calls u->grads_final as parameters' gradients become final: dtaps enter as
// the walk reaches each tap, before the layers beneath it, so they are final too.
void unet_backward(UNet *u, const float *dout, const float *const *dtaps);
#endif
