// cudnn_emu.cpp — see cudnn_emu.h. Every convolution is im2col of one sample
// at a time and an OpenBLAS product, like conv.cu's own path, but written from
// cuDNN's definitions, not from that code.
#include "cudnn_emu.h"

#include <cblas.h>

#include <cstring>
#include <vector>

struct EmuDnn {
    unsigned long calls;  // turns the non-deterministic algorithms' summation order
};
struct EmuTensorDesc {
    int n, c, h, w, set;
};
struct EmuFilterDesc {
    int k, c, h, w, set;
};
struct EmuConvDesc {
    int ph, pw, sh, sw, dh, dw, flip, set;
    cudnnMathType_t math;
};

namespace {
struct Shape {
    int N, C, H, W, K, R, S, Ho, Wo, ph, pw, sh, sw, dh, dw, flip;
    size_t rows() const { return (size_t)C * R * S; }        // im2col rows
    size_t cols() const { return (size_t)Ho * Wo; }          // im2col columns
    size_t col_bytes() const { return rows() * cols() * sizeof(float); }
};

cudnnStatus_t out_dims(const EmuConvDesc *c, const EmuTensorDesc *x, const EmuFilterDesc *w, int *ho, int *wo) {
    if (!c || !x || !w || !c->set || !x->set || !w->set || x->c != w->c) return CUDNN_STATUS_BAD_PARAM;
    int eh = c->dh * (w->h - 1) + 1, ew = c->dw * (w->w - 1) + 1;
    *ho = (x->h + 2 * c->ph - eh) / c->sh + 1, *wo = (x->w + 2 * c->pw - ew) / c->sw + 1;
    return *ho > 0 && *wo > 0 && x->h + 2 * c->ph >= eh && x->w + 2 * c->pw >= ew ? CUDNN_STATUS_SUCCESS
                                                                                 : CUDNN_STATUS_BAD_PARAM;
}

// The shape of x * w -> y, or BAD_PARAM where the descriptors disagree.
cudnnStatus_t shape_of(const EmuTensorDesc *x, const EmuFilterDesc *w, const EmuConvDesc *c, const EmuTensorDesc *y,
                       Shape *s) {
    int ho, wo;
    if (out_dims(c, x, w, &ho, &wo) || !y || !y->set) return CUDNN_STATUS_BAD_PARAM;
    if (y->n != x->n || y->c != w->k || y->h != ho || y->w != wo) return CUDNN_STATUS_BAD_PARAM;
    *s = Shape{x->n, x->c, x->h, x->w, w->k, w->h, w->w, ho, wo, c->ph, c->pw, c->sh, c->sw, c->dh, c->dw, c->flip};
    return CUDNN_STATUS_SUCCESS;
}

int keep_bits(const EmuConvDesc *c) { return c->math == CUDNN_FMA_MATH ? 23 : 10; }  // TF32 unless FMA only

// The input pixel tap (r, q) of output pixel (oy, ox) reads, or -1 outside
// (padding). CUDNN_CONVOLUTION flips the filter; cross-correlation does not.
long tap_at(const Shape &s, int r, int q, int oy, int ox) {
    if (s.flip) r = s.R - 1 - r, q = s.S - 1 - q;
    int iy = oy * s.sh - s.ph + r * s.dh, ix = ox * s.sw - s.pw + q * s.dw;
    return iy < 0 || iy >= s.H || ix < 0 || ix >= s.W ? -1 : (long)iy * s.W + ix;
}

// col[(c R + r) S + q][oy Wo + ox] = x[c][tap], one sample, rounded to `keep` bits.
void im2col(float *col, const float *x, const Shape &s, int keep) {
    for (int c = 0; c < s.C; c++)
        for (int r = 0; r < s.R; r++)
            for (int q = 0; q < s.S; q++) {
                float *row = col + (((size_t)c * s.R + r) * s.S + q) * s.cols();
                for (int oy = 0; oy < s.Ho; oy++)
                    for (int ox = 0; ox < s.Wo; ox++) {
                        long t = tap_at(s, r, q, oy, ox);
                        row[(size_t)oy * s.Wo + ox] =
                            t < 0 ? 0.0f : emu_round_mantissa(x[(size_t)c * s.H * s.W + t], keep);
                    }
            }
}

// dx[c][tap] += dcol[...] for one sample, taps in the order (r, q) from `first`
// round (a rotation: the same sums, added in another order).
void col2im_add(float *dx, const float *dcol, const Shape &s, int first) {
    int taps = s.R * s.S;
    for (int c = 0; c < s.C; c++)
        for (int i = 0; i < taps; i++) {
            int rq = (i + first) % taps, r = rq / s.S, q = rq % s.S;
            const float *row = dcol + (((size_t)c * s.R + r) * s.S + q) * s.cols();
            for (int oy = 0; oy < s.Ho; oy++)
                for (int ox = 0; ox < s.Wo; ox++) {
                    long t = tap_at(s, r, q, oy, ox);
                    if (t >= 0) dx[(size_t)c * s.H * s.W + t] += row[(size_t)oy * s.Wo + ox];
                }
        }
}

std::vector<float> rounded_copy(const float *p, size_t n, int keep) {
    std::vector<float> v(p, p + n);
    for (float &f : v) f = emu_round_mantissa(f, keep);
    return v;
}

// y = alpha t + beta y; with beta = 0, y is written without being read.
void blend(float *y, const float *t, size_t n, float alpha, float beta) {
    for (size_t i = 0; i < n; i++) y[i] = beta == 0.0f ? alpha * t[i] : alpha * t[i] + beta * y[i];
}

// The workspace an algorithm needs: one sample's columns for the algorithms
// that keep them there (the others hold them internally).
size_t fwd_ws(const Shape &s, int algo) {
    return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ? s.col_bytes() : 0;
}
size_t bwd_data_ws(const Shape &s, int algo) { return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 ? s.col_bytes() : 0; }
size_t bwd_filter_ws(const Shape &s, int algo) {
    return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ? s.col_bytes() : 0;
}

// Column buffer: the caller's workspace (checked for size) or an internal one;
// the workspace is filled with NaN first, so one shared with live data shows.
cudnnStatus_t columns(const Shape &s, size_t need, void *ws, size_t ws_bytes, std::vector<float> &own, float **col) {
    if (need == 0) {
        own.assign(s.rows() * s.cols(), 0.0f);
        *col = own.data();
        return CUDNN_STATUS_SUCCESS;
    }
    if (!ws || ws_bytes < need) return CUDNN_STATUS_BAD_PARAM;
    memset(ws, 0xff, need);
    *col = (float *)ws;
    return CUDNN_STATUS_SUCCESS;
}

template <class Perf> void perf_entry(Perf *p, int algo, size_t mem, cudnnDeterminism_t det, cudnnMathType_t m) {
    memset(p, 0, sizeof *p);
    p->algo = (decltype(p->algo))algo;
    p->status = CUDNN_STATUS_SUCCESS;
    p->time = -1.0f;  // heuristics, not timed
    p->memory = mem;
    p->determinism = det;
    p->mathType = m;
}
// The backward heuristics' list: ALGO_0 (non-deterministic, no workspace) first, then ALGO_1.
template <class Perf> void backward_list(Perf *perf, int requested, int *returned, size_t algo1_ws, cudnnMathType_t m) {
    *returned = requested < 2 ? requested : 2;
    perf_entry(&perf[0], 0, 0, CUDNN_NON_DETERMINISTIC, m);
    if (*returned > 1) perf_entry(&perf[1], 1, algo1_ws, CUDNN_DETERMINISTIC, m);
}
}  // namespace

