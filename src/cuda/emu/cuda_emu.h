// cuda_emu.h — the part of CUDA and cuBLAS that src/cuda/*.cu uses, run on the
// host, so the GPU backend's own kernels (not a copy of them) are tested on
// machines without a GPU (tests/gpu/, the *_emu tests). Not a simulator of
// performance or of GPU memory: a way to execute the same kernel source.
//
// How a launch runs: the grid's blocks one after another on the calling host
// thread; within a block, one fiber per CUDA thread, each run to its next
// barrier: __syncthreads (the block's) or a barrier of its warp (__syncwarp, a
// shuffle, a wmma store). Warps run one after another, each as far as the next
// __syncthreads, its own barriers released as its 32 lanes reach them: so a
// warp gets ahead of the others as far as a GPU lets it, and a missing
// __syncthreads between one warp's use of shared memory and another's
// overwrite of it shows. __shared__ is `static`, which is right because only
// one block runs at a time (a kernel must not be launched from two host
// threads at once here). Shuffles are exchanged through the warp: all its
// lanes must call them (a full mask); a warp whose lanes split between a warp
// barrier and __syncthreads or their end, or a block whose threads end while
// others wait at __syncthreads, stops the program, as a hang would on a GPU.
// No atomics: src/cuda/ sums in fixed orders, never by atomicAdd. cuBLAS products run on OpenBLAS, with operands rounded to TF32
// or BF16 first when the compute type asks for it, so precision tests see
// roughly the error a GPU makes.
#ifndef LD_CUDA_EMU_H
#define LD_CUDA_EMU_H
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

void __syncthreads();
// The barrier of the calling thread's warp (all 32 lanes must reach it, as
// with a full mask on a GPU), ordering their memory, e.g. after a wmma store
// that other lanes read.
void emu_syncwarp();
inline void __syncwarp(unsigned = 0xffffffffu) { emu_syncwarp(); }
// For wmma_emu.h: a barrier of the warp that is not a memory sync (no deferred
// work runs), and work the calling thread defers until it next reaches
// __syncthreads or __syncwarp, or ends: a write other lanes may see only after a sync.
void emu_warp_barrier();
void emu_defer_to_sync(std::function<void()> work);
float __shfl_xor_sync(unsigned mask, float v, int lane_mask);
double __shfl_xor_sync(unsigned mask, double v, int lane_mask);
// The warp's sum by the xor butterfly of five __shfl_xor_sync (bit for bit),
// in one exchange: cu_warp_sum's emulated form.
float emu_warp_sum(float v);
double emu_warp_sum(double v);
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
template <class T> inline T __ldg(const T *p) { return *p; }

// Runs f once per thread of every block of the launch, as described above.
void emu_launch(dim3 grid, dim3 block, const std::function<void()> &f);
// The same with `smem` bytes of dynamic shared memory for kernel `fn`, which
// emu_dyn_smem() gives the block (128-byte aligned, filled with 0xff bytes at
// each block's start: NaN as floats and bf16, so reading what no thread wrote
// shows). As on a GPU, more than 48 KiB needs cudaFuncSetAttribute(fn,
// cudaFuncAttributeMaxDynamicSharedMemorySize, >= smem) first, within the
// device's opt-in limit (cudaDevAttrMaxSharedMemoryPerBlockOptin); else the
// launch stops the program, as it would fail there.
void emu_launch_smem(const void *fn, dim3 grid, dim3 block, size_t smem, const std::function<void()> &f);
unsigned char *emu_dyn_smem();

// ---- runtime API ----
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorInvalidValue = 1, cudaErrorNoDevice = 100,
       cudaErrorInsufficientDriver = 35, cudaErrorNotReady = 600 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
typedef struct EmuStream *cudaStream_t;
const char *cudaGetErrorName(cudaError_t);
const char *cudaGetErrorString(cudaError_t);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
// Streams and events. Kernels and copies run when they are launched, whatever
// the stream; work put on a stream with emu_stream_defer (the emulated NCCL's
// sums) waits there, in order, until something waits for it: an event recorded
// after it (cudaEventSynchronize, or cudaStreamWaitEvent: another stream's
// later work needs it) or cudaStreamSynchronize. cudaEventQuery says "not
// ready" while such work is pending, so code that forgets to wait reads stale
// data here as it would on a GPU. (cudaDeviceSynchronize does not run it:
// src/cuda/ waits on its own streams and events.)
typedef struct EmuEvent *cudaEvent_t;
enum { cudaStreamNonBlocking = 1, cudaEventDisableTiming = 2 };
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *ev, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t ev);
cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t s);
cudaError_t cudaEventQuery(cudaEvent_t ev);
cudaError_t cudaEventSynchronize(cudaEvent_t ev);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t ev, unsigned flags);
void emu_stream_defer(cudaStream_t s, std::function<void()> work);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount;
    size_t totalGlobalMem;
};
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
// The opt-in shared memory per block: A100's 163 KiB (H100 has 227), the
// smaller of the GPUs the build targets, so what fits here fits both.
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d);
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
cudaError_t emu_func_set_attribute(const void *fn, cudaFuncAttribute a, int v);
template <class F> cudaError_t cudaFuncSetAttribute(F *fn, cudaFuncAttribute a, int v) {
    return emu_func_set_attribute((const void *)fn, a, v);
}
// Each process has a device of its own here: its id names the process.
cudaError_t cudaDeviceGetPCIBusId(char *buf, int len, int d);

// x rounded to nearest-even with `keep` of its 23 mantissa bits (TF32: 10,
// BF16: 7; 23: unchanged): what tensor cores make of an fp32 operand.
float emu_round_mantissa(float x, int keep);

// ---- cuBLAS ----
typedef int cublasStatus_t;
enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7 };
typedef struct EmuBlas *cublasHandle_t;
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 };
enum cudaDataType { CUDA_R_32F = 0 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_16BF = 75, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };
const char *cublasGetStatusName(cublasStatus_t);
const char *cublasGetStatusString(cublasStatus_t);
cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          long long sa, const void *B, cudaDataType bt, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t comp, cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
                            cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                            cublasComputeType_t comp, cublasGemmAlgo_t algo);
#endif
