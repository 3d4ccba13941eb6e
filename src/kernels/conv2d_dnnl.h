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
    dnnl_memory_t user;  // the caller's buffer (handle set per call)
    dnnl_memory_t prim;  // the primitive's layout, or NULL = user
    dnnl_primitive_t reorder;  // user -> prim (input) or prim -> user (output)
    size_t floats;     // prim's size, rounded up to 64 bytes; its buffer is the context's work
                       // buffer, shared by all primitives, so memory does not grow with the cache
} DnnlArg;

enum { DNNL_CONV_FWD = 0, DNNL_CONV_BWD_DATA = 1, DNNL_CONV_BWD_WEIGHTS = 2 };

// A primitive for one shape, batch, direction, layout mode and thread count
// (oneDNN sizes its blocking by the threads present when it is made).
typedef struct {
    int key[12];
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
// Writes "oneDNN 2.6.3" (the library's version) into buf and returns 1; in a
// build without it writes "" and returns 0.
int conv2d_dnnl_version(char *buf, size_t n);
#endif
