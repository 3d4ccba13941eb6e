// train_state.h — training checkpoints: everything --resume needs to continue
// a run exactly, in one safetensors file per checkpoint,
//   <dir>/ckpt_<step, 8+ digits>.safetensors
// holding the parameters under their diffusers names, AdamW's moments as
// "optim.m.<name>" / "optim.v.<name>", optional EMA weights as "ema.<name>"
// (all F32, bit-exact), and __metadata__: format, format_version, step,
// samples_seen (the data position), seed, ranks, config_hash, config (the
// architecture, diffusers JSON), removed (absent layers), job_config (the
// effective job config text, so a resume can name the settings it changed)
// and checksum: FNV-1a 64 over the tensors' 32-bit words (parameters, then
// m, v, EMA, each in parameter order), verified on load, so a bit flip on
// disk is an error naming the file instead of a resume that diverges later.
//
// The RNG is counter-based (rng.h): seed + step are its whole state.
// Atomicity comes from st_write (temp file, fsync, rename): a file with the
// final name is always complete, so the newest name is the newest good
// checkpoint and a job killed mid-save leaves the previous one as it was
// (plus a *.tmp.<pid> file that the next save deletes). No marker file.
// What atomicity cannot prevent (a disk that truncates or flips bits after
// the rename) the checksum catches, and train_state_load_latest falls back
// to the previous checkpoint (the newest two are kept).
#ifndef LD_TRAIN_STATE_H
#define LD_TRAIN_STATE_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/common.h"
#include "model/unet.h"

#define TRAIN_STATE_FORMAT "laptop-diff-train-state"
#define TRAIN_STATE_VERSION 2  // 2: checksum and job_config (1 still loads, unverified)

typedef struct {
    long step;             // optimizer steps completed; the next is step + 1
    long samples_seen;     // global samples consumed so far (data position)
    uint64_t seed;         // the run's seed
    int ranks;             // world size that wrote it (bit-exact resume needs the same)
    char config_hash[65];  // caller's fingerprint of the job config, "" if none
    const char *config_text;  // save: the effective job config (NULL: none); load: always NULL
} TrainMeta;

// "<dir>/ckpt_%08ld.safetensors" into out; -1 if it does not fit.
int train_state_path(const char *dir, long step, char *out, size_t n);

// Writes the checkpoint of meta->step into dir (created if missing). m, v and
// ema (NULL: none) have u->pt.total floats in the parameter layout. Refuses
// (error) to write non-finite values, so a diverged run never replaces a good
// checkpoint. After the write, deletes older checkpoints beyond the newest
// `keep` (< 1 counts as 1), any with a step greater than meta->step (a future
// abandoned by resuming from an older one: it must not win find_latest), and
// temp files of saves that were killed.
int train_state_save(const char *dir, const UNet *u, const float *m, const float *v,
                     const float *ema, const TrainMeta *meta, int keep, Error *e);

// Path of the checkpoint with the greatest step in dir: 0 found, 1 none (or no
// such directory), -1 + e when dir cannot be read.
int train_state_find_latest(const char *dir, char *path, size_t n, Error *e);

// Loads a checkpoint into u->params, m, v and (if ema is not NULL) ema, and
// its metadata into *meta. Validates format and version, every metadata field,
// the architecture, every tensor's name, shape and dtype (F32), that nothing
// else is in the file, and that all values are finite; errors name the file.
// EMA weights in the file are ignored when ema is NULL; ema without EMA
// weights in the file is an error. On error the outputs are unspecified.
int train_state_load(const char *path, UNet *u, float *m, float *v, float *ema, TrainMeta *meta,
                     Error *e);

// Like train_state_load, trying dir's checkpoints newest first: one that does
// not load (truncated, checksum mismatch, ...) is reported on warn (NULL:
// quiet) with the file and why, and the next older one is tried. 0: loaded,
// path (n bytes) names it; 1: no checkpoint in dir; -1 + e: none loads (e
// names the newest and why) or dir cannot be read.
int train_state_load_latest(const char *dir, UNet *u, float *m, float *v, float *ema, TrainMeta *meta,
                            char *path, size_t n, FILE *warn, Error *e);

// The job_config text stored in a checkpoint into *text (malloc'd; NULL if
// the file has none, as format_version 1 files). -1 + e if unreadable.
int train_state_job_config(const char *path, char **text, Error *e);

// The settings that differ between two effective job configs
// (job_config_text) and matter for continuing a run, as "section.key"
// separated by ", " into out (n bytes, truncated with "..."). Settings that
// do not change the continued trajectory are ignored: train.steps (extending
// a run), train.log_interval, train.checkpoint_interval, the output, eval and
// sample sections, runtime.threads and runtime.device. Returns the number of
// differing keys.
int train_state_config_diff(const char *old_text, const char *new_text, char *out, size_t n);

// FNV-1a 64 of text as 16 hex digits: a config fingerprint for TrainMeta.
void train_state_hash(const char *text, char out[17]);
#endif
