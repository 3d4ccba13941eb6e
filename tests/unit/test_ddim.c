// test_ddim.c — DDIM against diffusers' DDIMScheduler (timesteps and single
// updates, references hard-coded from diffusers 0.27), the sampling loop on a
// U-Net whose output is a known constant (recomputed here step by step, noise
// keys included), and the sampler's contracts on a random U-Net: determinism,
// eta, classifier-free guidance, batch splitting.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "diffusion/ddim.h"
#include "core/rng.h"
#include "testutil.h"

static Schedule sd_schedule(void) {
    DiffusionConfig d;
    memset(&d, 0, sizeof d);
    d.schedule = BETA_SCALED_LINEAR;
    d.beta_start = 0.00085, d.beta_end = 0.012, d.timesteps = 1000;
    Schedule s;
    Error e;
    CHECK(schedule_init(&s, &d, &e) == 0);
    return s;
}

// diffusers: DDIMScheduler(...).set_timesteps(n); timesteps[:3], timesteps[-2:]
static void check_timesteps(void) {
    Error e;
    static int ts[1000];
    EXPECT(ddim_timesteps(1000, 10, ts, &e) == 100 && ts[0] == 900 && ts[1] == 800 &&
               ts[8] == 100 && ts[9] == 0,
           "10 steps: 900, 800, ..., 100, 0");
    EXPECT(ddim_timesteps(1000, 7, ts, &e) == 142 && ts[0] == 852 && ts[1] == 710 &&
               ts[2] == 568 && ts[5] == 142 && ts[6] == 0,
           "7 steps: 852, 710, 568, ..., 142, 0 (leading spacing)");
    EXPECT(ddim_timesteps(1000, 1000, ts, &e) == 1 && ts[0] == 999 && ts[999] == 0,
           "1000 steps: 999 .. 0");
    EXPECT(ddim_timesteps(1000, 0, ts, &e) < 0 && strstr(e.msg, "sample.steps"), "0 steps: error");
    EXPECT(ddim_timesteps(1000, 1001, ts, &e) < 0, "more steps than T: error");
}

