// safetensors.h — read and write the safetensors format (8-byte LE header
// length, JSON header, raw little-endian data). Reading converts F32/F16/BF16
// to fp32 tensor by tensor (no whole-file copy: SD-1.5 is 3.4 GB); writing is
// F32 only and atomic (temp file, fsync, rename). Every malformed input is an
// Error naming the file and what is wrong, never a crash.
#ifndef LD_SAFETENSORS_H
#define LD_SAFETENSORS_H
#include <stdint.h>

#include "core/common.h"
#include "core/params.h"

#define ST_MAX_DIMS 8

typedef enum { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 } StDtype;

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;  // data_offsets, relative to the end of the header
    int shard;            // sharded checkpoints: 1 + index into StFile.shards of its file; 0: this file
} StTensor;

typedef struct StFile {
    char *path;
    int fd;
    uint64_t file_size, data_start;
    int n_tensors;
    StTensor *tensors;  // in header order
    int n_meta;
    char **meta_keys, **meta_vals;
    int n_shards;            // a sharded checkpoint (diffusers' *.safetensors.index.json):
    struct StFile *shards;   // the shard files; tensors point into them; fd < 0 for the index
} StFile;

// path: a .safetensors file, or a sharded checkpoint's *.safetensors.index.json
// (or *.safetensors.index.VARIANT.json)
// (its "weight_map" names each tensor's shard, beside it): the tensors of all
// shards, each checked to be where the map says and in no other shard.
int st_open(StFile *f, const char *path, Error *e);
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);  // NULL if absent
const char *st_meta(const StFile *f, const char *key);        // NULL if absent
const char *st_dtype_name(StDtype d);
// Reads tensor t into dst (t->numel floats), converting to fp32.
int st_read_f32(const StFile *f, const StTensor *t, float *dst, Error *e);

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
} StOut;

// out[0..pt->n) describe the tensors of pt with their values in params (the
// names are pt's, borrowed): what every writer of a parameter buffer passes on.
void st_outs_from_params(StOut *out, const ParamTable *pt, const float *params);

// Writes n F32 tensors and n_meta key/value pairs (meta[2i], meta[2i+1]).
int st_write(const char *path, const StOut *tensors, int n, const char *const *meta, int n_meta,
             Error *e);
#endif
