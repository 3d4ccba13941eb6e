// comm.h — the small interface through which the core talks to other ranks.
// src/ never calls MPI: mpi/comm_mpi.c fills this table with MPI calls, and
// comm_serial() is the one-process version the unit tests use.
#ifndef LD_COMM_H
#define LD_COMM_H
#include <stddef.h>

typedef struct Comm Comm;
struct Comm {
    int rank, size;
    int local_size;  // ranks on this node (for thread counts)
    void *impl;
    // In-place sums over all ranks (every rank gets the result).
    void (*sum_f32)(Comm *c, float *buf, size_t n);
    void (*sum_f64)(Comm *c, double *buf, size_t n);
    // In-place max over all ranks: stop flags, error flags.
    void (*max_i32)(Comm *c, int *buf, size_t n);
    void (*bcast)(Comm *c, void *buf, size_t bytes, int root);
    // Root receives counts[r] doubles from each rank r into recv (in rank order).
    void (*gatherv_f64)(Comm *c, const double *send, int count, double *recv, const int *counts, int root);
    void (*barrier)(Comm *c);
};

// The single-process communicator (rank 0 of 1): every collective is a no-op.
Comm comm_serial(void);

// Rows [start, start+count) of n that `rank` of `size` owns: contiguous, sizes differing by at most one.
void comm_shard(long n, int rank, int size, long *start, long *count);
#endif
