// schedule.h — the DDPM noise schedule (betas, alphas_cumprod) and the forward
// process q(x_t | x_0), plus the training draws of timesteps and noise.
//
// Draw conventions (rank-count independent: each value is a pure function of
// the seed, the optimizer step s and the *global* sample index g within that
// step's batch, so splitting a batch across ranks changes nothing):
//   t(s, g)        = rng_below(seed, RNG_TIMESTEP, s * 2^32 + g, T)
//   key(s, g)      = rng_bits(seed, RNG_NOISE, s * 2^32 + g)
//   noise(s, g)[j] = rng_normal(key(s, g), RNG_NOISE, j),  j in [0, numel)
// The per-sample key keeps the element index j out of the step/sample index,
// so no (s, g, j) combination can wrap around 2^64 and collide.
// Requires 0 <= s < 2^32 and 0 <= g < 2^32.
#ifndef LD_SCHEDULE_H
#define LD_SCHEDULE_H
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "io/config.h"

typedef struct {
    int T;                   // training timesteps
    double *betas;           // [T]
    double *alphas_cumprod;  // [T]: prod_{i<=t} (1 - beta_i)
} Schedule;

// Builds the schedule in double:
//   "linear":        beta_t = linspace(beta_start, beta_end, T)[t]
//   "scaled_linear": beta_t = linspace(sqrt(beta_start), sqrt(beta_end), T)[t]^2  (SD)
// where linspace(a, b, T)[t] = a + t * (b - a) / (T - 1), and [T-1] = b exactly
// (numpy's rounding). Returns -1 + e on an unknown schedule or bad values.
int schedule_init(Schedule *s, const DiffusionConfig *dc, Error *e);
void schedule_free(Schedule *s);

// x_t = sqrt(ac[t_b]) x0 + sqrt(1 - ac[t_b]) eps for each sample b of a batch
// of B samples of numel floats each; t[b] in [0, T). xt may alias x0 or eps.
void schedule_q_sample(const Schedule *s, float *xt, const float *x0, const float *eps,
                       const int *t, int B, size_t numel);

// Timesteps of global samples g0 .. g0+n-1 at optimizer step `step` (see above).
void schedule_draw_timesteps(int *t, int n, int T, uint64_t seed, uint64_t step, uint64_t g0);

// Noise [n, numel] of global samples g0 .. g0+n-1 at optimizer step `step`.
void schedule_draw_noise(float *eps, int n, size_t numel, uint64_t seed, uint64_t step,
                         uint64_t g0);
#endif
