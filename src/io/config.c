// config.c — see config.h. Everything here is driven by KEYS, the one schema
// table: loading, defaults, --set, validation messages, the effective-config
// text and the Markdown reference. Adding a key is adding one row.
#include "io/config.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/unet.h"  // Granularity

typedef enum {
    T_INT,         // int or long member
    T_FLOAT,       // float or double member
    T_BOOL,        // int member: 0 / 1
    T_STRING,      // char[] member
    T_ENUM,        // a string stored as an int (or enum) member: names[i].value
    T_INT_ARRAY,   // int[] member; its length goes to the int member at count_off
    T_INTS,        // an int or one int per entry of `len_of`, stored as int[] (scalar broadcast)
    T_ENUM_ARRAY,  // one string per entry of `len_of`, stored as int[] of names[i].value
    T_ENUM_LIST,   // a string or an array of distinct strings, stored as int[] of names[i].value; count at count_off
    T_STRING_LIST, // a string or an array of strings, stored as char[][elem]; count at count_off
} KeyType;

typedef struct {
    const char *name;
    int value;
} EnumName;

typedef struct {
    const char *section, *key;
    KeyType type;
    const char *def;        // default in libconfig syntax: parsed like a file value, printed verbatim
    double min, max;        // every number (or array element) lies in [min, max] ...
    int min_open;           // ... or in (min, max] when set
    const EnumName *names;  // allowed strings, NULL-terminated
    const char *len_of;     // arrays whose length is another key's (same section)
    size_t off, size;       // the JobConfig member written
    size_t count_off;       // T_INT_ARRAY and the lists: the int member that receives the length
    size_t elem;            // T_STRING_LIST: bytes per name (the longest is elem - 1)
    const char *doc;
} KeySpec;

static const EnumName DOWN_TYPES[] = {{"DownBlock2D", 0}, {"CrossAttnDownBlock2D", 1}, {NULL, 0}};
static const EnumName UP_TYPES[] = {{"UpBlock2D", 0}, {"CrossAttnUpBlock2D", 1}, {NULL, 0}};
static const EnumName ADD_EMBED_TYPES[] = {{"", ADD_EMBED_NONE}, {"none", ADD_EMBED_NONE},
                                          {"text_time", ADD_EMBED_TEXT_TIME}, {NULL, 0}};
static const EnumName MID_TYPES[] = {{"UNetMidBlock2DCrossAttn", 1}, {NULL, 0}};
static const EnumName DEVICES[] = {{"cpu", DEVICE_CPU}, {"cuda", DEVICE_CUDA}, {NULL, 0}};
static const EnumName GPU_COMMS[] = {{"auto", GPU_COMM_AUTO}, {"nccl", GPU_COMM_NCCL}, {"mpi", GPU_COMM_MPI}, {NULL, 0}};
static const EnumName GPU_ATTNS[] = {{"auto", GPU_ATTN_AUTO}, {"fused", GPU_ATTN_FUSED}, {"tiled", GPU_ATTN_TILED}, {NULL, 0}};
static const EnumName GPU_CONVS[] = {{"auto", GPU_CONV_AUTO}, {"cudnn", GPU_CONV_CUDNN}, {"gemm", GPU_CONV_GEMM}, {NULL, 0}};
static const EnumName CPU_GEMMS[] = {{"auto", CPU_GEMM_AUTO}, {"openblas", CPU_GEMM_OPENBLAS}, {"onednn", CPU_GEMM_ONEDNN}, {NULL, 0}};
static const EnumName PRECISIONS[] = {{"fp32", PRECISION_FP32}, {"tf32", PRECISION_TF32}, {"bf16", PRECISION_BF16},
                                      {NULL, 0}};
static const EnumName SOURCES[] = {{"fashion-mnist", DATA_FASHION_MNIST}, {"hdf5", DATA_HDF5}, {NULL, 0}};
static const EnumName SCHEDULES[] = {{"scaled_linear", BETA_SCALED_LINEAR}, {"linear", BETA_LINEAR}, {NULL, 0}};
static const EnumName CRITERIA[] = {{"output_loss", CRIT_OUTPUT_LOSS}, {"random", CRIT_RANDOM},
                                    {"magnitude", CRIT_MAGNITUDE}, {"feature_loss", CRIT_FEATURE_LOSS},
                                    {"taylor", CRIT_TAYLOR}, {NULL, 0}};
static const EnumName BUDGETS[] = {{"params", BUDGET_PARAMS}, {"macs", BUDGET_MACS}, {NULL, 0}};
static const EnumName GRANULARITIES[] = {{"layer", GRAN_LAYER}, {"block", GRAN_BLOCK}, {NULL, 0}};
static const EnumName FEAT_NORMS[] = {{"l2sq", FEAT_NORM_L2SQ}, {"none", FEAT_NORM_NONE}, {NULL, 0}};
static const EnumName LR_SCHEDULES[] = {{"constant", LR_CONSTANT}, {"cosine", LR_COSINE}, {NULL, 0}};

#define AT(m) .off = offsetof(JobConfig, m), .size = sizeof(((JobConfig *)0)->m)
#define COUNT(m) .count_off = offsetof(JobConfig, m)
#define ELEM(m) .elem = sizeof(((JobConfig *)0)->m[0])
#define NOMAX INFINITY

