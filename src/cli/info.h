// info.h — `laptop-diff info`: the architecture as a table (block, layers,
// params), the candidate layers (index, diffusers name, kind, params, MACs)
// and totals, for a job file's model or a checkpoint.
#ifndef LD_INFO_H
#define LD_INFO_H
#include <stdio.h>

#include "io/config.h"

// target: a job file (.cfg) or a safetensors checkpoint. Returns 0, or -1 + e.
int info_run(FILE *out, const char *target, const char *const *sets, int n_sets, Error *e);
#endif
