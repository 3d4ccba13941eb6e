// cuda_emu.cpp — see cuda_emu.h.
#include "cuda_emu.h"

#include <cblas.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdint>

#include <cstdlib>
#include <deque>
#include <cstring>
#include <map>
#include <vector>

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace {
// A launch's state on the host thread that runs it: one fiber per CUDA thread
// of the block, switched at barriers. On x86-64 a switch is six pushes, a
// stack swap and six pops (emu_switch below); elsewhere, and under ASan (which
// must see stack switches), ucontext's swapcontext, which also saves the signal
// mask with a system call and is some ten times slower.
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define EMU_FAST_SWITCH 1
#endif
// AT_BARRIER: __syncthreads (the block's barrier); AT_WARP: a barrier of the
// thread's warp (__syncwarp, a shuffle, a wmma store)
enum FiberState { RUNNING, AT_BARRIER, AT_WARP, DONE };
struct Fiber {
#ifdef EMU_FAST_SWITCH
    void *sp;
#else
    ucontext_t uc;
#endif
};
struct Launch {
    const std::function<void()> *f;
    dim3 block;
    unsigned nt = 0, tid = 0;
    Fiber sched;
    std::vector<Fiber> fib;
    std::vector<FiberState> state;
    std::vector<float> xf;
    std::vector<double> xd;
    std::vector<std::vector<std::function<void()>>> pending;  // per thread: emu_defer_to_sync's work
};
thread_local Launch *cur = nullptr;
thread_local std::vector<char> stacks;  // reused across launches
const size_t STACK = 256 << 10;

#ifdef EMU_FAST_SWITCH
// emu_switch(&save_sp, to_sp): push the callee-saved registers, save rsp, load
// the other fiber's rsp, pop its registers, return into it.
extern "C" void emu_switch(void **save, void *to);
__asm__(".text\n.globl emu_switch\n.type emu_switch,@function\nemu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n  ret\n"
        ".size emu_switch, .-emu_switch\n");
#endif

void set_thread_idx(const Launch &L, unsigned t) {
    threadIdx = dim3(t % L.block.x, (t / L.block.x) % L.block.y, t / (L.block.x * L.block.y));
}
void to_sched(Launch *L) {
#ifdef EMU_FAST_SWITCH
    emu_switch(&L->fib[L->tid].sp, L->sched.sp);
#else
    swapcontext(&L->fib[L->tid].uc, &L->sched.uc);
#endif
}
void run_pending(Launch *L) {
    auto &w = L->pending[L->tid];
    for (auto &f : w) f();
    w.clear();
}
void fiber_main() {
    (*cur->f)();
    run_pending(cur);  // a kernel's writes are all visible after it
    cur->state[cur->tid] = DONE;
#ifdef EMU_FAST_SWITCH
    to_sched(cur);  // never resumed
    __builtin_unreachable();
#endif  // ucontext: uc_link returns to the scheduler
}
void barrier() {
    Launch *L = cur;
    L->state[L->tid] = AT_BARRIER;
    to_sched(L);
}
void warp_barrier() {
    Launch *L = cur;
    L->state[L->tid] = AT_WARP;
    to_sched(L);
}
// getcontext/swapcontext return twice: kept out of the loops (-Wclobbered)
__attribute__((noinline)) void init_fiber(Launch &L, unsigned t) {
    char *lo = stacks.data() + (size_t)t * STACK;
#ifdef EMU_FAST_SWITCH
    // what emu_switch pops: six registers, then fiber_main as the return
    // address; rsp is 8 mod 16 at its entry, as after a call
    uintptr_t top = ((uintptr_t)(lo + STACK)) & ~(uintptr_t)15;
    void **sp = (void **)(top - 64);
    for (int i = 0; i < 6; i++) sp[i] = nullptr;
    sp[6] = (void *)fiber_main;
    sp[7] = nullptr;
    L.fib[t].sp = sp;
#else
    getcontext(&L.fib[t].uc);
    L.fib[t].uc.uc_stack.ss_sp = lo;
    L.fib[t].uc.uc_stack.ss_size = STACK;
    L.fib[t].uc.uc_link = &L.sched.uc;
    makecontext(&L.fib[t].uc, fiber_main, 0);
#endif
    L.state[t] = RUNNING;
}
__attribute__((noinline)) void resume(Launch &L, unsigned t) {
    L.tid = t;
    set_thread_idx(L, t);
    L.state[t] = RUNNING;
#ifdef EMU_FAST_SWITCH
    emu_switch(&L.sched.sp, L.fib[t].sp);
#else
    swapcontext(&L.sched.uc, &L.fib[t].uc);
#endif
}
template <class T> T exchange(std::vector<T> &buf, T v, int lane_mask) {
    unsigned t = cur->tid;
    buf[t] = v;
    warp_barrier();
    T r = buf[t ^ (unsigned)lane_mask];
    warp_barrier();
    return r;
}
// The xor butterfly of a 32-lane warp sum: the same additions in the same
// order as five shuffles, so the same bits, for one exchange instead of five.
// The warp's first lane computes all 32 results: after a barrier the
// scheduler resumes a warp's threads in index order, so it runs before the others.
template <class T> T warp_sum(std::vector<T> &buf, T v) {
    unsigned t = cur->tid, w0 = t & ~31u;
    buf[t] = v;
    warp_barrier();
    if (t == w0) {
        T a[32], b[32];
        for (int l = 0; l < 32; l++) a[l] = buf[w0 + l];
        for (int m = 16; m > 0; m >>= 1) {
            for (int l = 0; l < 32; l++) b[l] = a[l] + a[l ^ m];
            for (int l = 0; l < 32; l++) a[l] = b[l];
        }
        for (int l = 0; l < 32; l++) buf[w0 + l] = a[l];
    }
    T r = buf[t];
    warp_barrier();
    return r;
}
}  // namespace