// clang-format off
static const KeySpec KEYS[] = {
    {"model", "in_channels", T_INT, "4", 1, NOMAX, AT(model.in_channels), .doc = "Channels of the U-Net's input (4: SD's VAE latents; 1: grayscale pixels)."},
    {"model", "out_channels", T_INT, "4", 1, NOMAX, AT(model.out_channels), .doc = "Channels of the U-Net's output (the predicted noise)."},
    {"model", "sample_size", T_INT, "64", 1, NOMAX, AT(model.sample_size), .doc = "Latent height = width (64 for SD-1.5's 512-pixel images); sets MAC counts; divisible by 2^(blocks-1)."},
    {"model", "block_out_channels", T_INT_ARRAY, "[320, 640, 1280, 1280]", 1, NOMAX, AT(model.block_out_channels), COUNT(model.n_blocks), .doc = "Output channels of each down block (up blocks mirror them); its length is the number of blocks."},
    {"model", "layers_per_block", T_INT, "2", 1, NOMAX, AT(model.layers_per_block), .doc = "ResnetBlock2Ds (each with an attention in cross-attention blocks) per down block; up blocks have one more."},
    {"model", "down_block_types", T_ENUM_ARRAY, "[\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"]", .names = DOWN_TYPES, .len_of = "block_out_channels", AT(model.down_cross), .doc = "Kind of each down block: with (CrossAttnDownBlock2D) or without (DownBlock2D) a Transformer2DModel after each resnet."},
    {"model", "up_block_types", T_ENUM_ARRAY, "[\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]", .names = UP_TYPES, .len_of = "block_out_channels", AT(model.up_cross), .doc = "Kind of each up block, in up order: must mirror down_block_types (the same kinds, reversed)."},
    {"model", "mid_block_type", T_ENUM, "\"UNetMidBlock2DCrossAttn\"", .names = MID_TYPES, AT(model.mid_cross), .doc = "Mid block: resnet, Transformer2DModel, resnet (the only kind supported)."},
    {"model", "attention_head_dim", T_INTS, "8", 1, NOMAX, .len_of = "block_out_channels", AT(model.heads), .doc = "Attention heads per block (diffusers' naming quirk: the number of heads, not their size); one int or one per block."},
    {"model", "transformer_layers_per_block", T_INTS, "1", 1, NOMAX, .len_of = "block_out_channels", AT(model.transformer_layers), .doc = "BasicTransformerBlocks per Transformer2DModel; one int or one per block (SDXL: [1, 2, 10])."},
    {"model", "cross_attention_dim", T_INT, "768", 1, NOMAX, AT(model.cross_attention_dim), .doc = "Width of the conditioning tokens that cross-attention reads (768: CLIP ViT-L/14)."},
    {"model", "norm_num_groups", T_INT, "32", 1, NOMAX, AT(model.norm_num_groups), .doc = "GroupNorm groups; every block_out_channels entry must be divisible by it."},
    {"model", "norm_eps", T_FLOAT, "1e-5", .min = 0, .max = 1, .min_open = 1, AT(model.norm_eps), .doc = "GroupNorm epsilon of the resnets and the output norm."},
    {"model", "use_linear_projection", T_BOOL, "false", AT(model.use_linear_projection), .doc = "Transformer2DModel proj_in/proj_out as linear layers (true: SD-2, SDXL) or 1x1 convolutions (false: SD-1.5)."},
    {"model", "flip_sin_to_cos", T_BOOL, "true", AT(model.flip_sin_to_cos), .doc = "Timestep embedding as [cos, sin] (true) or [sin, cos] (false)."},
    {"model", "freq_shift", T_FLOAT, "0", 0, NOMAX, AT(model.freq_shift), .doc = "Timestep-embedding frequencies exp(-ln(10000) j / (half - freq_shift)); must be < block_out_channels[0] / 2."},
    {"model", "context_length", T_INT, "77", 1, NOMAX, AT(model.context_length), .doc = "Tokens in the conditioning context (77: CLIP); for MAC counts and shape checks (not a diffusers key)."},
    {"model", "addition_embed_type", T_ENUM, "\"\"", .names = ADD_EMBED_TYPES, AT(model.addition_embed_type), .doc = "Added conditioning: \"\" (none: SD-1.x) or \"text_time\" (SDXL: the pooled text embedding and 6 time ids through add_embedding into the time embedding; the data then carries /pooled and /time_ids)."},
    {"model", "addition_time_embed_dim", T_INT, "0", 0, NOMAX, AT(model.addition_time_embed_dim), .doc = "text_time: width of each time id's sinusoidal embedding (add_time_proj; SDXL: 256); even."},
    {"model", "projection_class_embeddings_input_dim", T_INT, "0", 0, NOMAX, AT(model.projection_class_embeddings_input_dim), .doc = "text_time: input width of add_embedding = pooled width + 6 * addition_time_embed_dim (SDXL: 2816 = 1280 + 6 * 256)."},
    {"model", "weights", T_STRING, "\"\"", AT(weights), .doc = "The trained U-Net (.safetensors, diffusers names) that score, plan and distill start from: the teacher. Its own metadata or config.json, when present, describes the architecture instead of this section."},
    {"data", "source", T_ENUM, "\"fashion-mnist\"", .names = SOURCES, AT(data.source), .doc = "Training data: \"fashion-mnist\" (Debian's dataset-fashion-mnist, pixel space, class captions) or \"hdf5\" (precomputed /latents and /context)."},
    {"data", "path", T_STRING, "\"/usr/share/datasets/fashion-mnist\"", AT(data.path), .doc = "Directory of the Fashion-MNIST IDX files, or the HDF5 file with /latents [N,C,H,W] and /context [N,L,D] (and /pooled [N,P], /time_ids [N,6] for a text_time model)."},
    {"data", "cfg_drop", T_FLOAT, "0.1", 0, 1, AT(data.cfg_drop), .doc = "Fraction of training captions replaced by the empty caption, so the model also learns the unconditional output (classifier-free guidance)."},
    {"data", "embed_seed", T_INT, "2024", 0, 2147483647, AT(data.embed_seed), .doc = "Seed of the fixed token-embedding table that turns captions into contexts; teacher and student must use the same."},
    {"diffusion", "schedule", T_ENUM, "\"scaled_linear\"", .names = SCHEDULES, AT(diffusion.schedule), .doc = "Beta schedule: \"scaled_linear\" (SD: sqrt-linear) or \"linear\"."},
    {"diffusion", "beta_start", T_FLOAT, "0.00085", .min = 0, .max = 1, .min_open = 1, AT(diffusion.beta_start), .doc = "First beta of the schedule."},
    {"diffusion", "beta_end", T_FLOAT, "0.012", .min = 0, .max = 1, .min_open = 1, AT(diffusion.beta_end), .doc = "Last beta of the schedule."},
    {"diffusion", "timesteps", T_INT, "1000", 2, 100000, AT(diffusion.timesteps), .doc = "Training timesteps T (t is drawn uniformly from 0..T-1)."},
    {"train", "steps", T_INT, "1000", 1, NOMAX, AT(train.steps), .doc = "Optimizer steps."},
    {"train", "batch", T_INT, "64", 1, NOMAX, AT(train.batch), .doc = "Global batch per step, split across ranks (must be divisible by the rank count)."},
    {"train", "lr", T_FLOAT, "1e-3", .min = 0, .max = 1, .min_open = 1, AT(train.lr), .doc = "Peak learning rate (AdamW)."},
    {"train", "warmup_steps", T_INT, "100", 0, NOMAX, AT(train.warmup_steps), .doc = "Linear warmup from 0 to lr over this many steps."},
    {"train", "lr_schedule", T_ENUM, "\"cosine\"", .names = LR_SCHEDULES, AT(train.lr_schedule), .doc = "After warmup: \"constant\" or \"cosine\" decay to 0 at the last step."},
    {"train", "weight_decay", T_FLOAT, "0.01", 0, 1, AT(train.weight_decay), .doc = "AdamW decoupled weight decay."},
    {"train", "beta1", T_FLOAT, "0.9", 0, 1, AT(train.beta1), .doc = "AdamW first-moment decay."},
    {"train", "beta2", T_FLOAT, "0.999", 0, 1, AT(train.beta2), .doc = "AdamW second-moment decay."},
    {"train", "adam_eps", T_FLOAT, "1e-8", .min = 0, .max = 1, .min_open = 1, AT(train.adam_eps), .doc = "AdamW epsilon."},
    {"train", "grad_clip", T_FLOAT, "1.0", 0, NOMAX, AT(train.grad_clip), .doc = "Clip the global gradient norm to this (0: off)."},
    {"train", "ema_decay", T_FLOAT, "0", 0, 1, AT(train.ema_decay), .doc = "EMA of the weights with this decay, saved as model_ema.safetensors (0: off)."},
    {"train", "log_interval", T_INT, "10", 1, NOMAX, AT(train.log_interval), .doc = "Steps between progress lines and /train/* entries."},
    {"train", "checkpoint_interval", T_INT, "500", 0, NOMAX, AT(train.checkpoint_interval), .doc = "Steps between checkpoints (0: only at the end)."},
    {"train", "init", T_STRING, "\"\"", AT(train.init), .doc = "Weights to start from (.safetensors); empty: seeded random initialisation."},
    {"train", "bucket_mb", T_FLOAT, "16", .min = 0, .max = 4096, .min_open = 1, AT(train.bucket_mb), .doc = "Size of each gradient all-reduce bucket, in MiB (results do not depend on it)."},
    {"train", "overlap_comm", T_BOOL, "true", AT(train.overlap_comm), .doc = "Start each gradient bucket's sum over the ranks as soon as backward has finished its parameters, overlapping communication with backward (the same bits as false: every element is summed in rank order either way)."},
    {"train", "recompute", T_BOOL, "false", AT(train.recompute), .doc = "Activation checkpointing for `train` and `distill`: the trained U-Net's forward keeps only each ResnetBlock2D's and Transformer2DModel's input and output, and the backward recomputes a layer's interior just before its backward (bit-identical gradients, about one more forward's time, a fraction of the activation memory)."},
    {"sample", "model", T_STRING, "\"\"", AT(sample.model), .doc = "Weights to sample from; empty: OUTPUT_DIR/model.safetensors."},
    {"sample", "steps", T_INT, "50", 1, 10000, AT(sample.steps), .doc = "DDIM steps."},
    {"sample", "eta", T_FLOAT, "0", 0, 1, AT(sample.eta), .doc = "DDIM eta (0: deterministic)."},
    {"sample", "guidance", T_FLOAT, "3.0", 0, NOMAX, AT(sample.guidance), .doc = "Classifier-free guidance scale (1: off)."},
    {"sample", "per_class", T_INT, "8", 1, 1000, AT(sample.per_class), .doc = "Samples per class: the columns of the PNG grid (one row per class)."},
    {"sample", "seed", T_INT, "7", 0, 2147483647, AT(sample.seed), .doc = "Seed of the initial noise of the samples."},
    {"prune", "criterion", T_ENUM_LIST, "[\"output_loss\"]", .names = CRITERIA, AT(prune.criterion), COUNT(prune.n_criteria), .doc = "Scores to compute, one or a list: \"output_loss\" (LAPTOP: output MSE with only that layer removed), \"random\", \"magnitude\" (mean |w|), \"feature_loss\" (relative change of the layer's own output), \"taylor\" (|sum grad*w| of the task loss). The plan uses the first."},
    {"prune", "calib_samples", T_INT, "64", 1, NOMAX, AT(prune.calib_samples), .doc = "Calibration samples (x_0 from the training data, t uniform, noise, captions), the same on every rank."},
    {"prune", "batch", T_INT, "16", 1, NOMAX, AT(prune.batch), .doc = "Calibration samples per forward pass while scoring (memory vs speed)."},
    {"prune", "ratio", T_FLOAT, "0.25", .min = 0, .max = 1, .min_open = 1, AT(prune.ratio), .doc = "Fraction of the U-Net's budget (parameters or MACs) the plan must remove at least."},
    {"prune", "budget", T_ENUM, "\"params\"", .names = BUDGETS, AT(prune.budget), .doc = "What prune.ratio counts: \"params\" or \"macs\" (at model.sample_size)."},
    {"prune", "granularity", T_ENUM, "\"layer\"", .names = GRANULARITIES, AT(prune.granularity), .doc = "What a candidate is: \"layer\" (a ResnetBlock2D or a whole Transformer2DModel) or \"block\" (the same, but each single BasicTransformerBlock of a stack of >= 2 instead of its Transformer2DModel; removed = identity on the tokens)."},
    {"prune", "scores_from", T_STRING, "\"\"", AT(prune.scores_from), .doc = "run.h5 of an earlier `score` to plan from (empty: this run's OUTPUT/run.h5)."},
    {"prune", "layers", T_STRING_LIST, "[]", AT(prune.layers), COUNT(prune.n_layers), ELEM(prune.layers), .doc = "A handcrafted plan (BK-SDM style): the diffusers names of the layers to remove; empty: solve the knapsack."},
    {"prune", "additivity_sets", T_INT, "24", 0, NOMAX, AT(prune.additivity_sets), .doc = "Random removal sets (sizes spread over the ratio range) whose actual output loss is compared with the sum of their scores (0: skip)."},
    {"distill", "student", T_STRING, "\"\"", AT(distill.student), .doc = "The pruned student to retrain (.safetensors); empty: OUTPUT_DIR/student_init.safetensors from `plan`. The optimizer, steps and batch come from the train section."},
    {"distill", "lambda_task", T_FLOAT, "1.0", 0, NOMAX, AT(distill.lambda_task), .doc = "Weight of the task loss MSE(eps_student, eps)."},
    {"distill", "lambda_out", T_FLOAT, "1.0", 0, NOMAX, AT(distill.lambda_out), .doc = "Weight of the output KD loss MSE(eps_student, eps_teacher)."},
    {"distill", "lambda_feat", T_FLOAT, "1.0", 0, NOMAX, AT(distill.lambda_feat), .doc = "Weight of the feature KD loss, summed over the taps (every down block, the mid block, every up block)."},
    {"distill", "feat_norm", T_ENUM, "\"l2sq\"", .names = FEAT_NORMS, AT(distill.feat_norm), .doc = "Per-tap feature term: \"l2sq\" (LAPTOP: mean over samples of ||F_S - F_T||^2 / ||F_T||^2, teacher norm held constant) or \"none\" (BK-SDM: per-element MSE)."},
    {"distill", "activation_interval", T_INT, "0", 0, NOMAX, AT(distill.activation_interval), .doc = "Steps between activation snapshots (teacher and student taps on a fixed probe batch) in /activations/<step>/<tap>; 0: none."},
    {"distill", "probe_samples", T_INT, "8", 1, NOMAX, AT(distill.probe_samples), .doc = "Samples in the fixed probe batch of the activation snapshots (split across ranks)."},
    {"eval", "samples", T_INT, "256", 1, NOMAX, AT(eval.samples), .doc = "Held-out (test split) samples for the evaluation's task loss and output MSE to the teacher."},
    {"eval", "classifier", T_STRING, "\"\"", AT(eval.classifier), .doc = "The evaluator CNN (`train-classifier`, e.g. the shipped models/fmnist_classifier.safetensors) for the image-quality metrics alignment and FID; empty: eval skips them (it says so)."},
    {"eval", "fid_samples", T_INT, "100", 10, NOMAX, AT(eval.fid_samples), .doc = "Class-balanced generated samples (a multiple of 10, DDIM + CFG with the sample section's steps and guidance) for alignment and FID, compared with as many real test images."},
    {"eval", "speed_batch", T_INT, "8", 1, NOMAX, AT(eval.speed_batch), .doc = "Batch N of the sampling-speed metrics seconds_per_step_bN and seconds_per_image_bN (rank 0; batch 1 is always measured)."},
    {"classifier", "out", T_STRING, "\"models/fmnist_classifier.safetensors\"", AT(classifier.out), .doc = "Where `train-classifier` writes the evaluator (atomically)."},
    {"classifier", "channels", T_INT_ARRAY, "[24, 48, 48, 96, 96, 128]", 1, NOMAX, AT(classifier.channels), COUNT(classifier.n_layers), .doc = "Output channels of each conv3x3-GroupNorm-SiLU layer (at most 8); the last is the width of the features FID uses."},
    {"classifier", "strides", T_INTS, "[1, 2, 1, 2, 1, 2]", 1, 2, .len_of = "channels", AT(classifier.strides), .doc = "Stride (1 or 2) of each layer's convolution; one int or one per layer."},
    {"classifier", "groups", T_INT, "8", 1, NOMAX, AT(classifier.groups), .doc = "GroupNorm groups; every classifier.channels entry must be divisible by it."},
    {"classifier", "epochs", T_INT, "4", 1, NOMAX, AT(classifier.epochs), .doc = "Passes over the Fashion-MNIST train split."},
    {"classifier", "batch", T_INT, "64", 1, NOMAX, AT(classifier.batch), .doc = "Global batch per step, split across ranks (must be divisible by the rank count)."},
    {"classifier", "lr", T_FLOAT, "2e-3", .min = 0, .max = 1, .min_open = 1, AT(classifier.lr), .doc = "Peak learning rate (AdamW with train.beta1, train.beta2, train.adam_eps; linear warmup, cosine decay to 0)."},
    {"classifier", "weight_decay", T_FLOAT, "0.01", 0, 1, AT(classifier.weight_decay), .doc = "AdamW decoupled weight decay."},
    {"classifier", "warmup_steps", T_INT, "100", 0, NOMAX, AT(classifier.warmup_steps), .doc = "Linear warmup steps of the learning rate."},
    {"classifier", "flip", T_BOOL, "false", AT(classifier.flip), .doc = "Flip each training image horizontally with probability 1/2 (seeded by runtime.seed)."},
    {"classifier", "log_interval", T_INT, "100", 1, NOMAX, AT(classifier.log_interval), .doc = "Steps between progress lines."},
    {"classifier", "test_samples", T_INT, "10000", 1, 10000, AT(classifier.test_samples), .doc = "Test-split images the reported accuracy is measured on (the first ones)."},
    {"runtime", "threads", T_INT, "0", 0, NOMAX, AT(runtime.threads), .doc = "CPU threads per rank (OpenMP and OpenBLAS); 0: the cores the launcher bound the rank to, or, where it is not bound, the node's cores divided by its ranks."},
    {"runtime", "seed", T_INT, "1234", 0, 2147483647, AT(runtime.seed), .doc = "Seed of every random stream (calibration set, data order, noise, initialisation)."},
    {"runtime", "device", T_ENUM, "\"cpu\"", .names = DEVICES, AT(runtime.device), .doc = "Compute backend: \"cpu\" (OpenBLAS + OpenMP) or \"cuda\": each rank takes GPU node-local rank mod the node's GPUs; in an LD_CUDA build train and distill run wholly on it (weights, optimizer state, activations), as do the U-Net passes of sample, forward, eval and score/plan (the teacher pass, the output loss); the rest (the other scoring criteria, the evaluator), there and in an LD_CUDA_GEMM-only build, sends its GEMMs to cuBLAS."},
    {"runtime", "cpu_gemm", T_ENUM, "\"auto\"", .names = CPU_GEMMS, AT(runtime.cpu_gemm), .doc = "The CPU's matrix products: \"openblas\", \"onednn\" (oneDNN's sgemm for products of 2^21 multiply-adds and more, OpenBLAS below; a build with oneDNN only) or \"auto\": oneDNN on Intel CPUs with AVX-512, where it measured faster, OpenBLAS elsewhere. Results differ at float rounding, not more."},
    {"runtime", "precision", T_ENUM, "\"fp32\"", .names = PRECISIONS, AT(runtime.precision), .doc = "GEMMs of the stages that run on the GPU (runtime.device = \"cuda\", LD_CUDA build): \"fp32\", \"tf32\" (tensor cores, ~1e-3 relative error) or \"bf16\" (~1e-2); weights, gradients and optimizer state stay fp32."},
    {"runtime", "gpu_conv", T_ENUM, "\"auto\"", .names = GPU_CONVS, AT(runtime.gpu_conv), .doc = "How the GPU convolves (runtime.device = \"cuda\"): \"cudnn\" (cuDNN's deterministic algorithms; needs an LD_CUDA build with cuDNN), \"gemm\" (im2col + cuBLAS GEMMs) or \"auto\": cuDNN where the build has it and it starts, else the GEMMs. At runtime.precision \"bf16\" cuDNN convolves in TF32 (fp32 tensors). Results differ at float rounding, not more."},
    {"runtime", "gpu_attention", T_ENUM, "\"auto\"", .names = GPU_ATTNS, AT(runtime.gpu_attention), .doc = "How the GPU attends (runtime.device = \"cuda\"): \"fused\" (one kernel per direction on tensor cores, the logits kept in shared memory; needs runtime.precision \"tf32\" or \"bf16\"), \"tiled\" (cuBLAS GEMMs over query tiles, the logits through device memory) or \"auto\": fused where the precision has tensor cores and a head fits a block's shared memory, else tiled. Results differ at float rounding, not more."},
    {"runtime", "gpu_comm", T_ENUM, "\"auto\"", .names = GPU_COMMS, AT(runtime.gpu_comm), .doc = "How train and distill on several GPUs (runtime.device = \"cuda\") sum the gradients: \"nccl\" between the devices (train.bucket_mb buckets overlapped with backward; needs an LD_CUDA build with NCCL and no two ranks of a node on one GPU), \"mpi\" through host memory after backward, or \"auto\": NCCL where both hold, else MPI."},
    {"runtime", "share_teacher", T_BOOL, "true", AT(runtime.share_teacher), .doc = "Ranks on one node share one read-only copy of the teacher's weights (node-shared memory, loaded by the node's first rank); false: every rank loads its own."},
    {"output", "dir", T_STRING, "\"runs/default\"", AT(output.dir), .doc = "Run directory: run.h5, models, checkpoints and sample grids go here."},
};
// clang-format on
#define N_KEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

