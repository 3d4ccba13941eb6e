// conv2d_dnnl.h — the oneDNN backend of conv2d (conv2d_dnnl.c), in builds that
// found oneDNN (LD_HAVE_DNNL). Callers go through kernels.h's conv2d_*; this
// header is for conv2d.c and runtime.c, which owns the one DnnlCtx.
#ifndef LD_CONV2D_DNNL_H
#define LD_CONV2D_DNNL_H
#include <stddef.h>

#ifdef LD_HAVE_DNNL
#include <dnnl.h>

// One argument of a cached primitive: the caller's NCHW/OIHW memory, and where
// the primitive wants another layout (blocked mode), its own memory and the
// reorder between the two.
typedef struct {
    int arg;           // DNNL_ARG_*
    int output;        // written by the primitive
    int accumulate;    // output whose reorder adds onto the caller's buffer (sum post-op)
    int add;           // output the caller wants added onto its buffer (ARG_OUT_ADDED)
    dnnl_memory_t user;  // the caller's buffer (handle set per call)
    dnnl_memory_t prim;  // the primitive's layout, or NULL = user
    dnnl_primitive_t reorder;  // user -> prim (input) or prim -> user (output)
    size_t floats;     // prim's size, rounded up to 64 bytes; its buffer is the context's work
                       // buffer, shared by all primitives, so memory does not grow with the cache
} DnnlArg;

enum { DNNL_CONV_FWD = 0, DNNL_CONV_BWD_DATA = 1, DNNL_CONV_BWD_WEIGHTS = 2 };

// A primitive for one shape, batch, direction, layout mode and thread count
// (oneDNN sizes its blocking by the threads present when it is made).
#define DNNL_KEY_INTS 15
typedef struct {
    int key[DNNL_KEY_INTS];
    dnnl_primitive_t conv;
    DnnlArg args[4];
    int nargs;
    unsigned long last_use;
} DnnlConvPrim;

#define DNNL_CONV_CACHE 192

// The process's oneDNN state: engine, stream, the primitive cache and a work
// buffer for results that must be added (backward accumulates, oneDNN writes).
typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    DnnlConvPrim cache[DNNL_CONV_CACHE];
    int n;
    unsigned long clock;
    float *work;
    size_t work_floats;
    int act_blk;  // conv2d_dnnl_act_block's answer once asked (-1: neither), 0 before
} DnnlCtx;

// The process's DnnlCtx (runtime.c), made on first use. Convolutions run on the
// main thread (their parallelism is OpenMP inside oneDNN), so it needs no lock.
DnnlCtx *runtime_dnnl(void);
#endif

// blocked = 0: oneDNN on our NCHW/OIHW buffers as they are (format tag abcd);
// blocked = 1: oneDNN picks its own layouts (format `any`) and every call
// reorders in and out (measured in tests/bench/bench_conv.c).
// Forward writes out; backward adds into dx and dw (either may be NULL), as kernels.h says.
void conv2d_dnnl_forward(float *out, const float *x, const float *w, const float *b, int B, int Cin, int H,
                         int W, int Cout, int k, int stride, int pad, int blocked);
void conv2d_dnnl_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int B,
                          int Cin, int H, int W, int Cout, int k, int stride, int pad, int blocked);
// The same with activations the caller holds in oneDNN's blocked layout
// aBcd16b or aBcd8b (channel c of pixel p of sample n at ((n*C/blk + c/blk)*HW
// + p)*blk + c%blk; C a multiple of blk) where *_blk is 16 or 8, NCHW where 0:
// x_blk covers x and dx, out_blk / dout_blk the output and its gradient. With
// set_dx backward writes dx instead of adding onto it.
void conv2d_dnnl_forward_fmt(float *out, int out_blk, const float *x, int x_blk, const float *w, const float *b, int B,
                             int Cin, int H, int W, int Cout, int k, int stride, int pad, int blocked);
void conv2d_dnnl_backward_fmt(float *dx, int dx_blk, int set_dx, float *dw, const float *dout, int dout_blk,
                              const float *x, const float *w, int B, int Cin, int H, int W, int Cout, int k,
                              int stride, int pad, int blocked);
// The channel block oneDNN's 3x3 convolutions use for activations on this CPU
// (16 with AVX-512, 8 with AVX2), 0 where it is neither or oneDNN is not built in.
int conv2d_dnnl_act_block(void);
// Writes "oneDNN 2.6.3" (the library's version) into buf and returns 1; in a
// build without it writes "" and returns 0.
int conv2d_dnnl_version(char *buf, size_t n);
#endif