void __syncthreads() {
    run_pending(cur);
    barrier();
}
void emu_syncwarp() {
    run_pending(cur);
    warp_barrier();
}
void emu_warp_barrier() { warp_barrier(); }
void emu_defer_to_sync(std::function<void()> work) { cur->pending[cur->tid].push_back(std::move(work)); }
float __shfl_xor_sync(unsigned, float v, int m) { return exchange(cur->xf, v, m); }
double __shfl_xor_sync(unsigned, double v, int m) { return exchange(cur->xd, v, m); }
float emu_warp_sum(float v) { return warp_sum(cur->xf, v); }
double emu_warp_sum(double v) { return warp_sum(cur->xd, v); }

namespace {
thread_local unsigned char *dyn_smem = nullptr;  // the launch's dynamic shared memory, while it runs
thread_local size_t dyn_smem_bytes = 0;
std::map<const void *, int> func_smem_max;  // cudaFuncSetAttribute's limits, by kernel
const int SMEM_DEFAULT = 48 << 10, SMEM_OPTIN = 163 << 10;
}  // namespace
unsigned char *emu_dyn_smem() { return dyn_smem; }
cudaError_t emu_func_set_attribute(const void *fn, cudaFuncAttribute a, int v) {
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 || v > SMEM_OPTIN) return cudaErrorInvalidValue;
    func_smem_max[fn] = v;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int) {
    if (a != cudaDevAttrMaxSharedMemoryPerBlockOptin) return cudaErrorInvalidValue;
    return *v = SMEM_OPTIN, cudaSuccess;
}
void emu_launch_smem(const void *fn, dim3 grid, dim3 block, size_t smem, const std::function<void()> &f) {
    auto it = func_smem_max.find(fn);
    size_t allowed = it != func_smem_max.end() && it->second > SMEM_DEFAULT ? (size_t)it->second : SMEM_DEFAULT;
    if (smem > allowed) {
        fprintf(stderr, "cuda_emu: a launch asks for %zu bytes of dynamic shared memory, over the kernel's %zu (raise "
                        "it with cudaFuncSetAttribute, up to %d)\n", smem, allowed, SMEM_OPTIN);
        abort();
    }
    std::vector<unsigned char> buf(smem + 128);
    dyn_smem = (unsigned char *)(((uintptr_t)buf.data() + 127) & ~(uintptr_t)127);
    dyn_smem_bytes = smem;
    emu_launch(grid, block, f);
    dyn_smem = nullptr, dyn_smem_bytes = 0;
}