// ---- small helpers ----------------------------------------------------------

static int find_key(const char *section, size_t section_len, const char *key) {
    for (int i = 0; i < N_KEYS; i++)
        if (strlen(KEYS[i].section) == section_len &&
            strncmp(KEYS[i].section, section, section_len) == 0 && strcmp(KEYS[i].key, key) == 0)
            return i;
    return -1;
}

static int is_section(const char *name) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].section, name) == 0) return 1;
    return 0;
}

// First row of each section, in table order, so sections need no list of their own.
static int is_first_of_section(int k) {
    for (int i = 0; i < k; i++)
        if (strcmp(KEYS[i].section, KEYS[k].section) == 0) return 0;
    return 1;
}

static int len_of_key(int k) {
    int r = find_key(KEYS[k].section, strlen(KEYS[k].section), KEYS[k].len_of);
    CHECK(r >= 0 && r < k);  // the length-giving key must be stored first
    return r;
}

static void *member(JobConfig *jc, int k) { return (char *)jc + KEYS[k].off; }
static const void *cmember(const JobConfig *jc, int k) { return (const char *)jc + KEYS[k].off; }

// Entries of an array key as stored (1 for scalars).
static int key_count(const JobConfig *jc, int k) {
    if (KEYS[k].len_of) return key_count(jc, len_of_key(k));
    KeyType t = KEYS[k].type;
    if (t == T_INT_ARRAY || t == T_ENUM_LIST || t == T_STRING_LIST)
        return *(const int *)((const char *)jc + KEYS[k].count_off);
    return 1;
}

