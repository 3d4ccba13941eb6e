// test_kernel_misc.c — the small kernels: nearest x2 upsampling, channel
// concat, the two layout transposes, add/accumulate, the per-channel bias add,
// the timestep embedding and MSE. Forward against double loops; backward
// against finite differences of those loops (pre-filled, so accumulation is
// checked), plus exact checks where the op is a pure copy.
#include <omp.h>

#include "kernel_check.h"
#include "kernels/kernels.h"
#include "kernels/runtime.h"

typedef enum { OP_UPSAMPLE, OP_CONCAT, OP_TRANS_CN, OP_TRANS_NC, OP_ADD, OP_CHAN_BIAS } Op;

// One op with up to two inputs; dims mean: upsample (B,C,H,W); concat (B,Ca,Cb,HW);
// transpose_cn (B,C,N,-); transpose_nc (B,N,C,-); add (n,-,-,-); chan_bias (B,C,HW,-).
typedef struct {
    Op op;
    int d[4];
    double *in[2], *R, *out;
    size_t nin[2], nout;
} MiscCase;

static void ref_misc(MiscCase *c) {
    const int *d = c->d;
    const double *a = c->in[0], *b = c->in[1];
    switch (c->op) {
    case OP_UPSAMPLE:
        for (int p = 0; p < d[0] * d[1]; p++)
            for (int y = 0; y < 2 * d[2]; y++)
                for (int x = 0; x < 2 * d[3]; x++)
                    c->out[((size_t)p * 2 * d[2] + y) * 2 * d[3] + x] = a[((size_t)p * d[2] + y / 2) * d[3] + x / 2];
        break;
    case OP_CONCAT:
        for (int n = 0; n < d[0]; n++)
            for (int ch = 0; ch < d[1] + d[2]; ch++)
                for (int i = 0; i < d[3]; i++)
                    c->out[((size_t)n * (d[1] + d[2]) + ch) * d[3] + i] =
                        ch < d[1] ? a[((size_t)n * d[1] + ch) * d[3] + i]
                                  : b[((size_t)n * d[2] + ch - d[1]) * d[3] + i];
        break;
    case OP_TRANS_CN:  // [B,C,N] -> [B,N,C]
    case OP_TRANS_NC:  // [B,N,C] -> [B,C,N]: the same index map with the names swapped
        for (int n = 0; n < d[0]; n++)
            for (int i = 0; i < d[1]; i++)
                for (int j = 0; j < d[2]; j++)
                    c->out[((size_t)n * d[2] + j) * d[1] + i] = a[((size_t)n * d[1] + i) * d[2] + j];
        break;
    case OP_ADD:
        for (int i = 0; i < d[0]; i++) c->out[i] = a[i] + b[i];
        break;
    case OP_CHAN_BIAS:
        for (int p = 0; p < d[0] * d[1]; p++)
            for (int i = 0; i < d[2]; i++) c->out[(size_t)p * d[2] + i] = a[(size_t)p * d[2] + i] + b[p];
        break;
    }
}

static double misc_loss(void *ctx) {
    MiscCase *c = ctx;
    ref_misc(c);
    return kc_dot(c->out, c->R, c->nout);
}

static const char *op_name(Op op) {
    static const char *names[] = {"upsample2x", "concat_channels", "transpose_cn", "transpose_nc",
                                  "add", "add_channel_bias"};
    return names[op];
}

