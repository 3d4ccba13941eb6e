// bench_libs.c — SGEMM in OpenBLAS (what gemm() runs) against BLIS and libxsmm,
// at the GEMM shapes of the default teacher's step (jobs/fmnist_teacher.cfg,
// batch 32) and of SD-1.5 at 64x64 latents, batch 1 (issue #13 item 1: measure
// the libraries in Debian before hand-writing kernels). A measurement, not a
// dependency: CMake builds it only where BLIS (libblis-openmp-dev) and libxsmm
// (libxsmm-dev) are found, and the program never links them.
//
// Variants, all row-major C[M,N] = op(A) op(B), beta 0:
//   openblas  gemm() (OpenBLAS, OpenMP build, the core type runtime.c picks)
//   blis      bli_sgemm (BLIS's typed API; its OpenMP build, bli_thread_set_num_threads)
//   xsmm      libxsmm_sgemm: libxsmm's own choice, a JIT kernel when the shape is
//             small (M*N*K <= LIBXSMM_MAX_MNK, 64^3 in Debian's build) and 1.17
//             can make one (none for our B^T products), else it calls BLAS
//             sgemm_ (OpenBLAS here, threaded); its JIT path is single-threaded
//   xsmm_omp  libxsmm_xgemm_omp (libxsmmext): libxsmm's OpenMP tiled GEMM, JIT tiles
//   xsmm_jit  the JIT kernel from libxsmm_smmdispatch called on the whole matrix,
//             single-threaded; "-" where libxsmm makes none for the shape
// Each result is checked against OpenBLAS first (max |C - C_ref| / max |C_ref|),
// then variants are interleaved per repeat (A B C D E A B C D E ...) and the best
// repeat counts, so a shared machine hurts them alike. BLIS picks its kernels by
// CPUID once per process; BLIS_ARCH_TYPE (a number: 0 skx, 3 haswell, 6 zen3 in
// 0.9.0) overrides it, and the header line says which ran.
// usage: bench_libs [REPEATS] [THREADS] [teacher|sd15|all]
#define _GNU_SOURCE  // dladdr: which library each BLAS symbol resolved to
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <blis.h>
#include <libxsmm.h>

#include "core/common.h"
#include "core/rng.h"
#include "kernels/gemm.h"
#include "kernels/runtime.h"

#include "bench_args.h"

// BLIS through dlopen(RTLD_LOCAL) (CMakeLists.txt says why): its symbols stay
// out of the global scope, so OpenBLAS keeps cblas_sgemm and sgemm_.
static struct {
    __typeof__(bli_init) *init;
    __typeof__(bli_thread_set_num_threads) *set_threads;
    __typeof__(bli_sgemm) *sgemm;
    __typeof__(bli_arch_query_id) *arch_id;
    __typeof__(bli_arch_string) *arch_string;
    __typeof__(bli_info_get_version_str) *version;
    __typeof__(bli_info_get_enable_openmp) *openmp;
} blis;

static void blis_load(void) {
    void *h = dlopen(LD_BLIS_SO, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "bench_libs: %s\n", dlerror());
        exit(1);
    }
#define SYM(field, name)                                                       \
    if (!(*(void **)&blis.field = dlsym(h, name))) {                           \
        fprintf(stderr, "bench_libs: %s lacks %s\n", LD_BLIS_SO, name);        \
        exit(1);                                                               \
    }
    SYM(init, "bli_init") SYM(set_threads, "bli_thread_set_num_threads") SYM(sgemm, "bli_sgemm")
    SYM(arch_id, "bli_arch_query_id") SYM(arch_string, "bli_arch_string")
    SYM(version, "bli_info_get_version_str") SYM(openmp, "bli_info_get_enable_openmp")
#undef SYM
}

typedef struct {
    const char *set, *what;
    int M, N, K, tA, tB;
} Shape;

