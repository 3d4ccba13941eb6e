// checkpoint.h — U-Net weights <-> safetensors with diffusers names. Loading
// is strict: every tensor of the model must be in the file with its exact
// shape, and the file may hold nothing else. Our files carry the architecture
// (__metadata__ "config", diffusers JSON) and the removed layers ("removed",
// comma-separated diffusers prefixes), so a pruned student loads on its own.
#ifndef LD_CHECKPOINT_H
#define LD_CHECKPOINT_H
#include "model/safetensors.h"
#include "model/unet.h"

// The removed candidates' names, comma-separated ("" for none; caller frees):
// the "removed" metadata of model files and training checkpoints.
char *unet_removed_names(const UNet *u);
// 0 when tensor t of f has parameter p's shape, else an error naming both shapes.
int tensor_check_shape(const StFile *f, const StTensor *t, const ParamTensor *p, Error *e);
// Checks names and shapes only (no data read): what `info` needs.
int unet_check_weights(const UNet *u, const StFile *f, Error *e);
int unet_load_weights(UNet *u, const StFile *f, Error *e);

// Writes every parameter; extra metadata pairs (meta[2i], meta[2i+1]) join
// "config" and "removed". Atomic (safetensors.c).
int unet_save(const UNet *u, const char *path, const char *const *meta, int n_meta, Error *e);

// The architecture and removed layers a checkpoint describes: its own
// metadata, else a diffusers config.json beside it, else inferred from shapes
// (starting from *cfg, e.g. SD-1.5 defaults for head counts).
// absent: one flag per candidate of the full architecture (caller frees), at
// the granularity of the removed names (granularity_of_names, model/unet.h).
int checkpoint_describe(const StFile *f, ModelConfig *cfg, uint8_t **absent, Error *e);

// The safetensors file a model path names: the path itself, or for a folder
// (diffusers' unet/: config.json + weights) its diffusion_pytorch_model.safetensors,
// else diffusion_pytorch_model.fp16.safetensors, else a sharded checkpoint's
// index (diffusion_pytorch_model.safetensors.index.json or its fp16 forms).
// Error naming the folder if none.
int checkpoint_resolve(const char *path, char *file, size_t n, Error *e);

// Opens, describes, builds and loads: the whole "give me this model" step;
// path is a .safetensors file or a diffusers unet/ folder (checkpoint_resolve).
UNet *unet_from_file(const char *path, const ModelConfig *defaults, Error *e);
// The same without reading the weights (names and shapes checked; parameters zero).
UNet *unet_describe_file(const char *path, const ModelConfig *defaults, Error *e);
// Only the header: describes and builds the model and checks every tensor's
// name and shape; no data is read, parameters stay zero (an untouched buffer,
// not resident). Then unet_load_file fills u->params, wherever it points
// (unet_adopt_params): how ranks load one teacher per node.
UNet *unet_shape_file(const char *path, const ModelConfig *defaults, Error *e);
int unet_load_file(UNet *u, const char *path, Error *e);

// Marks the candidate called `name`; an unknown name is an error ("what: ...").
int candidate_mark(const UNet *full, const char *name, uint8_t *flags, const char *what, Error *e);
// The same for each name of a comma-separated list (the "removed" metadata).
int candidates_from_names(const UNet *full, const char *names, uint8_t *flags, const char *what, Error *e);
#endif
