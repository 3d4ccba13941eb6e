// vecmath.h — exp, the logistic sigmoid and the normal CDF in float, written
// without branches or libm calls so that the kernels' loops over them vectorise
// (libm's expf/erff are opaque calls, one value at a time: a fifth of SiLU's and
// half of GEGLU's time in tests/bench/PROFILE.md); at the end, sums and maxima
// in fixed lanes, for the same reason. Header-only: static inline,
// so each loop is compiled with its callers' vector width.
//
// Accuracy (against libm in double, tests/unit/test_vecmath.c asserts these):
//  * ld_expf: relative error < 1.5e-7 (~2 ulp; 1.1e-7 measured) for x in
//    [-86.98, 88.7228]; 0 below -86.98 (the exact value is < 2^-125, so the
//    absolute error is < 2.4e-38: no denormals); +inf above (where expf
//    overflows); NaN gives NaN.
//  * ld_phif(x) = P(X <= x), X ~ N(0,1) = 0.5 * erfc(-x / sqrt 2): relative error
//    < 6e-7 (4.9e-7 measured) for x >= -12.5, absolute < 1e-35 below. Computed
//    without forming 1 + erf(x/sqrt 2), so the left tail keeps its relative
//    accuracy (0.5 * (1 + erff(x/sqrt 2)) in float loses all of it beyond x ~ -5).
//    Phi(+inf) = 1, Phi(-inf) = 0, NaN gives NaN.
//  * ld_normal_pdf: relative error < 4e-7 (2.4e-7 measured) for |x| <= 13.
// All are pure functions of their argument: results do not depend on the
// thread count or on which elements a loop handles in vector or scalar form.
// Their multiply-adds are written as fmaf (one rounding): the build is ISO C,
// so gcc contracts no a*b+c on its own, in one form only; an explicit fmaf is
// the same operation in every form (vfmadd in the AVX2 and AVX-512 clones
// below, glibc's fmaf, also correctly rounded, in the baseline), and half the
// instructions of a multiply and an add: SiLU, GroupNorm+SiLU and GEGLU ran
// 25-40% faster with it (tests/bench/PROFILE.md).
#ifndef LD_VECMATH_H
#define LD_VECMATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

// Kernels whose loops call these are compiled three times (x86-64-v4: AVX-512,
// v3: AVX2, and the baseline SSE2 the build targets), and the dynamic loader
// picks the widest this CPU runs (an ifunc; OpenMP's outlined loop bodies are
// cloned with them). The build has no -march: one binary runs on any x86-64
// node and still uses its vector width, 2-4x the SSE2 speed of these loops
// here (tests/bench/bench_elem.c). Every clone does the same IEEE operations in
// the same order (no FMA contraction in ISO C mode, only the explicit fmaf
// above, no reciprocal estimates), so the results are the same bits on every
// CPU; test_vecmath checks a clone against the scalar baseline. (On a CPU
// without FMA the baseline's fmaf is glibc's exact software one: right, slow.)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define LD_VEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LD_VEC_CLONES
#endif
// Helpers of cloned kernels must be inlined into each clone: a call would run
// the baseline (SSE2) copy and keep the loop from vectorising.
// An OpenMP parallel region must sit in the cloned function itself: one inside
// an inlined helper is outlined before inlining and gets only the baseline ISA.
#define LD_INLINE static inline __attribute__((always_inline))

LD_INLINE uint32_t ld_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
LD_INLINE float ld_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// c ? a : b on the bits. A plain ?: lets gcc sink the computation of the arm
// it feeds into a branch, and with -ftrapping-math (the default) a branch
// holding float arithmetic is not if-converted: the loop would not vectorise.
LD_INLINE float ld_select(int c, float a, float b) {
    uint32_t m = (uint32_t)0 - (uint32_t)(c != 0);
    return ld_u2f((ld_f2u(a) & m) | (ld_f2u(b) & ~m));
}

#define LD_EXP_HI 88.72283172607421875f  // largest float x with exp(x) < FLT_MAX (the next one overflows)
#define LD_EXP_LO (-86.98f)           // below: 2^n would need n < -125 (see the scale below)

LD_INLINE float ld_expf(float x) {
    // isless/isgreater are false for NaN (and quiet): NaN passes both clamps unchanged.
    float xc = ld_select(isless(x, LD_EXP_LO), LD_EXP_LO, x);
    xc = ld_select(isgreater(xc, LD_EXP_HI), LD_EXP_HI, xc);
    // n = round(x / ln2) by the 1.5 * 2^23 trick: the low mantissa bits of t
    // hold n, so no float -> int conversion (undefined for NaN) is needed.
    const float magic = 12582912.0f;
    float t = fmaf(xc, 1.44269504088896341f, magic);
    float n = t - magic;
    // Cody-Waite: ln2 = 0.693359375 (9 bits, so n * hi is exact) - 2.12194440e-4.
    float r = fmaf(-n, 0.693359375f, xc);
    r = fmaf(n, 2.12194440e-4f, r);
    // Cephes expf's polynomial for exp(r), |r| <= ln2/2.
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float y = fmaf(p, r * r, r) + 1.0f;
    // 2^n as 2^(n-1) * 2: n runs from -125 to 128 here, n + 126 fits the
    // exponent field [1, 254] without a special case at either end.
    uint32_t e = (ld_f2u(t) - ld_f2u(magic) + 126u) << 23;
    float res = y * ld_u2f(e) * 2.0f;
    res = ld_select(isless(x, LD_EXP_LO), 0.0f, res);
    return ld_select(isgreater(x, LD_EXP_HI), (float)INFINITY, res);
}

