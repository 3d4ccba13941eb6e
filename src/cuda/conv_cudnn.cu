// conv_cudnn.cu — see conv_cudnn.h. One plan per convolution shape and GEMM
// precision: NCHW fp32 descriptors and, per direction, the first algorithm of
// cuDNN's heuristics (cudnnGet*Algorithm_v7, no timing runs, so the choice
// repeats run to run) that is deterministic and needs at most DNN_WS_CAP of
// workspace. Deterministic only: cuDNN's fastest backward algorithms often add
// with atomics, and a distillation must give the same bits when rerun.
// Precision: fp32 allows only FMA kernels (CUDNN_FMA_MATH); tf32 and bf16 allow
// TF32 tensor cores (the tensors are fp32: cuDNN has no BF16 math on them).
// The workspace is the context's scratch (dev_scratch).
#include <stdio.h>
#include <string.h>

#include "cuda/conv_cudnn.h"
#include "cuda/cu_common.cuh"
#ifdef LD_CUDA_EMU
#include "cuda/emu/cudnn_emu.h"
#else
#include <cudnn.h>
#endif

#define DNN_WS_CAP ((size_t)256 << 20)  // bytes; conv.cu's im2col path holds up to 2 x 128 MiB
#define DNN_MAX_ALGOS 16

static void dnn_ok_at(cudnnStatus_t s, const char *call, const char *file, int line) {
    if (s != CUDNN_STATUS_SUCCESS) fatal_at(file, line, "cuDNN call %s failed: %s", call, cudnnGetErrorString(s));
}
#define DNN_CHECK(call) dnn_ok_at((call), #call, __FILE__, __LINE__)

typedef struct {
    int algo;          // -1: no deterministic algorithm within the cap (the caller's own path runs)
    size_t ws;         // workspace bytes
    cudnnMathType_t math;  // the math type the heuristics gave the algorithm, set before each call
} DnnAlgo;

typedef struct {
    int key[9];  // B, Cin, H, W, Cout, k, stride, pad, precision
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    DnnAlgo fwd, data, filter;
} DnnPlan;

struct DnnConvs {
    cudnnHandle_t h;
    DnnPlan *plans;
    int n, cap;
};

// An algorithm the heuristics list allows: it ran there (status), repeats
// (determinism), fits the cap, and at fp32 multiplies in FP32.
template <class Perf> static DnnAlgo pick(const Perf *p, int n, GemmPrecision prec) {
    for (int i = 0; i < n; i++) {
        if (p[i].status != CUDNN_STATUS_SUCCESS || p[i].determinism != CUDNN_DETERMINISTIC || p[i].memory > DNN_WS_CAP)
            continue;
        if (prec == GEMM_FP32 && p[i].mathType != CUDNN_FMA_MATH) continue;
        return DnnAlgo{(int)p[i].algo, p[i].memory, p[i].mathType};
    }
    return DnnAlgo{-1, 0, CUDNN_DEFAULT_MATH};
}

static DnnPlan *plan_for(DnnConvs *c, DevCtx *d, int B, int Cin, int H, int W, int Cout, int k, int stride, int pad) {
    GemmPrecision prec = dev_precision(d);
    int key[9] = {B, Cin, H, W, Cout, k, stride, pad, (int)prec};
    for (int i = 0; i < c->n; i++)
        if (!memcmp(c->plans[i].key, key, sizeof key)) return &c->plans[i];
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 32;
        c->plans = (DnnPlan *)xrealloc(c->plans, (size_t)c->cap * sizeof *c->plans);
    }
    DnnPlan *p = &c->plans[c->n++];
    memset(p, 0, sizeof *p);
    memcpy(p->key, key, sizeof key);
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    DNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
    DNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
    DNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
    DNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));
    DNN_CHECK(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, Cin, H, W));
    DNN_CHECK(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, Cout, Ho, Wo));
    DNN_CHECK(cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, Cout, Cin, k, k));
    // cross-correlation: what PyTorch, diffusers and conv.cu call a convolution
    DNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                              CUDNN_DATA_FLOAT));
    DNN_CHECK(cudnnSetConvolutionMathType(p->conv, prec == GEMM_FP32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH));
    int n = 0, on, oc, oh, ow;
    DNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &on, &oc, &oh, &ow));
    if (on != B || oc != Cout || oh != Ho || ow != Wo)
        FATAL("cuDNN's output of conv %dx%d stride %d pad %d on [%d,%d,%d,%d] is [%d,%d,%d,%d], not [%d,%d,%d,%d]", k,
              k, stride, pad, B, Cin, H, W, on, oc, oh, ow, B, Cout, Ho, Wo);
    cudnnConvolutionFwdAlgoPerf_t fp[DNN_MAX_ALGOS];
    DNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(c->h, p->x, p->w, p->conv, p->y, DNN_MAX_ALGOS, &n, fp));
    p->fwd = pick(fp, n, prec);
    cudnnConvolutionBwdDataAlgoPerf_t dp[DNN_MAX_ALGOS];
    DNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(c->h, p->w, p->y, p->conv, p->x, DNN_MAX_ALGOS, &n, dp));
    p->data = pick(dp, n, prec);
    cudnnConvolutionBwdFilterAlgoPerf_t wp[DNN_MAX_ALGOS];
    DNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->h, p->x, p->y, p->conv, p->w, DNN_MAX_ALGOS, &n, wp));
    p->filter = pick(wp, n, prec);
    return p;
}

