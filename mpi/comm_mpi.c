// comm_mpi.c — see comm_mpi.h. Every call is checked: an MPI error aborts the
// whole job with the call's name, rather than leaving other ranks hanging.
#include "comm_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>


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

// MPI's counts are ints: a gather over 2 GiB per rank would need derived
// types, which nothing here sends; stop loudly rather than truncate.
static int int_count(size_t n) {
    if (n > INT_MAX) {
        fprintf(stderr, "laptop-diff: %s:%d: gather of %zu bytes from one rank exceeds MPI's int count\n", __FILE__,
                __LINE__, n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return (int)n;
}

static void gatherv_bytes(Comm *c, const void *send, size_t bytes, void *recv, const size_t *counts, int root) {
    int *icounts = NULL, *displs = NULL;
    if (c->rank == root) {
        icounts = calloc((size_t)c->size, sizeof *icounts);
        displs = calloc((size_t)c->size, sizeof *displs);
        size_t off = 0;
        for (int r = 0; r < c->size; r++) {
            icounts[r] = int_count(counts[r]);
            displs[r] = int_count(off);
            off += counts[r];
        }
    }
    MPI_CHECK(MPI_Gatherv(send, int_count(bytes), MPI_BYTE, recv, icounts, displs, MPI_BYTE, root, MPI_COMM_WORLD));
    free(icounts), free(displs);
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
    c.gatherv_bytes = gatherv_bytes, c.barrier = barrier;
    return c;
}

void comm_mpi_free(Comm *c) { (void)c; }
