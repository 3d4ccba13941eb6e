// dataset.h — the one data interface of training, pruning calibration and
// evaluation, whatever data.source is: a sample is x [C,H,W] (pixels or
// latents), its context [L,D] and a label (-1 where there is none), and the
// epoch order is a stateless seeded permutation, so global sample k of a run is
// the same whatever the rank count and resume needs only k.
//
//   fashion-mnist  x = the padded image [1,32,32] in [-1,1]; ctx from the class
//                  caption (conditioning.h); always fully in memory (47 MB).
//   hdf5           x = /latents row, ctx = /context row; label -1. Rows
//                  [start, start+count) (the shard) are read once into memory;
//                  any other row is read from the file when asked for.
//
// Rank-count invariance with hdf5: draw the global order with dataset_order
// and let each rank dataset_get just its part of every global batch; open with
// dataset_open_shard(..., 0, 0, ...) to keep nothing resident, or with the
// rank's dataset_shard_range for a file that is read once per rank.
#ifndef LD_DATASET_H
#define LD_DATASET_H
#include <stdint.h>

#include "core/common.h"
#include "io/config.h"

typedef struct Dataset Dataset;

typedef struct {
    int64_t n;     // samples in the split (all rows, not just the shard)
    int C, H, W;   // x
    int L, D;      // ctx
    int P;         // pooled [P] + time ids [6] per sample (SDXL's text_time models); 0: none
} DatasetShape;

// The whole split in memory. split: "train" or "test" (hdf5: "test" reads
// /test/latents and /test/context). Checks the data against the model m (C,
// H and W against the U-Net, L = context_length, D = cross_attention_dim).
Dataset *dataset_open(const DataConfig *dc, const ModelConfig *m, const char *split, Error *e);
// Same, but an hdf5 source keeps only rows [start, start+count) resident
// (count 0: none). Fashion-MNIST ignores the shard: it is small.
Dataset *dataset_open_shard(const DataConfig *dc, const ModelConfig *m, const char *split, int64_t start,
                            int64_t count, Error *e);
void dataset_close(Dataset *d);

int64_t dataset_size(const Dataset *d);
DatasetShape dataset_shape(const Dataset *d);

// Sample index (0..size-1) into x [C*H*W], ctx [L*D], *label (any may be
// NULL). drop_caption: ctx is the unconditional context instead (see
// dataset_uncond). Thread-safe for fashion-mnist and for resident hdf5 rows;
// a non-resident hdf5 row is a file read (HDF5 is not thread-safe: call from
// one thread) and an I/O failure there is fatal (the file was checked at open).
void dataset_get(const Dataset *d, int64_t index, float *x, float *ctx, int *label,
                 int drop_caption);
// SDXL's added conditioning of a sample, for a text_time model (P > 0):
// pooled [P] and time_ids [6] (either may be NULL). hdf5: /pooled and /time_ids
// rows; fashion-mnist: neutral values, pooled zeros and time ids (H, W, 0, 0,
// H, W). drop_caption (as dataset_get's): pooled zeros, SDXL's empty prompt;
// the time ids stay. Same threading rules as dataset_get.
void dataset_get_added(const Dataset *d, int64_t index, float *pooled, float *time_ids, int drop_caption);

// The unconditional context [L*D] (classifier-free guidance): the empty
// caption's for fashion-mnist; for hdf5 /uncond_context if the file has it,
// else zeros (SDXL's convention for the empty prompt).
void dataset_uncond(const Dataset *d, float *ctx);

// Contiguous near-equal shards: rank r of size gets [start, start+count);
// the first n % size ranks get one row more.
void dataset_shard_range(int64_t n, int rank, int size, int64_t *start, int64_t *count);

// The position-th sample (0 <= position < n) of epoch's permutation of [0, n):
// a keyed Feistel network with cycle-walking (key rng_bits(seed,
// RNG_DATA_ORDER, epoch)), so any position is O(1) with no table and no state.
// Global sample k of a run is dataset_order(seed, k / n, n, k % n).
int64_t dataset_order(uint64_t seed, int64_t epoch, int64_t n, int64_t position);
#endif
