// comm_mpi.c — see comm_mpi.h. Every call is checked: an MPI error aborts the
// whole job with the call's name, rather than leaving other ranks hanging.
#include "comm_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>


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

// The ranks of this node (MPI_COMM_TYPE_SHARED), kept for the shared windows.
typedef struct {
    MPI_Comm node;
} CommMpi;

typedef struct {
    MPI_Win win;
} NodeWin;

// Open MPI backs a shared window with a file in this directory (tmpfs): a
// window larger than its free space would not fail here but kill the leader
// with SIGBUS while it fills the window, so the leader checks first.
static const char *backing_dir(void) {
    const char *d = getenv("OMPI_MCA_osc_sm_backing_directory");
    return d && d[0] ? d : "/dev/shm";
}

static int node_alloc(Comm *c, size_t bytes, void **ptr, void **handle, Error *e) {
    MPI_Comm node = ((CommMpi *)c->impl)->node;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    // only the leader contributes memory; one page more to align the start
    MPI_Aint want = c->local_rank == 0 ? (MPI_Aint)(bytes + page) : 0;
    long long avail = -1;
    struct statvfs sv;
    if (c->local_rank == 0 && statvfs(backing_dir(), &sv) == 0) avail = (long long)sv.f_bavail * (long long)sv.f_frsize;
    MPI_CHECK(MPI_Bcast(&avail, 1, MPI_LONG_LONG, 0, node));
    if (avail >= 0 && (unsigned long long)avail < bytes + page)
        return errorf(e, "node-shared memory: the teacher needs %zu bytes, %s has %lld free (make room there, or set "
                      "runtime.share_teacher = false)", bytes, backing_dir(), avail);
    NodeWin *w = calloc(1, sizeof *w);
    void *base = NULL;
    int rc = MPI_Win_allocate_shared(want, 1, MPI_INFO_NULL, node, &base, &w->win);
    int bad = rc != MPI_SUCCESS;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, node));
    if (bad) {
        char msg[MPI_MAX_ERROR_STRING] = "another rank of this node failed";
        int len = 0;
        if (rc != MPI_SUCCESS) MPI_Error_string(rc, msg, &len);
        if (rc == MPI_SUCCESS) MPI_Win_free(&w->win);
        free(w);
        return errorf(e, "node-shared memory: MPI_Win_allocate_shared of %zu bytes failed: %s (set "
                      "runtime.share_teacher = false to load the teacher per rank)", bytes, msg);
    }
    MPI_Aint size = 0;
    int disp = 0;
    MPI_CHECK(MPI_Win_shared_query(w->win, 0, &size, &disp, &base));
    // a passive-target epoch on the whole window: what MPI_Win_sync needs
    MPI_CHECK(MPI_Win_lock_all(MPI_MODE_NOCHECK, w->win));
    *ptr = (void *)(((uintptr_t)base + page - 1) / page * page);
    *handle = w;
    return 0;
}

// The separate-memory-model-safe way to publish the leader's stores:
// sync, barrier, sync.
static void node_sync(Comm *c, void *handle) {
    NodeWin *w = handle;
    MPI_CHECK(MPI_Win_sync(w->win));
    MPI_CHECK(MPI_Barrier(((CommMpi *)c->impl)->node));
    MPI_CHECK(MPI_Win_sync(w->win));
}

static void node_free(Comm *c, void *handle) {
    (void)c;
    NodeWin *w = handle;
    MPI_CHECK(MPI_Win_unlock_all(w->win));
    MPI_CHECK(MPI_Win_free(&w->win));  // collective over the node
    free(w);
}

Comm comm_mpi_world(void) {
    Comm c = {0};
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &c.rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &c.size));
    CommMpi *m = calloc(1, sizeof *m);
    // LD_TEST_NODES=K (tests only): pretend the ranks sit on K nodes, rank r on
    // node r % K, so one machine can check one teacher copy per node
    const char *fake = getenv("LD_TEST_NODES");
    int k = fake ? atoi(fake) : 0;
    if (k > 0)
        MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, c.rank % k, c.rank, &m->node));
    else
        MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c.rank, MPI_INFO_NULL, &m->node));
    // a failed window allocation is reported (node_alloc), not fatal
    MPI_CHECK(MPI_Comm_set_errhandler(m->node, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_size(m->node, &c.local_size));
    MPI_CHECK(MPI_Comm_rank(m->node, &c.local_rank));
    // node index: the leaders' order by world rank, passed on to their node
    MPI_Comm leaders;
    MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, c.local_rank == 0 ? 0 : MPI_UNDEFINED, c.rank, &leaders));
    if (c.local_rank == 0) {
        MPI_CHECK(MPI_Comm_rank(leaders, &c.node));
        MPI_CHECK(MPI_Comm_size(leaders, &c.n_nodes));
        MPI_CHECK(MPI_Comm_free(&leaders));
    }
    int nn[2] = {c.node, c.n_nodes};
    MPI_CHECK(MPI_Bcast(nn, 2, MPI_INT, 0, m->node));
    c.node = nn[0], c.n_nodes = nn[1];
    c.impl = m;
    c.sum_f32 = sum_f32, c.sum_f64 = sum_f64, c.max_i32 = max_i32, c.bcast = bcast;
    c.gatherv_bytes = gatherv_bytes, c.barrier = barrier;
    c.node_alloc = node_alloc, c.node_sync = node_sync, c.node_free = node_free;
    return c;
}

void comm_mpi_free(Comm *c) {
    CommMpi *m = c->impl;
    if (!m) return;
    MPI_Comm_free(&m->node);
    free(m);
    c->impl = NULL;
}
