// optim.cu — AdamW and the weight EMA on the GPU (ops.h): adamw_step's and
// adamw_ema_update's float32 element math, with the step's scalars derived on
// the host exactly as adamw.c derives them.
#include <math.h>

#include "cuda/cu_common.cuh"
#include "cuda/ops.h"


__global__ void k_adamw(float *params, const float *grads, float *m, float *v, size_t n, float decay, float b1,
                        float omb1, float b2, float omb2, float bc2_sqrt, float step_size, float eps) {
    CU_GRID_LOOP(i, n) {
        float g = grads[i];
        float p = params[i] * decay;
        float mi = m[i] * b1 + omb1 * g;
        float vi = v[i] * b2 + omb2 * (g * g);
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        params[i] = p - step_size * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}
__global__ void k_ema(float *ema, const float *params, size_t n, float dcy, float omd) {
    CU_GRID_LOOP(i, n) ema[i] = dcy * ema[i] + omd * params[i];
}

extern "C" {
void cu_adamw_step(DevCtx *d, float *params, const float *grads, float *m, float *v, size_t n, double lr, long step,
                   double beta1, double beta2, double eps, double weight_decay) {
    if (n == 0) return;
    // step is the 1-based update number (AdamW.step after the increment)
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    LD_LAUNCH(k_adamw, dim3(cu_blocks(n)), dim3(LD_CU_BLOCK), dev_stream(d), params, grads, m, v, n,
              (float)(1.0 - lr * weight_decay), (float)beta1, (float)(1.0 - beta1), (float)beta2,
              (float)(1.0 - beta2), (float)sqrt(bc2), (float)(lr / bc1), (float)eps);
    CU_LAUNCHED();
}
void cu_ema_update(DevCtx *d, float *ema, const float *params, size_t n, double decay) {
    if (n == 0) return;
    LD_LAUNCH(k_ema, dim3(cu_blocks(n)), dim3(LD_CU_BLOCK), dev_stream(d), ema, params, n, (float)decay,
              (float)(1.0 - decay));
    CU_LAUNCHED();
}
}
