// comm.c — the serial communicator, sharding arithmetic and the shared
// collectives; see comm.h.
#include "core/comm.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/stop.h"

static void serial_sum_f32(Comm *c, float *buf, size_t n) { (void)c, (void)buf, (void)n; }
static void serial_sum_f64(Comm *c, double *buf, size_t n) { (void)c, (void)buf, (void)n; }
static void serial_max_i32(Comm *c, int *buf, size_t n) { (void)c, (void)buf, (void)n; }
static void serial_bcast(Comm *c, void *buf, size_t bytes, int root) { (void)c, (void)buf, (void)bytes, (void)root; }
static void serial_gatherv(Comm *c, const void *send, size_t bytes, void *recv, const size_t *counts, int root) {
    (void)c, (void)counts, (void)root;
    if (recv != send && bytes) memmove(recv, send, bytes);
}
static void serial_barrier(Comm *c) { (void)c; }
// One rank: the sum is buf itself; the handle only has to be non-NULL.
static void *serial_isum_start(Comm *c, float *buf, size_t n, int tag) {
    (void)n, (void)tag;
    return buf ? (void *)buf : (void *)c;
}
static int serial_isum_test(Comm *c, void *h) { return (void)c, (void)h, 1; }
static void serial_isum_wait(Comm *c, void *h) { (void)c, (void)h; }

// One process is its own node: the shared buffer is a private allocation.
static int serial_node_alloc(Comm *c, size_t bytes, void **ptr, void **handle, Error *e) {
    (void)c;
    void *p = NULL;
    if (posix_memalign(&p, (size_t)sysconf(_SC_PAGESIZE), bytes ? bytes : 1))
        return errorf(e, "could not allocate %zu bytes for the node-shared buffer", bytes);
    *ptr = *handle = p;
    return 0;
}
static void serial_node_sync(Comm *c, void *handle) { (void)c, (void)handle; }
static void serial_node_free(Comm *c, void *handle) { (void)c, free(handle); }

Comm comm_serial(void) {
    Comm c = {.rank = 0, .size = 1, .local_size = 1, .local_rank = 0, .impl = NULL, .sum_f32 = serial_sum_f32,
              .sum_f64 = serial_sum_f64, .max_i32 = serial_max_i32, .bcast = serial_bcast,
              .gatherv_bytes = serial_gatherv, .barrier = serial_barrier, .node = 0, .n_nodes = 1,
              .node_alloc = serial_node_alloc, .node_sync = serial_node_sync, .node_free = serial_node_free,
              .isum_start = serial_isum_start, .isum_test = serial_isum_test, .isum_wait = serial_isum_wait};
    return c;
}

// The whole pages of a shared buffer (its start is page-aligned).
static size_t sealable(const CommShared *s) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return s->bytes / page * page;
}

int comm_node_shared_alloc(Comm *c, size_t bytes, CommShared *s, Error *e) {
    memset(s, 0, sizeof *s);
    void *p = NULL, *h = NULL;
    if (c->node_alloc(c, bytes, &p, &h, e)) return -1;
    s->ptr = p, s->bytes = bytes, s->handle = h;
    return 0;
}

void comm_node_shared_seal(Comm *c, CommShared *s) {
    c->node_sync(c, s->handle);
    // best effort: where mprotect refuses, the buffer stays writable, and correct
    if (sealable(s)) (void)mprotect(s->ptr, sealable(s), PROT_READ);
}

void comm_node_shared_free(Comm *c, CommShared *s) {
    if (!s->handle) return;
    if (sealable(s)) (void)mprotect(s->ptr, sealable(s), PROT_READ | PROT_WRITE);  // the allocator may write on free
    c->node_free(c, s->handle);
    memset(s, 0, sizeof *s);
}

void comm_shard(long n, int rank, int size, long *start, long *count) {
    long base = n / size, extra = n % size;
    *start = rank * base + (rank < extra ? rank : extra);
    *count = base + (rank < extra ? 1 : 0);
}

int comm_agree(Comm *c, int rc, Error *e) {
    int bad = rc != 0;
    c->max_i32(c, &bad, 1);
    if (!bad) return 0;
    if (rc == 0) {
        errorf(e, "%s", COMM_OTHER_RANK);
        if (e) e->other_rank = 1;
    }
    return -1;
}

int comm_agree_share(Comm *c, int rc, Error *e) {
    int v = rc != 0 ? c->size - c->rank : 0;  // the max picks the lowest failing rank
    c->max_i32(c, &v, 1);
    if (v == 0) return 0;
    c->bcast(c, e->msg, sizeof e->msg, c->size - v);
    e->other_rank = 0;
    return -1;
}

static int owner_of(const int *owner, int j, int size) { return owner ? owner[j] : j % size; }

int comm_run_jobs(Comm *c, int n_jobs, const int *owner, int width, CommJobFn fn, void *ctx, double *out, Error *e) {
    int mine = 0;
    for (int j = 0; j < n_jobs; j++) mine += owner_of(owner, j, c->size) == c->rank;
    // each record: the job index, then its values
    size_t rec = (size_t)(width + 1);
    double *send = xcalloc(rec * (size_t)(mine ? mine : 1), sizeof(double));
    int rc = 0, k = 0, stop = 0;
    for (int j = 0; j < n_jobs && !rc; j++) {
        if (owner_of(owner, j, c->size) != c->rank) continue;
        if ((stop = stop_requested() != 0)) break;
        send[rec * k] = j;
        rc = fn(ctx, j, send + rec * k + 1, e);
        k++;
    }
    if (comm_agree(c, rc, e)) {
        free(send);
        return -1;
    }
    // a rank that stopped early holds fewer records: nothing is gathered
    c->max_i32(c, &stop, 1);
    if (stop) {
        free(send);
        return 1;
    }
    size_t *counts = xcalloc((size_t)c->size, sizeof *counts);
    for (int j = 0; j < n_jobs; j++) counts[owner_of(owner, j, c->size)] += rec * sizeof(double);
    double *all = xcalloc(rec * (size_t)(n_jobs ? n_jobs : 1), sizeof(double));
    c->gatherv_bytes(c, send, (size_t)mine * rec * sizeof(double), all, counts, 0);
    if (c->rank == 0)
        for (int r = 0; r < n_jobs; r++) memcpy(out + (size_t)all[rec * r] * width, all + rec * r + 1, (size_t)width * sizeof(double));
    c->bcast(c, out, (size_t)n_jobs * width * sizeof(double), 0);
    free(send), free(counts), free(all);
    return 0;
}
