// numerics.c — see numerics.h.
#include "core/numerics.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

// An exponent of all ones (0x7f8) is Inf or NaN. Adding one exponent unit
// carries into the sign bit exactly then, so an OR of these stays branch-free
// and vectorises.
static inline uint32_t nonfinite_bit(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    return ((b & 0x7f800000u) + 0x00800000u) & 0x80000000u;
}

int all_finite(const float *x, size_t n) {
    uint32_t bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n > (1u << 16))
    for (size_t i = 0; i < n; i++) bad |= nonfinite_bit(x[i]);
    return bad == 0;
}

size_t first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (nonfinite_bit(x[i])) return i;
    return n;
}

int check_step_finite(long step, double loss, const float *grads, size_t n, Error *e) {
    if (!isfinite(loss))
        return errorf(e, "step %ld: the loss is not finite (%s)", step, isnan(loss) ? "NaN" : "infinite");
    if (grads && !all_finite(grads, n)) {
        size_t i = first_nonfinite(grads, n);
        return errorf(e, "step %ld: the gradient is not finite (element %zu of %zu is %s)", step, i, n,
                      isnan(grads[i]) ? "NaN" : "infinite");
    }
    return 0;
}
