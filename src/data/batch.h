// batch.h — one rank's share of a step's global batch for denoising training:
// global sample k = step * B + g picks data (seeded epoch order), caption
// dropout, timestep and noise all keyed by (seed, step, g), so any split of the
// batch over ranks draws exactly the same samples. Shared by train and distill.
#ifndef LD_BATCH_H
#define LD_BATCH_H
#include "io/config.h"
#include "data/dataset.h"
#include "diffusion/schedule.h"

typedef struct {
    int b;        // capacity (samples)
    size_t numel; // per sample: C*H*W
    int LD;       // per sample context: L*D
    float *x0, *xt, *noise, *ctx, *tf;
    int *ti;
} Batch;

void batch_alloc(Batch *bt, int b, size_t numel, int LD);
void batch_free(Batch *bt);
// Fills positions [g0, g0 + b) of step `step`'s global batch of B, drawn from
// seed (runtime.seed), dropping captions at dc->cfg_drop.
void batch_fill(Batch *bt, const DataConfig *dc, long seed, const Dataset *d, const Schedule *s, long step, long g0,
                int b, int B);
#endif
