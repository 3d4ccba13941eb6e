// wmma_emu.h — the part of CUDA's bf16 type (cuda_bf16.h) and warp matrix
// API (mma.h, nvcuda::wmma) that src/cuda/attention_fused.cu uses, on the host
// emulator (cuda_emu.h).
//
// A fragment's layout across a warp's lanes is opaque in CUDA, so here every
// lane holds the whole tile (num_elements = rows x cols, not 8 or 4): loads,
// products and stores need no exchange between lanes (stores wait at a block
// barrier, below), and code that treats
// fragment elements uniformly (fill, __float_to_tf32 on each) runs as on a
// GPU. What CUDA requires of the calls is checked, since breaking it is
// undefined behaviour there: a 256-bit aligned pointer, ldm a multiple of 16
// bytes, and TF32 operands converted with __float_to_tf32 before mma_sync.
// Products accumulate in fp32 in k order, the operands' products exact (as a
// tensor core's are for BF16 and TF32 inputs).
#ifndef LD_WMMA_EMU_H
#define LD_WMMA_EMU_H
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

struct __nv_bfloat16 {
    uint16_t x;
};
// Round to nearest even, as cuda_bf16.h's __float2bfloat16 (NaN stays NaN).
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        b.x = 0x7fc0;
        return b;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    b.x = (uint16_t)(u >> 16);
    return b;
}
inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
namespace precision {
struct tf32 {};
}
enum layout_t { mem_row_major, mem_col_major };

// cvt.rna.tf32.f32: 10 mantissa bits kept, rounded to nearest, ties away from zero.
inline float __float_to_tf32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & ~0x1fffu;
    memcpy(&f, &u, 4);
    return f;
}

template <class T> struct emu_elem {
    typedef T type;
};
template <> struct emu_elem<precision::tf32> {
    typedef float type;
};
inline float emu_val(float x) { return x; }
inline float emu_val(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    typedef typename emu_elem<T>::type element_type;
    enum {
        rows = std::is_same<Use, matrix_b>::value ? K : M,
        cols = std::is_same<Use, matrix_a>::value ? K : N,
        num_elements = rows * cols
    };
    element_type x[num_elements];  // element (r, c) at x[r * cols + c]
};

inline void emu_wmma_check(const void *p, unsigned ldm, size_t elem, const char *what) {
    if ((uintptr_t)p % 32 || (ldm * elem) % 16) {
        fprintf(stderr, "wmma_emu: %s with pointer %p (must be 256-bit aligned) and ldm %u (must be a multiple of "
                        "16 bytes)\n", what, p, ldm);
        abort();
    }
}
template <class F> void emu_wmma_load(F &f, const typename F::element_type *p, unsigned ldm, bool row) {
    emu_wmma_check(p, ldm, sizeof *p, "load_matrix_sync");
    for (int r = 0; r < F::rows; r++)
        for (int c = 0; c < F::cols; c++) f.x[r * F::cols + c] = row ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}
template <class Use, int M, int N, int K, class T>
void load_matrix_sync(fragment<Use, M, N, K, T, row_major> &f,
                      const typename fragment<Use, M, N, K, T, row_major>::element_type *p, unsigned ldm) {
    emu_wmma_load(f, p, ldm, true);
}
template <class Use, int M, int N, int K, class T>
void load_matrix_sync(fragment<Use, M, N, K, T, col_major> &f,
                      const typename fragment<Use, M, N, K, T, col_major>::element_type *p, unsigned ldm) {
    emu_wmma_load(f, p, ldm, false);
}
template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ldm, layout_t l) {
    emu_wmma_load(f, p, ldm, l == mem_row_major);
}
// The store waits at a barrier of the warp (not a memory sync), so that no lane
// changes what another lane's earlier load_matrix_sync of the same memory
// (accumulate: load, mma, store) has still to read, as the warp's one
// collective store could not on a GPU; so, as on a GPU, wmma calls must be
// warp-uniform. Then only the warp's first lane's tile is written: that lane ran first,
// so its tile is the one computed from loads that did not wait for the other
// lanes' writes (a __syncwarp left out before a fragment load shows as a wrong
// result). And it is written only when that lane next syncs (__syncwarp,
// __syncthreads) or ends: lanes that read the stored tile without a sync
// first read what was there before (a __syncwarp left out after a store shows).
template <int M, int N, int K>
void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t l) {
    emu_warp_barrier();
    emu_wmma_check(p, ldm, sizeof *p, "store_matrix_sync");
    unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    if (tid & 31u) return;
    fragment<accumulator, M, N, K, float> t = f;
    emu_defer_to_sync([p, t, ldm, l] {
        for (int r = 0; r < M; r++)
            for (int c = 0; c < N; c++)
                (l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r]) = t.x[r * N + c];
    });
}
template <class F, class V> void fill_fragment(F &f, V v) {
    for (int i = 0; i < F::num_elements; i++) f.x[i] = v;
}

template <class T> inline void emu_tf32_check(const T *, int) {}
inline void emu_tf32_check(const float *x, int n) {  // a tf32 operand: its low 13 mantissa bits clear
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        if (u & 0x1fffu) {
            fprintf(stderr, "wmma_emu: mma_sync on a TF32 operand not converted with __float_to_tf32\n");
            abort();
        }
    }
}
// d = a b + c, fp32 accumulation over k in order.
template <int M, int N, int K, class T, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
              const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
    emu_tf32_check(a.x, M * K), emu_tf32_check(b.x, K * N);
    float out[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = c.x[i * N + j];
            for (int k = 0; k < K; k++) s += emu_val(a.x[i * K + k]) * emu_val(b.x[k * N + j]);
            out[i * N + j] = s;
        }
    memcpy(d.x, out, sizeof out);
}
}  // namespace wmma
}  // namespace nvcuda
#endif
