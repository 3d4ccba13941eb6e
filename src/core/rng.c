// rng.c — see rng.h.
#include "core/rng.h"

#include <math.h>

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rng_bits(uint64_t seed, uint64_t stream, uint64_t index) {
    return mix(mix(mix(seed) ^ stream) ^ index);
}

float rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return (float)(rng_bits(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

float rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    uint64_t b = rng_bits(seed, stream, index);
    // two 32-bit halves -> two uniforms; u1 in (0, 1] keeps the log finite
    double u1 = ((double)(b >> 32) + 1.0) / 4294967296.0;
    double u2 = (double)(b & 0xffffffffULL) / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void rng_normal_fill(float *x, uint64_t n, uint64_t seed, uint64_t stream, uint64_t index0) {
    for (uint64_t i = 0; i < n; i++) x[i] = rng_normal(seed, stream, index0 + i);
}

uint64_t rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n) {
    // 128-bit multiply-high: unbiased enough for n << 2^64 and branch-free
    return (uint64_t)(((unsigned __int128)rng_bits(seed, stream, index) * n) >> 64);
}
