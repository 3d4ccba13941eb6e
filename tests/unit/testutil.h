// testutil.h — a tiny test harness: named checks that count failures, and
// the helpers every kernel test needs (seeded random fill, max-error compare).
#ifndef LD_TESTUTIL_H
#define LD_TESTUTIL_H
#include <stddef.h>
#include <stdint.h>

#include "model/model_config.h"
#include "model/safetensors.h"
#include "model/unet.h"

extern int tu_failures;
extern int tu_checks;

#define EXPECT(cond, ...) tu_expect((cond), __FILE__, __LINE__, #cond, __VA_ARGS__)
void tu_expect(int ok, const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

// Deterministic xorshift RNG for test data.
typedef struct { uint64_t s; } TuRng;
void tu_rng_seed(TuRng *r, uint64_t seed);
float tu_uniform(TuRng *r, float lo, float hi);
void tu_fill(TuRng *r, float *x, size_t n, float lo, float hi);

// max |a-b| / max(max|b|, floor): relative error against the reference's scale.
double tu_max_rel_err(const float *a, const float *b, size_t n, double floor);

// A fixture tensor as float32 (caller frees), its shape into shape (if not
// NULL); a missing tensor or a read error ends the test program.
float *tu_read_tensor(const StFile *f, const char *name, int64_t *shape);

// The small two-stage U-Net the model-level tests share: 8 and 16 channels,
// cross-attention (2 and 4 heads) in the first down stage, the mid block and the
// last up stage, 6-wide contexts of 3 tokens, 4 norm groups. Tests adjust fields
// after the call where they need another shape.
void tu_tiny_model(ModelConfig *m, int in_channels, int out_channels, int sample_size,
                   int layers_per_block);

// A reference fixture's U-Net (tests/reference/fixtures/MODEL.cfg and
// MODEL_weights.safetensors) at granularity g, with norm_eps scaled by
// eps_factor (1 for the fixture as made); any error ends the test program.
UNet *tu_load_fixture(const char *model, double eps_factor, Granularity g);
// u without the candidates of rm (absent: no parameters), the kept weights copied by name.
UNet *tu_pruned_copy(const UNet *u, const uint8_t *rm);

// A reference fixture's inputs (MODEL_io.safetensors): sample, timesteps,
// context, the loss weight R, pooled/time_ids where present, and the loss
// weights Q of u's taps (the gradients the taps receive).
typedef struct {
    float *sample, *t, *ctx, *R;
    float *Q[2 * LD_MAX_BLOCKS + 1];
    UNetAdded add;
    int B, H, W, L, n_q;
} TuInputs;
void tu_read_inputs(const StFile *io, const UNet *u, TuInputs *in);
// One reference case: opens MODEL_io.safetensors into io (the caller closes
// it), loads the fixture's U-Net at the granularity of the case's removed
// layers (*removed: their names) and reads its inputs into in.
UNet *tu_load_case(const char *model, StFile *io, const char **removed, TuInputs *in);
void tu_free_inputs(TuInputs *in);

// Sets the OpenMP thread count for what follows; returns the previous one.
// Thousands of passes of a tiny U-Net spend >90% of their time in OpenMP
// fork/join barriers (worse on a loaded machine, where a team waits for a
// descheduled thread in every region), not in arithmetic: tests that use such
// passes as a reference (finite differences, score sweeps) run them on one
// thread. The threaded kernels are checked by test_kernel_* and test_reference.
int tu_set_threads(int n);

// Prints "name: N checks, M failed" and returns the process exit status.
int tu_report(const char *name);
#endif
