// arena.c — see arena.h.
#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

#include "core/common.h"

static float *aligned_floats(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (n ? n : 16) * sizeof(float)) != 0)
        FATAL("out of memory allocating %zu activation floats", n);
    return p;
}

static float *block_alloc(const Arena *a, size_t n) {
    return a->mem ? a->mem->alloc(a->mem->ctx, n ? n : 16) : aligned_floats(n);
}
static void block_free(const Arena *a, float *p) {
    if (a->mem)
        a->mem->free(a->mem->ctx, p);
    else
        free(p);
}

float *arena_alloc(Arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;  // keep every allocation 64-byte aligned
    a->pass_total += n;
    if (a->pass_total > a->peak) a->peak = a->pass_total;
    if (a->used + n > a->cap) {
        // Current block is full: park it (its pointers are still live) and start a new one.
        if (a->base) {
            a->spill = xrealloc(a->spill, (size_t)(a->n_spill + 1) * sizeof(float *));
            a->spill[a->n_spill++] = a->base;
        }
        size_t cap = a->cap * 2 > n ? a->cap * 2 : n;
        a->base = block_alloc(a, cap);
        a->cap = cap;
        a->used = 0;
    }
    float *p = a->base + a->used;
    a->used += n;
    return p;
}

float *arena_zeros(Arena *a, size_t n) {
    float *p = arena_alloc(a, n);
    if (a->mem)
        a->mem->zero(a->mem->ctx, p, n);
    else
        memset(p, 0, n * sizeof(float));
    return p;
}

void arena_reset(Arena *a) {
    if (a->n_spill) {
        // The last pass overflowed: replace all blocks by one of the peak size.
        for (int i = 0; i < a->n_spill; i++) block_free(a, a->spill[i]);
        free(a->spill);
        a->spill = NULL;
        a->n_spill = 0;
        block_free(a, a->base);
        a->base = block_alloc(a, a->peak);
        a->cap = a->peak;
    }
    a->used = 0;
    a->pass_total = 0;
}

void arena_free(Arena *a) {
    for (int i = 0; i < a->n_spill; i++) block_free(a, a->spill[i]);
    free(a->spill);
    if (a->base) block_free(a, a->base);
    const MemOps *mem = a->mem;
    memset(a, 0, sizeof *a);
    a->mem = mem;  // the arena stays usable, on the same memory
}

ArenaMark arena_mark(const Arena *a) {
    ArenaMark m = {a->n_spill, a->used, a->pass_total};
    return m;
}

void arena_release(Arena *a, ArenaMark m) {
    if (m.n_spill != a->n_spill) return;
    a->used = m.used;
    a->pass_total = m.pass_total;
}

float *scratch_get(Scratch *s, size_t n) {
    if (n > s->cap) {
        free(s->p);
        s->p = aligned_floats(n);
        s->cap = n;
    }
    return s->p;
}

void scratch_free(Scratch *s) {
    free(s->p);
    s->p = NULL;
    s->cap = 0;
}