static void check_misc(TuRng *rng, Op op, int d0, int d1, int d2, int d3) {
    MiscCase c = {op, {d0, d1, d2, d3}, {0, 0}, 0, 0, {0, 0}, 0};
    size_t n0 = 0, n1 = 0, no = 0;
    switch (op) {
    case OP_UPSAMPLE: n0 = (size_t)d0 * d1 * d2 * d3, no = 4 * n0; break;
    case OP_CONCAT: n0 = (size_t)d0 * d1 * d3, n1 = (size_t)d0 * d2 * d3, no = n0 + n1; break;
    case OP_TRANS_CN:
    case OP_TRANS_NC: n0 = no = (size_t)d0 * d1 * d2; break;
    case OP_ADD: n0 = n1 = no = (size_t)d0; break;
    case OP_CHAN_BIAS: n0 = no = (size_t)d0 * d1 * d2, n1 = (size_t)d0 * d1; break;
    }
    float *a = kc_rand(rng, n0, -1, 1), *b = n1 ? kc_rand(rng, n1, -1, 1) : NULL;
    float *R = kc_rand(rng, no, -1, 1), *out = kc_rand(rng, no, -9, 9);
    c.in[0] = kc_dup(a, n0), c.in[1] = n1 ? kc_dup(b, n1) : NULL;
    c.nin[0] = n0, c.nin[1] = n1, c.nout = no;
    c.R = kc_dup(R, no), c.out = xmalloc(no * sizeof(double));
    char tag[96];
    snprintf(tag, sizeof tag, "%s %d,%d,%d,%d", op_name(op), d0, d1, d2, d3);

    switch (op) {
    case OP_UPSAMPLE: upsample2x_forward(out, a, d0, d1, d2, d3); break;
    case OP_CONCAT: concat_channels_forward(out, a, b, d0, d1, d2, d3); break;
    case OP_TRANS_CN: transpose_cn_forward(out, a, d0, d1, d2); break;
    case OP_TRANS_NC: transpose_nc_forward(out, a, d0, d1, d2); break;
    case OP_ADD: add_forward(out, a, b, n0); break;
    case OP_CHAN_BIAS: add_channel_bias_forward(out, a, b, d0, d1, d2); break;
    }
    ref_misc(&c);
    kc_expect_close(kc_rel_err(out, c.out, no, 1), 1e-7, "%s forward", tag);

    float *da = kc_rand(rng, n0, -1, 1), *da0 = kc_fcopy(da, n0);
    float *db = n1 ? kc_rand(rng, n1, -1, 1) : NULL, *db0 = n1 ? kc_fcopy(db, n1) : NULL;
    switch (op) {
    case OP_UPSAMPLE: upsample2x_backward(da, R, d0, d1, d2, d3); break;
    case OP_CONCAT: concat_channels_backward(da, db, R, d0, d1, d2, d3); break;
    case OP_TRANS_CN: transpose_cn_backward(da, R, d0, d1, d2); break;
    case OP_TRANS_NC: transpose_nc_backward(da, R, d0, d1, d2); break;
    case OP_ADD:  // add's backward is dout accumulated into both inputs
        accumulate(da, R, n0);
        accumulate(db, R, n1);
        break;
    case OP_CHAN_BIAS: add_channel_bias_backward(da, db, R, d0, d1, d2); break;
    }
    for (int i = 0; i < (n1 ? 2 : 1); i++) {
        size_t n = c.nin[i];
        double *g = xmalloc(n * sizeof(double));
        kc_fd_grad(misc_loss, &c, c.in[i], n, g);
        kc_expect_close(kc_rel_err_acc(i ? db : da, i ? db0 : da0, g, n, 1e-3), KC_BWD_TOL,
                        "%s d%c", tag, i ? 'b' : 'a');
        free(g);
    }
    free(a), free(b), free(R), free(out), free(da), free(da0), free(db), free(db0);
    free(c.in[0]), free(c.in[1]), free(c.R), free(c.out);
}

// Pure copies must round-trip bit for bit; out = a + b may alias an input.
static void check_exact(TuRng *rng) {
    int B = 2, C = 5, N = 37;  // N beyond one 32-wide transpose tile
    size_t n = (size_t)B * C * N;
    float *x = kc_rand(rng, n, -1, 1), *t = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float));
    transpose_cn_forward(t, x, B, C, N);
    transpose_nc_forward(y, t, B, N, C);
    EXPECT(memcmp(x, y, n * sizeof(float)) == 0, "transpose round trip");
    memset(y, 0, n * sizeof(float));
    transpose_cn_backward(y, t, B, C, N);  // the adjoint of a permutation is its inverse
    EXPECT(memcmp(x, y, n * sizeof(float)) == 0, "transpose_cn_backward inverts forward");
    float *a = kc_fcopy(x, n), *s = xmalloc(n * sizeof(float));
    add_forward(s, x, t, n);
    add_forward(a, a, t, n);  // in place
    EXPECT(memcmp(a, s, n * sizeof(float)) == 0, "add_forward aliased with its output");
    free(x), free(t), free(y), free(a), free(s);
}

