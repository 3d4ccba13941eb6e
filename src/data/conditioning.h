// conditioning.h — the stand-in for a text encoder (DESIGN §6): each
// Fashion-MNIST class has a caption ("a photo of a sneaker"); a word-level
// tokenizer over the captions' fixed vocabulary turns it into token ids, and a
// fixed seeded embedding table plus a sinusoidal position per row gives the
// [L, D] context the U-Net's cross-attention reads (L = model.context_length,
// D = model.cross_attention_dim). The empty caption (no tokens, all padding)
// is the unconditional context for classifier-free guidance. Also the seeded,
// rank-count-invariant caption dropout.
#ifndef LD_CONDITIONING_H
#define LD_CONDITIONING_H
#include <stdint.h>

#include "core/common.h"

#define COND_CLASSES 10
#define COND_EMPTY (-1)     // the class id of the empty (unconditional) caption
#define COND_PAD 0          // token id of padding; words are 1.. in sorted order
#define COND_PAD_WORD "<pad>"

typedef struct Conditioner Conditioner;

// Builds the vocabulary and the embedding table (rng_normal(embed_seed,
// RNG_EMBED, token*D + d) * sqrt(1/2)) and precomputes every class's context.
// Error if L or D < 1, or a caption has more tokens than L.
Conditioner *cond_create(int L, int D, uint64_t embed_seed, Error *e);
void cond_free(Conditioner *c);

// Caption of class cls (0..9), or "" for COND_EMPTY. Static storage.
const char *cond_caption(int cls);
// Tokens in the longest caption: the smallest context_length that works.
int cond_max_tokens(void);

// Vocabulary: ids 0..size-1, id COND_PAD is "<pad>", then the words sorted by strcmp.
int cond_vocab_size(const Conditioner *c);
const char *cond_vocab_word(const Conditioner *c, int id);
// Splits text on spaces into token ids (no padding). Returns the count, or -1
// if a word is not in the vocabulary or there are more than cap tokens.
int cond_tokenize(const Conditioner *c, const char *text, int *ids, int cap, Error *e);

// ctx[L*D]: row j = embedding[token_j] + position(j), tokens padded with
// COND_PAD to L rows. Elements have RMS about 1 (like a LayerNorm'd text
// encoder output). cls in 0..9, or COND_EMPTY for the unconditional context.
void cond_context(const Conditioner *c, int cls, float *ctx);
// ctx[B*L*D] for labels[B]; drop (NULL = none) per sample: 1 = empty caption.
void cond_batch(const Conditioner *c, const int *labels, int B, const uint8_t *drop, float *ctx);

// 1 if the caption of a training sample is dropped to the empty caption:
// uniform draw of stream RNG_CFG_DROP keyed by (seed, step, global_index) < frac,
// where global_index is the sample's position in the step's global batch, so
// the same samples are dropped whatever the rank count.
int cond_drop(uint64_t seed, uint64_t step, uint64_t global_index, double frac);
#endif
