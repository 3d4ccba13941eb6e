// conditioning.c — see conditioning.h.
#include "data/conditioning.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"

#define MAX_VOCAB 64
#define MAX_WORD 32

// Lower-case, natural names in Fashion-MNIST's label order (fmnist.h has
// the official names); "an" before the vowel so the captions read as English.
static const char *const CAPTIONS[COND_CLASSES] = {
    "a photo of a t-shirt", "a photo of a pair of trousers", "a photo of a pullover",
    "a photo of a dress",   "a photo of a coat",             "a photo of a sandal",
    "a photo of a shirt",   "a photo of a sneaker",          "a photo of a bag",
    "a photo of an ankle boot",
};

struct Conditioner {
    int L, D, n_vocab;
    char vocab[MAX_VOCAB][MAX_WORD];
    float *table;  // [(COND_CLASSES + 1) * L * D]: classes 0..9, then the empty caption
};

const char *cond_caption(int cls) {
    if (cls == COND_EMPTY) return "";
    CHECK(cls >= 0 && cls < COND_CLASSES);
    return CAPTIONS[cls];
}

// Words of text split on spaces, copied into words[cap][MAX_WORD]; -1 if more than cap.
static int split_words(const char *text, char (*words)[MAX_WORD], int cap) {
    int n = 0;
    const char *p = text;
    for (;;) {
        while (*p == ' ') p++;
        if (!*p) return n;
        size_t len = strcspn(p, " ");
        if (n == cap) return -1;
        CHECK(len < MAX_WORD);
        memcpy(words[n], p, len);
        words[n][len] = '\0';
        n++;
        p += len;
    }
}

int cond_max_tokens(void) {
    char words[MAX_VOCAB][MAX_WORD];
    int m = 0;
    for (int k = 0; k < COND_CLASSES; k++) {
        int n = split_words(CAPTIONS[k], words, MAX_VOCAB);
        if (n > m) m = n;
    }
    return m;
}

static int cmp_word(const void *a, const void *b) { return strcmp(a, b); }

int cond_vocab_size(const Conditioner *c) { return c->n_vocab; }

const char *cond_vocab_word(const Conditioner *c, int id) {
    CHECK(id >= 0 && id < c->n_vocab);
    return c->vocab[id];
}

