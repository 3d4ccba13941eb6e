// test_adamw.c — AdamW against torch.optim.AdamW, gradient clipping against
// torch.nn.utils.clip_grad_norm_, the warmup/cosine learning rate, and EMA.
// References were computed once with torch 1.13 (float32) and are hard-coded.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/adamw.h"
#include "testutil.h"

static TrainConfig tcfg(void) {
    TrainConfig c;
    memset(&c, 0, sizeof c);
    c.steps = 110, c.batch = 4;
    c.lr = 1e-3, c.weight_decay = 0.01, c.beta1 = 0.9, c.beta2 = 0.999, c.adam_eps = 1e-8;
    c.grad_clip = 1.0, c.ema_decay = 0;
    c.warmup_steps = 10;
    c.lr_schedule = LR_COSINE;
    return c;
}

static int close_rel(const float *a, const float *b, int n, double tol) {
    for (int i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > tol * fmax(1.0, fabs(b[i]))) return 0;
    return 1;
}

// torch:
//   p = torch.tensor([0.5, -1.0, 2.0, 0.0, -0.25], requires_grad=True)
//   opt = torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
//   for g, lr in zip(grads, [0.1, 0.05, 0.02]):
//       opt.param_groups[0]["lr"] = lr; p.grad = torch.tensor(g); opt.step()
static void check_torch_steps(void) {
    TrainConfig c = tcfg();
    float p[5] = {0.5f, -1.0f, 2.0f, 0.0f, -0.25f};
    const float g[3][5] = {{0.1f, -0.2f, 0.3f, 0.0f, 1.5f},
                           {-0.4f, 0.5f, 0.05f, 1e-3f, -2.0f},
                           {0.2f, 0.2f, -0.1f, -1e-3f, 0.7f}};
    const double lr[3] = {0.1, 0.05, 0.02};
    const float want[3][5] = {
        {0.399500012f, -0.899000049f, 1.898f, 0.0f, -0.349750012f},
        {0.427275419f, -0.920661271f, 1.85788465f, -0.0372063145f, -0.3398996f},
        {0.42939344f, -0.931335986f, 1.85000396f, -0.0362952426f, -0.340397924f}};
    const float want_m[5] = {-0.00790000055f, 0.0487999991f, 0.0188000016f, -1.00000052e-05f,
                             0.0115000047f};
    const float want_v[5] = {0.000209820035f, 0.00032967006f, 0.000102317601f, 1.9990003e-09f,
                             0.00673150225f};
    AdamW *a = adamw_create(5, &c);
    for (int s = 0; s < 3; s++) {
        adamw_step(a, p, g[s], lr[s]);
        EXPECT(close_rel(p, want[s], 5, 1e-6), "params after step %d match torch (%.9g %.9g ...)",
               s + 1, p[0], p[1]);
    }
    EXPECT(a->step == 3, "step counter %ld", a->step);
    EXPECT(close_rel(a->m, want_m, 5, 1e-6), "exp_avg matches torch");
    EXPECT(close_rel(a->v, want_v, 5, 1e-6), "exp_avg_sq matches torch");
    adamw_free(a);
}

static void check_lr(void) {
    TrainConfig c = tcfg();  // lr 1e-3, warmup 10, 110 steps, cosine
    struct {
        long step;
        double want;
    } cases[] = {
        {0, 1e-4},                     // first update: lr / warmup
        {4, 5e-4},                     //
        {9, 1e-3},                     // end of warmup: peak
        {34, 8.5355339059327376e-4},   // k=35: 0.5 (1 + cos(pi/4))
        {59, 5e-4},                    // k=60: halfway through the decay
        {108, 2.467198171342e-7},      // k=109: 0.5 (1 + cos(0.99 pi))
        {109, 0.0},                    // last update
        {200, 0.0},                    // beyond the schedule
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double got = adamw_lr(&c, cases[i].step);
        EXPECT(fabs(got - cases[i].want) < 1e-15, "cosine lr(%ld) = %.17g, want %.17g",
               cases[i].step, got, cases[i].want);
    }
    c.lr_schedule = LR_CONSTANT;
    EXPECT(fabs(adamw_lr(&c, 0) - 1e-4) < 1e-15, "constant keeps the warmup");
    EXPECT(adamw_lr(&c, 10) == 1e-3 && adamw_lr(&c, 109) == 1e-3, "constant after warmup");
    c.warmup_steps = 0;
    EXPECT(adamw_lr(&c, 0) == 1e-3, "no warmup: peak from the first step");
    c.lr_schedule = LR_COSINE;
    c.steps = 4;
    double want = 1e-3 * 0.5 * (1 + cos(3.14159265358979323846 / 4));
    EXPECT(fabs(adamw_lr(&c, 0) - want) < 1e-15, "no warmup, cosine: lr(0) = %.17g",
           adamw_lr(&c, 0));
}

