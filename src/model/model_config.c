// model_config.c — see model_config.h. SD-1.5 is written out literally here,
// independent of config.c's defaults table, so a test can hold the two
// against each other.
#include "model/model_config.h"

#include <string.h>

void model_config_sd15(ModelConfig *m) {
    static const int channels[4] = {320, 640, 1280, 1280};
    memset(m, 0, sizeof *m);
    m->in_channels = 4;
    m->out_channels = 4;
    m->sample_size = 64;
    m->n_blocks = 4;
    m->layers_per_block = 2;
    for (int i = 0; i < 4; i++) {
        m->block_out_channels[i] = channels[i];
        m->down_cross[i] = i < 3;   // CrossAttnDownBlock2D x3, then DownBlock2D
        m->up_cross[i] = i > 0;     // UpBlock2D, then CrossAttnUpBlock2D x3
        m->heads[i] = 8;            // attention_head_dim 8: 8 heads in every block
        m->transformer_layers[i] = 1;
    }
    m->mid_cross = 1;  // UNetMidBlock2DCrossAttn
    m->cross_attention_dim = 768;
    m->norm_num_groups = 32;
    m->norm_eps = 1e-5f;
    m->use_linear_projection = 0;
    m->flip_sin_to_cos = 1;
    m->freq_shift = 0.0f;
    m->context_length = 77;
}

int model_pooled_dim(const ModelConfig *m) {
    if (m->addition_embed_type != ADD_EMBED_TEXT_TIME) return 0;
    return m->projection_class_embeddings_input_dim - LD_TIME_IDS * m->addition_time_embed_dim;
}

void model_config_sdxl(ModelConfig *m) {
    static const int channels[3] = {320, 640, 1280}, heads[3] = {5, 10, 20}, layers[3] = {1, 2, 10};
    memset(m, 0, sizeof *m);
    m->in_channels = 4;
    m->out_channels = 4;
    m->sample_size = 128;
    m->n_blocks = 3;
    m->layers_per_block = 2;
    for (int i = 0; i < 3; i++) {
        m->block_out_channels[i] = channels[i];
        m->down_cross[i] = i > 0;   // DownBlock2D, then CrossAttnDownBlock2D x2
        m->up_cross[i] = i < 2;     // CrossAttnUpBlock2D x2, then UpBlock2D
        m->heads[i] = heads[i];     // head size 64 throughout
        m->transformer_layers[i] = layers[i];
    }
    m->mid_cross = 1;
    m->cross_attention_dim = 2048;  // CLIP ViT-L (768) + OpenCLIP ViT-bigG (1280) states, concatenated
    m->norm_num_groups = 32;
    m->norm_eps = 1e-5f;
    m->use_linear_projection = 1;
    m->flip_sin_to_cos = 1;
    m->freq_shift = 0.0f;
    m->context_length = 77;
    m->addition_embed_type = ADD_EMBED_TEXT_TIME;
    m->addition_time_embed_dim = 256;
    m->projection_class_embeddings_input_dim = 2816;
}