static int word_id(const Conditioner *c, const char *w) {
    // sorted after the pad entry: binary search keeps ids stable and lookups cheap
    int lo = 1, hi = c->n_vocab - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, s = strcmp(w, c->vocab[mid]);
        if (!s) return mid;
        if (s < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

int cond_tokenize(const Conditioner *c, const char *text, int *ids, int cap, Error *e) {
    int n = 0;
    for (const char *p = text; *p;) {
        while (*p == ' ') p++;
        if (!*p) break;
        size_t len = strcspn(p, " ");
        char w[MAX_WORD];
        snprintf(w, sizeof w, "%.*s", (int)(len < MAX_WORD ? len : MAX_WORD - 1), p);
        int id = len < MAX_WORD ? word_id(c, w) : -1;
        if (id < 0)
            return errorf(e, "caption \"%s\": word \"%.*s\" is not in the vocabulary", text,
                          (int)len, p);
        if (n == cap)
            return errorf(e, "caption \"%s\" has more than %d tokens (context_length)", text, cap);
        ids[n++] = id;
        p += len;
    }
    return n;
}

// Fixed sinusoidal position vector (transformer style: sines then cosines),
// so the same word at another position gives a different row.
static float position(int j, int d, int D) {
    int half = D / 2;
    if (d >= 2 * half) return 0.0f;  // odd D: the last element has no pair
    int i = d < half ? d : d - half;
    double w = pow(10000.0, -(double)i / half), a = j * w;
    return (float)(d < half ? sin(a) : cos(a));
}

Conditioner *cond_create(int L, int D, uint64_t embed_seed, Error *e) {
    if (L < 1 || D < 1) {
        errorf(e, "conditioning: context %d x %d; context_length and cross_attention_dim "
               "must be >= 1", L, D);
        return NULL;
    }
    int need = cond_max_tokens();
    if (need > L) {
        for (int k = 0; k < COND_CLASSES; k++) {
            char words[MAX_VOCAB][MAX_WORD];
            if (split_words(CAPTIONS[k], words, MAX_VOCAB) == need) {
                errorf(e, "conditioning: caption \"%s\" has %d tokens but model.context_length is "
                       "%d; set context_length >= %d", CAPTIONS[k], need, L, need);
                return NULL;
            }
        }
    }
    Conditioner *c = xcalloc(1, sizeof *c);
    c->L = L, c->D = D;
    // vocabulary: every caption word once, sorted, after the pad token
    char all[COND_CLASSES * 16][MAX_WORD];
    int n_all = 0;
    for (int k = 0; k < COND_CLASSES; k++) {
        int n = split_words(CAPTIONS[k], all + n_all, COND_CLASSES * 16 - n_all);
        CHECK(n >= 0);
        n_all += n;
    }
    qsort(all, (size_t)n_all, MAX_WORD, cmp_word);
    strcpy(c->vocab[COND_PAD], COND_PAD_WORD);
    c->n_vocab = 1;
    for (int i = 0; i < n_all; i++)
        if (i == 0 || strcmp(all[i], all[i - 1])) {
            CHECK(c->n_vocab < MAX_VOCAB);
            strcpy(c->vocab[c->n_vocab++], all[i]);
        }

    // N(0, 1/2) embeddings + positions of RMS sqrt(1/2): elements of RMS ~1
    size_t LD = (size_t)L * D;
    float *emb = xmalloc((size_t)c->n_vocab * D * sizeof(float));
    rng_normal_fill(emb, (uint64_t)c->n_vocab * D, embed_seed, RNG_EMBED, 0);
    for (size_t i = 0; i < (size_t)c->n_vocab * D; i++) emb[i] *= 0.70710678f;
    c->table = xmalloc((COND_CLASSES + 1) * LD * sizeof(float));
    for (int k = 0; k <= COND_CLASSES; k++) {
        int ids[MAX_VOCAB];
        const char *cap = k < COND_CLASSES ? CAPTIONS[k] : "";
        int n = cond_tokenize(c, cap, ids, L < MAX_VOCAB ? L : MAX_VOCAB, e);
        CHECK(n >= 0);  // checked above: every caption fits and uses only vocabulary words
        float *ctx = c->table + (size_t)k * LD;
        for (int j = 0; j < L; j++) {
            const float *row = emb + (size_t)(j < n ? ids[j] : COND_PAD) * D;
            for (int d = 0; d < D; d++) ctx[(size_t)j * D + d] = row[d] + position(j, d, D);
        }
    }
    free(emb);
    return c;
}

void cond_free(Conditioner *c) {
    if (!c) return;
    free(c->table);
    free(c);
}

void cond_context(const Conditioner *c, int cls, float *ctx) {
    CHECK(cls == COND_EMPTY || (cls >= 0 && cls < COND_CLASSES));
    size_t LD = (size_t)c->L * c->D;
    int k = cls == COND_EMPTY ? COND_CLASSES : cls;
    memcpy(ctx, c->table + (size_t)k * LD, LD * sizeof(float));
}

void cond_batch(const Conditioner *c, const int *labels, int B, const uint8_t *drop, float *ctx) {
    size_t LD = (size_t)c->L * c->D;
    for (int b = 0; b < B; b++)
        cond_context(c, drop && drop[b] ? COND_EMPTY : labels[b], ctx + (size_t)b * LD);
}

int cond_drop(uint64_t seed, uint64_t step, uint64_t global_index, double frac) {
    // a per-step key, then the sample's index: no two (step, index) pairs share a draw
    uint64_t key = rng_bits(seed, RNG_CFG_DROP, step);
    return (double)rng_uniform(key, RNG_CFG_DROP, global_index) < frac;
}