static const char *enum_name(const EnumName *names, int value) {
    for (const EnumName *n = names; n->name; n++)
        if (n->value == value) return n->name;
    return NULL;
}

static const EnumName *enum_find(const EnumName *names, const char *s) {
    for (const EnumName *n = names; n->name; n++)
        if (strcmp(n->name, s) == 0) return n;
    return NULL;
}

const char *criterion_name(Criterion c) {
    const char *n = enum_name(CRITERIA, (int)c);
    CHECK(n);
    return n;
}

const char *budget_name(Budget b) {
    const char *n = enum_name(BUDGETS, (int)b);
    CHECK(n);
    return n;
}

const char *feat_norm_name(FeatNorm f) {
    const char *n = enum_name(FEAT_NORMS, (int)f);
    CHECK(n);
    return n;
}

// Levenshtein distance, for "did you mean"; names are short.
static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

// The known key closest to section.key (a key in another section costs one
// more edit), or -1 when nothing is close enough to be a plausible typo.
static int closest_key(const char *section, const char *key) {
    int best = -1, best_d = 2 + (int)strlen(key) / 4;
    for (int i = 0; i < N_KEYS; i++) {
        int d = edit_distance(key, KEYS[i].key) + (strcmp(section, KEYS[i].section) != 0);
        if (d < best_d) best = i, best_d = d;
    }
    return best;
}

static void suggest(char *buf, size_t n, const char *section, const char *key) {
    int c = closest_key(section, key);
    if (c >= 0)
        snprintf(buf, n, "; did you mean %s.%s?", KEYS[c].section, KEYS[c].key);
    else
        snprintf(buf, n, " (see `laptop-diff config-reference`)");
}

// A setting's value as the user wrote it, for "got ..." in messages.
static void show(const config_setting_t *s, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT: snprintf(buf, n, "%d", config_setting_get_int(s)); break;
    case CONFIG_TYPE_INT64: snprintf(buf, n, "%lld", config_setting_get_int64(s)); break;
    case CONFIG_TYPE_FLOAT: snprintf(buf, n, "%g", config_setting_get_float(s)); break;
    case CONFIG_TYPE_BOOL: snprintf(buf, n, "%s", config_setting_get_bool(s) ? "true" : "false"); break;
    case CONFIG_TYPE_STRING: snprintf(buf, n, "\"%s\"", config_setting_get_string(s)); break;
    case CONFIG_TYPE_GROUP: snprintf(buf, n, "a group { ... }"); break;
    default:  // array or list
        used = (size_t)snprintf(buf, n, "[");
        for (int i = 0; i < config_setting_length(s) && used + 8 < n; i++) {
            used += (size_t)snprintf(buf + used, n - used, i ? ", " : "");
            show(config_setting_get_elem(s, (unsigned)i), buf + used, n - used - 2);
            used += strlen(buf + used);
        }
        snprintf(buf + used, n - used, "]");
    }
}

// ---- where a value came from --------------------------------------------------

typedef struct {
    const char *file;  // job file or a file it @includes (NULL: not from a file)
    int line;
    const char *set;   // the --set argument (NULL: not an override)
    const char *job;   // the job file's path as given
} Src;

static void where(const Src *src, char *buf, size_t n) {
    const char *slash = src->job ? strrchr(src->job, '/') : NULL;
    if (src->set && strlen(src->set) > 200)
        // A long override (hundreds of layer names) is cut so that the key and the message still fit.
        snprintf(buf, n, "--set %.160s... (%zu characters)", src->set, strlen(src->set));
    else if (src->set)
        snprintf(buf, n, "--set %s", src->set);
    else if (src->file && slash && src->file[0] != '/' && strcmp(src->file, src->job) != 0)
        // libconfig names an @included file as written; it was found next to the job file.
        snprintf(buf, n, "%.*s/%s:%d", (int)(slash - src->job), src->job, src->file, src->line);
    else if (src->file)
        snprintf(buf, n, "%s:%d", src->file, src->line);
    else
        snprintf(buf, n, "(default)");
}

static int src_rank(const Src *s) { return s->set ? 2 : s->file ? 1 : 0; }

static Src src_of(const config_setting_t *s, const Src *parent) {
    Src r = *parent;
    if (!r.set && r.file) {
        if (config_setting_source_file(s)) r.file = config_setting_source_file(s);
        if (config_setting_source_line(s) > 0) r.line = (int)config_setting_source_line(s);
    }
    return r;
}

// "<where>: <section.key>[<idx>]: <message>", idx < 0 for the whole key.
__attribute__((format(printf, 5, 6))) static int key_error(Error *e, const Src *src, int k, int idx,
                                                           const char *fmt, ...) {
    char w[1100], msg[700], sub[16] = "";
    where(src, w, sizeof w);
    if (idx >= 0) snprintf(sub, sizeof sub, "[%d]", idx);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return errorf(e, "%s: %s.%s%s: %s", w, KEYS[k].section, KEYS[k].key, sub, msg);
}

// ---- checking and storing one value ---------------------------------------------

