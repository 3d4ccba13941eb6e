// comm.h — the small interface through which the core talks to other ranks.
// src/ never calls MPI: mpi/comm_mpi.c fills this table with MPI calls, and
// comm_serial() is the one-process version the unit tests use.
#ifndef LD_COMM_H
#define LD_COMM_H
#include <stddef.h>

#include "core/common.h"

// Most dimensions of a dataset that write_rows_f32 takes.
#define COMM_MAX_DIMS 8

typedef struct Comm Comm;
struct Comm {
    int rank, size;
    int local_size;  // ranks on this node (for thread counts)
    int local_rank;  // this rank among them, 0..local_size-1 (picks its GPU)
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
    // Collective (every rank calls it with the same file, n and paths/shapes):
    // opens `file` (must exist), and for each dataset k creates (replacing any
    // existing object at the path; parent groups created) a float32 dataset of
    // shape dims[k][0..ndims[k]) at paths[k], then every rank writes its rows
    // [row0, row0 + rows) of dimension 0 from data[k] (rows * prod(dims[k][1..]) floats;
    // rows may be 0) in ONE collective transfer per dataset; attributes attr_names/
    // attr_values (string attributes on each dataset, may be NULL) are written too; closes.
    // The ranks' rows must tile dimension 0, so every dims[k][0] is the same.
    // All ranks return the same result; on failure every rank's e holds the
    // message of the lowest failing rank (naming file and dataset); the datasets
    // before the failing one stay written. Nobody else may have the file open
    // (close an H5Log first). The serial Comm writes all rows (row0 0, rows
    // dims[k][0]) with plain HDF5.
    int (*write_rows_f32)(Comm *c, const char *file, int n, const char *const *paths, const int *ndims,
                          const long long (*dims)[COMM_MAX_DIMS], long long row0, long long rows,
                          const float *const *data, const char *const *attr_names,
                          const char *const *attr_values, int n_attrs, Error *e);
};

// The single-process communicator (rank 0 of 1): every collective is a no-op.
Comm comm_serial(void);

// Rows [start, start+count) of n that `rank` of `size` owns: contiguous, sizes differing by at most one.
void comm_shard(long n, int rank, int size, long *start, long *count);
#endif
