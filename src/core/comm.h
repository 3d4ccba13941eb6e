// comm.h — the small interface through which the core talks to other ranks.
// src/ never calls MPI: mpi/comm_mpi.c fills this table with MPI calls, and
// comm_serial() is the one-process version the unit tests use. The helpers
// below the table are the collectives the stages share, written once on top
// of it: agreeing on a return code, and "each rank does its jobs, rank 0
// gathers the (job, values) pairs".
#ifndef LD_COMM_H
#define LD_COMM_H
#include <stddef.h>

#include "core/common.h"

#ifdef __cplusplus
extern "C" {  // src/cuda/nccl_sum.cu fills one
#endif

typedef struct Comm Comm;
struct Comm {
    int rank, size;
    int local_size;  // ranks on this node (for thread counts)
    int local_rank;  // this rank among them, 0..local_size-1 (picks its GPU)
    int node, n_nodes;  // this rank's node, 0..n_nodes-1 (numbered in order of their lowest rank)
    void *impl;
    // In-place sums over all ranks (every rank gets the result).
    void (*sum_f32)(Comm *c, float *buf, size_t n);
    void (*sum_f64)(Comm *c, double *buf, size_t n);
    // In-place max over all ranks: stop flags, error flags.
    void (*max_i32)(Comm *c, int *buf, size_t n);
    void (*bcast)(Comm *c, void *buf, size_t bytes, int root);
    // Root receives counts[r] bytes from each rank r into recv, in rank order
    // (recv and counts are read on the root only).
    void (*gatherv_bytes)(Comm *c, const void *send, size_t bytes, void *recv, const size_t *counts, int root);
    void (*barrier)(Comm *c);
    // Non-blocking in-place sum of buf[n] over all ranks (every rank gets the
    // result), for gradient buckets overlapped with backward. Each element is
    // summed in rank order, ((x_0 + x_1) + x_2) + ..., in float, whatever the
    // timing, so a blocking start-then-wait gives the same bits. Every rank
    // starts the same (tag, n) pairs, in any order; tag (>= 0) tells the
    // sums in flight at once apart. isum_test only makes progress and says
    // whether the sum is done (1) or not (0); isum_wait blocks until it is and
    // releases the handle (every handle is waited on exactly once). buf must
    // not be touched between start and wait.
    void *(*isum_start)(Comm *c, float *buf, size_t n, int tag);
    int (*isum_test)(Comm *c, void *h);
    void (*isum_wait)(Comm *c, void *h);
    // Node-shared memory, used through comm_node_shared_* below. node_alloc
    // (collective) gives every rank of a node the same page-aligned `bytes`
    // (*handle is the implementation's); node_sync is a barrier among the
    // node's ranks after which all of them see what was written before it.
    int (*node_alloc)(Comm *c, size_t bytes, void **ptr, void **handle, Error *e);
    void (*node_sync)(Comm *c, void *handle);
    void (*node_free)(Comm *c, void *handle);
};

// The single-process communicator (rank 0 of 1): every collective is a no-op.
Comm comm_serial(void);

// One buffer per node that every rank of the node maps (under MPI a shared
// memory window; serially a plain page-aligned allocation): how ranks on a
// node hold one copy of read-only data such as the teacher's parameters.
typedef struct {
    float *ptr;     // bytes / 4 floats, the same pages on every rank of the node
    size_t bytes;
    void *handle;
} CommShared;
// Collective over all ranks; every rank gets the node's buffer, which only the
// node's leader (local_rank 0) writes, between this call and
// comm_node_shared_seal. -1 + e where it cannot be had (each failing rank
// holds a message; agree on it with comm_agree).
int comm_node_shared_alloc(Comm *c, size_t bytes, CommShared *s, Error *e);
// Collective: the leader's writes become visible to the node's ranks, then the
// buffer is made read-only on every rank (mprotect), so a stray write into
// data another rank reads faults at once instead of changing its results.
void comm_node_shared_seal(Comm *c, CommShared *s);
// Collective; a zeroed CommShared is a no-op.
void comm_node_shared_free(Comm *c, CommShared *s);

// Rows [start, start+count) of n that `rank` of `size` owns: contiguous, sizes differing by at most one.
void comm_shard(long n, int rank, int size, long *start, long *count);

// The message a rank gets when it stops only because another rank failed.
#define COMM_OTHER_RANK "stopped because another rank failed (see its message)"

// Every rank learns whether any rank's rc was nonzero (one max-reduction).
// Returns 0 when none was, else -1 on every rank; a rank whose own rc was 0
// then gets COMM_OTHER_RANK in e with e->other_rank set, so exactly the
// failing ranks hold a message worth printing. Every rank must call it.
int comm_agree(Comm *c, int rc, Error *e);

// Like comm_agree, but every rank ends up with the message of the lowest
// failing rank (for collectives whose failure every rank reports alike, such
// as a parallel file write).
int comm_agree_share(Comm *c, int rc, Error *e);

// One job of comm_run_jobs: computes `width` doubles for job j into out.
typedef int (*CommJobFn)(void *ctx, int j, double *out, Error *e);

// Each rank runs the jobs it owns (owner[j] == rank; owner NULL: j % size),
// in increasing j, then rank 0 gathers every job's values into
// out[j * width .. (j+1) * width) and broadcasts them, so every rank returns
// the same out[n_jobs * width]. The values of a job never depend on the rank
// count. A failing job stops this rank's loop; the failure is agreed
// (comm_agree) before any gather, so no rank is left in a collective.
// A stop signal (core/stop.h) seen by any rank between its jobs ends every
// rank's loop: 1 is returned everywhere and out is not written.
int comm_run_jobs(Comm *c, int n_jobs, const int *owner, int width, CommJobFn fn, void *ctx, double *out, Error *e);
#ifdef __cplusplus
}
#endif
#endif