// What each value must be: ">= 1", "in [0, 2147483647]", "> 0", or the allowed
// strings ("one of \"cpu\", \"cuda\""; `md`: as Markdown code for the reference).
static void range_text(int k, int md, char *buf, size_t n) {
    const KeySpec *ks = &KEYS[k];
    buf[0] = 0;
    if (ks->names) {
        size_t used = (size_t)snprintf(buf, n, (ks->names[1].name && !md) ? "one of " : "");
        for (const EnumName *v = ks->names; v->name && used < n; v++)
            used += (size_t)snprintf(buf + used, n - used, md ? "%s`\"%s\"`" : "%s\"%s\"",
                                     v == ks->names ? "" : ", ", v->name);
        if (!ks->names[1].name && !md && used < n)
            snprintf(buf + used, n - used, " (the only value supported)");
    } else if (ks->type == T_BOOL) {
        snprintf(buf, n, md ? "`true`, `false`" : "true or false");
    } else if (ks->type == T_STRING) {
        snprintf(buf, n, "up to %zu characters", ks->size - 1);
    } else if (ks->type == T_STRING_LIST) {
        snprintf(buf, n, "up to %zu names without commas, each up to %zu characters", ks->size / ks->elem,
                 ks->elem - 1);
    } else {
        // %.10g: every int bound (up to 2^31-1) prints as an integer.
        if (isinf(ks->max))
            snprintf(buf, n, "%s %.10g", ks->min_open ? ">" : ">=", ks->min);
        else
            snprintf(buf, n, "%s%s%.10g, %.10g]", md ? "" : "in ", ks->min_open ? "(" : "[",
                     ks->min, ks->max);
    }
}

// One value (a scalar key, or one element of an array key): "an integer >= 1".
static void describe_scalar(int k, char *buf, size_t n) {
    const KeySpec *ks = &KEYS[k];
    char r[256];
    range_text(k, 0, r, sizeof r);
    if (ks->names || ks->type == T_BOOL)
        snprintf(buf, n, "%s", r);
    else if (ks->type == T_STRING)
        snprintf(buf, n, "a string");
    else if (ks->type == T_STRING_LIST)
        snprintf(buf, n, "a non-empty name without commas");
    else
        snprintf(buf, n, "%s %s", ks->type == T_FLOAT ? "a number" : "an integer", r);
}

// The whole key: arrays say so.
static void describe_key(int k, char *buf, size_t n) {
    const KeySpec *ks = &KEYS[k];
    char r[256];
    range_text(k, 0, r, sizeof r);
    switch (ks->type) {
    case T_INT_ARRAY:
        snprintf(buf, n, "an array of 1 to %zu integers %s", ks->size / sizeof(int), r);
        break;
    case T_INTS:
        snprintf(buf, n, "an integer %s, or an array of them (one per %s.%s entry)", r, ks->section,
                 ks->len_of);
        break;
    case T_ENUM_ARRAY:
        snprintf(buf, n, "an array of strings (one per %s.%s entry), each %s", ks->section,
                 ks->len_of, r);
        break;
    case T_ENUM_LIST:
    case T_STRING_LIST:
        snprintf(buf, n, "a string or an array of strings (%s)", r);
        break;
    default: describe_scalar(k, buf, n);
    }
}

// A scalar setting's text as written in its file, into buf ("" when not found): libconfig keeps
// only the parsed value, and 1.5 reads an integer beyond 64 bits as -1, 0 or a clamped value.
static void literal(const Src *src, const config_setting_t *s, char *buf, size_t n) {
    buf[0] = 0;
    const char *name = config_setting_name(s);
    if (src->set || !src->file || src->line <= 0 || !name || n < 2) return;
    char path[2048];
    const char *slash = src->job ? strrchr(src->job, '/') : NULL;
    if (slash && src->file[0] != '/' && strcmp(src->file, src->job) != 0)
        snprintf(path, sizeof path, "%.*s/%s", (int)(slash - src->job), src->job, src->file);
    else
        snprintf(path, sizeof path, "%s", src->file);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[4096];
    int at = 0;
    while (fgets(line, sizeof line, f) && ++at < src->line) {}
    fclose(f);
    if (at != src->line) return;
    size_t len = strlen(name);
    for (const char *p = strstr(line, name); p; p = strstr(p + 1, name)) {
        const char *q = p + len;
        if (p > line && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) continue;
        while (*q == ' ' || *q == '\t') q++;
        if (*q != '=' && *q != ':') continue;
        for (q++; *q == ' ' || *q == '\t'; q++) {}
        size_t m = strcspn(q, ";,]) \t\r\n#");
        if (m >= n) m = n - 1;
        memcpy(buf, q, m);
        buf[m] = 0;
        return;
    }
}

static int expect_error(Error *e, const Src *src, int k, int idx, const config_setting_t *s) {
    char want[512], got[256];
    if (idx >= 0)
        describe_scalar(k, want, sizeof want);
    else
        describe_key(k, want, sizeof want);
    show(s, got, sizeof got);
    int t = config_setting_type(s);
    if (idx < 0 && (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)) {
        char lit[sizeof got];
        literal(src, s, lit, sizeof lit);  // what the user wrote, not libconfig's reading of it
        if (lit[0]) snprintf(got, sizeof got, "%s", lit);
    }
    return key_error(e, src, k, idx, "expected %s, got %s", want, got);
}

static int in_range(const KeySpec *ks, double v) {
    if (isnan(v) || v > ks->max) return 0;
    return ks->min_open ? v > ks->min : v >= ks->min;
}

// One integer (of an int key or an int array element); *out within range.
static int get_int(int k, const config_setting_t *s, const Src *src, int idx, long long *out, Error *e) {
    int t = config_setting_type(s);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) return expect_error(e, src, k, idx, s);
    long long v = config_setting_get_int64(s);
    if (idx < 0) {  // an integer libconfig could not hold reads back as another number: refuse it
        char lit[256], *end;
        literal(src, s, lit, sizeof lit);
        errno = 0;
        long long w = lit[0] ? strtoll(lit, &end, 0) : v;
        if (lit[0] && errno == ERANGE)
            return key_error(e, src, k, idx, "got %s, beyond the 64-bit integer range", lit);
        if (lit[0] && (*end == 0 || *end == 'L') && w != v)
            return key_error(e, src, k, idx, "got %s, which libconfig reads as %lld (beyond 32 bits: add an L suffix)",
                             lit, v);
    }
    // The member bounds the value too: long for seed-like keys, int otherwise.
    long long cap = (KEYS[k].type == T_INT && KEYS[k].size == sizeof(long)) ? LONG_MAX : INT_MAX;
    if (!in_range(&KEYS[k], (double)v) || v > cap || v < -cap) return expect_error(e, src, k, idx, s);
    *out = v;
    return 0;
}

static int get_enum(int k, const config_setting_t *s, const Src *src, int idx, int *out, Error *e) {
    const EnumName *n = config_setting_type(s) == CONFIG_TYPE_STRING
                            ? enum_find(KEYS[k].names, config_setting_get_string(s))
                            : NULL;
    if (!n) return expect_error(e, src, k, idx, s);
    *out = n->value;
    return 0;
}

static int is_seq(const config_setting_t *s) {
    return config_setting_is_array(s) || config_setting_is_list(s);
}

// A rule involving keys a and b is reported where the user last touched one:
// an override before a file line before a default; a on a tie.
__attribute__((format(printf, 5, 6))) static int pair_error(Error *e, const Src *srcs, int a, int b,
                                                            const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int at = src_rank(&srcs[a]) >= src_rank(&srcs[b]) ? a : b;
    return key_error(e, &srcs[at], at, -1, "%s", msg);
}

// Length of an array whose length is another key's: a mismatch is reported
// where the user set this key or, at its default, where they set the other.
static int check_len(int k, const config_setting_t *s, const Src *srcs, int want, Error *e) {
    int n = config_setting_length(s), ref = len_of_key(k);
    if (n == want) return 0;
    int dflt = !srcs[k].file && !srcs[k].set;
    return pair_error(e, srcs, k, ref, "%s.%s has %d entries%s but %s.%s has %d (one per block)",
                      KEYS[k].section, KEYS[k].key, n, dflt ? " (its default)" : "",
                      KEYS[ref].section, KEYS[ref].key, want);
}

