// runtime.h — per-rank compute setup: thread counts for OpenMP and OpenBLAS
// (two pools that otherwise oversubscribe the cores), and the device check.
#ifndef LD_RUNTIME_H
#define LD_RUNTIME_H
#include "core/common.h"

// threads = 0: runtime_default_threads. Returns the count used.
int runtime_set_threads(int threads, int ranks_on_node);
// The count threads = 0 means: where this process may run on fewer cores than
// are online (its affinity mask: a launcher bound it), those `allowed` cores;
// else the `online` cores divided among the node's ranks; at least 1.
int runtime_default_threads(int ranks_on_node, int allowed, int online);
int runtime_online_cores(void);
int runtime_allowed_cores(void);  // cores in this process's affinity mask

// OpenBLAS picks its kernels from the CPU model at load time; a model it does
// not know (Debian 12's 0.3.21 on newer Xeons) falls back to its SSE3
// "Prescott" kernels, 4-9x slower SGEMM. Returns the OPENBLAS_CORETYPE to restart
// with ("SkylakeX" for AVX-512 CPUs, "Haswell" for AVX2+FMA) when OpenBLAS runs
// generic kernels on a CPU that has these, else NULL (also when the user set
// OPENBLAS_CORETYPE). The variable only takes effect in a new process.
const char *runtime_blas_coretype_fix(void);
// The rule behind it: the OPENBLAS_CORETYPE that fits a CPU with these
// instructions ("SkylakeX", "Haswell") when OpenBLAS's kernels `core` (its
// openblas_get_corename) do not use them, else NULL.
const char *runtime_blas_core_wanted(const char *core, int avx512, int avx2_fma);
// When the user's OPENBLAS_CORETYPE picks kernels narrower than the CPU has
// (Haswell on an AVX-512 CPU halves the SGEMM rate): 1, with a sentence for
// the start-up warning in buf; else 0. laptop-diff keeps the user's setting.
int runtime_blas_coretype_warning(char *buf, size_t n);
// Where that returns a core type: sets OPENBLAS_CORETYPE and replaces this
// process with a fresh run of itself (argv as given to main). Call first thing
// in main, before MPI is initialised. Returns only when nothing needs fixing, or when the
// restart failed (the run then goes on with the slow kernels).
void runtime_fix_blas_kernels(char **argv);

// The most floats of activation (oneDNN) or columns (batched im2col) one
// convolution call holds at a time; a batch larger than that runs in chunks of
// samples. Default 8 Mi floats (32 MiB); tests set it small to exercise chunking.
size_t runtime_conv_chunk_floats(void);
void runtime_set_conv_chunk_floats(size_t floats);

// The compute backend of a rank (runtime.device in the job file).
typedef enum { DEVICE_CPU = 0, DEVICE_CUDA = 1 } Device;
// How a GPU multiplies (runtime.precision): the values of cuda/dev.h's GemmPrecision.
typedef enum { PRECISION_FP32 = 0, PRECISION_TF32 = 1, PRECISION_BF16 = 2 } Precision;
// How the ranks' GPUs sum gradients (runtime.gpu_comm): NCCL between the
// devices, MPI through host memory, or "auto": NCCL where the build and the
// node allow it, else MPI.
typedef enum { GPU_COMM_AUTO = 0, GPU_COMM_NCCL = 1, GPU_COMM_MPI = 2 } GpuComm;
// How a GPU convolves (runtime.gpu_conv): cuDNN, im2col + cuBLAS GEMMs, or
// "auto": cuDNN where the build has it and it starts, else the GEMMs.
typedef enum { GPU_CONV_AUTO = 0, GPU_CONV_CUDNN = 1, GPU_CONV_GEMM = 2 } GpuConv;
// How a GPU attends (runtime.gpu_attention): the fused tensor-core kernel
// (TF32 or BF16 precision only), cuBLAS in query tiles, or "auto": fused where
// the precision has tensor cores and the head fits, else the tiles.
typedef enum { GPU_ATTN_AUTO = 0, GPU_ATTN_FUSED = 1, GPU_ATTN_TILED = 2 } GpuAttention;
// Which library multiplies on the CPU (runtime.cpu_gemm): OpenBLAS, or oneDNN's
// sgemm for the large products (gemm.h), or "auto": oneDNN on Intel CPUs with
// AVX-512, where it was measured faster, OpenBLAS elsewhere (README, Performance).
typedef enum { CPU_GEMM_AUTO = 0, CPU_GEMM_OPENBLAS = 1, CPU_GEMM_ONEDNN = 2 } CpuGemm;

// A device backend (kernels/backend.h) a program links: the program's main
// hands the one it was built with to runtime_select_device (the CUDA one,
// src/cuda/backend_cuda.h; or, in tests, the same on the CUDA emulator). The
// library itself links none, so a CPU-only build needs no CUDA.
typedef struct Backend Backend;
typedef struct Comm Comm;
typedef struct {
    const char *name;                  // "CUDA", "CUDA emulator"
    int (*count)(Error *e);            // devices here: > 0, else 0 or -1 + e saying why
    Backend *(*create)(int device, Precision precision, GpuConv conv, GpuAttention attn, Error *e);  // NULL + e
    // "NVIDIA H200, 139.8 GiB, sm_90, GEMMs bf16, convolutions cuDNN 9.19.0"
    void (*describe)(const Backend *be, char *buf, size_t n);
    // Sums of be's device buffers across the ranks of host, for the gradients
    // (cuda/nccl_sum.h: NCCL; collective, NULL + e): NULL entries where the
    // program was built without NCCL.
    Comm *(*sum_comm)(Backend *be, Comm *host, Error *e);
    void (*sum_comm_free)(Comm *c);
    void (*sum_comm_describe)(char *buf, size_t n);  // "NCCL 2.27.7"
    // The physical GPU under be (its PCI bus id): NCCL refuses two ranks on one.
    void (*device_id)(const Backend *be, char *buf, size_t n);
} DeviceBackend;

// Whether `device` can run here, without selecting it: DEVICE_CUDA on a build
// without the cuBLAS backend, or where CUDA finds no device, fails with a
// message saying so and what to do instead.
int runtime_check_device(Device device, Error *e);

// Checks `device` as above and makes it the one every GEMM of this process
// runs on (gemm_set_device), and cpu_gemm the CPU's GEMM library
// (gemm_set_cpu_library, also under DEVICE_CUDA for the host's products): call
// once, at start-up, before any compute.
// DEVICE_CUDA: the rank takes GPU local_rank % (CUDA devices visible), so the
// ranks of one node spread over its GPUs (local_rank: the rank's index among
// the ranks of its node, Comm.local_rank). With a device backend `gpu` (NULL:
// the program has none) and `be` non-NULL, *be gets a backend on that GPU
// (runtime.precision, runtime.gpu_conv, runtime.gpu_attention), for the stages that run device-resident; else *be is
// NULL. DEVICE_CUDA needs gpu or the cuBLAS GEMMs (LD_CUDA_GEMM), else it
// fails saying what to build. what (what_size bytes, may be NULL) gets the choice
// for the start-up line: "CPU (OpenBLAS)" or "GPU 1 of 4 (NVIDIA H200, ...): ...".
int runtime_select_device(Device device, Precision precision, GpuConv gpu_conv, GpuAttention gpu_attn, CpuGemm cpu_gemm,
                          int local_rank,
                          const DeviceBackend *gpu, Backend **be, char *what, size_t what_size, Error *e);
#endif
