// model_config.h — the U-Net's architecture, in diffusers' UNet2DConditionModel
// terms. Filled from a job file's `model` section (config.c) or inferred from a
// checkpoint (model_infer.c); consumed by unet.c.
#ifndef LD_MODEL_CONFIG_H
#define LD_MODEL_CONFIG_H

#define LD_MAX_BLOCKS 8

typedef struct {
    int in_channels;                          // 4 for SD latents
    int out_channels;
    int sample_size;                          // latent H = W used for MAC counts
    int n_blocks;                             // len(block_out_channels)
    int block_out_channels[LD_MAX_BLOCKS];
    int layers_per_block;
    int down_cross[LD_MAX_BLOCKS];            // 1: CrossAttnDownBlock2D, 0: DownBlock2D
    int up_cross[LD_MAX_BLOCKS];              // 1: CrossAttnUpBlock2D, 0: UpBlock2D (up order)
    int mid_cross;                            // 1: UNetMidBlock2DCrossAttn (the only mid block supported)
    int heads[LD_MAX_BLOCKS];                 // attention_head_dim per down block (diffusers: number of heads)
    int transformer_layers[LD_MAX_BLOCKS];    // transformer_layers_per_block per down block
    int cross_attention_dim;
    int norm_num_groups;
    float norm_eps;
    int use_linear_projection;
    int flip_sin_to_cos;
    float freq_shift;
    int context_length;                       // conditioning tokens L, for MAC counts and shape checks
    // SDXL's added conditioning (addition_embed_type "text_time"): the pooled
    // text embedding [P] and 6 micro-conditioning time ids, each embedded
    // sinusoidally at addition_time_embed_dim, through add_embedding into the
    // time embedding. P = projection_class_embeddings_input_dim - 6 * that dim.
    int addition_embed_type;                  // ADD_EMBED_NONE or ADD_EMBED_TEXT_TIME
    int addition_time_embed_dim;              // 256 in SDXL
    int projection_class_embeddings_input_dim;  // 2816 in SDXL (1280 pooled + 6 * 256)
} ModelConfig;

enum { ADD_EMBED_NONE = 0, ADD_EMBED_TEXT_TIME = 1 };
#define LD_TIME_IDS 6  // SDXL's (orig H, orig W, crop top, crop left, target H, target W)

// Width P of the pooled text embedding a text_time model takes (0 otherwise).
int model_pooled_dim(const ModelConfig *m);
// SDXL-base's architecture (diffusers' stabilityai/stable-diffusion-xl-base-1.0 unet config).
void model_config_sdxl(ModelConfig *m);

// SD-1.5's architecture (diffusers' runwayml/stable-diffusion-v1-5 unet config).
void model_config_sd15(ModelConfig *m);
#endif
