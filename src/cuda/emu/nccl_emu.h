// nccl_emu.h — the part of NCCL that src/cuda/nccl_sum.cu uses, emulated for
// the ranks of one machine, so the NCCL gradient path (bootstrap through MPI,
// sums on a stream of their own, overlapped with backward) runs in the tests
// where there is no GPU. Each communicator is a POSIX shared-memory segment
// named in the unique id; ncclAllReduce is deferred on its stream
// (emu_stream_defer) and, when that stream's work is waited for, every rank
// copies its part in, and after a process-shared barrier each sums the ranks'
// parts in rank order, ((x_0 + x_1) + x_2) + ..., as Comm.isum_start does.
// (Real NCCL's ring order differs from that for three ranks or more.) Ranks
// must issue their sums in the same order, as NCCL requires. A rank that dies
// leaves the others waiting in the barrier, until mpirun ends the job.
#ifndef LD_NCCL_EMU_H
#define LD_NCCL_EMU_H
#include <cstddef>

#include "cuda/emu/cuda_emu.h"

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct {
    char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;
typedef struct EmuNccl *ncclComm_t;
typedef enum { ncclSuccess = 0, ncclSystemError = 2, ncclInvalidArgument = 4, ncclInvalidUsage = 5 } ncclResult_t;
typedef enum { ncclFloat32 = 7, ncclFloat = 7 } ncclDataType_t;
typedef enum { ncclSum = 0 } ncclRedOp_t;
#define NCCL_MAJOR 0
#define NCCL_MINOR 0
#define NCCL_PATCH 0

const char *ncclGetErrorString(ncclResult_t r);
ncclResult_t ncclGetVersion(int *version);
ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
// float sums only (what the gradients need)
ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream);
#endif
