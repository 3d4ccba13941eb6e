// loss.cu — the losses and the gradient norm on the GPU (ops.h): MSE, the
// per-tap feature term of distillation (distill_feat_term's math), and the
// global gradient norm behind clipping. Sums run in double, a fixed number of
// blocks each reducing a fixed slice and one block adding the partial sums in
// block order, so they repeat run to run; the few scalars go to the host.
#include "cuda/cu_common.cuh"
#include "cuda/ops.h"

// blocks of a reduction's first stage (fewer for short inputs)
#define PARTS (LD_CU_MAX_BLOCKS < 256 ? LD_CU_MAX_BLOCKS : 256)

static unsigned parts_for(size_t n) {
    size_t p = (n + LD_CU_BLOCK - 1) / LD_CU_BLOCK;
    return p < 1 ? 1u : p > PARTS ? PARTS : (unsigned)p;
}

// part[(y*gridDim.x + x)*2 + {0,1}] = sum over block x's slice of row y of
// (a-b)^2 and b^2 (b NULL: a^2 and 0). Rows of n values, gridDim.y rows.
__global__ void k_sq_part(double *part, const float *a, const float *b, size_t n) {
    const float *ar = a + (size_t)blockIdx.y * n, *br = b ? b + (size_t)blockIdx.y * n : NULL;
    double s = 0, t = 0;
    CU_GRID_LOOP(i, n) {
        double x = ar[i], y = br ? br[i] : 0.0;
        s += (x - y) * (x - y), t += y * y;
    }
    s = cu_block_sum(s);
    t = cu_block_sum(t);
    if (threadIdx.x == 0) {
        size_t o = ((size_t)blockIdx.y * gridDim.x + blockIdx.x) * 2;
        part[o] = s, part[o + 1] = t;
    }
}
// res[2*row + {0,1}] = sum of the row's parts, in part order: one block per row.
__global__ void k_sq_fin(double *res, const double *part, int parts) {
    double s = 0, t = 0;
    for (int p = threadIdx.x; p < parts; p += blockDim.x)
        s += part[((size_t)blockIdx.x * parts + p) * 2], t += part[((size_t)blockIdx.x * parts + p) * 2 + 1];
    s = cu_block_sum(s);
    t = cu_block_sum(t);
    if (threadIdx.x == 0) res[2 * blockIdx.x] = s, res[2 * blockIdx.x + 1] = t;
}
// da += c (a - b), db -= c (a - b)
__global__ void k_sq_grad(float *da, float *db, const float *a, const float *b, size_t n, float c) {
    CU_GRID_LOOP(i, n) {
        float g = c * (a[i] - b[i]);
        if (da) da[i] += g;
        if (db) db[i] -= g;
    }
}
// dS[s, j] += coef[s] * (S - T)[s, j] over rows of n
__global__ void k_feat_grad(float *dS, const float *S, const float *T, const float *coef, size_t n, size_t rows) {
    CU_GRID_LOOP(i, n * rows) dS[i] += coef[i / n] * (S[i] - T[i]);
}

// Sums of squares of `rows` rows of n: res (host) gets 2 doubles per row.
static void row_squares(DevCtx *d, double *res, const float *a, const float *b, size_t n, int rows, double *dev) {
    unsigned P = parts_for(n);
    double *part = dev, *dres = dev + (size_t)P * rows * 2;
    LD_LAUNCH(k_sq_part, dim3(P, rows), dim3(LD_CU_BLOCK), dev_stream(d), part, a, b, n);
    CU_LAUNCHED();
    LD_LAUNCH(k_sq_fin, dim3(rows), dim3(LD_CU_BLOCK), dev_stream(d), dres, part, (int)P);
    CU_LAUNCHED();
    CU_OK(cudaMemcpyAsync(res, dres, sizeof(double) * 2 * rows, cudaMemcpyDeviceToHost, dev_stream(d)));
    CU_OK(cudaStreamSynchronize(dev_stream(d)));
}
static double *sq_scratch(DevCtx *d, size_t n, int rows, size_t extra_floats) {
    size_t doubles = ((size_t)parts_for(n) + 1) * rows * 2;
    return (double *)dev_scratch(d, doubles * 2 + extra_floats);
}

extern "C" {
double cu_mse_forward(DevCtx *d, const float *a, const float *b, size_t n) {
    if (n == 0) return 0.0;
    double r[2];
    row_squares(d, r, a, b, n, 1, sq_scratch(d, n, 1, 0));
    return r[0] / (double)n;
}
void cu_mse_backward(DevCtx *d, float *da, float *db, const float *a, const float *b, size_t n, float scale) {
    if (n == 0 || (!da && !db)) return;
    LD_LAUNCH(k_sq_grad, dim3(cu_blocks(n)), dim3(LD_CU_BLOCK), dev_stream(d), da, db, a, b, n,
              (float)(2.0 * scale / (double)n));
    CU_LAUNCHED();
}

void cu_feat_term(DevCtx *d, const float *S, const float *T, int b, size_t n, int normalized, double denom,
                  float scale, double *raw, double *norm, float *dS) {
    *raw = *norm = 0;
    if (b <= 0 || n == 0) return;
    double *dev = sq_scratch(d, n, b, (size_t)b);
    double *res = (double *)xmalloc(sizeof(double) * 2 * b);
    float *coef = (float *)xmalloc(sizeof(float) * b);
    row_squares(d, res, S, T, n, b, dev);
    double sq_all = 0, nsum = 0;
    for (int s = 0; s < b; s++) {
        double sq = res[2 * s], tn = res[2 * s + 1] > 0 ? res[2 * s + 1] : 1.0;  // zero teacher: plain squared error
        sq_all += sq, nsum += sq / tn;
        coef[s] = normalized ? (float)(scale * 2.0 / (denom * tn)) : (float)(scale * 2.0 / (denom * (double)n));
    }
    *raw = sq_all / ((double)b * n);
    *norm = nsum / denom;
    if (dS) {
        float *dcoef = (float *)(dev + ((size_t)parts_for(n) + 1) * b * 2);
        dev_upload(d, dcoef, coef, (size_t)b);
        size_t tot = (size_t)b * n;
        LD_LAUNCH(k_feat_grad, dim3(cu_blocks(tot)), dim3(LD_CU_BLOCK), dev_stream(d), dS, S, T, dcoef, n,
                  (size_t)b);
        CU_LAUNCHED();
    }
    free(res);
    free(coef);
}

double cu_grad_norm(DevCtx *d, const float *g, size_t n) {
    if (n == 0) return 0.0;
    double r[2];
    row_squares(d, r, g, NULL, n, 1, sq_scratch(d, n, 1, 0));
    return sqrt(r[0]);
}
double cu_clip(DevCtx *d, float *g, size_t n, double max_norm) {
    double norm = cu_grad_norm(d, g, n);
    if (max_norm > 0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0) cu_scale(d, g, (float)coef, n);
    }
    return norm;
}
}
