// numerics.h — finiteness checks that stop a run before a NaN/Inf can reach
// the weights or a checkpoint. Exact (bit tests), so they work whatever the
// floating-point flags or compiler options.
#ifndef LD_NUMERICS_H
#define LD_NUMERICS_H
#include <stddef.h>

#include "core/common.h"

// 1 if every x[i] is finite (neither NaN nor +-Inf), else 0. OpenMP on large n.
int all_finite(const float *x, size_t n);
// Index of the first non-finite element, or n if there is none.
size_t first_nonfinite(const float *x, size_t n);

// The per-step guard of the training loop: -1 + e ("step N: the loss is not
// finite (NaN)", or naming the first bad gradient element) when the loss or
// any gradient is NaN/Inf, so the run stops before the optimizer step and the
// last checkpoint stays good. grads may be NULL (loss only).
int check_step_finite(long step, double loss, const float *grads, size_t n, Error *e);
#endif
