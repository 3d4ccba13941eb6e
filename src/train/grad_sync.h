// grad_sync.h — the gradient sum of a data-parallel step, bucket by bucket,
// overlapped with backward. The gradient buffer is cut into buckets of
// train.bucket_mb; as backward announces that the gradients of [from, n) are
// final (UNet.grads_final), every bucket lying wholly in that range starts its
// non-blocking sum (Comm.isum_start) and the sums in flight make progress;
// grad_sync_finish starts what is left and waits for all of them, before the
// clipping and the optimizer read the gradients. Each element is summed in
// rank order whatever the timing (comm.h), so overlap on and off give the same
// bits; off (or one rank), nothing starts before grad_sync_finish.
#ifndef LD_GRAD_SYNC_H
#define LD_GRAD_SYNC_H
#include <stddef.h>

#include "core/comm.h"

typedef struct GradSync GradSync;

// n floats in buckets of bucket_mb MiB (at least one float each, at most
// 2^24 buckets: larger ones beyond that). The bucket index is its sum's tag. At most
// max_inflight sums are in flight at once (each holds (P-1)/P of its bucket
// in receive buffers); <= 0 means no limit.
GradSync *grad_sync_create(Comm *c, size_t n, double bucket_mb, int overlap, int max_inflight);
void grad_sync_free(GradSync *s);

// Before the step's backward: no bucket started; grads is the buffer to sum.
void grad_sync_begin(GradSync *s, float *grads);
// The UNet.grads_final hook (ctx = the GradSync): [from, n) is final.
void grad_sync_final(void *ctx, size_t from);
// Every bucket summed over the ranks; on every rank, after every step, even
// one that failed (so no rank is left with a sum in flight).
void grad_sync_finish(GradSync *s);

// For the tests and the benchmark: buckets, and how many of them were started
// before grad_sync_finish in the last step.
int grad_sync_buckets(const GradSync *s);
int grad_sync_started_early(const GradSync *s);
#endif
