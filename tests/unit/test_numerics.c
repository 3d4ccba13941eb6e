// test_numerics.c — the NaN/Inf guard: every non-finite pattern is caught
// wherever it sits (serial and OpenMP paths), finite extremes are not, and
// the stop message names the step.
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/numerics.h"
#include "testutil.h"

static float from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}

int main(void) {
    const size_t sizes[] = {1, 7, 1000, (1u << 16) + 3, 3u << 20};
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY, from_bits(0x7f800001u), from_bits(0xffc00001u)};
    const float good[] = {FLT_MAX, -FLT_MAX, FLT_MIN, 1e-45f, -0.0f, from_bits(0x7f7fffffu)};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        float *x = calloc(n, sizeof *x);
        for (size_t i = 0; i < n; i++) x[i] = good[i % 6];
        EXPECT(all_finite(x, n) && first_nonfinite(x, n) == n, "n=%zu: finite extremes flagged", n);
        size_t at[3] = {0, n / 2, n - 1};
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 6; b++) {
                float keep = x[at[a]];
                x[at[a]] = bad[b];
                EXPECT(!all_finite(x, n), "n=%zu: bad value %d at %zu missed", n, b, at[a]);
                EXPECT(first_nonfinite(x, n) == at[a], "n=%zu: first_nonfinite %zu, want %zu", n,
                       first_nonfinite(x, n), at[a]);
                x[at[a]] = keep;
            }
        free(x);
    }
    EXPECT(all_finite(NULL, 0), "empty is finite");

    Error e = {0};
    float g[4] = {1, 2, 3, 4};
    EXPECT(check_step_finite(12, 0.5, g, 4, &e) == 0, "finite step flagged");
    EXPECT(check_step_finite(12, NAN, g, 4, &e) == -1 && strstr(e.msg, "step 12") && strstr(e.msg, "NaN"),
           "NaN loss: %s", e.msg);
    EXPECT(check_step_finite(13, INFINITY, NULL, 0, &e) == -1 && strstr(e.msg, "step 13"), "Inf loss: %s", e.msg);
    g[2] = -INFINITY;
    EXPECT(check_step_finite(14, 0.5, g, 4, &e) == -1 && strstr(e.msg, "step 14") && strstr(e.msg, "element 2"),
           "Inf gradient: %s", e.msg);
    return tu_report("test_numerics");
}
