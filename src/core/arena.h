// arena.h — bump allocator for activations. A forward pass takes its
// activations from one arena and backward reads them back, so nothing is
// freed mid-pass; arena_reset() recycles everything at the next pass and
// grows the arena to the peak it saw, so a steady-state step allocates nothing.
#ifndef LD_ARENA_H
#define LD_ARENA_H
#include <stddef.h>

// Where an arena's blocks come from: NULL in Arena.mem = host memory; a
// backend (kernels/backend.h) sets its own, device memory for a GPU. zero
// clears n floats at p.
typedef struct {
    void *ctx;
    float *(*alloc)(void *ctx, size_t n);
    void (*free)(void *ctx, void *p);
    void (*zero)(void *ctx, float *p, size_t n);
} MemOps;

typedef struct {
    const MemOps *mem; // NULL: host memory (set before the first alloc)
    float *base;
    size_t cap, used;  // in floats
    float **spill;     // blocks that overflowed during this pass, freed at reset
    int n_spill;
    size_t pass_total; // floats handed out this pass (sum over blocks)
    size_t peak;       // largest pass_total seen, in floats
} Arena;

float *arena_alloc(Arena *a, size_t n);       // uninitialised, 64-byte aligned
float *arena_zeros(Arena *a, size_t n);       // zero-filled
void arena_reset(Arena *a);
void arena_free(Arena *a);
#endif

#ifndef LD_ARENA_SCRATCH
#define LD_ARENA_SCRATCH
// Mark/release for LIFO temporaries inside one layer's backward.
typedef struct {
    int n_spill;
    size_t used, pass_total;
} ArenaMark;
ArenaMark arena_mark(const Arena *a);
// Gives back everything allocated since the mark (when no block overflowed in
// between; otherwise it is reclaimed at the next arena_reset).
void arena_release(Arena *a, ArenaMark m);

// One growable work buffer (im2col columns, attention scores): the need is the
// largest single layer's, not the sum. A pointer from scratch_get is valid
// until the next scratch_get.
typedef struct {
    float *p;
    size_t cap;
} Scratch;  // host memory
float *scratch_get(Scratch *s, size_t n);
void scratch_free(Scratch *s);
#endif
