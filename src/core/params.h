// params.h — the table of named parameter tensors laid out in one buffer.
// Layers register their tensors at build time and keep only offsets, so the
// same layer code reads parameters from `params` and writes gradients to
// `grads` (same layout), and checkpoints map names to slices.
#ifndef LD_PARAMS_H
#define LD_PARAMS_H
#include <stddef.h>

#define LD_NAME_MAX 128

typedef struct {
    char name[LD_NAME_MAX];
    int ndim;
    int shape[4];
    size_t offset, numel;  // into params / grads
} ParamTensor;

typedef struct {
    ParamTensor *t;
    int n, cap;
    size_t total;  // floats
} ParamTable;

// Registers "<prefix>.<leaf>" with the given shape (ndim 1..4, unused dims 0)
// and returns its offset.
size_t params_add(ParamTable *pt, const char *prefix, const char *leaf, int ndim, int s0, int s1,
                  int s2, int s3);
const ParamTensor *params_find(const ParamTable *pt, const char *name);
// Parameters registered in [from, to) tensor indices, in floats.
size_t params_count_range(const ParamTable *pt, int from, int to);
void params_free(ParamTable *pt);
#endif
