// cu_common.cuh — what every src/cuda/*.cu file shares: the CUDA headers (or
// the host emulator's, in the LD_CUDA_EMU build that tests run without a GPU),
// checked calls that name file and line, the launch macro, and block-wide sums.
#ifndef LD_CU_COMMON_CUH
#define LD_CU_COMMON_CUH
#ifdef LD_CUDA_EMU
#include "cuda/emu/cuda_emu.h"
// Emulated blocks are host threads: fewer of them keeps the tests quick, and
// two warps still exercise the cross-warp half of every reduction.
#define LD_CU_BLOCK 64
// Each emulated block costs a round of barriers: grid-stride kernels get few
// blocks and loop, which also exercises their loops.
#define LD_CU_MAX_BLOCKS 16
#define LD_LAUNCH(kern, grid, block, stream, ...) \
    ((void)(stream), emu_launch((grid), (block), [&] { kern(__VA_ARGS__); }))
#define LD_LAUNCH_SMEM(kern, grid, block, smem, stream, ...) \
    ((void)(stream), emu_launch_smem((const void *)(kern), (grid), (block), (smem), [&] { kern(__VA_ARGS__); }))
// In a kernel: `name` points at the launch's dynamic shared memory (128-byte aligned).
#define CU_DYN_SMEM(name) unsigned char *name = emu_dyn_smem()
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>
#define LD_CU_BLOCK 256
#define LD_CU_MAX_BLOCKS 65535
#define LD_LAUNCH(kern, grid, block, stream, ...) kern<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#define LD_LAUNCH_SMEM(kern, grid, block, smem, stream, ...) kern<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define CU_DYN_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#endif
#include <stddef.h>

#include "core/common.h"
#include "cuda/dev.h"

static inline void cu_ok_at(cudaError_t r, const char *call, const char *file, int line) {
    if (r != cudaSuccess)
        fatal_at(file, line, "CUDA call %s failed: %s: %s", call, cudaGetErrorName(r), cudaGetErrorString(r));
}
static inline void cublas_ok_at(cublasStatus_t s, const char *call, const char *file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS)
        fatal_at(file, line, "cuBLAS call %s failed: %s: %s", call, cublasGetStatusName(s), cublasGetStatusString(s));
}
#define CU_OK(call) cu_ok_at((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) cublas_ok_at((call), #call, __FILE__, __LINE__)
// After a launch: a bad configuration shows up here, named by the launch's line.
#define CU_LAUNCHED() CU_OK(cudaGetLastError())

// The stream every op of a context runs on (dev.cu owns the struct).
cudaStream_t dev_stream(DevCtx *d);
cublasHandle_t dev_blas(DevCtx *d);
// The context's cuDNN convolutions (conv_cudnn.h) when dev_conv is
// DEV_CONV_CUDNN, else NULL; conv.cu counts each fallback with dev_conv_fell_back.
struct DnnConvs *dev_dnn(DevCtx *d);
void dev_conv_fell_back(DevCtx *d);

// i over [0, n) in steps of the whole grid: kernels launched with cu_blocks(n).
#define CU_GRID_LOOP(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)blockDim.x * gridDim.x)

// Blocks for n items, one per thread, capped: kernels loop (grid stride).
static inline unsigned cu_blocks(size_t n) {
    size_t b = (n + LD_CU_BLOCK - 1) / LD_CU_BLOCK;
    if (b < 1) b = 1;
    return b > LD_CU_MAX_BLOCKS ? (unsigned)LD_CU_MAX_BLOCKS : (unsigned)b;
}

// Sum over the 32 lanes of a warp, every lane gets it: the xor butterfly (the
// emulator computes the same additions in one exchange).
template <class T> __device__ __forceinline__ T cu_warp_sum(T v) {
#ifdef LD_CUDA_EMU
    return emu_warp_sum(v);
#else
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
#endif
}

// Sum over the block. Every thread of the block must call it (it holds
// __syncthreads); all get the total. The order
// of additions is fixed by the block size, so results repeat run to run.
template <class T> __device__ __forceinline__ T cu_block_sum(T v) {
    __shared__ T part[32];
    __shared__ T total;
    v = cu_warp_sum(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        T s = 0;
        for (int w = 0; w < nw; w++) s += part[w];
        total = s;
    }
    __syncthreads();
    T r = total;
    __syncthreads();  // part/total may be reused by the next call
    return r;
}
#endif