// The workspace of one call: the context's scratch, NULL for none.
static void *workspace(DevCtx *d, size_t bytes) {
    return bytes ? (void *)dev_scratch(d, (bytes + sizeof(float) - 1) / sizeof(float)) : NULL;
}

extern "C" {
DnnConvs *dnn_convs_open(DevCtx *d, Error *e) {
    cudnnHandle_t h;
    cudnnStatus_t s = cudnnCreate(&h);
    if (s != CUDNN_STATUS_SUCCESS) {
        errorf(e, "cuDNN could not start on CUDA device %d: %s", dev_index(d), cudnnGetErrorString(s));
        return NULL;
    }
    DNN_CHECK(cudnnSetStream(h, dev_stream(d)));
    DnnConvs *c = (DnnConvs *)xcalloc(1, sizeof *c);
    c->h = h;
    return c;
}

void dnn_convs_free(DnnConvs *c) {
    if (!c) return;
    // best effort, as dev_close: it also runs on error paths
    for (int i = 0; i < c->n; i++) {
        cudnnDestroyTensorDescriptor(c->plans[i].x);
        cudnnDestroyTensorDescriptor(c->plans[i].y);
        cudnnDestroyFilterDescriptor(c->plans[i].w);
        cudnnDestroyConvolutionDescriptor(c->plans[i].conv);
    }
    free(c->plans);
    cudnnDestroy(c->h);
    free(c);
}

void dnn_convs_version(char *buf, size_t n) {
#ifdef LD_CUDA_EMU
    snprintf(buf, n, "cuDNN (emulated)");
#else
    size_t v = cudnnGetVersion();  // major * 10000 + minor * 100 + patch since cuDNN 9
    snprintf(buf, n, "cuDNN %zu.%zu.%zu", v / 10000, v / 100 % 100, v % 100);
#endif
}

int dnn_conv2d_forward(DnnConvs *c, DevCtx *d, float *out, const float *x, const float *w, int B, int Cin, int H,
                       int W, int Cout, int k, int stride, int pad) {
    DnnPlan *p = plan_for(c, d, B, Cin, H, W, Cout, k, stride, pad);
    if (p->fwd.algo < 0) return 0;
    const float one = 1.0f, zero = 0.0f;
    void *ws = workspace(d, p->fwd.ws);
    DNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->fwd.math));
    DNN_CHECK(cudnnConvolutionForward(c->h, &one, p->x, x, p->w, w, p->conv, (cudnnConvolutionFwdAlgo_t)p->fwd.algo,
                                      ws, p->fwd.ws, &zero, p->y, out));
    return 1;
}

int dnn_conv2d_backward_data(DnnConvs *c, DevCtx *d, float *dx, const float *dout, const float *w, int B, int Cin,
                             int H, int W, int Cout, int k, int stride, int pad) {
    DnnPlan *p = plan_for(c, d, B, Cin, H, W, Cout, k, stride, pad);
    if (p->data.algo < 0) return 0;
    const float one = 1.0f;  // beta = 1: backward adds into dx (kernels.h's rule)
    void *ws = workspace(d, p->data.ws);
    DNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->data.math));
    DNN_CHECK(cudnnConvolutionBackwardData(c->h, &one, p->w, w, p->y, dout, p->conv,
                                           (cudnnConvolutionBwdDataAlgo_t)p->data.algo, ws, p->data.ws, &one, p->x,
                                           dx));
    return 1;
}

int dnn_conv2d_backward_filter(DnnConvs *c, DevCtx *d, float *dw, const float *dout, const float *x, int B, int Cin,
                               int H, int W, int Cout, int k, int stride, int pad) {
    DnnPlan *p = plan_for(c, d, B, Cin, H, W, Cout, k, stride, pad);
    if (p->filter.algo < 0) return 0;
    const float one = 1.0f;
    void *ws = workspace(d, p->filter.ws);
    DNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->filter.math));
    DNN_CHECK(cudnnConvolutionBackwardFilter(c->h, &one, p->x, x, p->y, dout, p->conv,
                                             (cudnnConvolutionBwdFilterAlgo_t)p->filter.algo, ws, p->filter.ws, &one,
                                             p->w, dw));
    return 1;
}
}
