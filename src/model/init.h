// init.h — seeded initialisation of a fresh U-Net, as PyTorch initialises
// diffusers' modules: conv/linear weights and biases U(-1/sqrt(fan_in),
// 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)), norm weights 1, biases 0.
// Draws are keyed by the parameter's global index, so any rank gets the same.
#ifndef LD_INIT_H
#define LD_INIT_H
#include <stdint.h>

#include "model/unet.h"

void unet_init_params(UNet *u, uint64_t seed);
#endif