// ---- timestep embedding ----
static void check_timestep(int dim, int flip, float shift) {
    enum { B = 4 };
    const float t[B] = {0, 1, 37.5f, 999};
    float *out = xmalloc((size_t)B * dim * sizeof(float));
    for (int i = 0; i < B * dim; i++) out[i] = 7;  // every entry must be written
    timestep_embedding(out, t, B, dim, flip, shift);
    int half = dim / 2;
    double err = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < half; j++) {
            double f = exp(-log(10000.0) * j / (half - shift)), arg = t[b] * f;
            double s = sin(arg), co = cos(arg);
            const float *o = out + (size_t)b * dim;
            double gs = flip ? o[half + j] : o[j], gc = flip ? o[j] : o[half + j];
            err = fmax(err, fmax(fabs(gs - s), fabs(gc - co)));
        }
    // float32 frequencies times t ~ 1000 leave ~1e-4 of phase error, as in torch.
    EXPECT(err < 5e-4, "timestep dim %d flip %d shift %g: max abs err %.3g", dim, flip, shift, err);
    if (dim % 2)
        for (int b = 0; b < B; b++)
            EXPECT(out[(size_t)b * dim + dim - 1] == 0, "timestep dim %d: pad column not zero", dim);
    // t = 0: sin part 0, cos part 1, in the right halves.
    EXPECT(out[0] == (flip ? 1.0f : 0.0f) && out[half] == (flip ? 0.0f : 1.0f),
           "timestep dim %d flip %d: t=0 gives %g %g", dim, flip, out[0], out[half]);
    free(out);
}

// ---- MSE ----
typedef struct {
    size_t n;
    double *a, *b;
    double scale;
} MseCase;

static double mse_loss(void *ctx) {
    MseCase *c = ctx;
    double s = 0;
    for (size_t i = 0; i < c->n; i++) s += (c->a[i] - c->b[i]) * (c->a[i] - c->b[i]);
    return c->scale * s / c->n;
}

static void check_mse(TuRng *rng, size_t n, float scale) {
    float *a = kc_rand(rng, n, -2, 2), *b = kc_rand(rng, n, -2, 2);
    MseCase c = {n, kc_dup(a, n), kc_dup(b, n), 1};
    double got = mse_forward(a, b, n), ref = mse_loss(&c);
    EXPECT(fabs(got - ref) <= 1e-12 * ref, "mse n%zu: %.17g vs %.17g", n, got, ref);
    // The sum is chunked independently of the thread count: same bits on 1 and 3 threads.
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    double g1 = mse_forward(a, b, n);
    omp_set_num_threads(3);
    double g3 = mse_forward(a, b, n);
    omp_set_num_threads(nt);
    EXPECT(g1 == got && g3 == got, "mse n%zu depends on the thread count", n);

    c.scale = scale;
    float *da = kc_rand(rng, n, -1, 1), *db = kc_rand(rng, n, -1, 1);
    float *da0 = kc_fcopy(da, n), *db0 = kc_fcopy(db, n);
    mse_backward(da, db, a, b, n, scale);
    double *ga = xmalloc(n * sizeof(double)), *gb = xmalloc(n * sizeof(double));
    kc_fd_grad(mse_loss, &c, c.a, n, ga);
    kc_fd_grad(mse_loss, &c, c.b, n, gb);
    kc_expect_close(kc_rel_err_acc(da, da0, ga, n, 1e-6), KC_BWD_TOL, "mse n%zu da", n);
    kc_expect_close(kc_rel_err_acc(db, db0, gb, n, 1e-6), KC_BWD_TOL, "mse n%zu db", n);
    float *da1 = kc_fcopy(da0, n);
    mse_backward(da1, NULL, a, b, n, scale);
    EXPECT(memcmp(da1, da, n * sizeof(float)) == 0, "mse n%zu: da alone differs", n);
    free(a), free(b), free(da), free(db), free(da0), free(db0), free(da1), free(ga), free(gb);
    free(c.a), free(c.b);
}