// torch.nn.utils.clip_grad_norm_([t], max_norm) on t.grad = g: returned norm and
// clipped gradients (note torch scales even when norm == max_norm: coef
// max/(norm + 1e-6) < 1).
static void check_clip(void) {
    float g1[4] = {3.0f, -4.0f, 0.0f, 12.0f};
    const float w1[4] = {0.230769217f, -0.307692289f, 0.0f, 0.923076868f};
    double n1 = grad_clip(g1, 4, 1.0);
    EXPECT(fabs(n1 - 13.0) < 1e-12, "norm %.17g == 13", n1);
    EXPECT(close_rel(g1, w1, 4, 1e-7), "clipped grads match torch");
    float g2[2] = {0.3f, -0.4f};
    const float w2[2] = {0.300000012f, -0.400000006f};
    double n2 = grad_clip(g2, 2, 1.0);
    EXPECT(fabs(n2 - 0.5) < 1e-7 && !memcmp(g2, w2, sizeof g2), "below max: untouched");
    float g3[2] = {3.0f, 4.0f};
    const float w3[2] = {2.99999928f, 3.99999905f};
    double n3 = grad_clip(g3, 2, 5.0);
    EXPECT(fabs(n3 - 5.0) < 1e-12 && close_rel(g3, w3, 2, 1e-7),
           "norm == max scales by max/(norm+1e-6) as torch: %.9g %.9g", g3[0], g3[1]);
    float g4[2] = {30.0f, 40.0f};
    EXPECT(grad_clip(g4, 2, 0.0) == 50.0 && g4[0] == 30.0f, "max_norm 0: off");

    // a long vector: the chunked double sum equals a plain double sum
    enum { N = 300000 };
    static float big[N];
    TuRng r;
    tu_rng_seed(&r, 3);
    tu_fill(&r, big, N, -1, 1);
    double s = 0;
    for (int i = 0; i < N; i++) s += (double)big[i] * big[i];
    double got = grad_norm(big, N);
    EXPECT(fabs(got - sqrt(s)) < 1e-9 * sqrt(s), "norm of 300k elements %.17g vs %.17g", got,
           sqrt(s));
    EXPECT(grad_norm(big, N) == got, "norm is deterministic");
    EXPECT(grad_norm(big, 0) == 0.0, "empty norm 0");
}

static void check_ema(void) {
    TrainConfig c = tcfg();
    float p[3] = {1.0f, -2.0f, 0.5f};
    AdamW *a = adamw_create(3, &c);
    adamw_ema_init(a, p);
    EXPECT(a->ema == NULL, "ema_decay 0: no EMA buffer");
    adamw_ema_update(a, p);  // no-op
    adamw_free(a);

    c.ema_decay = 0.9;
    a = adamw_create(3, &c);
    adamw_ema_init(a, p);
    CHECK(a->ema);
    EXPECT(!memcmp(a->ema, p, sizeof p), "EMA starts at the weights");
    float q[3] = {2.0f, 0.0f, 0.5f};
    adamw_ema_update(a, q);
    adamw_ema_update(a, q);
    // after two updates towards q: ema = q + 0.81 (p - q)
    const float want[3] = {1.19f, -1.62f, 0.5f};
    EXPECT(close_rel(a->ema, want, 3, 1e-6), "ema %.9g %.9g %.9g", a->ema[0], a->ema[1],
           a->ema[2]);
    adamw_free(a);
}

int main(void) {
    check_torch_steps();
    check_lr();
    check_clip();
    check_ema();
    return tu_report("test_adamw");
}
