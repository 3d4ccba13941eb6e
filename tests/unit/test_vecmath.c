// test_vecmath.c — vecmath.h's exp, sigmoid, Phi and normal density against
// libm in double over their whole float range (stated error bounds, the
// underflow/overflow ends, inf and NaN), and the kernels built on them (SiLU,
// GELU, GEGLU): each element equal to the scalar formula bit for bit, whether
// it fell in a vectorised or a scalar iteration, and the same with 1 or 2 threads.
#include <math.h>
#include <string.h>

#include "core/common.h"
#include "kernels/kernels.h"
#include "kernels/vecmath.h"
#include "testutil.h"

#define EXP_TOL 1.5e-7   // relative, x in [LD_EXP_LO, LD_EXP_HI] (vecmath.h)
#define PHI_TOL 6e-7     // relative, x >= -12.5
#define PDF_TOL 4e-7     // relative, |x| <= 13

// Worst relative error of f against ref at n points evenly spread over [lo, hi]
// plus every float of the first and last 4096 ulps (the ends of a range are
// where reductions and clamps go wrong).
typedef float (*F1)(float);
typedef double (*D1)(double);
static double worst_rel(F1 f, D1 ref, float lo, float hi, int n, float *where) {
    double worst = 0;
    for (int k = 0; k < n + 8192; k++) {
        float x;
        if (k < n)
            x = lo + (hi - lo) * (float)((double)k / (n - 1));
        else {
            static float e;
            if (k == n) e = lo;
            if (k == n + 4096) e = hi;
            x = e;
            e = nextafterf(e, k < n + 4096 ? hi : lo);
        }
        double r = ref(x), err = fabs((double)f(x) - r) / fabs(r);
        if (!(err <= worst)) worst = err, *where = x;
    }
    return worst;
}

static double ref_exp(double x) { return exp(x); }
static double ref_phi(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }
static double ref_pdf(double x) { return exp(-0.5 * x * x) / sqrt(2.0 * 3.14159265358979323846); }

static void check_exp(void) {
    float at = 0;
    double e = worst_rel(ld_expf, ref_exp, LD_EXP_LO, LD_EXP_HI, 2000001, &at);
    printf("ld_expf: worst relative error %.3g (%.2f ulp of 1) at %.9g\n", e, e / 0x1p-24, at);
    EXPECT(e <= EXP_TOL, "ld_expf relative error %.3g at %.9g > %.3g", e, at, EXP_TOL);
    e = worst_rel(ld_expf, ref_exp, -1e-3f, 1e-3f, 200001, &at);  // around 0, where exp ~ 1 + x
    EXPECT(e <= EXP_TOL, "ld_expf near 0: relative error %.3g at %.9g", e, at);
    // below the range: 0, and the exact value is below 2^-125
    for (float x = LD_EXP_LO; x > -200; x = nextafterf(x, -1000) - 0.01f) {
        float y = ld_expf(x);
        if (!(y == 0 || fabs(y - exp(x)) / exp(x) <= EXP_TOL)) {
            EXPECT(0, "ld_expf(%.9g) = %g: neither 0 nor within the bound", x, y);
            break;
        }
        if (!(fabs((double)y - exp(x)) < 0x1p-125)) {
            EXPECT(0, "ld_expf(%.9g): absolute error %g >= 2^-125", x, fabs((double)y - exp(x)));
            break;
        }
    }
    EXPECT(ld_expf(-87.5f) == 0 && ld_expf(-1e30f) == 0 && ld_expf(-INFINITY) == 0, "exp underflows to 0");
    EXPECT(isinf(ld_expf(88.73f)) && isinf(ld_expf(1e30f)) && isinf(ld_expf(INFINITY)), "exp overflows to +inf");
    EXPECT(isfinite(ld_expf(LD_EXP_HI)) && ld_expf(LD_EXP_HI) > 3.4e38f, "exp(88.7228) = %g: finite, near FLT_MAX",
           ld_expf(LD_EXP_HI));
    EXPECT(isnan(ld_expf(NAN)) && isnan(ld_expf(-NAN)), "exp(NaN) is NaN");
    EXPECT(ld_expf(0) == 1.0f, "exp(0) = %.9g", ld_expf(0));
}

