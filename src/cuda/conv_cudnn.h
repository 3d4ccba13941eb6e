// conv_cudnn.h — 2-D convolutions through cuDNN (conv_cudnn.cu), which conv.cu
// calls when a context's convolutions are on cuDNN (dev_set_conv). Only in
// builds with cuDNN (LD_CUDNN; the emulator brings its own, cudnn_emu.h).
#ifndef LD_CONV_CUDNN_H
#define LD_CONV_CUDNN_H
#include "core/common.h"
#include "cuda/dev.h"

// This build has cuDNN: an LD_CUDA build that found it, or the emulator's.
#if defined(LD_CUDNN) || defined(LD_CUDA_EMU)
#define LD_HAVE_CUDNN 1
#endif

#ifdef __cplusplus
extern "C" {
#endif

// A context's cuDNN handle and its per-shape plans (descriptors, algorithms).
typedef struct DnnConvs DnnConvs;
DnnConvs *dnn_convs_open(DevCtx *d, Error *e);  // NULL + e where cuDNN does not start
void dnn_convs_free(DnnConvs *c);
void dnn_convs_version(char *buf, size_t n);  // "cuDNN 9.19.0"

// conv.cu's shapes (square kernel k, stride, zero padding pad, no bias here).
// Each returns 1 when done, 0 when cuDNN offers no deterministic algorithm
// within the workspace cap for this shape, and the caller runs its own path.
int dnn_conv2d_forward(DnnConvs *c, DevCtx *d, float *out, const float *x, const float *w, int B, int Cin, int H,
                       int W, int Cout, int k, int stride, int pad);                  // out = x * w
int dnn_conv2d_backward_data(DnnConvs *c, DevCtx *d, float *dx, const float *dout, const float *w, int B, int Cin,
                             int H, int W, int Cout, int k, int stride, int pad);     // dx += ...
int dnn_conv2d_backward_filter(DnnConvs *c, DevCtx *d, float *dw, const float *dout, const float *x, int B, int Cin,
                               int H, int W, int Cout, int k, int stride, int pad);   // dw += ...

#ifdef __cplusplus
}
#endif
#endif
