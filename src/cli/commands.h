// commands.h — the laptop-diff commands (README "Commands"), each in its own
// file of src/cli/: every one runs on all ranks in a RunCtx (cli/run.h) and
// returns 0, 1 (stopped by a signal, core/stop.h: train and distill after
// checkpointing; score and plan between work items, writing nothing) or -1 + e.
// mpi/main.c parses the command line and dispatches here (1 -> exit 3).
#ifndef LD_CLI_COMMANDS_H
#define LD_CLI_COMMANDS_H
#include <stdio.h>

#include "cli/run.h"

// info: the architecture table, candidate layers and totals of a job file's
// model or a checkpoint (one process: needs no context).
int info_run(FILE *out, const char *target, const char *const *sets, int n_sets, Error *e);

// forward: the U-Net of MODEL (a .safetensors, a diffusers unet/ folder or its pipeline folder)
// on IN.h5's /sample [B,C,H,W], /timestep [B], /context [B,L,D] (float32 or
// float64) -> OUT.h5 /out [B,C_out,H,W] float32, and with with_taps the taps
// as /taps/<name> [B,C,H,W]. defaults (+ --set model.*) fill what the file
// cannot say. One process (no context); progress to log (may be NULL).
// be (NULL: the CPU): the U-Net runs there (a GPU: each chunk's inputs go up,
// its outputs and taps come back).
int forward_run(FILE *log, const char *model, const char *inputs, const char *out, int with_taps,
                const ModelConfig *defaults, Backend *be, Error *e);

// train: the denoising task (epsilon prediction) from train.init or a seeded
// initialisation -> model.safetensors, run.h5 /train/*, checkpoints/.
int train_main(RunCtx *r, int resume, Error *e);

// sample: DDIM + classifier-free guidance, sample.per_class per class, split
// across the ranks -> samples.png (a row per class) and samples.h5.
int sample_main(RunCtx *r, Error *e);

// score: every candidate layer of the teacher under each prune.criterion ->
// /prune/candidates, /prune/scores/<criterion>.
int score_main(RunCtx *r, Error *e);

// plan: the exact knapsack (or prune.layers), the additivity report ->
// /prune/plan, /prune/additivity, student_init.safetensors.
int plan_main(RunCtx *r, Error *e);

// distill: the student retrained against the teacher -> student.safetensors,
// /train/*, /activations/*, checkpoints/.
int distill_main(RunCtx *r, int resume, Error *e);

// train-classifier: the evaluator CNN (model/classifier.h, the classifier
// section) on the Fashion-MNIST train split -> classifier.out, with its test
// accuracy printed and in the file's metadata.
int train_classifier_main(RunCtx *r, Error *e);

// eval: teacher vs student on held-out data -> /eval/<model>/*,
// teacher_vs_student.png.
int eval_main(RunCtx *r, Error *e);
#endif
