// trainer.h — the optimisation loop shared by `train` (diffusion from scratch
// or a checkpoint) and `distill` (the pruned student): data-parallel over the
// ranks of a Comm, AdamW with warmup/cosine LR, global-norm clipping, optional
// EMA, progress lines, /train/* series in run.h5, atomic checkpoints and exact
// resume, NaN/Inf stops and SIGTERM/SIGUSR1 checkpoint-and-stop. What a step
// computes is the task's business (a callback), so both stages share all this.
#ifndef LD_TRAINER_H
#define LD_TRAINER_H
#include "core/comm.h"
#include "io/config.h"
#include "model/unet.h"

typedef struct H5Log H5Log;

#define TRAINER_MAX_LOSSES 8
#define TRAINER_MAX_VALUES 64

typedef struct {
    // Names of the loss terms the task reports, [0] being the total; logged as /train/<name>.
    int n_losses;
    const char *loss_names[TRAINER_MAX_LOSSES];
    // Further values the step reports after the losses (e.g. per-tap terms):
    // summed over ranks like the losses, logged by log_extra. At most
    // TRAINER_MAX_VALUES - n_losses.
    int n_extra;
    // This rank's part of step `step`: global batch positions [g0, g0 + b) of B.
    // Accumulate into u->grads the gradient of (b / B) * (this shard's mean loss),
    // so the sum over ranks is the gradient of the global mean, in one
    // unet_backward that is the last write to u->grads (its grads_final hook
    // starts the sums of finished buckets while it runs); write the same
    // weighting of each loss term into values[] (summed over ranks for the log),
    // then the n_extra further values.
    int (*step)(void *self, UNet *u, long step, long g0, int b, int B, double *values, Error *e);
    // Optional, rank 0: log what is not a plain loss series; `values` are the
    // step's reduced values (losses, then extras). Called once before the first
    // step with step = -1 to register series.
    int (*log_extra)(void *self, H5Log *log, long step, const double *values, Error *e);
    // Optional, every rank, every snapshot_interval steps (and after the last):
    // collective writes into run.h5, which rank 0 closes around the call.
    int (*snapshot)(void *self, UNet *u, long step, Error *e);
    int snapshot_interval;
    void *self;
} TrainTask;

// --resume: the newest checkpoint that loads (an error if there is none);
// --resume=auto: the same, or a fresh start when ckpt_dir has none. A resume
// refuses a job config whose settings that matter differ from the
// checkpoint's (train_state_config_diff) unless TRAINER_ALLOW_CHANGES is set.
enum { TRAINER_RESUME_NO = 0, TRAINER_RESUME_YES = 1, TRAINER_RESUME_AUTO = 2, TRAINER_RESUME_MODE = 3,
       TRAINER_ALLOW_CHANGES = 4 };

typedef struct {
    const char *stage;        // "train" or "distill": progress lines and file names
    const char *run_h5;       // path of run.h5 (rank 0 writes it)
    const char *ckpt_dir;     // checkpoints
    const char *model_out;    // final weights (.safetensors)
    const char *ema_out;      // their EMA (written when train.ema_decay > 0)
    int resume;               // TRAINER_RESUME_* (| TRAINER_ALLOW_CHANGES): continue from ckpt_dir
    const char *const *meta;  // extra metadata for the saved model (pairs)
    int n_meta;
    const char *config_text;  // the effective job config: stored in run.h5, hashed into checkpoints
    // On a device with several ranks: the Comm that sums device gradient buffers
    // (NCCL, cli/run.h's run_grad_comm), or NULL: a host copy is summed over comm.
    Comm *grad_comm;
} TrainerOptions;

// Runs tc->steps steps of `task` on `u` (identical on every rank); seed is
// runtime.seed, which a resumed checkpoint must have been written with.
// Returns 0, or -1 + e (on every rank) for a stop that is an error (NaN/Inf,
// I/O); a signal stop returns 1 after checkpointing.
int trainer_run(const TrainConfig *tc, long seed, Comm *comm, UNet *u, TrainTask *task, const TrainerOptions *opt,
                Error *e);
#endif
