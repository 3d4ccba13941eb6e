// h5data.h — the real-model dataset (DESIGN §6): an HDF5 file of precomputed
// VAE latents /latents [N,C,H,W] and text-encoder states /context [N,L,D]
// (any floating type: float16/32/64, read as float32), optionally the
// unconditional (empty-prompt) context /uncond_context [L,D] for classifier-free
// guidance. A held-out split lives in a group with the same names
// (/test/latents, /test/context). An SDXL (text_time) model also needs the
// pooled text embeddings /pooled [N,P] and the micro-conditioning /time_ids
// [N,6] (original H, W, crop top, left, target H, W), required then and
// ignored otherwise. Serial HDF5 only: each rank opens the file
// read-only and reads just its rows [start, start+count) through a hyperslab
// (the caller picks the rows; no MPI here).
#ifndef LD_H5DATA_H
#define LD_H5DATA_H
#include <stdint.h>

#include "core/common.h"
#include "model/model_config.h"

typedef struct H5Data H5Data;

typedef struct {
    int64_t n;              // rows
    int C, H, W;            // /latents [n,C,H,W]
    int L, D;               // /context [n,L,D]
    int has_uncond;         // /uncond_context [L,D] present
    int P;                  // /pooled [n,P]; 0: the file has none
    int has_time_ids;       // /time_ids [n,6] present
} H5Shape;

// Opens path read-only and checks the structure of group's datasets
// (group "" for /latents and /context, "/test" for /test/latents ...): both
// present, floating point, ranks 4 and 3, the same N >= 1, and a matching
// /uncond_context if present. NULL with e naming the file, dataset and shapes.
H5Data *h5data_open(const char *path, const char *group, Error *e);
void h5data_close(H5Data *h);
H5Shape h5data_shape(const H5Data *h);

// The shapes against the model: C == in_channels, H and W multiples of
// 2^(n_blocks-1) (the U-Net's downsampling), L == context_length,
// D == cross_attention_dim; for a text_time model /pooled [N,P] with P =
// model_pooled_dim and /time_ids [N,6] present. The error names file, dataset
// and both shapes (or the missing dataset).
int h5data_check_model(const H5Data *h, const ModelConfig *m, Error *e);

// Rows [start, start+count) as float32: latents[count*C*H*W] and
// context[count*L*D] (either may be NULL to skip it).
int h5data_read(const H5Data *h, int64_t start, int64_t count, float *latents, float *context,
                Error *e);
// Rows [start, start+count) of /pooled [count*P] and /time_ids [count*6]
// (either may be NULL); Error if asked for one the file lacks.
int h5data_read_added(const H5Data *h, int64_t start, int64_t count, float *pooled, float *time_ids, Error *e);
// /uncond_context [L*D]; Error if the file has none.
int h5data_read_uncond(const H5Data *h, float *ctx, Error *e);
#endif
