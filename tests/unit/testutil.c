// testutil.c — see testutil.h.
#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

int tu_failures = 0;
int tu_checks = 0;

void tu_expect(int ok, const char *file, int line, const char *expr, const char *fmt, ...) {
    tu_checks++;
    if (ok) return;
    tu_failures++;
    fprintf(stderr, "FAIL %s:%d: %s: ", file, line, expr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void tu_rng_seed(TuRng *r, uint64_t seed) { r->s = seed * 2685821657736338717ULL + 1; }

float tu_uniform(TuRng *r, float lo, float hi) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    uint64_t v = r->s * 2685821657736338717ULL;
    return lo + (hi - lo) * (float)((v >> 40) * (1.0 / 16777216.0));
}

void tu_fill(TuRng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = tu_uniform(r, lo, hi);
}

double tu_max_rel_err(const float *a, const float *b, size_t n, double floor) {
    double scale = floor, err = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
        double d = fabs((double)a[i] - b[i]);
        if (d > err || isnan(d)) err = isnan(d) ? INFINITY : d;
    }
    return err / scale;
}

int tu_report(const char *name) {
    printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}