// Linear: out[tokens*B, out] = x[tokens*B, in] @ W^T (linear.c), dW = dout^T @ x.
// Convolutions per sample as im2col GEMMs: out[Cout, HW] = W[Cout, Cin*k*k] @ col.
// Attention (attention.c) multiplies 256x256 tiles per (sample, head).
static const Shape shapes[] = {
    {"all", "square 1024^3", 1024, 1024, 1024, 0, 0},
    // teacher: 16/32/64/64 channels, cross-attention at 8x8 and 4x4 with C 64,
    // 4 heads of 16, context 8 x 32, time embedding 64; batch 32
    {"teacher", "time_embedding linear_1", 32, 64, 16, 0, 1},
    {"teacher", "resnet time_emb_proj", 32, 64, 64, 0, 1},
    {"teacher", "attn q/k/v/out 8x8", 2048, 64, 64, 0, 1},
    {"teacher", "attn q/k/v/out 4x4", 512, 64, 64, 0, 1},
    {"teacher", "cross k/v (context)", 256, 64, 32, 0, 1},
    {"teacher", "ff GEGLU proj 8x8", 2048, 512, 64, 0, 1},
    {"teacher", "ff out 8x8", 2048, 64, 256, 0, 1},
    {"teacher", "dW attn q 8x8", 64, 64, 2048, 1, 0},
    {"teacher", "attn QK^T (sample, head) 8x8", 64, 64, 16, 0, 1},
    {"teacher", "attn PV (sample, head) 8x8", 64, 16, 64, 0, 0},
    {"teacher", "1x1 conv up3 shortcut / sample", 16, 1024, 48, 0, 0},
    {"teacher", "3x3 im2col down1 / sample", 32, 256, 288, 0, 0},
    // SD-1.5: 320/640/1280 with attention, 8 heads (d 40 at 320), context 77 x 768
    {"sd15", "attn q 64x64 C320", 4096, 320, 320, 0, 1},
    {"sd15", "ff GEGLU proj 64x64", 4096, 2560, 320, 0, 1},
    {"sd15", "ff out 64x64", 4096, 320, 1280, 0, 1},
    {"sd15", "dW ff GEGLU proj 64x64", 2560, 320, 4096, 1, 0},
    {"sd15", "cross k/v context 77x768", 77, 320, 768, 0, 1},
    {"sd15", "attn q 16x16 C1280", 256, 1280, 1280, 0, 1},
    {"sd15", "ff GEGLU proj 16x16 C1280", 256, 10240, 1280, 0, 1},
    {"sd15", "attn tile QK^T d40", 256, 256, 40, 0, 1},
    {"sd15", "attn tile PV d40", 256, 40, 256, 0, 0},
    {"sd15", "1x1 proj_in 64x64 / sample", 320, 4096, 320, 0, 0},
    {"sd15", "3x3 im2col 64x64 C320 / sample", 320, 4096, 2880, 0, 0},
};

enum { V_OPENBLAS, V_BLIS, V_XSMM, V_XSMM_OMP, V_XSMM_JIT, NVAR };
static const char *var_name[NVAR] = {"openblas", "blis", "xsmm", "xsmm_omp", "xsmm_jit"};

typedef struct {
    const Shape *s;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    libxsmm_smmfunction jit;
} Prob;

// libxsmm is column-major: row-major C = op(A) op(B) is column-major
// C^T = op(B)^T op(A)^T, and a row-major buffer read column-major is its
// transpose, so the operands swap and each keeps its own transpose flag.
static void run(int v, const Prob *p) {
    const Shape *s = p->s;
    float one = 1.0f, zero = 0.0f;
    libxsmm_blasint m = s->N, n = s->M, k = s->K, lda = p->ldb, ldb = p->lda, ldc = p->ldc;
    const char *ta = s->tB ? "T" : "N", *tb = s->tA ? "T" : "N";
    switch (v) {
    case V_OPENBLAS:
        gemm(s->tA, s->tB, s->M, s->N, s->K, 1.0f, p->A, p->lda, p->B, p->ldb, 0.0f, p->C, p->ldc);
        break;
    case V_BLIS:
        blis.sgemm(s->tA ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, s->tB ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                  s->M, s->N, s->K, &one, (float *)p->A, p->lda, 1, (float *)p->B, p->ldb, 1, &zero, p->C,
                  p->ldc, 1);
        break;
    case V_XSMM:
        libxsmm_sgemm(ta, tb, &m, &n, &k, &one, p->B, &lda, p->A, &ldb, &zero, p->C, &ldc);
        break;
    case V_XSMM_OMP:
        libxsmm_xgemm_omp(LIBXSMM_GEMM_PRECISION_F32, LIBXSMM_GEMM_PRECISION_F32, ta, tb, &m, &n, &k, &one,
                          p->B, &lda, p->A, &ldb, &zero, p->C, &ldc);
        break;
    case V_XSMM_JIT:
        p->jit(p->B, p->A, p->C);
        break;
    }
}

