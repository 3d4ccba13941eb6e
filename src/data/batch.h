// batch.h — one rank's share of a step's global batch for denoising training:
// global sample k = step * B + g picks data (seeded epoch order), caption
// dropout, timestep and noise all keyed by (seed, step, g), so any split of the
// batch over ranks draws exactly the same samples. Shared by train and distill.
#ifndef LD_BATCH_H
#define LD_BATCH_H
#include "io/config.h"
#include "data/dataset.h"
#include "diffusion/schedule.h"
#include "kernels/backend.h"
#include "model/unet.h"

typedef struct {
    int b;        // capacity (samples)
    size_t numel; // per sample: C*H*W
    int LD;       // per sample context: L*D
    float *x0, *xt, *noise, *ctx, *tf;
    int *ti;
    int P;                    // SDXL text_time: pooled width (0: none)
    float *pooled, *time_ids; // [b, P], [b, 6] when P > 0, else NULL
} Batch;

void batch_alloc(Batch *bt, int b, size_t numel, int LD);
// Adds room for SDXL's added conditioning (P = model_pooled_dim; 0: nothing).
void batch_alloc_added(Batch *bt, int P);
// The added conditioning of the batch's samples [i, ...) (NULLs when P == 0).
UNetAdded batch_added(const Batch *bt, int i);
void batch_free(Batch *bt);
// Fills positions [g0, g0 + b) of step `step`'s global batch of B, drawn from
// seed (runtime.seed), dropping captions at dc->cfg_drop.
void batch_fill(Batch *bt, const DataConfig *dc, long seed, const Dataset *d, const Schedule *s, long step, long g0,
                int b, int B);

// What a U-Net step reads of a batch (xt, noise, ctx, tf, added conditioning)
// in backend be's memory: on the CPU the host Batch's own buffers, on a device
// mirrors that batch_on_load fills after each batch_fill.
typedef struct {
    const Backend *be;
    float *xt, *noise, *ctx, *tf, *pooled, *time_ids;
    int P;
} BatchOn;

void batch_on_init(BatchOn *o, const Batch *bt, const Backend *be);
void batch_on_load(BatchOn *o, const Batch *bt, int b);  // the batch's first b samples
UNetAdded batch_on_added(const BatchOn *o);
void batch_on_free(BatchOn *o);
#endif
