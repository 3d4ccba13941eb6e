// rng.h — counter-based random numbers: every draw is a pure function of
// (seed, stream, index), so the noise of global sample i at step s is the same
// whichever rank draws it and however many ranks there are, and nothing needs
// saving for resume beyond the step counter.
#ifndef LD_RNG_H
#define LD_RNG_H
#include <stdint.h>

// Well-mixed 64 bits of (seed, stream, index) (splitmix64 finaliser chain).
uint64_t rng_bits(uint64_t seed, uint64_t stream, uint64_t index);
// Uniform in [0, 1) with 24 random bits (exactly representable as float).
float rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
// Standard normal (Box-Muller on two derived uniforms).
float rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
// Fills x[0..n) with N(0,1) draws index0, index0+1, ...
void rng_normal_fill(float *x, uint64_t n, uint64_t seed, uint64_t stream, uint64_t index0);
// Uniform integer in [0, n).
uint64_t rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n);
// Stream ids: one per purpose so no two uses ever share draws.
enum {
    RNG_INIT = 1,       // weight initialisation (index: parameter element)
    RNG_DATA_ORDER,     // epoch permutations
    RNG_TIMESTEP,       // training timesteps (index: global sample of the step)
    RNG_NOISE,          // training noise
    RNG_CFG_DROP,       // caption dropout
    RNG_CALIB,          // pruning calibration set
    RNG_SAMPLE,         // sampling noise
    RNG_EMBED,          // token-embedding table
    RNG_MISC,
};
#endif
