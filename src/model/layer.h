// layer.h — what every U-Net layer's forward/backward gets: where parameters
// and gradients live, where to put saved activations and temporaries, and
// the backend that runs the ops.
#ifndef LD_LAYER_H
#define LD_LAYER_H
#include "core/arena.h"
#include "core/params.h"
#include "kernels/backend.h"

// MAC counts are summed in doubles, exact below 2^53; the *_macs functions return -1 beyond it.
#define LD_MACS_EXACT 9007199254740992.0

typedef struct {
    const float *params;
    float *grads;
    Arena *acts;       // saved activations (live from forward to backward)
    Arena *work;       // backward temporaries (mark/release per layer)
    const Backend *be; // where tensors live and the ops run (keeps its own work buffers)
} LayerCtx;
#endif
