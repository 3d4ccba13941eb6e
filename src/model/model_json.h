// model_json.h — ModelConfig <-> diffusers' config.json form, and inferring a
// ModelConfig from a checkpoint's tensor shapes when no config comes with it.
// Our own safetensors carry the config in __metadata__["config"] so a student
// file is self-describing; a diffusers checkpoint may have config.json beside it.
#ifndef LD_MODEL_JSON_H
#define LD_MODEL_JSON_H
#include "core/common.h"
#include "model/model_config.h"
#include "model/safetensors.h"

// malloc'd JSON text with diffusers' key names.
char *model_config_to_json(const ModelConfig *m);
// Parses diffusers-style JSON (unknown keys are ignored, as diffusers does;
// missing ones keep the values already in *m, except the added conditioning:
// no "addition_embed_type" is diffusers' default, none). `what` names the source in errors.
int model_config_from_json(ModelConfig *m, const char *json, const char *what, Error *e);
// Infers the architecture from tensor names and shapes. Head counts cannot be
// seen in weights: they stay as already in *m (SD-1.x: 8).
int model_config_infer(ModelConfig *m, const StFile *f, Error *e);
#endif