// Checks setting s against key k and writes it into jc.
static int store(JobConfig *jc, int k, const config_setting_t *s, const Src *srcs, Error *e) {
    const KeySpec *ks = &KEYS[k];
    const Src *src = &srcs[k];
    void *dst = member(jc, k);
    long long iv;
    int ev = 0;
    switch (ks->type) {
    case T_INT:
        if (get_int(k, s, src, -1, &iv, e)) return -1;
        if (ks->size == sizeof(long))
            *(long *)dst = (long)iv;
        else
            *(int *)dst = (int)iv;
        return 0;
    case T_FLOAT: {
        if (!config_setting_is_number(s)) return expect_error(e, src, k, -1, s);
        double v = config_setting_type(s) == CONFIG_TYPE_FLOAT ? config_setting_get_float(s)
                                                               : (double)config_setting_get_int64(s);
        if (!in_range(ks, v) || !isfinite(v) || (ks->size == sizeof(float) && fabs(v) > 3.4e38))
            return expect_error(e, src, k, -1, s);
        if (ks->size == sizeof(float))
            *(float *)dst = (float)v;
        else
            *(double *)dst = v;
        return 0;
    }
    case T_BOOL:
        if (config_setting_type(s) != CONFIG_TYPE_BOOL) return expect_error(e, src, k, -1, s);
        *(int *)dst = config_setting_get_bool(s);
        return 0;
    case T_STRING: {
        if (config_setting_type(s) != CONFIG_TYPE_STRING) return expect_error(e, src, k, -1, s);
        const char *v = config_setting_get_string(s);
        if (strlen(v) >= ks->size)
            return key_error(e, src, k, -1, "longer than %zu characters", ks->size - 1);
        memset(dst, 0, ks->size);
        memcpy(dst, v, strlen(v));
        return 0;
    }
    case T_ENUM:
        CHECK(ks->size == sizeof(int));  // enums are int-sized (C11 6.7.2.2 and the ABI)
        if (get_enum(k, s, src, -1, &ev, e)) return -1;
        *(int *)dst = ev;
        return 0;
    case T_INT_ARRAY: {
        int cap = (int)(ks->size / sizeof(int)), n = is_seq(s) ? config_setting_length(s) : -1;
        if (n < 1 || n > cap) return expect_error(e, src, k, -1, s);
        for (int i = 0; i < n; i++) {
            const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);
            Src es = src_of(el, src);
            if (get_int(k, el, &es, i, &iv, e)) return -1;
            ((int *)dst)[i] = (int)iv;
        }
        *(int *)((char *)jc + ks->count_off) = n;
        return 0;
    }
    case T_INTS: {
        int n = key_count(jc, len_of_key(k));
        CHECK(n <= (int)(ks->size / sizeof(int)));
        if (!is_seq(s)) {
            if (get_int(k, s, src, -1, &iv, e)) return -1;
            for (int i = 0; i < n; i++) ((int *)dst)[i] = (int)iv;
            return 0;
        }
        if (check_len(k, s, srcs, n, e)) return -1;
        for (int i = 0; i < n; i++) {
            const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);
            Src es = src_of(el, src);
            if (get_int(k, el, &es, i, &iv, e)) return -1;
            ((int *)dst)[i] = (int)iv;
        }
        return 0;
    }
    case T_ENUM_LIST:
    case T_STRING_LIST: {
        int n = is_seq(s) ? config_setting_length(s) : 1;
        if (!is_seq(s) && config_setting_type(s) != CONFIG_TYPE_STRING) return expect_error(e, src, k, -1, s);
        const int list = ks->type == T_ENUM_LIST;
        const size_t elem = list ? sizeof(int) : ks->elem;
        const int cap = (int)(ks->size / elem);
        if (list && n < 1) return expect_error(e, src, k, -1, s);  // the plan needs a criterion
        if (n > cap) return key_error(e, src, k, -1, "more than %d entries (%d given)", cap, n);
        memset(dst, 0, ks->size);
        for (int i = 0; i < n; i++) {
            const config_setting_t *el = is_seq(s) ? config_setting_get_elem(s, (unsigned)i) : s;
            Src es = src_of(el, src);
            const int idx = is_seq(s) ? i : -1;
            if (config_setting_type(el) != CONFIG_TYPE_STRING) return expect_error(e, &es, k, idx, el);
            const char *v = config_setting_get_string(el);
            if (list) {
                if (get_enum(k, el, &es, idx, &ev, e)) return -1;
                for (int j = 0; j < i; j++)
                    if (((const int *)dst)[j] == ev) return key_error(e, &es, k, idx, "\"%s\" is listed twice", v);
                ((int *)dst)[i] = ev;
                continue;
            }
            // No commas: the names go comma-joined into the student's "removed" metadata.
            if (strchr(v, ',') || !*v) return expect_error(e, &es, k, idx, el);
            if (strlen(v) >= elem) return key_error(e, &es, k, idx, "longer than %zu characters", elem - 1);
            memcpy((char *)dst + (size_t)i * elem, v, strlen(v));
        }
        *(int *)((char *)jc + ks->count_off) = n;
        return 0;
    }
    case T_ENUM_ARRAY: {
        int n = key_count(jc, len_of_key(k));
        CHECK(n <= (int)(ks->size / sizeof(int)));
        if (!is_seq(s)) return expect_error(e, src, k, -1, s);
        if (check_len(k, s, srcs, n, e)) return -1;
        for (int i = 0; i < n; i++) {
            const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);
            Src es = src_of(el, src);
            if (get_enum(k, el, &es, i, &ev, e)) return -1;
            ((int *)dst)[i] = ev;
        }
        return 0;
    }
    }
    FATAL("unhandled key type %d", (int)ks->type);
}

// ---- cross-key rules ---------------------------------------------------------------

static int key_index(const char *section, const char *key) {
    int k = find_key(section, strlen(section), key);
    CHECK(k >= 0);
    return k;
}

static int validate_model(const JobConfig *jc, const Src *srcs, Error *e) {
    const ModelConfig *m = &jc->model;
    const int ch = key_index("model", "block_out_channels"), groups = key_index("model", "norm_num_groups");
    const int heads = key_index("model", "attention_head_dim"), down = key_index("model", "down_block_types");
    const int up = key_index("model", "up_block_types"), size = key_index("model", "sample_size");
    const int shift = key_index("model", "freq_shift");
    const int n = m->n_blocks;
    for (int i = 0; i < n; i++)
        if (m->block_out_channels[i] % m->norm_num_groups)
            return pair_error(e, srcs, ch, groups,
                              "model.block_out_channels[%d] = %d is not divisible by "
                              "model.norm_num_groups = %d (GroupNorm)",
                              i, m->block_out_channels[i], m->norm_num_groups);
    // Blocks with attention: cross-attention down blocks, and the last block's
    // channels for the mid block (which always has one).
    for (int i = 0; i < n; i++)
        if ((m->down_cross[i] || i == n - 1) && m->block_out_channels[i] % m->heads[i])
            return pair_error(e, srcs, heads, ch,
                              "model.block_out_channels[%d] = %d is not divisible by its head "
                              "count model.attention_head_dim[%d] = %d",
                              i, m->block_out_channels[i], i, m->heads[i]);
    for (int i = 0; i < n; i++)
        if (m->up_cross[i] != m->down_cross[n - 1 - i]) {
            char want[512];
            size_t used = 0;
            for (int j = 0; j < n && used < sizeof want; j++)
                used += (size_t)snprintf(want + used, sizeof want - used, "%s\"%s\"", j ? ", " : "",
                                         enum_name(UP_TYPES, m->down_cross[n - 1 - j]));
            return pair_error(e, srcs, up, down,
                              "model.up_block_types[%d] = \"%s\" does not mirror "
                              "model.down_block_types[%d] = \"%s\": expected [%s]",
                              i, enum_name(UP_TYPES, m->up_cross[i]), n - 1 - i,
                              enum_name(DOWN_TYPES, m->down_cross[n - 1 - i]), want);
        }
    // Every block but the last halves the resolution; skips must line up on the way back.
    if (m->sample_size % (1 << (n - 1)))
        return pair_error(e, srcs, size, ch,
                          "model.sample_size = %d is not divisible by %d (it is halved %d times "
                          "for %d blocks)",
                          m->sample_size, 1 << (n - 1), n - 1, n);
    if (m->addition_embed_type == ADD_EMBED_TEXT_TIME) {
        const int atd = key_index("model", "addition_time_embed_dim");
        const int proj = key_index("model", "projection_class_embeddings_input_dim");
        if (m->addition_time_embed_dim < 2 || m->addition_time_embed_dim % 2)
            return pair_error(e, srcs, atd, atd,
                              "model.addition_time_embed_dim = %d: addition_embed_type \"text_time\" needs a "
                              "positive even width (SDXL: 256)", m->addition_time_embed_dim);
        if (m->freq_shift >= m->addition_time_embed_dim / 2)  // add_time_proj shares the timestep embedding's shift
            return pair_error(e, srcs, shift, atd,
                              "model.freq_shift = %g must be < model.addition_time_embed_dim / 2 = %d",
                              (double)m->freq_shift, m->addition_time_embed_dim / 2);
        if (model_pooled_dim(m) < 1)
            return pair_error(e, srcs, proj, atd,
                              "model.projection_class_embeddings_input_dim = %d must exceed 6 * "
                              "model.addition_time_embed_dim = %d: the rest is the pooled text embedding "
                              "(SDXL: 2816 = 1280 + 6 * 256)",
                              m->projection_class_embeddings_input_dim, LD_TIME_IDS * m->addition_time_embed_dim);
    }
    if (m->freq_shift >= m->block_out_channels[0] / 2)
        return pair_error(e, srcs, shift, ch,
                          "model.freq_shift = %g must be < model.block_out_channels[0] / 2 = %d",
                          (double)m->freq_shift, m->block_out_channels[0] / 2);
    return 0;
}

