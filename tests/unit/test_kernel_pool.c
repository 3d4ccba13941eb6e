// test_kernel_pool.c — the classifier's two small kernels: global average
// pooling and softmax cross-entropy. Forward against double loops; backward
// against finite differences of those loops, into pre-filled gradient
// buffers (the kernels accumulate).
#include "kernel_check.h"
#include "kernels/kernels.h"

// ---- global average pooling: loss = sum R * mean_hw(x)
typedef struct {
    int B, C, HW;
    double *x, *R, *out;
} PoolCase;

static void ref_pool(PoolCase *c) {
    for (int p = 0; p < c->B * c->C; p++) {
        double s = 0;
        for (int i = 0; i < c->HW; i++) s += c->x[(size_t)p * c->HW + i];
        c->out[p] = s / c->HW;
    }
}

static double pool_loss(void *ctx) {
    PoolCase *c = ctx;
    ref_pool(c);
    return kc_dot(c->out, c->R, (size_t)c->B * c->C);
}

static void check_pool(TuRng *r, int B, int C, int HW) {
    size_t nx = (size_t)B * C * HW, no = (size_t)B * C;
    float *x = kc_rand(r, nx, -2, 2), *R = kc_rand(r, no, -1, 1), *out = xmalloc(no * sizeof(float));
    PoolCase c = {B, C, HW, kc_dup(x, nx), kc_dup(R, no), xmalloc(no * sizeof(double))};
    global_avgpool_forward(out, x, B, C, HW);
    ref_pool(&c);
    kc_expect_close(kc_rel_err(out, c.out, no, 1e-3), KC_FWD_TOL, "avgpool fwd B%d C%d HW%d", B, C, HW);
    float *dx = kc_rand(r, nx, -1, 1), *pre = kc_fcopy(dx, nx);
    double *g = xmalloc(nx * sizeof(double));
    global_avgpool_backward(dx, R, B, C, HW);
    kc_fd_grad(pool_loss, &c, c.x, nx, g);
    kc_expect_close(kc_rel_err_acc(dx, pre, g, nx, 1e-3), KC_BWD_TOL, "avgpool bwd B%d C%d HW%d", B, C, HW);
    free(x), free(R), free(out), free(dx), free(pre), free(g), free(c.x), free(c.R), free(c.out);
}

// ---- softmax cross-entropy: loss = mean_n -log softmax(z_n)[label_n]
typedef struct {
    int N, K;
    const int *labels;
    double *z;
} XentCase;

static double xent_loss(void *ctx) {
    XentCase *c = ctx;
    double L = 0;
    for (int n = 0; n < c->N; n++) {
        const double *z = c->z + (size_t)n * c->K;
        double s = 0;
        for (int k = 0; k < c->K; k++) s += exp(z[k]);
        L += log(s) - z[c->labels[n]];
    }
    return L / c->N;
}

static void check_xent(TuRng *r, int N, int K, float spread) {
    size_t n = (size_t)N * K;
    // large logits check the max shift: exp(spread) overflows float for spread ~ 90
    float *z = kc_rand(r, n, -spread, spread), *p = xmalloc(n * sizeof(float));
    int *lab = xmalloc((size_t)N * sizeof(int));
    for (int i = 0; i < N; i++) lab[i] = (int)(tu_uniform(r, 0, (float)K - 0.01f));
    XentCase c = {N, K, lab, kc_dup(z, n)};
    double L = softmax_xent_forward(p, z, lab, N, K);
    if (spread < 20) {
        double ref = xent_loss(&c);
        EXPECT(fabs(L - ref) <= 1e-5 * (1 + fabs(ref)), "xent fwd N%d K%d: %.9g vs %.9g", N, K, L, ref);
    } else {
        EXPECT(isfinite(L) && L >= 0, "xent fwd with logits up to %g: %g", spread, L);
    }
    double psum = 0;
    for (size_t i = 0; i < n; i++) psum += p[i];
    EXPECT(fabs(psum - N) < 1e-4 * N, "softmax rows sum to 1: %g over %d rows", psum, N);
    EXPECT(softmax_xent_forward(p, z, NULL, N, K) == 0.0, "labels NULL: softmax only, returns 0");
    if (spread < 20) {
        float *dz = kc_rand(r, n, -1, 1), *pre = kc_fcopy(dz, n);
        double *g = xmalloc(n * sizeof(double));
        softmax_xent_backward(dz, p, lab, N, K, 1.0f / N);
        kc_fd_grad(xent_loss, &c, c.z, n, g);
        kc_expect_close(kc_rel_err_acc(dz, pre, g, n, 1e-3), KC_BWD_TOL, "xent bwd N%d K%d", N, K);
        free(dz), free(pre), free(g);
    }
    free(z), free(p), free(lab), free(c.z);
}

int main(void) {
    TuRng r;
    tu_rng_seed(&r, 11);
    check_pool(&r, 1, 1, 1);
    check_pool(&r, 3, 5, 16);
    check_pool(&r, 2, 7, 49);
    check_xent(&r, 1, 2, 3);
    check_xent(&r, 6, 10, 4);
    check_xent(&r, 5, 10, 100);
    return tu_report("test_kernel_pool");
}
