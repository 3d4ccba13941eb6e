// kernel_check.h — shared helpers for the test_kernel_*.c tests: float/double
// copies of random data, central finite differences of a double-precision
// reference loss, and error measures that see through pre-filled (accumulated)
// gradient buffers. Header-only because each test is its own executable.
#ifndef LD_KERNEL_CHECK_H
#define LD_KERNEL_CHECK_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "testutil.h"

// Forward against the reference and backward against finite differences.
#define KC_FWD_TOL 2e-5
#define KC_BWD_TOL 1e-3

static inline float *kc_rand(TuRng *r, size_t n, float lo, float hi) {
    float *p = xmalloc(n * sizeof(float));
    tu_fill(r, p, n, lo, hi);
    return p;
}

static inline double *kc_dup(const float *x, size_t n) {
    double *d = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static inline float *kc_fcopy(const float *x, size_t n) {
    float *d = xmalloc(n * sizeof(float));
    memcpy(d, x, n * sizeof(float));
    return d;
}

// max |a - b| / max(max |b|, floor) with a reference in double.
static inline double kc_rel_err(const float *a, const double *b, size_t n, double floor) {
    double scale = floor, err = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= err)) err = isnan(d) ? INFINITY : d;
    }
    return err / scale;
}

// The same for an accumulated gradient: compares (got - prefill) with ref.
static inline double kc_rel_err_acc(const float *got, const float *prefill, const double *ref,
                                    size_t n, double floor) {
    double scale = floor, err = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
        double d = fabs(((double)got[i] - prefill[i]) - ref[i]);
        if (!(d <= err)) err = isnan(d) ? INFINITY : d;
    }
    return err / scale;
}

typedef double (*KcLoss)(void *ctx);

// d loss / d x[i] by central differences, x perturbed in place and restored.
static inline void kc_fd_grad(KcLoss loss, void *ctx, double *x, size_t n, double *g) {
    for (size_t i = 0; i < n; i++) {
        double save = x[i], h = 1e-5 * (fabs(save) > 1 ? fabs(save) : 1);
        x[i] = save + h;
        double lp = loss(ctx);
        x[i] = save - h;
        double lm = loss(ctx);
        x[i] = save;
        g[i] = (lp - lm) / (2 * h);
    }
}

static inline double kc_dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// One named comparison: prints the case on failure.
static inline void kc_expect_close(double err, double tol, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void kc_expect_close(double err, double tol, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    EXPECT(err <= tol, "%s: rel err %.3g > %.3g", what, err, tol);
}
#endif