static void check_phi_pdf(void) {
    float at = 0;
    double e = worst_rel(ld_phif, ref_phi, -12.5f, 0, 1000001, &at);
    printf("ld_phif: worst relative error %.3g on [-12.5, 0] at %.9g\n", e, at);
    EXPECT(e <= PHI_TOL, "ld_phif relative error %.3g at %.9g > %.3g", e, at, PHI_TOL);
    e = worst_rel(ld_phif, ref_phi, 0, 30, 1000001, &at);
    printf("ld_phif: worst relative error %.3g on [0, 30] at %.9g\n", e, at);
    EXPECT(e <= PHI_TOL, "ld_phif relative error %.3g at %.9g > %.3g", e, at, PHI_TOL);
    double worst_abs = 0;
    for (float x = -12.5f; x > -40; x -= 0.001f) worst_abs = fmax(worst_abs, fabs(ld_phif(x) - ref_phi(x)));
    EXPECT(worst_abs < 1e-35, "ld_phif below -12.5: absolute error %.3g", worst_abs);
    EXPECT(ld_phif(-INFINITY) == 0 && ld_phif(INFINITY) == 1 && ld_phif(-1e30f) == 0 && ld_phif(1e30f) == 1,
           "Phi at the infinities");
    EXPECT(isnan(ld_phif(NAN)), "Phi(NaN) is NaN");
    EXPECT(fabs(ld_phif(1) - 0.8413447460685429) < 1e-7, "Phi(1) = %.9g", ld_phif(1));
    e = worst_rel(ld_normal_pdf, ref_pdf, -13, 13, 1000001, &at);
    printf("ld_normal_pdf: worst relative error %.3g on [-13, 13] at %.9g\n", e, at);
    EXPECT(e <= PDF_TOL, "ld_normal_pdf relative error %.3g at %.9g > %.3g", e, at, PDF_TOL);
    EXPECT(ld_normal_pdf(INFINITY) == 0 && ld_normal_pdf(-INFINITY) == 0 && isnan(ld_normal_pdf(NAN)),
           "pdf at inf and NaN");
}

// The kernels: elementwise results equal the scalar formula bit for bit for
// every element (vector body, scalar tail, any alignment), with 1 and 2 threads.
static void check_kernels(TuRng *rng) {
    size_t n = 1003;  // odd: a scalar tail after the vector body and after each thread's chunk
    float *x = xmalloc((n + 1) * sizeof(float)), *d = xmalloc(n * sizeof(float));
    tu_fill(rng, x, n + 1, -12, 12);
    tu_fill(rng, d, n, -1, 1);
    x[0] = 0, x[1] = -100, x[2] = 100, x[3] = 1e-30f, x[4] = -1e-30f, x[5] = 88.7f, x[6] = -88.7f;
    float *o1 = xmalloc(n * sizeof(float)), *o2 = xmalloc(n * sizeof(float));
    int prev = tu_set_threads(1);
    for (int off = 0; off < 2; off++) {  // off 1: misaligned input
        const float *xi = x + off;
        silu_forward(o1, xi, n);
        int bad = 0;
        for (size_t i = 0; i < n; i++) bad += o1[i] != xi[i] * ld_sigmoidf(xi[i]);
        EXPECT(bad == 0, "silu_forward (offset %d): %d elements differ from the scalar formula", off, bad);
        gelu_forward(o1, xi, n);
        bad = 0;
        for (size_t i = 0; i < n; i++) bad += o1[i] != xi[i] * ld_phif(xi[i]);
        EXPECT(bad == 0, "gelu_forward (offset %d): %d elements differ from the scalar formula", off, bad);
    }
    // tails: silu(100) = 100, silu(-100) = -0 (within 1e-40), gelu likewise
    silu_forward(o1, x, 7);
    EXPECT(o1[0] == 0 && o1[2] == 100 && fabsf(o1[1]) < 1e-40f && o1[3] == 0.5e-30f, "silu at 0, +-100, 1e-30: %g %g %g %g",
           o1[0], o1[1], o1[2], o1[3]);
    gelu_forward(o1, x, 7);
    EXPECT(o1[0] == 0 && o1[2] == 100 && fabsf(o1[1]) < 1e-40f, "gelu at 0, +-100: %g %g %g", o1[0], o1[1], o1[2]);
    float nanv = NAN, on;
    silu_forward(&on, &nanv, 1);
    EXPECT(isnan(on), "silu(NaN) is NaN");
    gelu_forward(&on, &nanv, 1);
    EXPECT(isnan(on), "gelu(NaN) is NaN");
    // 1 vs 2 threads, forward and (accumulating) backward of each kernel
    int H = 17, N = (int)(n / 2 / H);
    for (int k = 0; k < 6; k++) {
        float *out[2] = {o1, o2};
        for (int t = 0; t < 2; t++) {
            tu_set_threads(t + 1);
            memcpy(out[t], d, n * sizeof(float));  // backward accumulates onto d
            switch (k) {
            case 0: silu_forward(out[t], x, n); break;
            case 1: silu_backward(out[t], d, x, n); break;
            case 2: gelu_forward(out[t], x, n); break;
            case 3: gelu_backward(out[t], d, x, n); break;
            case 4: geglu_forward(out[t], x, N, H); break;
            default: geglu_backward(out[t], d, x, N, H); break;
            }
        }
        EXPECT(memcmp(o1, o2, n * sizeof(float)) == 0, "kernel %d: 1 and 2 threads differ", k);
    }
    tu_set_threads(prev);
    free(x), free(d), free(o1), free(o2);
}

int main(void) {
    TuRng rng;
    tu_rng_seed(&rng, 13);
    check_exp();
    check_phi_pdf();
    check_kernels(&rng);
    return tu_report("test_vecmath");
}
