// schedule.c — see schedule.h.
#include "diffusion/schedule.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"

// numpy.linspace's arithmetic (start + i*step, last point exact), so the
// betas match diffusers' formula to the last bit or two.
static double linspace_at(double a, double b, int T, int i) {
    if (i == T - 1) return b;
    return (double)i * ((b - a) / (double)(T - 1)) + a;
}

int schedule_init(Schedule *s, const DiffusionConfig *dc, Error *e) {
    memset(s, 0, sizeof *s);
    int T = dc->timesteps;
    if (T < 2) return errorf(e, "diffusion.timesteps: need at least 2, got %d", T);
    if (!(dc->beta_start > 0 && dc->beta_end < 1 && dc->beta_start <= dc->beta_end))
        return errorf(e, "diffusion: need 0 < beta_start <= beta_end < 1, got %g and %g",
                      dc->beta_start, dc->beta_end);
    // The config only stores these two; a hand-built DiffusionConfig may hold anything.
    if (dc->schedule != BETA_SCALED_LINEAR && dc->schedule != BETA_LINEAR)
        return errorf(e, "diffusion.schedule: expected \"scaled_linear\" or \"linear\", got value %d",
                      (int)dc->schedule);
    const int scaled = dc->schedule == BETA_SCALED_LINEAR;
    s->T = T;
    s->betas = xmalloc((size_t)T * sizeof(double));
    s->alphas_cumprod = xmalloc((size_t)T * sizeof(double));
    double a = scaled ? sqrt(dc->beta_start) : dc->beta_start;
    double b = scaled ? sqrt(dc->beta_end) : dc->beta_end;
    double ac = 1.0;
    for (int t = 0; t < T; t++) {
        double x = linspace_at(a, b, T, t);
        s->betas[t] = scaled ? x * x : x;
        ac *= 1.0 - s->betas[t];  // sequential, as numpy/torch cumprod
        s->alphas_cumprod[t] = ac;
    }
    return 0;
}

void schedule_free(Schedule *s) {
    free(s->betas);
    free(s->alphas_cumprod);
    memset(s, 0, sizeof *s);
}

void schedule_q_sample(const Schedule *s, float *xt, const float *x0, const float *eps,
                       const int *t, int B, size_t numel) {
    for (int b = 0; b < B; b++) {
        CHECK(t[b] >= 0 && t[b] < s->T);
        float ca = (float)sqrt(s->alphas_cumprod[t[b]]);
        float cn = (float)sqrt(1.0 - s->alphas_cumprod[t[b]]);
        size_t o = (size_t)b * numel;
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < numel; j++) xt[o + j] = ca * x0[o + j] + cn * eps[o + j];
    }
}

// s * 2^32 + g: one 64-bit counter per (step, global sample).
static uint64_t sample_index(uint64_t step, uint64_t g) {
    CHECK(step < (1ULL << 32) && g < (1ULL << 32));
    return (step << 32) | g;
}

void schedule_draw_timesteps(int *t, int n, int T, uint64_t seed, uint64_t step, uint64_t g0) {
    for (int i = 0; i < n; i++)
        t[i] = (int)rng_below(seed, RNG_TIMESTEP, sample_index(step, g0 + (uint64_t)i),
                              (uint64_t)T);
}

void schedule_draw_noise(float *eps, int n, size_t numel, uint64_t seed, uint64_t step,
                         uint64_t g0) {
    for (int i = 0; i < n; i++) {
        uint64_t key = rng_bits(seed, RNG_NOISE, sample_index(step, g0 + (uint64_t)i));
        rng_normal_fill(eps + (size_t)i * numel, numel, key, RNG_NOISE, 0);
    }
}