// The shared object a symbol resolved to: BLIS exports cblas_sgemm and sgemm_
// too, so this shows gemm() and libxsmm's BLAS fallback really run OpenBLAS.
static const char *lib_of(const char *sym) {
    Dl_info info;
    void *addr = dlsym(RTLD_DEFAULT, sym);
    if (!addr || !dladdr(addr, &info) || !info.dli_fname) return "?";
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

int main(int argc, char **argv) {
    int reps, threads;
    const char *which;
    bench_args(argc, argv, &reps, &threads, &which);
    blis_load();
    blis.init();
    blis.set_threads(threads);
    libxsmm_init();
    printf("bench_libs: %d threads, best of %d; BLIS %s arch %s (%s); libxsmm %s target %s; "
           "cblas_sgemm from %s, sgemm_ from %s; OPENBLAS_CORETYPE=%s\n",
           threads, reps, blis.version(), blis.arch_string(blis.arch_id()),
           blis.openmp() ? "openmp" : "not openmp", LIBXSMM_VERSION,
           libxsmm_get_target_arch(), lib_of("cblas_sgemm"), lib_of("sgemm_"),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    printf("%-8s %-32s %5s %5s %5s %2s %2s %7s", "set", "shape", "M", "N", "K", "tA", "tB", "relerr");
    for (int v = 0; v < NVAR; v++) printf(" %10s", var_name[v]);
    printf("   (ms per call; openblas GFLOP/s; openblas time / variant time, >1 = faster)\n");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *s = &shapes[si];
        if (strcmp(which, "all") && strcmp(s->set, "all") && strcmp(which, s->set)) continue;
        // Stored sizes: A is MxK (KxM when transposed), B is KxN (NxK).
        int ar = s->tA ? s->K : s->M, ac = s->tA ? s->M : s->K;
        int br = s->tB ? s->N : s->K, bc = s->tB ? s->K : s->N;
        size_t na = (size_t)ar * ac, nb = (size_t)br * bc, nc = (size_t)s->M * s->N;
        float *A = xmalloc(na * 4), *B = xmalloc(nb * 4), *C = xmalloc(nc * 4), *R = xmalloc(nc * 4);
        rng_normal_fill(A, na, 1, RNG_MISC, 1);
        rng_normal_fill(B, nb, 1, RNG_MISC, 2);
        Prob p = {s, A, B, R, ac, bc, s->N, NULL};
        {
            int flags = (s->tB ? LIBXSMM_GEMM_FLAG_TRANS_A : 0) | (s->tA ? LIBXSMM_GEMM_FLAG_TRANS_B : 0);
            libxsmm_blasint lda = p.ldb, ldb = p.lda, ldc = p.ldc;
            float one = 1.0f, zero = 0.0f;
            p.jit = libxsmm_smmdispatch(s->N, s->M, s->K, &lda, &ldb, &ldc, &one, &zero, &flags, NULL);
        }
        run(V_OPENBLAS, &p);
        double rmax = 0;
        for (size_t i = 0; i < nc; i++) rmax = fmax(rmax, fabs(R[i]));
        int ok[NVAR];
        double worst = 0;
        p.C = C;
        for (int v = 1; v < NVAR; v++) {
            ok[v] = v != V_XSMM_JIT || p.jit;
            if (!ok[v]) continue;
            memset(C, 0xff, nc * 4);  // NaN: a variant that writes nothing fails the check
            run(v, &p);
            double e = 0;
            for (size_t i = 0; i < nc; i++) e = fmax(e, fabs((double)C[i] - R[i]));
            if (!(e / rmax <= 1e-4)) {
                fprintf(stderr, "bench_libs: %s wrong on %s (relerr %.2e)\n", var_name[v], s->what, e / rmax);
                return 1;
            }
            worst = fmax(worst, e / rmax);
        }
        ok[V_OPENBLAS] = 1;
        // Calls per timing: about 20 ms of OpenBLAS work at 100 GFLOP/s, so small
        // shapes are not lost in the timer.
        double flops = 2.0 * s->M * s->N * (double)s->K;
        int calls = (int)fmin(100000, fmax(1, 2e9 / flops));
        double best[NVAR];
        for (int v = 0; v < NVAR; v++) best[v] = 1e30;
        for (int r = 0; r < reps; r++)
            for (int v = 0; v < NVAR; v++) {
                if (!ok[v]) continue;
                double t0 = now_s();
                for (int c = 0; c < calls; c++) run(v, &p);
                double dt = (now_s() - t0) / calls;
                if (dt < best[v]) best[v] = dt;
            }
        printf("%-8s %-32s %5d %5d %5d %2d %2d %7.1e", s->set, s->what, s->M, s->N, s->K, s->tA, s->tB, worst);
        for (int v = 0; v < NVAR; v++)
            if (ok[v]) printf(" %10.4f", best[v] * 1e3);
            else printf(" %10s", "-");
        printf("   %6.1f GF/s;", flops / best[V_OPENBLAS] / 1e9);
        for (int v = 1; v < NVAR; v++)
            if (ok[v]) printf(" %.2f", best[V_OPENBLAS] / best[v]);
            else printf(" -");
        printf("\n");
        fflush(stdout);
        free(A), free(B), free(C), free(R);
    }
    libxsmm_finalize();
    return 0;
}
