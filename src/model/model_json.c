// model_json.c — see model_json.h.
#include "model/model_json.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static cJSON *int_array(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

char *model_config_to_json(const ModelConfig *m) {
    cJSON *o = cJSON_CreateObject();
    int n = m->n_blocks;
    cJSON_AddStringToObject(o, "_class_name", "UNet2DConditionModel");
    cJSON_AddNumberToObject(o, "in_channels", m->in_channels);
    cJSON_AddNumberToObject(o, "out_channels", m->out_channels);
    cJSON_AddNumberToObject(o, "sample_size", m->sample_size);
    cJSON_AddItemToObject(o, "block_out_channels", int_array(m->block_out_channels, n));
    cJSON_AddNumberToObject(o, "layers_per_block", m->layers_per_block);
    cJSON *down = cJSON_AddArrayToObject(o, "down_block_types");
    cJSON *up = cJSON_AddArrayToObject(o, "up_block_types");
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(down, cJSON_CreateString(m->down_cross[i] ? "CrossAttnDownBlock2D" : "DownBlock2D"));
        cJSON_AddItemToArray(up, cJSON_CreateString(m->up_cross[i] ? "CrossAttnUpBlock2D" : "UpBlock2D"));
    }
    cJSON_AddStringToObject(o, "mid_block_type", "UNetMidBlock2DCrossAttn");
    cJSON_AddItemToObject(o, "attention_head_dim", int_array(m->heads, n));
    cJSON_AddItemToObject(o, "transformer_layers_per_block", int_array(m->transformer_layers, n));
    cJSON_AddNumberToObject(o, "cross_attention_dim", m->cross_attention_dim);
    cJSON_AddNumberToObject(o, "norm_num_groups", m->norm_num_groups);
    cJSON_AddNumberToObject(o, "norm_eps", m->norm_eps);
    cJSON_AddBoolToObject(o, "use_linear_projection", m->use_linear_projection);
    cJSON_AddBoolToObject(o, "flip_sin_to_cos", m->flip_sin_to_cos);
    cJSON_AddNumberToObject(o, "freq_shift", m->freq_shift);
    cJSON_AddNumberToObject(o, "context_length", m->context_length);
    // no added conditioning: the keys stay out (absent is diffusers' default, None), so an SD-1.x
    // model's config text is what it was before text_time existed
    if (m->addition_embed_type == ADD_EMBED_TEXT_TIME) {
        cJSON_AddStringToObject(o, "addition_embed_type", "text_time");
        cJSON_AddNumberToObject(o, "addition_time_embed_dim", m->addition_time_embed_dim);
        cJSON_AddNumberToObject(o, "projection_class_embeddings_input_dim", m->projection_class_embeddings_input_dim);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    char *r = xstrdup(s);
    cJSON_free(s);
    return r;
}

// Reads an int or an int array of n_blocks entries (diffusers allows both).
static int get_per_block(const cJSON *o, const char *key, int *dst, int n, const char *what, Error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsNumber(v)) {
        for (int i = 0; i < n; i++) dst[i] = v->valueint;
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != n)
        return errorf(e, "%s: \"%s\" must be an integer or a list of %d integers", what, key, n);
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(x)) return errorf(e, "%s: \"%s\"[%d] must be an integer", what, key, i);
        dst[i] = x->valueint;
    }
    return 0;
}

static int get_num(const cJSON *o, const char *key, double *dst, const char *what, Error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsBool(v)) {
        *dst = cJSON_IsTrue(v);
        return 0;
    }
    if (!cJSON_IsNumber(v)) return errorf(e, "%s: \"%s\" must be a number", what, key);
    *dst = v->valuedouble;
    return 0;
}

