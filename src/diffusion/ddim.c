// ddim.c — see ddim.h.
#include "diffusion/ddim.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"

int ddim_timesteps(int T, int steps, int *ts, Error *e) {
    if (steps < 1 || steps > T)
        return errorf(e, "sample.steps: need 1 .. %d (the training timesteps), got %d", T, steps);
    int r = T / steps;
    for (int i = 0; i < steps; i++) ts[i] = (steps - 1 - i) * r;
    return r;
}

void ddim_step(float *x, const float *eps, const float *z, size_t n, double ac_t, double ac_prev,
               double eta, int clip_x0) {
    double sa = sqrt(ac_t), sb = sqrt(1.0 - ac_t), sa_prev = sqrt(ac_prev);
    double var = (1.0 - ac_prev) / (1.0 - ac_t) * (1.0 - ac_t / ac_prev);
    double sigma = eta * sqrt(var > 0 ? var : 0);
    double dir2 = 1.0 - ac_prev - sigma * sigma;
    double dir = sqrt(dir2 > 0 ? dir2 : 0);  // rounding can make 0 slightly negative
    if (sigma > 0) CHECK(z);
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < n; j++) {
        double x0 = ((double)x[j] - sb * eps[j]) / sa;
        if (clip_x0) x0 = x0 < -1 ? -1 : x0 > 1 ? 1 : x0;
        double xp = sa_prev * x0 + dir * eps[j];
        if (sigma > 0) xp += sigma * z[j];
        x[j] = (float)xp;
    }
}

// Noise of draw `d` (0: x_T, i+1: z of step i) for samples first .. first+B-1.
static void sample_noise(float *x, int B, size_t numel, uint64_t seed, long first, uint64_t d) {
    for (int b = 0; b < B; b++) {
        uint64_t key = rng_bits(seed, RNG_SAMPLE, (uint64_t)(first + b));
        rng_normal_fill(x + (size_t)b * numel, numel, key, RNG_SAMPLE, d * numel);
    }
}

int ddim_sample(UNet *u, const Schedule *s, const SampleConfig *sc, const float *ctx_cond,
                const float *ctx_uncond, int B, int C, int H, int W, int L, float *out, Error *e) {
    DdimOptions o = {.clip_x0 = 1, .first_sample = 0};
    return ddim_sample_opts(u, s, sc, &o, ctx_cond, ctx_uncond, B, C, H, W, L, out, e);
}

// The device copies of ddim_sample_opts's U-Net inputs and output (all NULL on the CPU).
typedef struct {
    float *x, *eps, *t, *cc, *cu, *pc, *pu, *ids;
} Dev;

static float *up(const Backend *be, const float *host, size_t n) {
    if (!host || !n) return NULL;
    float *p = be->mem.alloc(be->ctx, n);
    be->upload(be->ctx, p, host, n);
    return p;
}

// eps = the U-Net's prediction at x, t: on the host tensors, or on a device
// through dv (x and t uploaded by the caller) and brought back.
// (dctx, dadd: the device copies of ctx, add).
static int predict(UNet *u, const Dev *dv, float *eps, const float *x, const float *t, const float *ctx,
                   const UNetAdded *add, const float *dctx, const UNetAdded *dadd, int B, int H, int W, int L,
                   Error *e) {
    const Backend *be = u->be;
    if (!be->on_device) return unet_forward_added(u, eps, x, t, ctx, add, B, H, W, L, NULL, e);
    if (unet_forward_added(u, dv->eps, dv->x, dv->t, dctx, dadd, B, H, W, L, NULL, e) < 0) return -1;
    be->download(be->ctx, eps, dv->eps, (size_t)B * u->cfg.out_channels * H * W);
    return 0;
}

