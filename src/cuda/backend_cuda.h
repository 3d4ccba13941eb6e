// backend_cuda.h — the CUDA backend of kernels/backend.h (backend_cuda.c):
// the model's ops on device memory, through src/cuda/ops.h.
#ifndef LD_BACKEND_CUDA_H
#define LD_BACKEND_CUDA_H
#include "core/common.h"
#include "cuda/dev.h"
#include "kernels/backend.h"
#include "kernels/runtime.h"

// A backend on CUDA device `device` with GEMMs at `precision` and convolutions
// as `conv` says (runtime.gpu_conv); it owns its DevCtx (backend_free closes
// it). NULL + e where the device cannot start, or conv is GPU_CONV_CUDNN and
// cuDNN cannot.
Backend *backend_cuda_create(int device, GemmPrecision precision, GpuConv conv, Error *e);
// The device context behind a backend made by backend_cuda_create.
DevCtx *backend_cuda_dev(const Backend *be);
// This backend as runtime_select_device takes it (mpi/main.c).
const DeviceBackend *backend_cuda_device(void);
#endif