size_t cudnnGetVersion(void) { return 90000; }
const char *cudnnGetErrorString(cudnnStatus_t s) {
    switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM (emulated)";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED (emulated)";
    default: return "CUDNN_STATUS_EXECUTION_FAILED (emulated)";
    }
}
cudnnStatus_t cudnnCreate(cudnnHandle_t *h) { return *h = new EmuDnn{0}, CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) { return delete h, CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetStream(cudnnHandle_t, cudaStream_t) { return CUDNN_STATUS_SUCCESS; }

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *t) {
    return *t = new EmuTensorDesc{0, 0, 0, 0, 0}, CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t t) { return delete t, CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t t, cudnnTensorFormat_t f, cudnnDataType_t dt, int n,
                                         int c, int h, int w) {
    if (f != CUDNN_TENSOR_NCHW || dt != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
    *t = EmuTensorDesc{n, c, h, w, 1};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *f) {
    return *f = new EmuFilterDesc{0, 0, 0, 0, 0}, CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t f) { return delete f, CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t f, cudnnDataType_t dt, cudnnTensorFormat_t fmt,
                                         int k, int c, int h, int w) {
    if (fmt != CUDNN_TENSOR_NCHW || dt != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
    if (k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
    *f = EmuFilterDesc{k, c, h, w, 1};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *c) {
    return *c = new EmuConvDesc{0, 0, 1, 1, 1, 1, 0, 0, CUDNN_DEFAULT_MATH}, CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t c) {
    return delete c, CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t c, int pad_h, int pad_w, int u, int v,
                                              int dil_h, int dil_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute) {
    if (compute != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
    if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dil_h <= 0 || dil_w <= 0) return CUDNN_STATUS_BAD_PARAM;
    c->ph = pad_h, c->pw = pad_w, c->sh = u, c->sw = v, c->dh = dil_h, c->dw = dil_w;
    c->flip = mode == CUDNN_CONVOLUTION, c->set = 1;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t c, cudnnMathType_t m) {
    return c->math = m, CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t c,
                                                    const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
                                                    int *n, int *ch, int *h, int *wd) {
    cudnnStatus_t st = out_dims(c, x, w, h, wd);
    if (st) return st;
    *n = x->n, *ch = w->k;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                     const cudnnFilterDescriptor_t w,
                                                     const cudnnConvolutionDescriptor_t c,
                                                     const cudnnTensorDescriptor_t y, const int requested,
                                                     int *returned, cudnnConvolutionFwdAlgoPerf_t *perf) {
    Shape s;
    if (shape_of(x, w, c, y, &s) || requested < 1) return CUDNN_STATUS_BAD_PARAM;
    int algos[] = {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM};
    *returned = requested < 2 ? requested : 2;
    for (int i = 0; i < *returned; i++)
        perf_entry(&perf[i], algos[i], fwd_ws(s, algos[i]), CUDNN_DETERMINISTIC, c->math);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t, const cudnnFilterDescriptor_t w,
                                                          const cudnnTensorDescriptor_t dy,
                                                          const cudnnConvolutionDescriptor_t c,
                                                          const cudnnTensorDescriptor_t dx, const int requested,
                                                          int *returned, cudnnConvolutionBwdDataAlgoPerf_t *perf) {
    Shape s;
    if (shape_of(dx, w, c, dy, &s) || requested < 1) return CUDNN_STATUS_BAD_PARAM;
    backward_list(perf, requested, returned, bwd_data_ws(s, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1), c->math);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                            const cudnnTensorDescriptor_t dy,
                                                            const cudnnConvolutionDescriptor_t c,
                                                            const cudnnFilterDescriptor_t dw, const int requested,
                                                            int *returned, cudnnConvolutionBwdFilterAlgoPerf_t *perf) {
    Shape s;
    if (shape_of(x, dw, c, dy, &s) || requested < 1) return CUDNN_STATUS_BAD_PARAM;
    backward_list(perf, requested, returned, bwd_filter_ws(s, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1), c->math);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                      const cudnnFilterDescriptor_t w,
                                                      const cudnnConvolutionDescriptor_t c,
                                                      const cudnnTensorDescriptor_t y, cudnnConvolutionFwdAlgo_t a,
                                                      size_t *bytes) {
    Shape s;
    if (shape_of(x, w, c, y, &s)) return CUDNN_STATUS_BAD_PARAM;
    return *bytes = fwd_ws(s, a), CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t, const cudnnFilterDescriptor_t w,
                                                           const cudnnTensorDescriptor_t dy,
                                                           const cudnnConvolutionDescriptor_t c,
                                                           const cudnnTensorDescriptor_t dx,
                                                           cudnnConvolutionBwdDataAlgo_t a, size_t *bytes) {
    Shape s;
    if (shape_of(dx, w, c, dy, &s)) return CUDNN_STATUS_BAD_PARAM;
    return *bytes = bwd_data_ws(s, a), CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                             const cudnnTensorDescriptor_t dy,
                                                             const cudnnConvolutionDescriptor_t c,
                                                             const cudnnFilterDescriptor_t dw,
                                                             cudnnConvolutionBwdFilterAlgo_t a, size_t *bytes) {
    Shape s;
    if (shape_of(x, dw, c, dy, &s)) return CUDNN_STATUS_BAD_PARAM;
    return *bytes = bwd_filter_ws(s, a), CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd,
                                      const void *x, const cudnnFilterDescriptor_t wd, const void *w,
                                      const cudnnConvolutionDescriptor_t c, cudnnConvolutionFwdAlgo_t a, void *ws,
                                      size_t ws_bytes, const void *beta, const cudnnTensorDescriptor_t yd, void *y) {
    Shape s;
    if (shape_of(xd, wd, c, yd, &s) || !x || !w || !y) return CUDNN_STATUS_BAD_PARAM;
    if (a != CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM && a != CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM)
        return CUDNN_STATUS_NOT_SUPPORTED;
    std::vector<float> own, t((size_t)s.K * s.cols());
    float *col;
    if (columns(s, fwd_ws(s, a), ws, ws_bytes, own, &col)) return CUDNN_STATUS_BAD_PARAM;
    int keep = keep_bits(c);
    std::vector<float> wr = rounded_copy((const float *)w, (size_t)s.K * s.rows(), keep);
    h->calls++;
    for (int n = 0; n < s.N; n++) {
        im2col(col, (const float *)x + (size_t)n * s.C * s.H * s.W, s, keep);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.K, (int)s.cols(), (int)s.rows(), 1.0f, wr.data(),
                    (int)s.rows(), col, (int)s.cols(), 0.0f, t.data(), (int)s.cols());
        blend((float *)y + (size_t)n * s.K * s.cols(), t.data(), t.size(), *(const float *)alpha, *(const float *)beta);
    }
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha, const cudnnFilterDescriptor_t wd,
                                           const void *w, const cudnnTensorDescriptor_t dyd, const void *dy,
                                           const cudnnConvolutionDescriptor_t c, cudnnConvolutionBwdDataAlgo_t a,
                                           void *ws, size_t ws_bytes, const void *beta,
                                           const cudnnTensorDescriptor_t dxd, void *dx) {
    Shape s;
    if (shape_of(dxd, wd, c, dyd, &s) || !w || !dy || !dx) return CUDNN_STATUS_BAD_PARAM;
    if (a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 && a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_1)
        return CUDNN_STATUS_NOT_SUPPORTED;
    std::vector<float> own, t((size_t)s.C * s.H * s.W);
    float *dcol;
    if (columns(s, bwd_data_ws(s, a), ws, ws_bytes, own, &dcol)) return CUDNN_STATUS_BAD_PARAM;
    int keep = keep_bits(c);
    std::vector<float> wr = rounded_copy((const float *)w, (size_t)s.K * s.rows(), keep);
    // ALGO_0 stands for the atomics of the real one: the taps add in a
    // rotating order, so its float sums change from call to call
    int first = a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 ? (int)(h->calls % (unsigned long)(s.R * s.S)) : 0;
    h->calls++;
    for (int n = 0; n < s.N; n++) {
        std::vector<float> dyr =
            rounded_copy((const float *)dy + (size_t)n * s.K * s.cols(), (size_t)s.K * s.cols(), keep);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)s.rows(), (int)s.cols(), s.K, 1.0f, wr.data(),
                    (int)s.rows(), dyr.data(), (int)s.cols(), 0.0f, dcol, (int)s.cols());
        std::fill(t.begin(), t.end(), 0.0f);
        col2im_add(t.data(), dcol, s, first);
        blend((float *)dx + (size_t)n * t.size(), t.data(), t.size(), *(const float *)alpha, *(const float *)beta);
    }
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd,
                                             const void *x, const cudnnTensorDescriptor_t dyd, const void *dy,
                                             const cudnnConvolutionDescriptor_t c, cudnnConvolutionBwdFilterAlgo_t a,
                                             void *ws, size_t ws_bytes, const void *beta,
                                             const cudnnFilterDescriptor_t dwd, void *dw) {
    Shape s;
    if (shape_of(xd, dwd, c, dyd, &s) || !x || !dy || !dw) return CUDNN_STATUS_BAD_PARAM;
    if (a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 && a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1)
        return CUDNN_STATUS_NOT_SUPPORTED;
    std::vector<float> own, t((size_t)s.K * s.rows(), 0.0f);
    float *col;
    if (columns(s, bwd_filter_ws(s, a), ws, ws_bytes, own, &col)) return CUDNN_STATUS_BAD_PARAM;
    int keep = keep_bits(c);
    // ALGO_0: the samples add in a rotating order (see backward data)
    int first = a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 ? (int)(h->calls % (unsigned long)s.N) : 0;
    h->calls++;
    for (int i = 0; i < s.N; i++) {
        int n = (i + first) % s.N;
        im2col(col, (const float *)x + (size_t)n * s.C * s.H * s.W, s, keep);
        std::vector<float> dyr =
            rounded_copy((const float *)dy + (size_t)n * s.K * s.cols(), (size_t)s.K * s.cols(), keep);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.K, (int)s.rows(), (int)s.cols(), 1.0f, dyr.data(),
                    (int)s.cols(), col, (int)s.cols(), 1.0f, t.data(), (int)s.rows());
    }
    blend((float *)dw, t.data(), t.size(), *(const float *)alpha, *(const float *)beta);
    return CUDNN_STATUS_SUCCESS;
}
