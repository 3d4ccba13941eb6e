// timestep.c — diffusers' get_timestep_embedding (max_period 10000, scale 1).
// Computed in float32 step by step as torch does, so the embedding matches a
// PyTorch run to the last bit as far as libm's expf/sinf/cosf allow.
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

void timestep_embedding(float *out, const float *t, int B, int dim, int flip_sin_to_cos, float freq_shift) {
    int half = dim / 2;
    // torch: exponent = -ln(max_period) * arange(half, float32) / (half - shift), all float32.
    float neg_log_period = (float)(-log(10000.0));
    float denom = (float)((double)half - (double)freq_shift);
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * dim;
        float *sin_part = o + (flip_sin_to_cos ? half : 0);
        float *cos_part = o + (flip_sin_to_cos ? 0 : half);
        for (int j = 0; j < half; j++) {
            float e = expf(neg_log_period * (float)j / denom);
            float arg = t[b] * e;
            sin_part[j] = sinf(arg);
            cos_part[j] = cosf(arg);
        }
        if (dim % 2) o[dim - 1] = 0.0f;  // odd dim: zero-pad the last column
    }
}
