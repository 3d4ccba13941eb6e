// comm_mpi.c — see comm_mpi.h. Every call is checked: an MPI error aborts the
// whole job with the call's name, rather than leaving other ranks hanging.
#include "comm_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "h5par.h"

#define MPI_CHECK(call)                                                                  \
    do {                                                                                 \
        int rc_ = (call);                                                                \
        if (rc_ != MPI_SUCCESS) {                                                        \
            char msg_[MPI_MAX_ERROR_STRING];                                             \
            int len_ = 0;                                                                \
            MPI_Error_string(rc_, msg_, &len_);                                          \
            fprintf(stderr, "laptop-diff: %s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, msg_); \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                \
        }                                                                                \
    } while (0)

// MPI counts are ints: long buffers go in chunks.
#define CHUNK ((size_t)1 << 30)

static void sum_f32(Comm *c, float *buf, size_t n) {
    (void)c;
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? n - off : CHUNK;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    }
}

static void sum_f64(Comm *c, double *buf, size_t n) {
    (void)c;
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? n - off : CHUNK;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    }
}

static void max_i32(Comm *c, int *buf, size_t n) {
    (void)c;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
}

static void bcast(Comm *c, void *buf, size_t bytes, int root) {
    (void)c;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        size_t k = bytes - off < CHUNK ? bytes - off : CHUNK;
        MPI_CHECK(MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD));
    }
}

static void gatherv_f64(Comm *c, const double *send, int count, double *recv, const int *counts, int root) {
    int *displs = NULL;
    if (c->rank == root) {
        displs = calloc((size_t)c->size, sizeof *displs);
        for (int r = 1; r < c->size; r++) displs[r] = displs[r - 1] + counts[r - 1];
    }
    MPI_CHECK(MPI_Gatherv(send, count, MPI_DOUBLE, recv, counts, displs, MPI_DOUBLE, root, MPI_COMM_WORLD));
    free(displs);
}

static void barrier(Comm *c) {
    (void)c;
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

Comm comm_mpi_world(void) {
    Comm c = {0};
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &c.rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &c.size));
    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c.rank, MPI_INFO_NULL, &node));
    MPI_CHECK(MPI_Comm_size(node, &c.local_size));
    MPI_CHECK(MPI_Comm_rank(node, &c.local_rank));
    MPI_CHECK(MPI_Comm_free(&node));
    c.sum_f32 = sum_f32, c.sum_f64 = sum_f64, c.max_i32 = max_i32, c.bcast = bcast;
    c.gatherv_f64 = gatherv_f64, c.barrier = barrier, c.write_rows_f32 = h5par_write_rows_f32;
    return c;
}

void comm_mpi_free(Comm *c) { (void)c; }
