// nccl_sum.cu — see nccl_sum.h.
#include "cuda/nccl_sum.h"

#include <string.h>

#include "cuda/cu_common.cuh"
#ifdef LD_CUDA_EMU
#include "cuda/emu/nccl_emu.h"
#else
#include <nccl.h>
#endif

static void nccl_ok_at(ncclResult_t r, const char *call, const char *file, int line) {
    if (r != ncclSuccess) fatal_at(file, line, "NCCL call %s failed: %s", call, ncclGetErrorString(r));
}
#define NCCL_OK(call) nccl_ok_at((call), #call, __FILE__, __LINE__)

// A sum in flight: the event its stream records when it is done.
typedef struct Pending {
    cudaEvent_t done;
    struct Pending *next;  // the free list
} Pending;

typedef struct {
    Comm c;         // first: what the caller holds is &s->c
    DevCtx *d;
    ncclComm_t nc;
    cudaStream_t stream;  // the sums' own stream: they overlap the compute stream's work
    cudaEvent_t ready;    // recorded on the compute stream as each sum starts
    Pending *free_list;
    int in_flight;
} NcclSum;

static void *s_isum_start(Comm *c, float *buf, size_t n, int tag) {
    (void)tag;  // NCCL tells sums apart by their order, which is the same on every rank (grad_sync.c)
    NcclSum *s = (NcclSum *)c->impl;
    Pending *p = s->free_list;
    if (p) {
        s->free_list = p->next;
    } else {
        p = (Pending *)xcalloc(1, sizeof *p);
        CU_OK(cudaEventCreateWithFlags(&p->done, cudaEventDisableTiming));
    }
    // what backward has queued so far (the bucket's final gradients) before the sum reads it
    CU_OK(cudaEventRecord(s->ready, dev_stream(s->d)));
    CU_OK(cudaStreamWaitEvent(s->stream, s->ready, 0));
    NCCL_OK(ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, s->nc, s->stream));
    CU_OK(cudaEventRecord(p->done, s->stream));
    s->in_flight++;
    return p;
}

static int s_isum_test(Comm *c, void *h) {
    (void)c;
    cudaError_t r = cudaEventQuery(((Pending *)h)->done);
    if (r == cudaErrorNotReady) return 0;
    CU_OK(r);
    return 1;
}

static void s_isum_wait(Comm *c, void *h) {
    NcclSum *s = (NcclSum *)c->impl;
    Pending *p = (Pending *)h;
    // the compute stream's later work (the optimizer) waits for the sum; the host goes on
    CU_OK(cudaStreamWaitEvent(dev_stream(s->d), p->done, 0));
    p->next = s->free_list, s->free_list = p;
    s->in_flight--;
}

Comm *nccl_sum_create(Comm *host, DevCtx *d, Error *e) {
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    int rc = 0;
    if (host->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) rc = errorf(e, "NCCL could not make its unique id: %s", ncclGetErrorString(r));
    }
    // every rank learns whether rank 0 has an id before anyone waits in NCCL's bootstrap
    if (comm_agree(host, rc, e)) return NULL;
    host->bcast(host, &id, sizeof id, 0);
    NcclSum *s = (NcclSum *)xcalloc(1, sizeof *s);
    s->d = d;
    CU_OK(cudaSetDevice(dev_index(d)));  // NCCL joins with the calling thread's device
    ncclResult_t r = ncclCommInitRank(&s->nc, host->size, id, host->rank);
    if (r != ncclSuccess) {
        errorf(e, "NCCL could not join rank %d of %d on CUDA device %d: %s", host->rank, host->size, dev_index(d),
               ncclGetErrorString(r));
        free(s);
        return NULL;
    }
    CU_OK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    CU_OK(cudaEventCreateWithFlags(&s->ready, cudaEventDisableTiming));
    s->c.rank = host->rank, s->c.size = host->size, s->c.local_size = host->local_size;
    s->c.local_rank = host->local_rank, s->c.node = host->node, s->c.n_nodes = host->n_nodes;
    s->c.impl = s;
    s->c.isum_start = s_isum_start, s->c.isum_test = s_isum_test, s->c.isum_wait = s_isum_wait;
    return &s->c;
}

void nccl_sum_free(Comm *c) {
    if (!c) return;
    NcclSum *s = (NcclSum *)c->impl;
    CHECK(s->in_flight == 0);  // every sum was waited on (grad_sync.c finishes each step)
    CU_OK(cudaStreamSynchronize(s->stream));
    for (Pending *p = s->free_list, *q; p; p = q) {
        q = p->next;
        cudaEventDestroy(p->done);
        free(p);
    }
    cudaEventDestroy(s->ready);
    cudaStreamDestroy(s->stream);
    ncclCommDestroy(s->nc);
    free(s);
}

void nccl_sum_version(char *buf, size_t n) {
#ifdef LD_CUDA_EMU
    snprintf(buf, n, "emulated NCCL (shared memory between the ranks of this machine)");
#else
    int v = 0;
    ncclGetVersion(&v);
    // NCCL_VERSION_CODE: major*10000 + minor*100 + patch since 2.9
    snprintf(buf, n, "NCCL %d.%d.%d", v / 10000, v / 100 % 100, v % 100);
#endif
}