// 1 / (1 + exp(-x)); 1 for x > 88.7 (exp(-x) is 0), 0 for x < -88.7 (1/inf).
LD_INLINE float ld_sigmoidf(float x) { return 1.0f / (1.0f + ld_expf(-x)); }

// exp(p - x^2/2) for |p| < 2, accurate also where x^2/2 is large: x^2/2 is
// formed exactly as hi + lo (lo, the rounding error of hi, by one FMA), and the
// rounding error e of the exponent's last subtraction is put back as exp(e) ~
// 1 + e. Rounding x^2/2 to float first would cost a relative error of up to
// x^2 * 3e-8 (2e-5 at x = -13). |x| > 20 is left to the callers (inf - inf).
LD_INLINE float ld_exp_mhalfsq(float x, float p) {
    float hx = 0.5f * x;  // exact (short of the subnormals, where lo is 0 anyway)
    float hi = hx * x, lo = fmaf(hx, x, -hi);
    float a1 = p - lo, arg = a1 - hi;
    float bb = arg - a1, e = (a1 - (arg - bb)) + (-hi - bb);  // TwoSum: arg + e = a1 - hi
    return ld_expf(arg) * (1.0f + e);
}

// Phi(x) = 0.5 * erfc(z), z = -x/sqrt2, with erfc from Numerical Recipes' erfcc
// (Chebyshev fit, fractional error < 1.2e-7): erfc(|z|) = t exp(-z^2 + P(t)),
// t = 1/(1 + |z|/2). For x < 0 that is Phi directly; for x >= 0 Phi = 1 - 0.5 erfc.
LD_INLINE float ld_phif(float x) {
    float z = fabsf(x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = fmaf(p, t, -0.82215223f);
    p = fmaf(p, t, 1.48851587f);
    p = fmaf(p, t, -1.13520398f);
    p = fmaf(p, t, 0.27886807f);
    p = fmaf(p, t, -0.18628806f);
    p = fmaf(p, t, 0.09678418f);
    p = fmaf(p, t, 0.37409196f);
    p = fmaf(p, t, 1.00002368f);
    p = fmaf(p, t, -1.26551223f);
    float half_erfc = 0.5f * t * ld_exp_mhalfsq(x, p);  // z^2 = x^2/2
    half_erfc = ld_select(isless(x, -20.0f) || isgreater(x, 20.0f), 0.0f, half_erfc);  // (1 - Phi(20) < 1e-88)
    return ld_select(isless(x, 0.0f), half_erfc, 1.0f - half_erfc);
}

// Reductions in 8 fixed lanes (element i in lane i mod 8, a tail past the last
// full 8 into lane 0, lanes combined 0..7 in order): they vectorise at -O2,
// where one running sum does not, and the order is this code's, not the
// compiler's, so the bits are the same at every vector width and thread count.
LD_INLINE double ld_total8(const double *a) {
    double s = 0.0;
    for (int l = 0; l < 8; l++) s += a[l];
    return s;
}

LD_INLINE double ld_sum8(const float *x, size_t n) {
    double a[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
#pragma omp simd
        for (int l = 0; l < 8; l++) a[l] += x[i + l];
    }
    for (; i < n; i++) a[0] += x[i];
    return ld_total8(a);
}

// sum of (x - m)^2: the second pass of a two-pass variance (no cancellation
// for large means).
LD_INLINE double ld_sumsq_dev8(const float *x, size_t n, double m) {
    double a[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
#pragma omp simd
        for (int l = 0; l < 8; l++) {
            double d = x[i + l] - m;
            a[l] += d * d;
        }
    }
    for (; i < n; i++) a[0] += (x[i] - m) * (x[i] - m);
    return ld_total8(a);
}

// max(m, x[0..n)); a max is the same in any order (NaN aside).
LD_INLINE float ld_max8(const float *x, size_t n, float m) {
    float a[8] = {m, m, m, m, m, m, m, m};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) a[l] = x[i + l] > a[l] ? x[i + l] : a[l];
    for (; i < n; i++) a[0] = x[i] > a[0] ? x[i] : a[0];
    for (int l = 1; l < 8; l++) a[0] = a[l] > a[0] ? a[l] : a[0];
    return a[0];
}

#define LD_INV_SQRT_2PI 0.39894228040143267794f

// phi(x) = exp(-x^2/2) / sqrt(2 pi), the normal density (GELU's gradient); 0 for |x| > 20.
LD_INLINE float ld_normal_pdf(float x) {
    float d = LD_INV_SQRT_2PI * ld_exp_mhalfsq(x, 0.0f);
    return ld_select(isless(x, -20.0f) || isgreater(x, 20.0f), 0.0f, d);
}
#endif
