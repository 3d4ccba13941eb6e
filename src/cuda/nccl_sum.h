// nccl_sum.h — the gradient sums between the ranks' GPUs over NCCL: a Comm
// whose isum_start/test/wait (only those) add up *device* buffers of a CUDA
// backend across the ranks, so train/grad_sync.c's buckets (started from
// backward's grads_final hook) run on the GPUs, overlapped with the backward
// pass, without a host copy. Each sum runs on a stream of its own after
// everything the compute stream had queued when it started; waiting on it
// makes the compute stream wait (the host does not block), so the optimizer
// only waits for the sums still in flight. The other entries are NULL:
// everything else (losses, flags, broadcasts) stays on the host Comm.
//
// Summation order: NCCL's (a ring for most sizes). Two ranks give the same
// bits as the host's rank-order sum (a + b is commutative); three or more
// agree to float rounding, and repeat run to run on the same GPUs and rank
// count. On the CUDA emulator the emulated NCCL (emu/nccl_emu.h) sums in
// rank order, like the host path, bit for bit.
#ifndef LD_NCCL_SUM_H
#define LD_NCCL_SUM_H
#include "core/comm.h"
#include "cuda/dev.h"

#ifdef __cplusplus
extern "C" {
#endif

// Collective over `host` (every rank calls it): rank 0 makes NCCL's unique
// id, host->bcast hands it to every rank, and each joins with d's device.
// NULL + e where NCCL cannot start (agree on it with comm_agree; a rank that
// never joins leaves the others in NCCL's bootstrap, as with any collective).
Comm *nccl_sum_create(Comm *host, DevCtx *d, Error *e);
void nccl_sum_free(Comm *c);  // NULL is fine; finishes the sums in flight
// "NCCL 2.27.7" (or the emulator's)
void nccl_sum_version(char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