int model_config_from_json(ModelConfig *m, const char *json, const char *what, Error *e) {
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return errorf(e, "%s: model config is not a JSON object", what);
    }
    int rc = -1;
    const cJSON *boc = cJSON_GetObjectItemCaseSensitive(o, "block_out_channels");
    if (boc) {
        int n = cJSON_GetArraySize(boc);
        if (!cJSON_IsArray(boc) || n < 1 || n > LD_MAX_BLOCKS) {
            errorf(e, "%s: \"block_out_channels\" must be a list of 1..%d integers", what, LD_MAX_BLOCKS);
            goto done;
        }
        m->n_blocks = n;
        if (get_per_block(o, "block_out_channels", m->block_out_channels, n, what, e)) goto done;
    }
    int n = m->n_blocks;
    const char *types[2] = {"down_block_types", "up_block_types"};
    for (int k = 0; k < 2; k++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, types[k]);
        if (!t) continue;
        if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) != n) {
            errorf(e, "%s: \"%s\" must list %d block types", what, types[k], n);
            goto done;
        }
        for (int i = 0; i < n; i++) {
            const cJSON *s = cJSON_GetArrayItem(t, i);
            const char *cross = k ? "CrossAttnUpBlock2D" : "CrossAttnDownBlock2D";
            const char *plain = k ? "UpBlock2D" : "DownBlock2D";
            if (!cJSON_IsString(s) || (strcmp(s->valuestring, cross) && strcmp(s->valuestring, plain))) {
                errorf(e, "%s: \"%s\"[%d]: expected \"%s\" or \"%s\"", what, types[k], i, cross, plain);
                goto done;
            }
            (k ? m->up_cross : m->down_cross)[i] = !strcmp(s->valuestring, cross);
        }
    }
    // diffusers' default mid block (older SD-1.x config.json files omit the key)
    m->mid_cross = 1;
    const cJSON *mid = cJSON_GetObjectItemCaseSensitive(o, "mid_block_type");
    if (mid && !cJSON_IsNull(mid) && !(cJSON_IsString(mid) && !strcmp(mid->valuestring, "UNetMidBlock2DCrossAttn"))) {
        errorf(e, "%s: \"mid_block_type\": only \"UNetMidBlock2DCrossAttn\" is supported", what);
        goto done;
    }
    // diffusers: num_attention_heads, when given, wins over the misnamed attention_head_dim
    if (get_per_block(o, "attention_head_dim", m->heads, n, what, e)) goto done;
    if (get_per_block(o, "num_attention_heads", m->heads, n, what, e)) goto done;
    for (int i = 0; i < n; i++) m->transformer_layers[i] = 1;  // diffusers' default
    if (get_per_block(o, "transformer_layers_per_block", m->transformer_layers, n, what, e)) goto done;
    struct { const char *key; int *dst; } ints[] = {
        {"in_channels", &m->in_channels},         {"out_channels", &m->out_channels},
        {"sample_size", &m->sample_size},         {"layers_per_block", &m->layers_per_block},
        {"cross_attention_dim", &m->cross_attention_dim}, {"norm_num_groups", &m->norm_num_groups},
        {"use_linear_projection", &m->use_linear_projection}, {"flip_sin_to_cos", &m->flip_sin_to_cos},
        {"context_length", &m->context_length},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        double v = *ints[i].dst;
        if (get_num(o, ints[i].key, &v, what, e)) goto done;
        *ints[i].dst = (int)v;
    }
    // added conditioning: absent or null is diffusers' default, none
    m->addition_embed_type = ADD_EMBED_NONE;
    m->addition_time_embed_dim = m->projection_class_embeddings_input_dim = 0;
    const cJSON *aet = cJSON_GetObjectItemCaseSensitive(o, "addition_embed_type");
    if (aet && !cJSON_IsNull(aet)) {
        if (!cJSON_IsString(aet) || strcmp(aet->valuestring, "text_time")) {
            errorf(e, "%s: \"addition_embed_type\": only null or \"text_time\" (SDXL) is supported", what);
            goto done;
        }
        m->addition_embed_type = ADD_EMBED_TEXT_TIME;
        double atd = 0, proj = 0;
        if (get_num(o, "addition_time_embed_dim", &atd, what, e) ||
            get_num(o, "projection_class_embeddings_input_dim", &proj, what, e))
            goto done;
        m->addition_time_embed_dim = (int)atd, m->projection_class_embeddings_input_dim = (int)proj;
        if (atd < 2 || (int)atd % 2 || model_pooled_dim(m) < 1) {
            errorf(e, "%s: \"text_time\" needs an even \"addition_time_embed_dim\" (got %d) and "
                      "\"projection_class_embeddings_input_dim\" (got %d) above 6 times it",
                   what, m->addition_time_embed_dim, m->projection_class_embeddings_input_dim);
            goto done;
        }
    }
    double eps = m->norm_eps, fs = m->freq_shift;
    if (get_num(o, "norm_eps", &eps, what, e) || get_num(o, "freq_shift", &fs, what, e)) goto done;
    m->norm_eps = (float)eps, m->freq_shift = (float)fs;
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}

