// calib.h — the pruning calibration set (DESIGN §4): prune.calib_samples noisy
// inputs x_t (x_0 from the training data, t uniform over the training
// timesteps, Gaussian noise, the sample's caption), drawn from runtime.seed
// alone so every rank builds the same set, and the teacher's output on it.
// Everything that measures "how much does the output move" runs through here.
#ifndef LD_CALIB_H
#define LD_CALIB_H
#include <stdint.h>

#include "io/config.h"
#include "model/unet.h"

typedef struct {
    int n, C, H, W, L, D;
    int Co;           // output channels (= C for a diffusion model; fixtures may differ)
    int batch;        // samples per forward
    float *xt;        // [n, C, H, W]
    float *noise;     // [n, C, H, W] (the task-loss target)
    float *ctx;       // [n, L, D]
    float *t;         // [n]
    float *teacher;   // [n, Co, H, W]: the teacher's output, filled by calib_teacher
} Calib;

// prune.calib_samples samples of the training split, prune.batch per forward;
// the model m is what the data is checked against; seed = runtime.seed.
int calib_build(Calib *cs, const PruneConfig *pc, const DataConfig *dc, const DiffusionConfig *diff,
                const ModelConfig *m, long seed, Error *e);
// The same construction on another split and size (evaluation: "test", eval.samples).
int calib_build_from(Calib *cs, const DataConfig *dc, const DiffusionConfig *diff, const ModelConfig *m, long seed,
                     const char *split, int n, int batch, Error *e);
void calib_free(Calib *cs);

// Runs u on the whole set (chunks of cs->batch) with `skip` bypassed.
// out (NULL: not kept) gets [n, Co, H, W]. If mse is given it receives
// mean((out - cs->teacher)^2) over every element: the output loss.
int calib_run(UNet *u, const Calib *cs, const uint8_t *skip, float *out, double *mse, Error *e);

// The teacher's outputs (every rank computes them once).
int calib_teacher(UNet *teacher, Calib *cs, Error *e);
#endif
