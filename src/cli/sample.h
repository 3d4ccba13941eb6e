// sample.h — class-conditioned DDIM samples with classifier-free guidance,
// sample.per_class for each class, split across the ranks: what the `sample`
// command (commands.h) writes as a PNG grid (one row per class, in class order
// 0..9, see conditioning.h) and HDF5, and what `eval` draws side by side.
#ifndef LD_SAMPLE_H
#define LD_SAMPLE_H
#include "core/comm.h"
#include "io/config.h"
#include "model/unet.h"


// All 10 * per_class samples of u, computed across the ranks and gathered:
// rank 0 gets the [n,C,H,W] images (class-major), others a dummy; free it. NULL + e on failure.
float *sample_all(UNet *u, const JobConfig *cfg, Comm *comm, Error *e);

// The samples themselves, for other stages (eval, run): n = 10 * per_class
// images [n,C,H,W] in class-major order, computed by this rank for global
// samples [first, first+count). Context from the Fashion-MNIST captions.
int sample_classes(UNet *u, const JobConfig *cfg, long first, long count, float *out, Error *e);
#endif
