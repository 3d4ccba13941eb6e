// bench_attention.c — time and memory of one Transformer2DModel with one
// BasicTransformerBlock (SD-1.5's first level: C 320, 8 heads, context 77 x 768)
// forward + backward at HxW latent tokens, batch 1. Reports the activation
// arena's peak (what forward saves for backward), the backward work arena's
// and the scratch buffer's, and the process's peak RSS; run one size per
// process so the RSS is that size's.
// usage: bench_attention H [THREADS] [REPEATS]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/common.h"
#include "kernels/runtime.h"
#include "model/transformer.h"

static void fill(float *p, size_t n, float lo, float hi, unsigned long long *s) {
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = lo + (hi - lo) * (float)((*s >> 40) / 16777216.0);
    }
}

static double mib(size_t floats) { return (double)floats * sizeof(float) / (1024.0 * 1024.0); }

int main(int argc, char **argv) {
    runtime_fix_blas_kernels(argv);  // as laptop-diff does: see runtime.h
    if (argc < 2) {
        fprintf(stderr, "usage: bench_attention H [THREADS] [REPEATS]\n");
        return 2;
    }
    int H = atoi(argv[1]), threads = argc > 2 ? atoi(argv[2]) : 1, reps = argc > 3 ? atoi(argv[3]) : 2;
    if (H < 1 || threads < 1 || reps < 1) {
        fprintf(stderr, "bench_attention: H, THREADS and REPEATS must be positive\n");
        return 2;
    }
    threads = runtime_set_threads(threads, 1);
    int B = 1, C = 320, heads = 8, L = 77, D = 768, W = H;
    ParamTable pt = {0};
    Transformer t;
    transformer_init(&t, &pt, "down_blocks.0.attentions.0", C, heads, 1, 0, D, 32);
    float *params = xmalloc(pt.total * sizeof(float)), *grads = xcalloc(pt.total, sizeof(float));
    unsigned long long seed = 42;
    fill(params, pt.total, -0.05f, 0.05f, &seed);
    size_t n = (size_t)B * C * H * W, nc = (size_t)B * L * D;
    float *x = xmalloc(n * sizeof(float)), *ctx = xmalloc(nc * sizeof(float));
    float *out = xmalloc(n * sizeof(float)), *dout = xmalloc(n * sizeof(float)), *dx = xmalloc(n * sizeof(float));
    fill(x, n, -1, 1, &seed), fill(ctx, nc, -1, 1, &seed), fill(dout, n, -1, 1, &seed);
    Arena acts = {0}, work = {0};
    Backend *be = backend_cpu_create();
    LayerCtx c = {params, grads, &acts, &work, be};
    double best = 1e30, fwd_best = 1e30;
    for (int r = 0; r <= reps; r++) {  // pass 0 warms the arenas up to their peak
        arena_reset(&acts), arena_reset(&work);
        memset(dx, 0, n * sizeof(float));
        double t0 = now_s();
        transformer_forward(&t, &c, out, x, ctx, B, H, W, L);
        double t1 = now_s();
        transformer_backward(&t, &c, dx, dout);
        double t2 = now_s();
        if (r > 0 && t2 - t0 < best) best = t2 - t0, fwd_best = t1 - t0;
    }
    double chk = 0;
    for (size_t i = 0; i < n; i++) chk += dx[i];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("bench_attention: %dx%d tokens (%d), C %d, %d heads, batch %d, %d thread(s), best of %d\n", H, W,
           H * W, C, heads, B, threads, reps);
    printf("  forward %.3f s, forward+backward %.3f s\n", fwd_best, best);
    printf("  saved activations %.1f MiB, backward work %.1f MiB, scratch %.1f MiB, peak RSS %.1f MiB\n",
           mib(acts.peak), mib(work.peak), mib(be->work_floats(be->ctx)), ru.ru_maxrss / 1024.0);
    printf("  (sum of dx %.6g, to compare runs)\n", chk);
    arena_free(&acts), arena_free(&work), backend_free(be);
    transformer_free(&t), params_free(&pt);
    free(params), free(grads), free(x), free(ctx), free(out), free(dout), free(dx);
    return 0;
}
