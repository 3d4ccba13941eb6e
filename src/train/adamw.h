// adamw.h — AdamW over the flat parameter buffer (torch.optim.AdamW semantics),
// its learning-rate schedule and an optional
// EMA of the weights. Weight decay applies to every parameter (norm weights and
// biases included): simple, and the same on every rank.
//
// Learning rate at 0-based optimizer step s, with k = s + 1 (the 1-based update
// number), peak lr, w = warmup_steps, N = steps:
//   k <= w             : lr * k / w                  (first update: lr / w)
//   k >  w, "constant" : lr
//   k >  w, "cosine"   : lr * 0.5 * (1 + cos(pi * (k - w) / (N - w))) for k < N,
//                        0 for k >= N                 (the last update has lr 0)
#ifndef LD_ADAMW_H
#define LD_ADAMW_H
#include <stddef.h>

#include "io/config.h"
#include "kernels/backend.h"
#include "kernels/kernels.h"  // grad_norm, grad_clip

typedef struct {
    size_t n;               // parameters
    float *m, *v;           // first and second moments [n] (checkpointed)
    float *ema;             // EMA of the weights [n], NULL when off (checkpointed)
    long step;              // updates applied so far (torch's state["step"])
    double beta1, beta2, eps, weight_decay, ema_decay;
    const Backend *be;      // where m, v, ema live and the updates run; NULL: host memory, kernels.h
} AdamW;

// Zero moments, step 0; hyperparameters from cfg. EMA stays off until
// adamw_ema_init (and is only kept when cfg->ema_decay > 0).
AdamW *adamw_create(size_t n, const TrainConfig *cfg);
// The same with its state in backend be's memory and its updates run by be
// (the parameters and gradients it is given are be's tensors too).
AdamW *adamw_create_on(size_t n, const TrainConfig *cfg, const Backend *be);
void adamw_free(AdamW *a);

// lr for the 0-based step `step` (formula above).
double adamw_lr(const TrainConfig *cfg, long step);

// Gradient norm and clipping: grad_norm and grad_clip (kernels/kernels.h),
// which every backend has.

// One update (step += 1), as torch.optim.AdamW in float32:
//   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
void adamw_step(AdamW *a, float *params, const float *grads, double lr);

// Starts the EMA at the current weights (no-op when ema_decay == 0).
void adamw_ema_init(AdamW *a, const float *params);
// ema = d * ema + (1 - d) * params (no-op when the EMA is off).
void adamw_ema_update(AdamW *a, const float *params);
#endif
