// config.h — the job file (libconfig): one section per stage, every key with a
// documented default, range and meaning, all from a single schema table in
// config.c. Loading checks the file against that table (unknown sections and
// keys, types, ranges, array lengths, cross-key rules) and names FILE:LINE and
// the full key in every error; `--set section.key=value` overrides any key.
// The same table prints the Markdown reference and the effective config text.
#ifndef LD_CONFIG_H
#define LD_CONFIG_H
#include <stdio.h>

#include "common.h"
#include "model_config.h"

typedef struct {
    int threads;      // 0: all cores (OpenMP's default)
    long seed;        // 0 .. 2^31-1
    char device[16];  // "cpu" or "cuda"
} RuntimeConfig;

typedef struct {
    char dir[1024];  // run directory: run.h5, models, sample grids
} OutputConfig;

typedef struct {
    char path[1024];  // the job file it came from ("" for defaults + overrides only)
    ModelConfig model;
    RuntimeConfig runtime;
    OutputConfig output;
} JobConfig;

// Every key at its default (SD-1.5's U-Net, CPU, seed 1234).
void job_config_defaults(JobConfig *jc);

// Loads a job file (path may be NULL: defaults only), then applies the
// overrides `sets` ("section.key=value", later ones win) and validates.
// Returns 0, or -1 with e->msg naming file:line (or the override) and the key;
// *jc is written only on success.
int job_config_load(JobConfig *jc, const char *path, const char *const *sets, int n_sets,
                    Error *e);

// The effective config as libconfig text (every key, defaults filled in);
// loading it gives back the same JobConfig. malloc'd: the caller frees it.
char *job_config_text(const JobConfig *jc);

// The reference of every key as a Markdown table (section, key, type,
// default, range, meaning), for the README and `laptop-diff config-reference`.
void job_config_print_reference(FILE *f);
#endif