// diffusers 0.27.2 (float32), 10 inference steps so prev = t - 100:
//   s = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
//                     clip_sample=CLIP, set_alpha_to_one=True, steps_offset=0)
//   s.set_timesteps(10); s.step(eps, t, x, eta=ETA, variance_noise=z).prev_sample
static void check_step_vs_diffusers(void) {
    Schedule s = sd_schedule();
    const float x[6] = {0.3f, -1.2f, 2.5f, -0.05f, 0.9f, -2.0f};
    const float eps[6] = {0.1f, -0.7f, 1.1f, 0.4f, -0.3f, -1.5f};
    const float z[6] = {-0.6f, 0.2f, 1.3f, -0.9f, 0.05f, 0.8f};
    const struct {
        int clip, t;
        double eta;
        float want[6];
    } cases[] = {
        {1, 900, 0.0, {0.290153772f, -0.878989041f, 1.27154589f, 0.200542286f, -0.102403089f, -1.66410267f}},
        {1, 500, 1.0, {0.00486710668f, -0.928251147f, 1.93685555f, -0.739526749f, 0.514110029f, -1.04882693f}},
        {0, 900, 0.0, {0.422111392f, -1.50206268f, 3.35192108f, -0.329217136f, 1.63910007f, -2.29634547f}},
        {0, 300, 0.5, {0.204601258f, -1.13718593f, 2.77228498f, -0.323135614f, 1.10399532f, -1.72422838f}},
        {1, 0, 0.0, {0.297210842f, -1.0f, 1.0f, -0.0616882779f, 0.909133017f, -1.0f}},
        {0, 0, 1.0, {0.297210842f, -1.18009305f, 2.46897888f, -0.0616882779f, 0.909133017f, -1.95709932f}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float y[6];
        memcpy(y, x, sizeof y);
        int prev = cases[c].t - 100;
        double ac_prev = prev >= 0 ? s.alphas_cumprod[prev] : 1.0;
        ddim_step(y, eps, z, 6, s.alphas_cumprod[cases[c].t], ac_prev, cases[c].eta,
                  cases[c].clip);
        // diffusers works in float32 (alphas included): agree to float precision
        double err = tu_max_rel_err(y, cases[c].want, 6, 1.0);
        EXPECT(err < 2e-6, "step clip=%d t=%d eta=%g matches diffusers (rel err %g)",
               cases[c].clip, cases[c].t, cases[c].eta, err);
    }
    schedule_free(&s);
}

static void tiny_config(ModelConfig *m) { tu_tiny_model(m, 1, 1, 8, 1); }

enum { B = 2, C = 1, H = 8, W = 8, L = 3, D = 6, N = B * C * H * W };

static SampleConfig scfg(int steps, double eta, double guidance, long seed) {
    SampleConfig sc;
    memset(&sc, 0, sizeof sc);
    sc.steps = steps, sc.eta = eta, sc.guidance = guidance, sc.per_class = B, sc.seed = seed;
    return sc;
}

// All weights zero except conv_out's bias = k: the U-Net predicts eps = k
// everywhere, so the whole loop can be recomputed here in double.
static void check_loop_constant_eps(void) {
    ModelConfig m;
    tiny_config(&m);
    Error e;
    UNet *u = unet_create(&m, NULL, &e);
    CHECK(u);
    const float k = 0.3f;
    u->params[u->conv_out_b] = k;
    Schedule s = sd_schedule();
    float ctx[B * L * D] = {0};
    for (int pass = 0; pass < 4; pass++) {
        double eta = pass & 1 ? 1.0 : 0.0;
        int clip = pass < 2;
        SampleConfig sc = scfg(5, eta, 1.0, 42);
        DdimOptions o = {.clip_x0 = clip, .first_sample = 3};
        float out[N];
        CHECK(ddim_sample_opts(u, &s, &sc, &o, ctx, NULL, B, C, H, W, L, out, &e) == 0);
        double err = 0;
        const int numel = C * H * W;
        for (int b = 0; b < B; b++) {
            uint64_t key = rng_bits(42, RNG_SAMPLE, (uint64_t)(3 + b));
            for (int j = 0; j < numel; j++) {
                double x = rng_normal(key, RNG_SAMPLE, (uint64_t)j);
                for (int i = 0; i < 5; i++) {
                    int t = 800 - 200 * i, prev = t - 200;
                    double at = s.alphas_cumprod[t];
                    double ap = prev >= 0 ? s.alphas_cumprod[prev] : 1.0;
                    double x0 = (x - sqrt(1 - at) * k) / sqrt(at);
                    if (clip) x0 = fmin(1.0, fmax(-1.0, x0));
                    double sig = eta * sqrt((1 - ap) / (1 - at)) * sqrt(1 - at / ap);
                    x = sqrt(ap) * x0 + sqrt(fmax(0.0, 1 - ap - sig * sig)) * k;
                    if (sig > 0)
                        x += sig * rng_normal(key, RNG_SAMPLE, (uint64_t)(i + 1) * numel + j);
                }
                err = fmax(err, fabs(x - out[b * numel + j]));
            }
        }
        EXPECT(err < 1e-5, "constant-eps loop (eta %g, clip %d) = recomputation (err %g)", eta,
               clip, err);
    }
    schedule_free(&s);
    unet_free(u);
}

static void init_params(UNet *u, uint64_t seed) {
    TuRng r;
    tu_rng_seed(&r, seed);
    for (int i = 0; i < u->pt.n; i++) {
        const ParamTensor *t = &u->pt.t[i];
        float *p = u->params + t->offset;
        int is_norm_w = strstr(t->name, "norm") && strstr(t->name, ".weight");
        float fan = t->ndim >= 2 ? (float)(t->numel / (size_t)t->shape[0]) : 1.0f;
        for (size_t j = 0; j < t->numel; j++)
            p[j] = is_norm_w ? 1.0f + tu_uniform(&r, -0.2f, 0.2f)
                             : tu_uniform(&r, -1, 1) * (t->ndim >= 2 ? 1.2f / sqrtf(fan) : 0.1f);
    }
}

static int differs(const float *a, const float *b, int n) { return memcmp(a, b, n * sizeof *a) != 0; }

// Guidance g by hand: the loop of ddim_sample written out with ddim_step.
static void manual_guided(UNet *u, const Schedule *s, const float *cond, const float *unc,
                          double g, int steps, long seed, float *x) {
    Error e;
    int ts[64];
    int r = ddim_timesteps(s->T, steps, ts, &e);
    const int numel = C * H * W;
    for (int b = 0; b < B; b++)
        rng_normal_fill(x + b * numel, numel, rng_bits((uint64_t)seed, RNG_SAMPLE, (uint64_t)b),
                        RNG_SAMPLE, 0);
    float ec[N], eu[N], tb[B];
    for (int i = 0; i < steps; i++) {
        tb[0] = tb[1] = (float)ts[i];
        CHECK(unet_forward(u, ec, x, tb, cond, B, H, W, L, NULL, &e) == 0);
        CHECK(unet_forward(u, eu, x, tb, unc, B, H, W, L, NULL, &e) == 0);
        for (int j = 0; j < N; j++) ec[j] = eu[j] + (float)g * (ec[j] - eu[j]);
        int prev = ts[i] - r;
        ddim_step(x, ec, NULL, N, s->alphas_cumprod[ts[i]],
                  prev >= 0 ? s->alphas_cumprod[prev] : 1.0, 0.0, 1);
    }
}

static void check_contracts(void) {
    ModelConfig m;
    tiny_config(&m);
    Error e;
    UNet *u = unet_create(&m, NULL, &e);
    CHECK(u);
    init_params(u, 7);
    Schedule s = sd_schedule();
    TuRng r;
    tu_rng_seed(&r, 11);
    float cond[B * L * D], unc[B * L * D];
    tu_fill(&r, cond, B * L * D, -1, 1);
    tu_fill(&r, unc, B * L * D, -0.1f, 0.1f);

    float a[N], b[N], c[N], d[N];
    SampleConfig sc = scfg(6, 0.0, 3.0, 5);
    CHECK(ddim_sample(u, &s, &sc, cond, unc, B, C, H, W, L, a, &e) == 0);
    CHECK(ddim_sample(u, &s, &sc, cond, unc, B, C, H, W, L, b, &e) == 0);
    EXPECT(!differs(a, b, N), "same seed: bit-identical samples");
    int finite = 1;
    for (int j = 0; j < N; j++) finite &= isfinite(a[j]) && fabsf(a[j]) <= 1.0f + 1e-6f;
    EXPECT(finite, "samples finite and in [-1, 1] (clip on, eta 0)");
    sc.seed = 6;
    CHECK(ddim_sample(u, &s, &sc, cond, unc, B, C, H, W, L, c, &e) == 0);
    EXPECT(differs(a, c, N), "another seed: other samples");

    // guidance 3 == the loop written out by hand
    manual_guided(u, &s, cond, unc, 3.0, 6, 5, d);
    EXPECT(tu_max_rel_err(a, d, N, 1.0) < 1e-6, "guidance = uncond + g (cond - uncond)");

    // eta: 0 is deterministic given x_T, 1 adds noise; eta 1 is reproducible too
    sc = scfg(6, 1.0, 3.0, 5);
    CHECK(ddim_sample(u, &s, &sc, cond, unc, B, C, H, W, L, b, &e) == 0);
    CHECK(ddim_sample(u, &s, &sc, cond, unc, B, C, H, W, L, c, &e) == 0);
    EXPECT(differs(a, b, N), "eta 1 differs from eta 0");
    EXPECT(!differs(b, c, N), "eta 1 with the same seed: bit-identical");

    // guidance 1: one conditional pass, the unconditional context is not used
    sc = scfg(6, 0.0, 1.0, 5);
    CHECK(ddim_sample(u, &s, &sc, cond, unc, B, C, H, W, L, a, &e) == 0);
    CHECK(ddim_sample(u, &s, &sc, cond, NULL, B, C, H, W, L, b, &e) == 0);
    EXPECT(!differs(a, b, N), "guidance 1 == no guidance");
    // guidance 0 is the unconditional model
    sc.guidance = 0.0;
    CHECK(ddim_sample(u, &s, &sc, cond, unc, B, C, H, W, L, c, &e) == 0);
    sc.guidance = 1.0;
    CHECK(ddim_sample(u, &s, &sc, unc, NULL, B, C, H, W, L, d, &e) == 0);
    EXPECT(!differs(c, d, N), "guidance 0 == sampling with the unconditional context");
    EXPECT(differs(a, c, N), "the context matters");

    // noise keyed by global sample: two calls of one sample == one call of two
    sc = scfg(4, 1.0, 2.0, 9);
    CHECK(ddim_sample(u, &s, &sc, cond, unc, B, C, H, W, L, a, &e) == 0);
    DdimOptions o = {.clip_x0 = 1, .first_sample = 0};
    CHECK(ddim_sample_opts(u, &s, &sc, &o, cond, unc, 1, C, H, W, L, b, &e) == 0);
    o.first_sample = 1;
    CHECK(ddim_sample_opts(u, &s, &sc, &o, cond + L * D, unc + L * D, 1, C, H, W, L,
                           b + C * H * W, &e) == 0);
    EXPECT(tu_max_rel_err(a, b, N, 1.0) < 1e-5, "split across calls == one batch (err %g)",
           tu_max_rel_err(a, b, N, 1.0));

    // argument errors
    sc = scfg(6, 0.0, 3.0, 5);
    EXPECT(ddim_sample(u, &s, &sc, cond, NULL, B, C, H, W, L, a, &e) < 0 &&
               strstr(e.msg, "unconditional"),
           "guidance without an unconditional context: %s", e.msg);
    EXPECT(ddim_sample(u, &s, &sc, cond, unc, B, 3, H, W, L, a, &e) < 0 &&
               strstr(e.msg, "channels"),
           "channel mismatch: %s", e.msg);
    sc.steps = 2000;
    EXPECT(ddim_sample(u, &s, &sc, cond, unc, B, C, H, W, L, a, &e) < 0, "too many steps");
    sc.steps = 4;
    EXPECT(ddim_sample(u, &s, &sc, cond, unc, B, C, 5, 5, L, a, &e) < 0,
           "U-Net shape error passes through: %s", e.msg);
    schedule_free(&s);
    unet_free(u);
}

int main(void) {
    check_timesteps();
    check_step_vs_diffusers();
    check_loop_constant_eps();
    check_contracts();
    return tu_report("test_ddim");
}
