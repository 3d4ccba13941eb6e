// bench_recompute.c — what train.recompute and the forward-only mode cost and
// save on the U-Net of a job file: a training step (forward + backward) with
// every interior kept (UNET_KEEP_ALL) against recompute (UNET_KEEP_INPUTS), and
// a forward with everything kept against forward-only (UNET_KEEP_NONE), the
// modes interleaved (A B A B ...) in one run and the best of REPEATS taken, so a
// loaded machine slows both alike. Memory is the activation arenas' floats the
// pass handed out (acts: kept from forward to backward; rec: the one-layer
// recompute arena; work: backward temporaries), exact and load-independent.
// usage: bench_recompute JOB.cfg BATCH [REPEATS] [--set key=value ...]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/config.h"
#include "kernels/runtime.h"
#include "model/init.h"
#include "model/unet.h"

typedef struct {
    double fwd, bwd;               // best seconds
    size_t acts, rec, work;        // floats of the last pass
} Stat;

static const double MiB = 1024.0 * 1024.0 / sizeof(float);

int main(int argc, char **argv) {
    runtime_fix_blas_kernels(argv);  // as laptop-diff does: see runtime.h
    if (argc < 3) {
        fprintf(stderr, "usage: bench_recompute JOB.cfg BATCH [REPEATS] [--set key=value ...]\n");
        return 2;
    }
    int B = atoi(argv[2]), reps = argc > 3 && argv[3][0] != '-' ? atoi(argv[3]) : 3;
    const char *sets[32];
    int ns = 0;
    for (int i = 3; i < argc; i++)
        if (!strcmp(argv[i], "--set") && i + 1 < argc && ns < 32) sets[ns++] = argv[++i];
    JobConfig jc;
    Error e;
    if (B < 1 || reps < 1) {
        fprintf(stderr, "bench_recompute: BATCH and REPEATS must be >= 1\n");
        return 2;
    }
    if (job_config_load(&jc, argv[1], sets, ns, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    int threads = runtime_set_threads(jc.runtime.threads, 1);
    UNet *u = unet_create(&jc.model, NULL, &e);
    if (!u) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    unet_init_params(u, 1);
    const ModelConfig *m = &jc.model;
    int H = m->sample_size, L = m->context_length, D = m->cross_attention_dim;
    size_t nx = (size_t)B * m->in_channels * H * H, no = (size_t)B * m->out_channels * H * H;
    float *x = xmalloc(nx * 4), *ctx = xmalloc((size_t)B * L * D * 4), *out = xmalloc(no * 4);
    float *t = xmalloc((size_t)B * 4);
    rng_normal_fill(x, nx, 1, RNG_MISC, 0);
    rng_normal_fill(ctx, (size_t)B * L * D, 1, RNG_MISC, nx);
    for (int i = 0; i < B; i++) t[i] = (float)(37 * i % 1000);
    // 0: ALL step, 1: INPUTS step, 2: ALL forward, 3: NONE forward
    const UNetKeep keeps[4] = {UNET_KEEP_ALL, UNET_KEEP_INPUTS, UNET_KEEP_ALL, UNET_KEEP_NONE};
    Stat st[4];
    for (int k = 0; k < 4; k++) st[k] = (Stat){1e30, 1e30, 0, 0, 0};
    for (int r = 0; r < reps + 1; r++) {  // the first round warms up (arenas grow to their peak)
        for (int k = 0; k < 4; k++) {
            unet_set_keep(u, keeps[k]);
            double t0 = now_s();
            if (unet_forward(u, out, x, t, ctx, B, H, H, L, NULL, &e)) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
            double t1 = now_s();
            st[k].acts = u->acts.pass_total;
            if (k < 2) {
                unet_zero_grad(u);
                unet_backward(u, out, NULL);
            }
            double t2 = now_s();
            // the recompute arena holds one layer at a time: its size is its peak
            st[k].rec = keeps[k] == UNET_KEEP_ALL ? 0 : u->rec.peak;
            st[k].work = u->work.pass_total;
            if (r) {
                if (t1 - t0 < st[k].fwd) st[k].fwd = t1 - t0;
                if (t2 - t1 < st[k].bwd) st[k].bwd = t2 - t1;
            }
        }
    }
    printf("model %s: %zu params at %dx%d, batch %d, %d threads, best of %d interleaved\n", argv[1], u->pt.total, H, H,
           B, threads, reps);
    printf("%-22s %9s %9s %9s %11s %11s %11s\n", "pass", "fwd s", "bwd s", "total s", "acts MiB", "rec MiB",
           "work MiB");
    const char *names[4] = {"step, keep all", "step, recompute", "forward, keep all", "forward only"};
    for (int k = 0; k < 4; k++)
        printf("%-22s %9.3f %9.3f %9.3f %11.1f %11.1f %11.1f\n", names[k], st[k].fwd, k < 2 ? st[k].bwd : 0.0,
               st[k].fwd + (k < 2 ? st[k].bwd : 0.0), st[k].acts / MiB, st[k].rec / MiB, st[k].work / MiB);
    double ta = st[0].fwd + st[0].bwd, tr = st[1].fwd + st[1].bwd;
    printf("recompute: step time x%.3f, activations kept x%.3f (acts + rec: %.1f of %.1f MiB)\n", tr / ta,
           (double)(st[1].acts + st[1].rec) / (double)st[0].acts, (st[1].acts + st[1].rec) / MiB, st[0].acts / MiB);
    printf("forward only: time x%.3f, activations x%.3f (%.1f of %.1f MiB)\n", st[3].fwd / st[2].fwd,
           (double)(st[3].acts + st[3].rec) / (double)st[2].acts, (st[3].acts + st[3].rec) / MiB, st[2].acts / MiB);
    unet_free(u);
    free(x), free(ctx), free(out), free(t);
    return 0;
}
