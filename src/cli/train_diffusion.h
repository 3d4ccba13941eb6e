// train_diffusion.h — `laptop-diff train`: the denoising task (epsilon
// prediction, MSE) on the configured data, run by the shared trainer.
#ifndef LD_TRAIN_DIFFUSION_H
#define LD_TRAIN_DIFFUSION_H
#include "core/comm.h"
#include "io/config.h"

// Trains from train.init (or a seeded initialisation) and writes
// OUTPUT/model.safetensors, OUTPUT/run.h5 and OUTPUT/checkpoints/.
// Returns 0, 1 (stopped by a signal, checkpointed) or -1 + e.
int train_main(const JobConfig *cfg, Comm *comm, int resume, Error *e);
#endif
