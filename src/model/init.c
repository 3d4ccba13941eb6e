// init.c — see init.h.
#include "model/init.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"

static int is_norm(const char *name) {
    // GroupNorm / LayerNorm parameters: "...norm1.weight", "conv_norm_out.bias", "...norm.bias"
    const char *last = strrchr(name, '.');
    size_t len = (size_t)(last - name);
    const char *seg = name;
    for (const char *p = name; p < last; p++)
        if (*p == '.') seg = p + 1;
    return strstr(seg, "norm") != NULL && (size_t)(seg - name) <= len;
}

void unet_init_params(UNet *u, uint64_t seed) {
    for (int i = 0; i < u->pt.n; i++) {
        const ParamTensor *t = &u->pt.t[i];
        float *p = u->params + t->offset;
        int bias = strcmp(strrchr(t->name, '.'), ".bias") == 0;
        if (is_norm(t->name)) {
            for (size_t j = 0; j < t->numel; j++) p[j] = bias ? 0.0f : 1.0f;
            continue;
        }
        // fan_in of the layer this tensor belongs to: the weight's numel / out
        const ParamTensor *w = t;
        if (bias) {
            char wname[LD_NAME_MAX];
            snprintf(wname, sizeof wname, "%.*s.weight", (int)(strrchr(t->name, '.') - t->name), t->name);
            w = params_find(&u->pt, wname);
            CHECK(w);
        }
        double fan_in = (double)(w->numel / (size_t)w->shape[0]);
        float bound = (float)(1.0 / sqrt(fan_in));
        for (size_t j = 0; j < t->numel; j++)
            p[j] = bound * (2.0f * rng_uniform(seed, RNG_INIT, (uint64_t)(t->offset + j)) - 1.0f);
    }
}