static int validate_eval(const JobConfig *jc, const Src *srcs, Error *e) {
    const int fid = key_index("eval", "fid_samples"), ch = key_index("classifier", "channels");
    const int groups = key_index("classifier", "groups");
    if (jc->eval.fid_samples % 10)  // class-balanced: as many of each of the 10 classes
        return pair_error(e, srcs, fid, fid, "eval.fid_samples = %d is not a multiple of 10 (the classes)",
                          jc->eval.fid_samples);
    const ClassifierConfig *c = &jc->classifier;
    for (int i = 0; i < c->n_layers; i++)
        if (c->channels[i] % c->groups)
            return pair_error(e, srcs, ch, groups,
                              "classifier.channels[%d] = %d is not divisible by classifier.groups = %d (GroupNorm)", i,
                              c->channels[i], c->groups);
    return 0;
}

// ---- the file, the overrides and the defaults --------------------------------------

// Rejects anything in the file that is not a known section holding known keys.
static int check_tree(const config_t *cf, const char *path, Error *e) {
    const config_setting_t *root = config_root_setting(cf);
    Src top = {path, 0, NULL, path};
    char w[1100], hint[256];
    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *sec = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(sec);
        Src ss = src_of(sec, &top);
        where(&ss, w, sizeof w);
        if (!is_section(name)) {
            int best = -1, best_d = 2 + (int)strlen(name) / 4;
            for (int k = 0; k < N_KEYS; k++) {
                int d = edit_distance(name, KEYS[k].section);
                if (d < best_d) best = k, best_d = d;
            }
            int as_key = closest_key("", name);
            if (best >= 0)
                snprintf(hint, sizeof hint, "; did you mean %s?", KEYS[best].section);
            else if (as_key >= 0)
                snprintf(hint, sizeof hint, "; did you mean %s.%s (keys go inside their section)?",
                         KEYS[as_key].section, KEYS[as_key].key);
            else
                snprintf(hint, sizeof hint, " (see `laptop-diff config-reference`)");
            return errorf(e, "%s: %s: unknown section%s", w, name, hint);
        }
        if (!config_setting_is_group(sec))
            return errorf(e, "%s: %s: expected a section (%s = { key = value; ... };)", w, name, name);
        for (int j = 0; j < config_setting_length(sec); j++) {
            const config_setting_t *s = config_setting_get_elem(sec, (unsigned)j);
            if (find_key(name, strlen(name), config_setting_name(s)) >= 0) continue;
            Src ks = src_of(s, &ss);
            where(&ks, w, sizeof w);
            suggest(hint, sizeof hint, name, config_setting_name(s));
            return errorf(e, "%s: %s.%s: unknown key%s", w, name, config_setting_name(s), hint);
        }
    }
    return 0;
}

static int read_job_file(config_t *cf, const char *path, Error *e) {
    errno = 0;
    // @include paths resolve next to the job file.
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        config_set_include_dir(cf, dir[0] ? dir : "/");
    }
    if (config_read_file(cf, path)) return check_tree(cf, path, e);
    if (config_error_type(cf) == CONFIG_ERR_FILE_IO) {
        struct stat st;
        // fopen opens a directory; the read then fails with errno still 0 ("Success")
        int err = errno ? errno : (!stat(path, &st) && S_ISDIR(st.st_mode)) ? EISDIR : EIO;
        return errorf(e, "%s: cannot read the job file: %s", path, strerror(err));
    }
    Src at = {config_error_file(cf) ? config_error_file(cf) : path, config_error_line(cf), NULL, path};
    char w[1100];
    where(&at, w, sizeof w);
    return errorf(e, "%s: %s", w, config_error_text(cf));
}

