// ddim.h — DDIM sampling (Song et al. 2021) with classifier-free guidance, as
// diffusers' DDIMScheduler with its SD defaults: "leading" timestep spacing,
// steps_offset 0, set_alpha_to_one, epsilon prediction, and the model's own
// eps in the direction term (use_clipped_model_output = False).
//
// With r = T / steps (integer division), step i = 0 .. steps-1 runs at
// t = (steps-1-i) * r with ac_prev = ac[t - r], or 1 when t - r < 0, and
//   eps     = eps_u + g * (eps_c - eps_u)         (g = guidance; one pass when g == 1)
//   x0      = (x - sqrt(1 - ac_t) eps) / sqrt(ac_t), clamped to [-1, 1] when clipping
//   sigma   = eta * sqrt((1 - ac_prev) / (1 - ac_t)) * sqrt(1 - ac_t / ac_prev)
//   x_prev  = sqrt(ac_prev) x0 + sqrt(1 - ac_prev - sigma^2) eps + sigma z
//
// Noise (deterministic, independent of how samples are split across calls or
// ranks): global sample g = first_sample + b has key(g) = rng_bits(seed,
// RNG_SAMPLE, g); its initial x_T[j] = rng_normal(key(g), RNG_SAMPLE, j) and the
// z of step i is rng_normal(key(g), RNG_SAMPLE, (i + 1) * C*H*W + j).
#ifndef LD_DDIM_H
#define LD_DDIM_H
#include <stddef.h>

#include "core/common.h"
#include "io/config.h"
#include "diffusion/schedule.h"
#include "model/unet.h"

typedef struct {
    int clip_x0;        // clamp the predicted x0 to [-1, 1] (pixel space: 1; latents: 0)
    long first_sample;  // global index of sample 0 of this call (noise keys)
    // SDXL's added conditioning (text_time models; ignored by others): pooled
    // text embeddings [B,P] of the conditional and unconditional passes and
    // the time ids [B,6] of both. NULL: neutral values, pooled zeros (SDXL's
    // empty prompt) and time ids (H, W, 0, 0, H, W).
    const float *pooled_cond, *pooled_uncond, *time_ids;
} DdimOptions;

// Fills ts[0 .. steps) with the timesteps in the order they run (descending).
// Returns the stride T / steps, or -1 + e when steps is not in [1, T].
int ddim_timesteps(int T, int steps, int *ts, Error *e);

// One DDIM update of x [n] in place from eps [n] (formulas above); z [n] is the
// fresh noise, read only when sigma > 0 (may be NULL when eta == 0).
void ddim_step(float *x, const float *eps, const float *z, size_t n, double ac_t, double ac_prev,
               double eta, int clip_x0);

// Samples B images [B,C,H,W] into out with sc->steps, sc->eta, sc->guidance and
// sc->seed. ctx_cond and ctx_uncond are [B,L,cross_attention_dim]; ctx_uncond
// may be NULL when sc->guidance == 1. Clips x0 (pixel space), first_sample 0.
// Returns 0, or -1 + e on a shape or argument error.
int ddim_sample(UNet *u, const Schedule *s, const SampleConfig *sc, const float *ctx_cond,
                const float *ctx_uncond, int B, int C, int H, int W, int L, float *out, Error *e);

// ddim_sample with explicit options (latent space: clip_x0 = 0).
int ddim_sample_opts(UNet *u, const Schedule *s, const SampleConfig *sc, const DdimOptions *o,
                     const float *ctx_cond, const float *ctx_uncond, int B, int C, int H, int W,
                     int L, float *out, Error *e);
#endif