void emu_launch(dim3 grid, dim3 block, const std::function<void()> &f) {
    unsigned nt = block.x * block.y * block.z;
    if (nt == 0 || nt > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
        fprintf(stderr, "cuda_emu: invalid launch (grid %u,%u,%u block %u,%u,%u)\n", grid.x, grid.y, grid.z,
                block.x, block.y, block.z);
        abort();
    }
    if (cur) {
        fprintf(stderr, "cuda_emu: a kernel launched from inside a kernel\n");
        abort();
    }
    Launch L;
    L.f = &f, L.block = block, L.nt = nt;
    L.fib.resize(nt), L.state.resize(nt), L.xf.resize(nt), L.xd.resize(nt), L.pending.resize(nt);
    if (stacks.size() < nt * STACK) stacks.resize(nt * STACK);
    cur = &L;
    blockDim = block, gridDim = grid;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                blockIdx = dim3(bx, by, bz);
                if (dyn_smem) memset(dyn_smem, 0xff, dyn_smem_bytes);
                for (unsigned t = 0; t < nt; t++) init_fiber(L, t);
                // warp by warp, run each thread to its next barrier (or its end), releasing
                // the warp's own barriers as its lanes all reach them, so a warp runs as
                // far ahead of the next as __syncthreads lets it (as warps may on a GPU);
                // then release the block's barrier
                for (;;) {
                    for (unsigned w0 = 0; w0 < nt; w0 += 32) {
                        unsigned w1 = w0 + 32 < nt ? w0 + 32 : nt;
                        for (;;) {
                            unsigned at_warp = 0;
                            for (unsigned t = w0; t < w1; t++)
                                if (L.state[t] == RUNNING) resume(L, t);
                            for (unsigned t = w0; t < w1; t++) at_warp += L.state[t] == AT_WARP;
                            if (!at_warp) break;
                            if (at_warp != w1 - w0) {
                                fprintf(stderr, "cuda_emu: block (%u,%u,%u), warp %u: %u lanes wait at a warp "
                                                "barrier (__syncwarp, a shuffle, a wmma store) while the others "
                                                "wait at __syncthreads or have ended\n", bx, by, bz, w0 / 32,
                                        at_warp);
                                abort();
                            }
                            for (unsigned t = w0; t < w1; t++) L.state[t] = RUNNING;
                        }
                    }
                    unsigned done = 0, waiting = 0;
                    for (unsigned t = 0; t < nt; t++) done += L.state[t] == DONE, waiting += L.state[t] == AT_BARRIER;
                    if (done == nt) break;
                    if (done) {
                        fprintf(stderr, "cuda_emu: block (%u,%u,%u): %u threads ended while %u wait at a barrier\n",
                                bx, by, bz, done, waiting);
                        abort();
                    }
                    for (unsigned t = 0; t < nt; t++) L.state[t] = RUNNING;  // the block's barrier releases
                }
            }
    cur = nullptr;
}