static int is_decimal(const char *s) {
    if (*s == '-' || *s == '+') s++;
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

static const char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

// A bare list of strings, "[A, B]" without quotes, as a list setting of cf.
static int parse_bare_strings(config_t *cf, const char *value) {
    size_t n = strlen(value);
    if (n < 2 || value[0] != '[' || value[n - 1] != ']') return 0;
    char *body = xstrdup(value + 1);
    body[n - 2] = 0;
    config_setting_t *list = config_setting_add(config_root_setting(cf), "v", CONFIG_TYPE_LIST);
    char *save = NULL;
    for (char *tok = strtok_r(body, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *t = (char *)trim(tok);
        size_t len = strlen(t);
        if (len >= 2 && t[0] == '"' && t[len - 1] == '"') t[len - 1] = 0, t++;  // a quoted element among bare ones
        if (*t) config_setting_set_string(config_setting_add(list, NULL, CONFIG_TYPE_STRING), t);
    }
    free(body);
    return 1;
}

// Parses one --set into its own config cf: *key_out gets the key, *out the value.
static int parse_override(config_t *cf, const char *set, int *key_out, config_setting_t **out,
                          Error *e) {
    const char *eq = strchr(set, '=');
    const char *dot = eq ? memchr(set, '.', (size_t)(eq - set)) : NULL;
    if (!eq || !dot) return errorf(e, "--set %s: expected section.key=value", set);
    char key_buf[256], section_buf[256];
    snprintf(key_buf, sizeof key_buf, "%.*s", (int)(eq - dot - 1), dot + 1);
    snprintf(section_buf, sizeof section_buf, "%.*s", (int)(dot - set), set);
    const char *key = trim(key_buf), *section = trim(section_buf);
    int k = find_key(section, strlen(section), key);
    if (k < 0) {
        char hint[256];
        suggest(hint, sizeof hint, section, key);
        return errorf(e, "--set %s: unknown key %s.%s%s", set, section, key, hint);
    }
    char *value_buf = xstrdup(eq + 1);
    const char *value = trim(value_buf);
    config_setting_t *root = config_root_setting(cf);
    int ok = 0;
    const KeyType t = KEYS[k].type;
    const int str_list = t == T_ENUM_LIST || t == T_STRING_LIST;
    if ((t == T_STRING || t == T_ENUM || (str_list && value[0] != '[')) && value[0] != '"') {
        // Bare strings are taken as written (no libconfig syntax to trip over).
        config_setting_set_string(config_setting_add(root, "v", CONFIG_TYPE_STRING), value);
        ok = 1;
    } else if (t == T_INT && is_decimal(value)) {
        // Parsed here: libconfig 1.5 silently wraps integers beyond 32 bits.
        errno = 0;
        long long v = strtoll(value, NULL, 10);
        ok = errno == 0;
        if (ok) config_setting_set_int64(config_setting_add(root, "v", CONFIG_TYPE_INT64), v);
    } else {
        size_t n = strlen(value) + 8;
        char *text = xmalloc(n);
        snprintf(text, n, "v = %s;", value);
        // Exactly one setting: a value cannot smuggle in other keys.
        ok = config_read_string(cf, text) && config_setting_length(config_root_setting(cf)) == 1 &&
             config_lookup(cf, "v");
        free(text);
        if (!ok && (t == T_ENUM_ARRAY || str_list)) {
            config_destroy(cf);
            config_init(cf);
            ok = parse_bare_strings(cf, value);
        }
    }
    if (!ok) {
        char want[512];
        describe_key(k, want, sizeof want);
        errorf(e, "--set %s: %s.%s: expected %s, got \"%s\"", set, KEYS[k].section, KEYS[k].key,
               want, value);
        free(value_buf);
        return -1;
    }
    free(value_buf);
    *key_out = k;
    *out = config_lookup(cf, "v");
    return 0;
}

// ---- public API ---------------------------------------------------------------------

int job_config_load(JobConfig *jc, const char *path, const char *const *sets, int n_sets, Error *e) {
    int rc = -1;
    config_t file, defs;
    config_init(&file);
    config_init(&defs);
    config_t *ovr = xcalloc((size_t)(n_sets > 0 ? n_sets : 1), sizeof(config_t));
    for (int i = 0; i < n_sets; i++) config_init(&ovr[i]);
    const config_setting_t *chosen[N_KEYS];
    Src srcs[N_KEYS];
    JobConfig tmp;
    memset(&tmp, 0, sizeof tmp);
    memset(srcs, 0, sizeof srcs);
    for (int k = 0; k < N_KEYS; k++) chosen[k] = NULL;

    // Defaults are parsed from the table's text, so they follow the same rules as a file.
    {
        size_t cap = 64;
        for (int k = 0; k < N_KEYS; k++) cap += strlen(KEYS[k].def) + 16;
        char *text = xmalloc(cap);
        size_t used = 0;
        for (int k = 0; k < N_KEYS; k++)
            used += (size_t)snprintf(text + used, cap - used, "d%d = %s;\n", k, KEYS[k].def);
        if (!config_read_string(&defs, text))
            FATAL("default of %s.%s: %s", KEYS[config_error_line(&defs) - 1].section,
                  KEYS[config_error_line(&defs) - 1].key, config_error_text(&defs));
        free(text);
    }

    if (path) {
        if (strlen(path) >= sizeof tmp.path) {
            errorf(e, "%s: job file path longer than %zu characters", path, sizeof tmp.path - 1);
            goto done;
        }
        if (read_job_file(&file, path, e)) goto done;
        snprintf(tmp.path, sizeof tmp.path, "%s", path);
    }
    for (int k = 0; k < N_KEYS; k++) {
        char p[256];
        snprintf(p, sizeof p, "%s.%s", KEYS[k].section, KEYS[k].key);
        const config_setting_t *s = path ? config_lookup(&file, p) : NULL;
        if (s) {
            Src top = {path, 0, NULL, path};
            chosen[k] = s;
            srcs[k] = src_of(s, &top);
        }
    }
    for (int i = 0; i < n_sets; i++) {  // later overrides win
        int k = -1;
        config_setting_t *s = NULL;
        if (parse_override(&ovr[i], sets[i], &k, &s, e)) goto done;
        chosen[k] = s;
        srcs[k] = (Src){NULL, 0, sets[i], NULL};
    }
    for (int k = 0; k < N_KEYS; k++) {
        if (!chosen[k]) {
            char d[16];
            snprintf(d, sizeof d, "d%d", k);
            chosen[k] = config_lookup(&defs, d);
        }
        if (store(&tmp, k, chosen[k], srcs, e)) goto done;
    }
    if (validate_model(&tmp, srcs, e) || validate_eval(&tmp, srcs, e)) goto done;
    *jc = tmp;
    rc = 0;
done:
    for (int i = 0; i < n_sets; i++) config_destroy(&ovr[i]);
    free(ovr);
    config_destroy(&defs);
    config_destroy(&file);
    return rc;
}

void job_config_defaults(JobConfig *jc) {
    Error e;
    if (job_config_load(jc, NULL, NULL, 0, &e)) FATAL("the built-in defaults are invalid: %s", e.msg);
}

// libconfig string literal: quotes, backslashes and control bytes escaped.
static void put_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void put_int(FILE *f, long long v) {
    // libconfig reads integers beyond 32 bits only with the L suffix.
    fprintf(f, "%lld%s", v, (v > INT_MAX || v < INT_MIN) ? "L" : "");
}

static void put_value(FILE *f, const JobConfig *jc, int k) {
    const KeySpec *ks = &KEYS[k];
    const void *src = cmember(jc, k);
    const int *ints = src;
    int n = key_count(jc, k);
    switch (ks->type) {
    case T_INT: put_int(f, ks->size == sizeof(long) ? *(const long *)src : *(const int *)src); break;
    case T_FLOAT: {
        char buf[64];
        // The shortest text that reads back as the same value: 1e-05, not 9.99999975e-06.
        if (ks->size == sizeof(float)) {
            float v = *(const float *)src;
            for (int p = 6; p <= 9; p++) {
                snprintf(buf, sizeof buf, "%.*g", p, (double)v);
                if ((float)strtod(buf, NULL) == v) break;
            }
        } else {
            double v = *(const double *)src;
            for (int p = 15; p <= 17; p++) {
                snprintf(buf, sizeof buf, "%.*g", p, v);
                if (strtod(buf, NULL) == v) break;
            }
        }
        fprintf(f, "%s%s", buf, strpbrk(buf, ".e") ? "" : ".0");  // keep it a float literal
        break;
    }
    case T_BOOL: fprintf(f, "%s", *ints ? "true" : "false"); break;
    case T_STRING: put_string(f, src); break;
    case T_ENUM_LIST:
    case T_STRING_LIST:
        fputc('[', f);
        for (int i = 0; i < n; i++) {
            if (i) fputs(", ", f);
            if (ks->type == T_STRING_LIST)
                put_string(f, (const char *)src + (size_t)i * ks->elem);
            else
                put_string(f, enum_name(ks->names, ints[i]));
        }
        fputc(']', f);
        break;
    case T_ENUM: put_string(f, enum_name(ks->names, *ints)); break;
    case T_INTS:
    case T_INT_ARRAY: {
        // One value for all blocks is written as an int, as a user would.
        int same = ks->type == T_INTS;
        for (int i = 1; i < n; i++) same &= ints[i] == ints[0];
        if (same) {
            put_int(f, ints[0]);
            break;
        }
        fputc('[', f);
        for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", ints[i]);
        fputc(']', f);
        break;
    }
    case T_ENUM_ARRAY:
        fputc('[', f);
        for (int i = 0; i < n; i++) {
            if (i) fputs(", ", f);
            const char *name = enum_name(ks->names, ints[i]);
            CHECK(name);
            put_string(f, name);
        }
        fputc(']', f);
        break;
    }
}

char *job_config_text(const JobConfig *jc) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f);
    fprintf(f, "# laptop-diff effective job config: every key, defaults filled in, overrides applied\n");
    for (int s = 0; s < N_KEYS; s++) {
        if (!is_first_of_section(s)) continue;
        fprintf(f, "%s = {\n", KEYS[s].section);
        for (int k = s; k < N_KEYS; k++) {
            if (strcmp(KEYS[k].section, KEYS[s].section)) continue;
            fprintf(f, "  %s = ", KEYS[k].key);
            put_value(f, jc, k);
            fprintf(f, ";\n");
        }
        fprintf(f, "};\n");
    }
    CHECK(fclose(f) == 0);
    return buf;
}

static const char *type_name(KeyType t) {
    switch (t) {
    case T_INT: return "int";
    case T_FLOAT: return "float";
    case T_BOOL: return "bool";
    case T_STRING:
    case T_ENUM: return "string";
    case T_INT_ARRAY: return "int array";
    case T_INTS: return "int or int array";
    case T_ENUM_ARRAY: return "string array";
    case T_ENUM_LIST:
    case T_STRING_LIST: return "string or string array";
    }
    return "?";
}

void job_config_print_reference(FILE *f) {
    fprintf(f, "| section | key | type | default | range | meaning |\n");
    fprintf(f, "| --- | --- | --- | --- | --- | --- |\n");
    for (int s = 0; s < N_KEYS; s++) {
        if (!is_first_of_section(s)) continue;
        for (int k = s; k < N_KEYS; k++) {
            const KeySpec *ks = &KEYS[k];
            if (strcmp(ks->section, KEYS[s].section)) continue;
            char r[512], range[700];
            range_text(k, 1, r, sizeof r);
            if (ks->type == T_INT_ARRAY)
                snprintf(range, sizeof range, "1 to %zu entries, each %s", ks->size / sizeof(int), r);
            else if (ks->type == T_INTS)
                snprintf(range, sizeof range, "%s; one value for all blocks, or one per `%s` entry",
                         r, ks->len_of);
            else if (ks->type == T_ENUM_ARRAY)
                snprintf(range, sizeof range, "one per `%s` entry, each %s", ks->len_of, r);
            else
                snprintf(range, sizeof range, "%s", r);
            fprintf(f, "| %s | %s | %s | `%s` | %s | %s |\n", ks->section, ks->key,
                    type_name(ks->type), ks->def, range, ks->doc);
        }
    }
}
