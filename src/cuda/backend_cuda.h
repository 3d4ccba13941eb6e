// backend_cuda.h — the CUDA backend of kernels/backend.h (backend_cuda.c):
// the model's ops on device memory, through src/cuda/ops.h.
#ifndef LD_BACKEND_CUDA_H
#define LD_BACKEND_CUDA_H
#include "core/common.h"
#include "cuda/dev.h"
#include "kernels/backend.h"
#include "kernels/runtime.h"

// A backend on CUDA device `device` with GEMMs at `precision`, convolutions
// as `conv` says (runtime.gpu_conv) and attention as `attn` (runtime.gpu_attention);
// it owns its DevCtx (backend_free closes it). NULL + e where the device cannot
// start, conv is GPU_CONV_CUDNN and cuDNN cannot, or attn is GPU_ATTN_FUSED at
// fp32 (the fused kernel runs on tensor cores only).
Backend *backend_cuda_create(int device, GemmPrecision precision, GpuConv conv, GpuAttention attn, Error *e);
// The device context behind a backend made by backend_cuda_create.
DevCtx *backend_cuda_dev(const Backend *be);
// This backend as runtime_select_device takes it (mpi/main.c).
const DeviceBackend *backend_cuda_device(void);
#endif
