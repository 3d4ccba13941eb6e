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
    int P;            // pooled width of a text_time model (SDXL), else 0
    int Co;           // output channels (= C for a diffusion model; fixtures may differ)
    int batch;        // samples per forward
    float *xt;        // [n, C, H, W]
    float *noise;     // [n, C, H, W] (the task-loss target)
    float *ctx;       // [n, L, D]
    float *t;         // [n]
    float *pooled;    // [n, P] and
    float *time_ids;  // [n, 6]: SDXL's added conditioning (NULL when P == 0)
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

// The same on samples [first, first + count) only (chunks of cs->batch from
// first): out (NULL: not kept) gets [count, Co, H, W], and sse (NULL: not
// wanted) the *sum* of (out - cs->teacher)^2 over those samples' elements, so
// partial sums of disjoint ranges add up to calib_run's (up to rounding).
int calib_run_range(UNet *u, const Calib *cs, const uint8_t *skip, int first, int count, float *out, double *sse,
                    Error *e);

// The added conditioning of samples [first, first + b) (all NULL when P == 0).
UNetAdded calib_added(const Calib *cs, int first);

// The set in backend be's memory, for a U-Net there (calib_run and
// calib_run_range then run on the device): on the CPU dst is src itself
// (shared buffers); on a device, copies of every array, the teacher's outputs
// included. Free with calib_free_on.
void calib_on(Calib *dst, const Calib *src, const Backend *be);
void calib_free_on(Calib *c, const Backend *be);

// The calibration shards that split scoring's work across ranks: fixed chunks
// of cs->batch samples in order (the last may be shorter). They depend on the
// set alone, never on the rank count, and each is one forward pass.
int calib_shards(const Calib *cs);
void calib_shard(const Calib *cs, int s, int *first, int *count);

// The teacher's outputs (every rank computes them once).
int calib_teacher(UNet *teacher, Calib *cs, Error *e);

// calib_teacher with the teacher on its own backend: dst becomes the set in
// that backend's memory (calib_on; the teacher's outputs are not uploaded but
// computed there), and the outputs also come back into cs->teacher, so host
// code sees what calib_teacher gives (within the device's rounding). On the
// CPU it is calib_teacher + calib_on. On failure dst is left empty. Free dst
// with calib_free_on(dst, teacher->be) on every path.
int calib_teacher_on(UNet *teacher, Calib *cs, Calib *dst, Error *e);
#endif
