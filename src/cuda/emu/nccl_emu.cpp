// nccl_emu.cpp — see nccl_emu.h.
#include "cuda/emu/nccl_emu.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

namespace {
const size_t SLOT = (size_t)1 << 20;  // floats each rank copies in per round (4 MiB)
const int ATTACH_SECONDS = 60;        // how long a rank waits for rank 0's segment

struct Shared {
    std::atomic<int> ready;  // rank 0 set up the barrier
    pthread_barrier_t bar;
    int nranks;
};
size_t shared_bytes(int nranks) { return (sizeof(Shared) + 63) / 64 * 64 + (size_t)nranks * SLOT * sizeof(float); }
float *slot(Shared *h, int r) { return (float *)((char *)h + (sizeof(Shared) + 63) / 64 * 64) + (size_t)r * SLOT; }

void nap_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&t, nullptr);
}
}  // namespace

struct EmuNccl {
    Shared *h;
    size_t bytes;
    int rank, nranks;
};

const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclSystemError: return "system error (emulated NCCL: shared memory)";
    case ncclInvalidArgument: return "invalid argument";
    default: return "invalid usage";
    }
}

ncclResult_t ncclGetVersion(int *v) { return *v = 0, ncclSuccess; }

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    static std::atomic<unsigned> counter{0};
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "/ld-nccl-emu-%ld-%u-%ld", (long)getpid(), counter++, (long)t.tv_nsec);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
    size_t bytes = shared_bytes(nranks);
    int fd = -1;
    if (rank == 0) {
        fd = shm_open(id.internal, O_CREAT | O_EXCL | O_RDWR, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)bytes)) {
            if (fd >= 0) close(fd), shm_unlink(id.internal);
            return ncclSystemError;
        }
    } else {  // rank 0 creates and sizes it: wait for both
        for (long waited = 0;; waited += 2) {
            struct stat st;
            fd = shm_open(id.internal, O_RDWR, 0600);
            if (fd >= 0 && !fstat(fd, &st) && (size_t)st.st_size >= bytes) break;
            if (fd >= 0) close(fd);
            if (waited > ATTACH_SECONDS * 1000L) return ncclSystemError;
            nap_ms(2);
        }
    }
    void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        if (rank == 0) shm_unlink(id.internal);
        return ncclSystemError;
    }
    Shared *h = (Shared *)p;
    if (rank == 0) {
        pthread_barrierattr_t a;
        pthread_barrierattr_init(&a);
        pthread_barrierattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_barrier_init(&h->bar, &a, (unsigned)nranks);
        pthread_barrierattr_destroy(&a);
        h->nranks = nranks;
        h->ready.store(1, std::memory_order_release);
    } else {
        for (long waited = 0; !h->ready.load(std::memory_order_acquire); waited += 2) {
            if (waited > ATTACH_SECONDS * 1000L) return munmap(p, bytes), ncclSystemError;
            nap_ms(2);
        }
        if (h->nranks != nranks) return munmap(p, bytes), ncclInvalidUsage;
    }
    pthread_barrier_wait(&h->bar);  // all attached: the name may go, nothing is left behind in /dev/shm
    if (rank == 0) shm_unlink(id.internal);
    *comm = new EmuNccl{h, bytes, rank, nranks};
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t c) {
    if (!c) return ncclSuccess;
    munmap(c->h, c->bytes);
    delete c;
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t c, cudaStream_t stream) {
    if (type != ncclFloat32 || op != ncclSum || !c || !stream) return ncclInvalidArgument;
    emu_stream_defer(stream, [=] {
        const float *x = (const float *)send;
        float *y = (float *)recv;
        for (size_t off = 0; off < count; off += SLOT) {
            size_t m = count - off < SLOT ? count - off : SLOT;
            memcpy(slot(c->h, c->rank), x + off, m * sizeof(float));
            pthread_barrier_wait(&c->h->bar);
            for (size_t j = 0; j < m; j++) {
                float s = slot(c->h, 0)[j];
                for (int r = 1; r < c->nranks; r++) s += slot(c->h, r)[j];
                y[off + j] = s;
            }
            pthread_barrier_wait(&c->h->bar);  // every rank has read the slots before they are refilled
        }
    });
    return ncclSuccess;
}