// ---- runtime API: host memory stands in for device memory ----
const char *cudaGetErrorName(cudaError_t r) { return r == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated"; }
const char *cudaGetErrorString(cudaError_t r) { return r == cudaSuccess ? "no error" : "emulated CUDA error"; }
cudaError_t cudaGetDeviceCount(int *n) { return *n = 1, cudaSuccess; }
cudaError_t cudaDriverGetVersion(int *v) { return *v = 13000, cudaSuccess; }
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDevice(int *d) { return *d = 0, cudaSuccess; }
cudaError_t cudaMalloc(void **p, size_t n) {
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) { return free(p), cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind, cudaStream_t) {
    if (n) memmove(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
    return cudaMemcpyAsync(dst, src, n, k, nullptr);
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
    if (n) memset(p, v, n);
    return cudaSuccess;
}
struct EmuStream {
    std::deque<std::function<void()>> deferred;
    uint64_t issued = 0, done = 0;  // deferred work items put on the stream / run
};
struct EmuEvent {
    EmuStream *s = nullptr;
    uint64_t seq = 0;  // complete once s->done reaches it
};
namespace {
// Runs the stream's deferred work up to item `upto`, in order.
void run_deferred(EmuStream *s, uint64_t upto) {
    while (s && s->done < upto) {
        std::function<void()> w = std::move(s->deferred.front());
        s->deferred.pop_front();
        w();
        s->done++;
    }
}
}  // namespace
void emu_stream_defer(cudaStream_t s, std::function<void()> work) {
    s->deferred.push_back(std::move(work));
    s->issued++;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return *s = new EmuStream(), cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { return cudaStreamCreate(s); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (s) run_deferred(s, s->issued);  // as a GPU finishes a destroyed stream's work
    return delete s, cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (s) run_deferred(s, s->issued);
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *ev, unsigned) { return *ev = new EmuEvent(), cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t ev) { return delete ev, cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t s) {
    ev->s = s, ev->seq = s ? s->issued : 0;
    return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t ev) {
    return !ev->s || ev->s->done >= ev->seq ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventSynchronize(cudaEvent_t ev) {
    run_deferred(ev->s, ev->seq);
    return cudaSuccess;
}
// The waiting stream's later work runs at once here, so what it needs runs now.
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t ev, unsigned) { return cudaEventSynchronize(ev); }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { return *f = *t = (size_t)1 << 34, cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CUDA emulator on the host (cuda_emu)");
    p->major = 9, p->multiProcessorCount = 1, p->totalGlobalMem = (size_t)1 << 34;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetPCIBusId(char *buf, int len, int d) {
    if (d != 0 || len < 1) return cudaErrorInvalidValue;
    snprintf(buf, (size_t)len, "emulator:%ld", (long)getpid());
    return cudaSuccess;
}

// ---- cuBLAS on OpenBLAS ----
struct EmuBlas {
    cublasMath_t math;
};
const char *cublasGetStatusName(cublasStatus_t s) { return s ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_SUCCESS"; }
const char *cublasGetStatusString(cublasStatus_t s) { return s ? "invalid value (emulated)" : "success"; }
cublasStatus_t cublasCreate(cublasHandle_t *h) { return *h = new EmuBlas{CUBLAS_DEFAULT_MATH}, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { return delete h, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) { return h->math = m, CUBLAS_STATUS_SUCCESS; }

float emu_round_mantissa(float x, int keep) {
    if (keep >= 23) return x;
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;  // inf/nan unchanged
    int drop = 23 - keep;
    uint32_t half = (1u << (drop - 1)) - 1, lsb = (u >> drop) & 1u;
    u = (u + half + lsb) & ~((1u << drop) - 1);
    memcpy(&x, &u, 4);
    return x;
}

namespace {
const float *rounded(const float *X, size_t n, int keep, std::vector<float> &buf) {
    if (keep >= 23) return X;
    buf.assign(X, X + n);
    for (float &v : buf) v = emu_round_mantissa(v, keep);
    return buf.data();
}
}  // namespace

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType, int lda,
                                          long long sa, const void *B, cudaDataType, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType, int ldc, long long sc,
                                          int batch, cublasComputeType_t comp, cublasGemmAlgo_t) {
    if (m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    int keep = comp == CUBLAS_COMPUTE_32F_FAST_TF32 ? 10 : comp == CUBLAS_COMPUTE_32F_FAST_16BF ? 7 : 23;
    size_t na = (size_t)lda * (ta == CUBLAS_OP_N ? k : m), nb = (size_t)ldb * (tb == CUBLAS_OP_N ? n : k);
    std::vector<float> ba, bb;
    for (int i = 0; i < batch; i++) {
        const float *a = rounded((const float *)A + i * sa, na, keep, ba);
        const float *b = rounded((const float *)B + i * sb, nb, keep, bb);
        cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *(const float *)alpha, a, lda, b, ldb,
                    *(const float *)beta, (float *)C + i * sc, ldc);
    }
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
                            cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                            cublasComputeType_t comp, cublasGemmAlgo_t algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0,
                                      1, comp, algo);
}