// runtime.threads = 0: the cores a launcher bound the rank to, else the node's share.
static void check_default_threads(void) {
    EXPECT(runtime_default_threads(1, 2, 2) == 2, "unbound, 1 rank on 2 cores");
    EXPECT(runtime_default_threads(2, 2, 2) == 1, "unbound, 2 ranks on 2 cores");
    EXPECT(runtime_default_threads(3, 2, 2) == 1, "unbound, 3 ranks on 2 cores: at least 1");
    EXPECT(runtime_default_threads(1, 1, 2) == 1, "bound to 1 of 2 cores (mpirun's default binding)");
    EXPECT(runtime_default_threads(2, 4, 16) == 4, "bound to 4 of 16 (--map-by slot:PE=4)");
    EXPECT(runtime_default_threads(1, 16, 16) == 16, "unbound, 1 rank on 16");
    int allowed = runtime_allowed_cores(), online = runtime_online_cores();
    EXPECT(allowed >= 1 && allowed <= online, "affinity mask %d of %d online cores", allowed, online);
}

// OPENBLAS_CORETYPE's rule: the kernels a CPU's instructions call for, and NULL
// where OpenBLAS already runs kernels that use them (its corename, any case).
static void check_blas_core_rule(void) {
    const char *w;
    EXPECT((w = runtime_blas_core_wanted("Prescott", 1, 1)) && !strcmp(w, "SkylakeX"), "SSE3 kernels, AVX-512 CPU");
    EXPECT((w = runtime_blas_core_wanted("Haswell", 1, 1)) && !strcmp(w, "SkylakeX"), "AVX2 kernels, AVX-512 CPU");
    EXPECT((w = runtime_blas_core_wanted("Zen", 1, 1)) && !strcmp(w, "SkylakeX"), "Zen kernels, AVX-512 CPU");
    EXPECT((w = runtime_blas_core_wanted("Prescott", 0, 1)) && !strcmp(w, "Haswell"), "SSE3 kernels, AVX2 CPU");
    EXPECT(!runtime_blas_core_wanted("SkylakeX", 1, 1) && !runtime_blas_core_wanted("COOPERLAKE", 1, 1) &&
               !runtime_blas_core_wanted("sapphirerapids", 1, 1), "AVX-512 kernels on an AVX-512 CPU");
    EXPECT(!runtime_blas_core_wanted("Haswell", 0, 1) && !runtime_blas_core_wanted("zen", 0, 1) &&
               !runtime_blas_core_wanted("SkylakeX", 0, 1), "AVX2 kernels and up on an AVX2 CPU");
    EXPECT(!runtime_blas_core_wanted("Prescott", 0, 0) && !runtime_blas_core_wanted(NULL, 1, 1),
           "a CPU without AVX2/FMA, or no corename: nothing to ask for");
}

int main(void) {
    check_default_threads();
    check_blas_core_rule();
    TuRng rng;
    tu_rng_seed(&rng, 31337);
    check_misc(&rng, OP_UPSAMPLE, 2, 3, 4, 5);
    check_misc(&rng, OP_UPSAMPLE, 1, 2, 3, 1);
    check_misc(&rng, OP_CONCAT, 2, 3, 5, 7);
    check_misc(&rng, OP_CONCAT, 3, 1, 2, 4);
    check_misc(&rng, OP_TRANS_CN, 2, 5, 37, 0);
    check_misc(&rng, OP_TRANS_CN, 1, 33, 3, 0);
    check_misc(&rng, OP_TRANS_NC, 2, 37, 5, 0);
    check_misc(&rng, OP_TRANS_NC, 3, 4, 40, 0);
    check_misc(&rng, OP_ADD, 101, 0, 0, 0);
    check_misc(&rng, OP_CHAN_BIAS, 2, 3, 10, 0);
    check_misc(&rng, OP_CHAN_BIAS, 3, 4, 1, 0);
    check_exact(&rng);
    check_timestep(32, 1, 0);  // SD-1.5: flip_sin_to_cos, freq_shift 0
    check_timestep(32, 0, 1);  // the other diffusers defaults
    check_timestep(9, 1, 0);   // odd dim: zero pad column
    check_timestep(2, 0, 0);   // one frequency
    check_mse(&rng, 1, 1);
    check_mse(&rng, 1000, 0.5f);
    check_mse(&rng, 257, 3);
    return tu_report("test_kernel_misc");
}
