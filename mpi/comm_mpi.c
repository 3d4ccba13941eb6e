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

// The ranks of this node (MPI_COMM_TYPE_SHARED), kept for the shared windows;
// a duplicate of the world for the isum messages (their tags are theirs alone).
typedef struct {
    MPI_Comm node, sums;
    int tag_ub;
} CommMpi;

// ---------------------------------------------------------------- isum
// Not MPI_Iallreduce: Open MPI's gave results different from its Allreduce
// at 3 ranks, and the order of a sum must not depend on whether it overlapped.
// Here the order is ours: chunk k of the buffer (comm_shard) belongs to rank
// k, which receives every rank's chunk k (reduce-scatter), sums them in rank
// order 0..P-1 in float, and sends the result to every rank (allgather).
// Everything is point-to-point and non-blocking; the sum runs inside
// isum_test/isum_wait once the chunks are in.
typedef struct {
    float *buf;
    size_t n;
    long start, count;   // this rank's chunk
    int phase;           // 0: chunks to owners in flight, 1: results in flight, 2: done
    int tag;             // phase 0 uses tag, phase 1 tag + 1
    float *in;           // [(P-1) * count]: the other ranks' copies of this rank's chunk
    MPI_Request *req;    // 2 * (P-1)
    int n_req;
} Isum;

// Slot of rank j's part in Isum.in (this rank's own part stays in buf).
static int slot_of(int j, int rank) { return j < rank ? j : j - 1; }

static void isum_post(Comm *c, Isum *h, int phase) {
    MPI_Comm w = ((CommMpi *)c->impl)->sums;
    int P = c->size, r = c->rank, k = 0;
    for (int j = 0; j < P; j++) {
        if (j == r) continue;
        long js, jc;
        comm_shard((long)h->n, j, P, &js, &jc);
        if (phase == 0) {  // my chunk j to its owner j; rank j's copy of my chunk to me
            MPI_CHECK(MPI_Irecv(h->in + (size_t)slot_of(j, r) * h->count, int_count((size_t)h->count), MPI_FLOAT, j,
                                h->tag, w, &h->req[k++]));
            MPI_CHECK(MPI_Isend(h->buf + js, int_count((size_t)jc), MPI_FLOAT, j, h->tag, w, &h->req[k++]));
        } else {  // my summed chunk to everyone; their summed chunks into place
            MPI_CHECK(MPI_Irecv(h->buf + js, int_count((size_t)jc), MPI_FLOAT, j, h->tag + 1, w, &h->req[k++]));
            MPI_CHECK(MPI_Isend(h->buf + h->start, int_count((size_t)h->count), MPI_FLOAT, j, h->tag + 1, w,
                                &h->req[k++]));
        }
    }
    h->n_req = k;
    h->phase = phase;
}

// Rank order, left to right, in float: acc = x_0; acc += x_1; ... as a serial loop would.
static void isum_reduce(Comm *c, Isum *h) {
    int P = c->size, r = c->rank;
    size_t m = (size_t)h->count;
    float *own = h->buf + h->start;
    float *acc = r == 0 ? own : h->in;  // rank 0's part, summed into where it lies
    for (int j = 1; j < P; j++) {
        const float *x = j == r ? own : h->in + (size_t)slot_of(j, r) * m;
        for (size_t i = 0; i < m; i++) acc[i] += x[i];
    }
    if (acc != own && m) memcpy(own, acc, m * sizeof(float));
}

// One step of progress: 1 when the sum is done.
static int isum_advance(Comm *c, Isum *h, int block) {
    while (h->phase < 2) {
        int done = 1;
        if (block)
            MPI_CHECK(MPI_Waitall(h->n_req, h->req, MPI_STATUSES_IGNORE));
        else
            MPI_CHECK(MPI_Testall(h->n_req, h->req, &done, MPI_STATUSES_IGNORE));
        if (!done) return 0;
        if (h->phase == 0) {
            isum_reduce(c, h);
            isum_post(c, h, 1);
        } else {
            h->phase = 2;
        }
    }
    return 1;
}

static void *isum_start(Comm *c, float *buf, size_t n, int tag) {
    CommMpi *m = c->impl;
    Isum *h = calloc(1, sizeof *h);
    int P = c->size;
    h->buf = buf, h->n = n;
    comm_shard((long)n, c->rank, P, &h->start, &h->count);
    // two tags per sum, kept inside [0, MPI_TAG_UB]
    h->tag = (int)(2 * ((long)tag % (m->tag_ub / 2)));
    h->in = malloc((size_t)(P > 1 ? P - 1 : 1) * (size_t)(h->count ? h->count : 1) * sizeof(float));
    h->req = malloc((size_t)(P > 1 ? 2 * (P - 1) : 1) * sizeof *h->req);
    if (!h->in || !h->req) {
        fprintf(stderr, "laptop-diff: %s:%d: out of memory for a gradient sum of %zu floats\n", __FILE__, __LINE__, n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    isum_post(c, h, 0);
    isum_advance(c, h, 0);
    return h;
}

static int isum_test(Comm *c, void *h) { return isum_advance(c, h, 0); }

static void isum_wait(Comm *c, void *hv) {
    Isum *h = hv;
    isum_advance(c, h, 1);
    free(h->in), free(h->req), free(h);
}

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
    MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &m->sums));
    int *ub = NULL, has_ub = 0;
    MPI_CHECK(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &has_ub));
    m->tag_ub = has_ub && ub && *ub >= 32767 ? *ub : 32767;  // the standard's minimum
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
    c.isum_start = isum_start, c.isum_test = isum_test, c.isum_wait = isum_wait;
    return c;
}

void comm_mpi_free(Comm *c) {
    CommMpi *m = c->impl;
    if (!m) return;
    MPI_Comm_free(&m->node);
    MPI_Comm_free(&m->sums);
    free(m);
    c->impl = NULL;
}
