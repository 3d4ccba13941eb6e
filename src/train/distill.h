// distill.h — distillation (DESIGN §5): the pruned student retrained
// against the frozen teacher with L = lambda_task*MSE(eps_S, eps) +
// lambda_out*MSE(eps_S, eps_T) + lambda_feat * sum over taps of T_l, where T_l
// is LAPTOP's normalized term mean_b ||F_S,b - F_T,b||^2 / ||F_T,b||^2
// (feat_norm "l2sq", teacher norm held constant) or BK-SDM's per-element MSE
// ("none"). Both variants of every tap are logged (/train/feat_raw,
// /train/feat_norm) whichever drives training. The optimizer, checkpoints and
// resume are the shared trainer's.
#ifndef LD_DISTILL_H
#define LD_DISTILL_H
#include "core/comm.h"
#include "io/config.h"
#include "io/h5rows.h"
#include "model/unet.h"

// What distill_train reads from the job (cli/distill.c fills it), where it
// writes, and what its messages call the two models.
typedef struct {
    const DistillConfig *distill;
    const TrainConfig *train;          // optimizer, steps, batch
    const DataConfig *data;
    const DiffusionConfig *diffusion;
    const ModelConfig *model;          // the job's model section (what the data is checked against)
    long seed;                         // runtime.seed
    const char *config_text;           // the effective job config (run.h5, checkpoint hash)
    const char *run_h5, *ckpt_dir, *model_out, *ema_out;
    const char *teacher_path, *student_path;
    const H5Access *h5;                // the /activations snapshots' collective writes
    int resume;                        // continue from the newest checkpoint in ckpt_dir
    Comm *grad_comm;                   // TrainerOptions.grad_comm: the GPUs' gradient sums, or NULL
} DistillJob;

// Retrains `student` (the same stages as `teacher`, which stays frozen) for
// train.steps steps on the job's data, data-parallel over comm. Checks that
// both fit the data and each other. 0, 1 (stopped by a signal after
// checkpointing) or -1 + e.
int distill_train(const DistillJob *job, Comm *comm, UNet *teacher, UNet *student, Error *e);

// One rank's share of one distillation step (what distill_step does after
// drawing its batch; exported so tests differentiate the real loss), on the
// U-Nets' backend (both on one: device pointers for every tensor on a GPU): the
// teacher and student u run forward on b samples (xt [b,C,H,W], tf [b], ctx
// [b,L,D]) of a global batch of B; noise is the task target. Writes v = {loss,
// loss_task, loss_out, loss_feat, feat_raw[n_taps], feat_norm[n_taps]}, each
// weighted as its share of the global mean, and accumulates the gradient of
// v[0] into u->grads. Scratch: outS, outT, dout [b*C*H*W]; dtaps[t] [b x tap t].
int distill_loss(UNet *teacher, UNet *u, const DistillConfig *dc, const float *xt, const float *tf, const float *ctx,
                 const float *noise, int b, int B, int H, int W, int L, float *outS, float *outT, float *dout,
                 float *const *dtaps, double *v, Error *e);
// The same with SDXL's added conditioning (add: pooled [b,P], time ids [b,6];
// NULL for models without it).
int distill_loss_added(UNet *teacher, UNet *u, const DistillConfig *dc, const float *xt, const float *tf,
                       const float *ctx, const UNetAdded *add, const float *noise, int b, int B, int H, int W, int L,
                       float *outS, float *outT, float *dout, float *const *dtaps, double *v, Error *e);
#endif