int ddim_sample_opts(UNet *u, const Schedule *s, const SampleConfig *sc, const DdimOptions *o,
                     const float *ctx_cond, const float *ctx_uncond, int B, int C, int H, int W,
                     int L, float *out, Error *e) {
    if (B < 1 || C < 1 || H < 1 || W < 1)
        return errorf(e, "ddim: bad sample shape [%d,%d,%d,%d]", B, C, H, W);
    if (C != u->cfg.in_channels || C != u->cfg.out_channels)
        return errorf(e, "ddim: %d channels, but the U-Net takes %d and predicts %d", C,
                      u->cfg.in_channels, u->cfg.out_channels);
    if (o->first_sample < 0) return errorf(e, "ddim: first_sample %ld < 0", o->first_sample);
    int guided = sc->guidance != 1.0;
    if (guided && !ctx_uncond)
        return errorf(e, "ddim: guidance %g needs the unconditional context", sc->guidance);
    int *ts = xmalloc((size_t)(sc->steps > 0 ? sc->steps : 1) * sizeof(int));
    int r = ddim_timesteps(s->T, sc->steps, ts, e);
    if (r < 0) {
        free(ts);
        return -1;
    }
    size_t numel = (size_t)C * H * W, n = (size_t)B * numel;
    uint64_t seed = (uint64_t)sc->seed;
    float *eps = xmalloc(n * sizeof(float));
    float *eps_u = guided ? xmalloc(n * sizeof(float)) : NULL;
    float *z = sc->eta > 0 ? xmalloc(n * sizeof(float)) : NULL;
    float *tb = xmalloc((size_t)B * sizeof(float));
    const float g = (float)sc->guidance;
    int rc = 0;
    // text_time: what the caller gave, neutral values for the rest
    int P = u->pooled_dim;
    float *pz = P > 0 ? xcalloc((size_t)B * P, sizeof(float)) : NULL;
    float *tid = P > 0 ? xmalloc((size_t)B * LD_TIME_IDS * sizeof(float)) : NULL;
    for (int b = 0; tid && b < B; b++) unet_neutral_time_ids(tid + (size_t)b * LD_TIME_IDS, H, W);
    const float *ids = o->time_ids ? o->time_ids : tid;
    UNetAdded add_c = {o->pooled_cond ? o->pooled_cond : pz, ids};
    UNetAdded add_u = {o->pooled_uncond ? o->pooled_uncond : pz, ids};

    // On a device the U-Net's inputs and outputs are device tensors: the contexts and added
    // conditioning go up once, and each step the latents go up and the predictions come down
    // (3 latent-sized copies against two U-Net passes); the guidance and the DDIM update stay
    // here, the CPU's arithmetic whatever the device.
    const Backend *be = u->be;
    Dev dv = {0};
    if (be->on_device) {
        size_t lc = (size_t)B * L * u->cfg.cross_attention_dim;
        dv.x = be->mem.alloc(be->ctx, n), dv.eps = be->mem.alloc(be->ctx, n), dv.t = be->mem.alloc(be->ctx, B);
        dv.cc = up(be, ctx_cond, lc), dv.cu = guided ? up(be, ctx_uncond, lc) : NULL;
        dv.pc = up(be, add_c.pooled, (size_t)B * P), dv.pu = up(be, add_u.pooled, (size_t)B * P);
        dv.ids = up(be, ids, (size_t)B * LD_TIME_IDS);
    }
    UNetAdded dadd_c = {dv.pc, dv.ids}, dadd_u = {dv.pu, dv.ids};

    UNetKeep keep = unet_set_keep(u, UNET_KEEP_NONE);  // forward only
    sample_noise(out, B, numel, seed, o->first_sample, 0);
    for (int i = 0; i < sc->steps; i++) {
        int t = ts[i], prev = t - r;
        for (int b = 0; b < B; b++) tb[b] = (float)t;
        if (be->on_device) {
            be->upload(be->ctx, dv.x, out, n);
            be->upload(be->ctx, dv.t, tb, (size_t)B);
        }
        if (predict(u, &dv, eps, out, tb, ctx_cond, &add_c, dv.cc, &dadd_c, B, H, W, L, e) < 0) {
            rc = -1;
            break;
        }
        if (guided) {
            if (predict(u, &dv, eps_u, out, tb, ctx_uncond, &add_u, dv.cu, &dadd_u, B, H, W, L, e) < 0) {
                rc = -1;
                break;
            }
            // float32 in diffusers' order: uncond + g * (cond - uncond)
#pragma omp parallel for schedule(static)
            for (size_t j = 0; j < n; j++) eps[j] = eps_u[j] + g * (eps[j] - eps_u[j]);
        }
        if (z) sample_noise(z, B, numel, seed, o->first_sample, (uint64_t)i + 1);
        double ac_prev = prev >= 0 ? s->alphas_cumprod[prev] : 1.0;
        ddim_step(out, eps, z, n, s->alphas_cumprod[t], ac_prev, sc->eta, o->clip_x0);
    }
    unet_set_keep(u, keep);
    float *dp[] = {dv.x, dv.eps, dv.t, dv.cc, dv.cu, dv.pc, dv.pu, dv.ids};
    for (size_t k = 0; k < sizeof dp / sizeof *dp; k++)
        if (dp[k]) be->mem.free(be->ctx, dp[k]);
    free(ts);
    free(eps);
    free(eps_u);
    free(z);
    free(tb);
    free(pz), free(tid);
    return rc;
}
