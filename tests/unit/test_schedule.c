// test_schedule.c — the noise schedule against diffusers' formula, the forward
// process q(x_t | x_0), and the training draws: same timesteps and noise for a
// global sample however a batch is split (what makes training rank-count
// independent).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/rng.h"
#include "diffusion/schedule.h"
#include "testutil.h"

static DiffusionConfig dcfg(BetaSchedule kind, double b0, double b1, int T) {
    DiffusionConfig d;
    memset(&d, 0, sizeof d);
    d.schedule = kind;
    d.beta_start = b0, d.beta_end = b1, d.timesteps = T;
    return d;
}

// Reference values, computed once with numpy (float64), diffusers' formulas:
//   b = np.linspace(0.00085**0.5, 0.012**0.5, 1000)**2; ac = np.cumprod(1 - b)
//   b = np.linspace(0.0001, 0.02, 1000);                ac = np.cumprod(1 - b)
// (diffusers itself keeps them in float32: within 2e-7 of these.)
static void check_values(void) {
    Error e;
    Schedule s;
    DiffusionConfig d = dcfg(BETA_SCALED_LINEAR, 0.00085, 0.012, 1000);
    CHECK(schedule_init(&s, &d, &e) == 0);
    const int ts[3] = {0, 499, 999};
    const double beta[3] = {0.00085, 0.004803792980550717, 0.012};
    const double ac[3] = {0.99915, 0.27766965045646763, 0.004660098513077238};
    for (int i = 0; i < 3; i++) {
        EXPECT(fabs(s.betas[ts[i]] - beta[i]) < 1e-12, "scaled_linear beta[%d] = %.17g, want %.17g",
               ts[i], s.betas[ts[i]], beta[i]);
        EXPECT(fabs(s.alphas_cumprod[ts[i]] - ac[i]) < 1e-12,
               "scaled_linear ac[%d] = %.17g, want %.17g", ts[i], s.alphas_cumprod[ts[i]], ac[i]);
    }
    schedule_free(&s);

    d = dcfg(BETA_LINEAR, 0.0001, 0.02, 1000);
    CHECK(schedule_init(&s, &d, &e) == 0);
    const double lbeta[3] = {0.0001, 0.010040040040040039, 0.02};
    const double lac[3] = {0.9999, 0.07858724288177824, 4.035829765375676e-05};
    for (int i = 0; i < 3; i++) {
        EXPECT(fabs(s.betas[ts[i]] - lbeta[i]) < 1e-12, "linear beta[%d] = %.17g", ts[i],
               s.betas[ts[i]]);
        EXPECT(fabs(s.alphas_cumprod[ts[i]] - lac[i]) < 1e-12, "linear ac[%d] = %.17g", ts[i],
               s.alphas_cumprod[ts[i]]);
    }
    schedule_free(&s);

    d = dcfg((BetaSchedule)7, 0.0001, 0.02, 1000);  // not one the config can store
    EXPECT(schedule_init(&s, &d, &e) < 0 && strstr(e.msg, "diffusion.schedule"),
           "unknown schedule is an error naming the key: %s", e.msg);
    d = dcfg(BETA_LINEAR, 0.02, 0.0001, 1000);
    EXPECT(schedule_init(&s, &d, &e) < 0, "beta_start > beta_end is an error");
}

static void check_q_sample(void) {
    Error e;
    Schedule s;
    DiffusionConfig d = dcfg(BETA_SCALED_LINEAR, 0.00085, 0.012, 1000);
    CHECK(schedule_init(&s, &d, &e) == 0);
    enum { B = 3, N = 5 };
    float x0[B * N], eps[B * N], xt[B * N];
    TuRng r;
    tu_rng_seed(&r, 5);
    tu_fill(&r, x0, B * N, -1, 1);
    tu_fill(&r, eps, B * N, -2, 2);
    int t[B] = {0, 499, 999};
    schedule_q_sample(&s, xt, x0, eps, t, B, N);
    double err = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < N; j++) {
            double ac = s.alphas_cumprod[t[b]];
            double want = sqrt(ac) * x0[b * N + j] + sqrt(1 - ac) * eps[b * N + j];
            err = fmax(err, fabs(xt[b * N + j] - want));
        }
    EXPECT(err < 1e-6, "q_sample = sqrt(ac) x0 + sqrt(1-ac) eps per sample (err %g)", err);
    // in place on x0 gives the same
    float y[B * N];
    memcpy(y, x0, sizeof y);
    schedule_q_sample(&s, y, y, eps, t, B, N);
    EXPECT(!memcmp(y, xt, sizeof y), "q_sample may write over x0");
    schedule_free(&s);
}