static const StTensor *find_fmt(const StFile *f, const char *fmt, int a, int b) {
    char name[160];
    snprintf(name, sizeof name, fmt, a, b);
    return st_find(f, name);
}

int model_config_infer(ModelConfig *m, const StFile *f, Error *e) {
    const StTensor *ci = st_find(f, "conv_in.weight"), *co = st_find(f, "conv_out.weight");
    if (!ci || !co || ci->ndim != 4 || co->ndim != 4)
        return errorf(e, "%s: no conv_in.weight/conv_out.weight: not a diffusers U-Net checkpoint", f->path);
    m->in_channels = (int)ci->shape[1];
    m->out_channels = (int)co->shape[0];
    int n = 0;
    while (n < LD_MAX_BLOCKS && find_fmt(f, "down_blocks.%d.resnets.0.conv1.weight", n, 0)) n++;
    if (n == 0) return errorf(e, "%s: no down_blocks.0.resnets.0.conv1.weight", f->path);
    m->n_blocks = n;
    int lpb = 0;
    while (find_fmt(f, "down_blocks.0.resnets.%d.norm1.weight", lpb, 0)) lpb++;
    m->layers_per_block = lpb;
    int linear = -1;
    for (int i = 0; i < n; i++) {
        m->block_out_channels[i] = (int)find_fmt(f, "down_blocks.%d.resnets.0.conv1.weight", i, 0)->shape[0];
        const StTensor *pin = find_fmt(f, "down_blocks.%d.attentions.0.proj_in.weight", i, 0);
        m->down_cross[i] = pin != NULL;
        m->up_cross[n - 1 - i] = pin != NULL;
        if (pin) {
            linear = pin->ndim == 2;
            int tl = 0;
            char name[160];
            for (;;) {
                snprintf(name, sizeof name, "down_blocks.%d.attentions.0.transformer_blocks.%d.norm1.weight", i, tl);
                if (!st_find(f, name)) break;
                tl++;
            }
            m->transformer_layers[i] = tl;
            snprintf(name, sizeof name, "down_blocks.%d.attentions.0.transformer_blocks.0.attn2.to_k.weight", i);
            const StTensor *k = st_find(f, name);
            if (k && k->ndim == 2) m->cross_attention_dim = (int)k->shape[1];
        } else {
            m->transformer_layers[i] = 1;
        }
    }
    if (linear < 0) {
        const StTensor *pin = st_find(f, "mid_block.attentions.0.proj_in.weight");
        if (!pin) return errorf(e, "%s: no attention layers found; only cross-attention U-Nets are supported", f->path);
        linear = pin->ndim == 2;
    }
    m->use_linear_projection = linear;
    m->mid_cross = 1;
    // the shapes give add_embedding's input width, not how it splits into
    // pooled + 6 time ids: that width stays as the defaults say
    const StTensor *a1 = st_find(f, "add_embedding.linear_1.weight");
    if (a1 && a1->ndim == 2) {
        m->addition_embed_type = ADD_EMBED_TEXT_TIME;
        m->projection_class_embeddings_input_dim = (int)a1->shape[1];
        if (m->addition_time_embed_dim < 2 || m->addition_time_embed_dim % 2 || model_pooled_dim(m) < 1)
            return errorf(e, "%s: add_embedding.linear_1.weight takes %d inputs (SDXL text_time conditioning) but "
                             "model.addition_time_embed_dim = %d does not split them into pooled + 6 time ids; "
                             "set it, or put diffusers' config.json beside the file", f->path,
                          m->projection_class_embeddings_input_dim, m->addition_time_embed_dim);
    } else {
        m->addition_embed_type = ADD_EMBED_NONE;
        m->addition_time_embed_dim = m->projection_class_embeddings_input_dim = 0;
    }
    return 0;
}