// Drawing for global samples 0..7 in one call equals two calls of 4 (two
// ranks), and matches the documented index formula.
static void check_draws_split(void) {
    enum { G = 8, N = 37, T = 1000 };
    const uint64_t seed = 1234, step = 17;
    int t_all[G], t_split[G];
    float n_all[G * N], n_split[G * N];
    schedule_draw_timesteps(t_all, G, T, seed, step, 0);
    schedule_draw_timesteps(t_split, 4, T, seed, step, 0);
    schedule_draw_timesteps(t_split + 4, 4, T, seed, step, 4);
    EXPECT(!memcmp(t_all, t_split, sizeof t_all), "timesteps independent of the batch split");
    schedule_draw_noise(n_all, G, N, seed, step, 0);
    schedule_draw_noise(n_split, 4, N, seed, step, 0);
    schedule_draw_noise(n_split + 4 * N, 4, N, seed, step, 4);
    EXPECT(!memcmp(n_all, n_split, sizeof n_all), "noise independent of the batch split");

    int ok = 1;
    for (int g = 0; g < G; g++) {
        uint64_t idx = step * 4294967296ULL + (uint64_t)g;
        ok &= t_all[g] == (int)rng_below(seed, RNG_TIMESTEP, idx, T);
        uint64_t key = rng_bits(seed, RNG_NOISE, idx);
        for (int j = 0; j < N; j++) ok &= n_all[g * N + j] == rng_normal(key, RNG_NOISE, (uint64_t)j);
    }
    EXPECT(ok, "draws follow the documented (s * 2^32 + g) formulas");

    int t_next[G];
    schedule_draw_timesteps(t_next, G, T, seed, step + 1, 0);
    EXPECT(memcmp(t_all, t_next, sizeof t_all) != 0, "another step draws other timesteps");
    float n_next[G * N];
    schedule_draw_noise(n_next, G, N, seed + 1, step, 0);
    EXPECT(memcmp(n_all, n_next, sizeof n_all) != 0, "another seed draws other noise");
}

// Rough distribution checks: t uniform over [0, T), noise N(0, 1).
static void check_draw_stats(void) {
    enum { G = 4096, N = 16, T = 1000 };
    static int t[G];
    static float n[G * N];
    schedule_draw_timesteps(t, G, T, 99, 3, 0);
    double mean = 0;
    int lo = T, hi = -1;
    for (int g = 0; g < G; g++) {
        mean += t[g];
        lo = t[g] < lo ? t[g] : lo;
        hi = t[g] > hi ? t[g] : hi;
    }
    mean /= G;
    EXPECT(lo >= 0 && hi < T && lo < 10 && hi > T - 10, "timesteps cover [0, T): %d..%d", lo, hi);
    EXPECT(fabs(mean - (T - 1) / 2.0) < 15, "timestep mean %g near %g", mean, (T - 1) / 2.0);
    schedule_draw_noise(n, G, N, 99, 3, 0);
    double m = 0, v = 0;
    for (int i = 0; i < G * N; i++) m += n[i];
    m /= G * N;
    for (int i = 0; i < G * N; i++) v += (n[i] - m) * (n[i] - m);
    v /= G * N;
    EXPECT(fabs(m) < 0.02 && fabs(v - 1) < 0.03, "noise mean %g var %g", m, v);
}

int main(void) {
    check_values();
    check_q_sample();
    check_draws_split();
    check_draw_stats();
    return tu_report("test_schedule");
}
