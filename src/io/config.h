// config.h — the job file (libconfig): one section per stage, every key with a
// documented default, range and meaning, all from a single schema table in
// config.c. Loading checks the file against that table (unknown sections and
// keys, types, ranges, array lengths, cross-key rules) and names FILE:LINE and
// the full key in every error; `--set section.key=value` overrides any key.
// The same table prints the Markdown reference and the effective config text.
#ifndef LD_CONFIG_H
#define LD_CONFIG_H
#include <stdio.h>

#include "core/common.h"
#include "kernels/runtime.h"
#include "model/classifier.h"
#include "model/model_config.h"

// The enumerated keys, each parsed once at load into its enum (the names
// live in config.c's schema table, the only place that spells them). They are
// defined here, below the stages that use them, so config.h needs nothing
// from diffusion/, data/, prune/ or train/.
typedef enum { DATA_FASHION_MNIST = 0, DATA_HDF5 } DataSource;              // data.source
typedef enum { BETA_SCALED_LINEAR = 0, BETA_LINEAR } BetaSchedule;            // diffusion.schedule
typedef enum { LR_CONSTANT = 0, LR_COSINE } LrSchedule;                      // train.lr_schedule
typedef enum { BUDGET_PARAMS = 0, BUDGET_MACS } Budget;                      // prune.budget
typedef enum { FEAT_NORM_L2SQ = 0, FEAT_NORM_NONE } FeatNorm;                // distill.feat_norm
typedef enum {                                                               // prune.criterion
    CRIT_OUTPUT_LOSS = 0, CRIT_RANDOM, CRIT_MAGNITUDE, CRIT_FEATURE_LOSS, CRIT_TAYLOR, CRIT_COUNT
} Criterion;

// The job-file spelling of a value ("output_loss", "macs", "l2sq", ...).
const char *criterion_name(Criterion c);
const char *budget_name(Budget b);
const char *feat_norm_name(FeatNorm f);

// prune.layers: at most this many names, each shorter than PRUNE_LAYER_NAME.
#define PRUNE_MAX_LAYERS 256
#define PRUNE_LAYER_NAME 128

typedef struct {
    int threads;      // 0: all cores (OpenMP's default)
    long seed;        // 0 .. 2^31-1
    Device device;    // runtime.device: "cpu" or "cuda"
    Precision precision;  // runtime.precision: the GPU's GEMMs, "fp32", "tf32" or "bf16"
    CpuGemm cpu_gemm;     // runtime.cpu_gemm: the CPU's GEMM library, "auto", "openblas" or "onednn"
    GpuComm gpu_comm;     // runtime.gpu_comm: how the GPUs sum gradients, "auto", "nccl" or "mpi"
    GpuConv gpu_conv;     // runtime.gpu_conv: how the GPU convolves, "auto", "cudnn" or "gemm"
    GpuAttention gpu_attention;  // runtime.gpu_attention: "auto", "fused" or "tiled"
    int share_teacher;  // runtime.share_teacher: one teacher copy per node (cli/run.h)
} RuntimeConfig;

typedef struct {
    char dir[1024];  // run directory: run.h5, models, sample grids
} OutputConfig;

typedef struct {
    DataSource source;
    char path[1024];       // IDX directory (fashion-mnist) or the .h5 file (hdf5)
    double cfg_drop;       // fraction of captions replaced by the empty caption (classifier-free guidance)
    long embed_seed;       // seed of the fixed token-embedding table (teacher and student must share it)
} DataConfig;

typedef struct {
    BetaSchedule schedule; // scaled_linear (SD) or linear
    double beta_start, beta_end;
    int timesteps;
} DiffusionConfig;

typedef struct {
    int steps;             // optimizer steps
    int batch;             // global batch (split across ranks)
    double lr, weight_decay, beta1, beta2, adam_eps, grad_clip, ema_decay;
    int warmup_steps;
    LrSchedule lr_schedule;
    int log_interval, checkpoint_interval;
    char init[1024];       // "" = random init (seeded), else a .safetensors to start from
    double bucket_mb;      // gradient all-reduce bucket size
    int recompute;         // activation checkpointing: keep layer inputs, recompute interiors in backward
    int overlap_comm;      // start each bucket's gradient sum during backward
} TrainConfig;

typedef struct {
    char model[1024];      // weights to sample from ("" = OUTPUT/model.safetensors)
    int steps;             // DDIM steps
    double eta, guidance;  // DDIM eta; classifier-free guidance scale (1 = off)
    int per_class;         // samples per class (grid columns)
    long seed;
} SampleConfig;

typedef struct {
    Criterion criterion[CRIT_COUNT];  // the scores to compute, each at most once; the plan uses the first
    int n_criteria;                   // >= 1
    int calib_samples;     // calibration set size
    int batch;             // samples per forward while scoring
    double ratio;          // fraction of the budget to remove
    Budget budget;         // what ratio counts: parameters or MACs
    int granularity;       // prune.granularity: a Granularity (model/unet.h), GRAN_LAYER or GRAN_BLOCK
    char scores_from[1024];  // run.h5 of an earlier `score` (empty: this run's)
    char layers[PRUNE_MAX_LAYERS][PRUNE_LAYER_NAME];  // handcrafted plan (diffusers prefixes)
    int n_layers;                                     // 0: solve the knapsack
    int additivity_sets;   // random removal sets for the additivity report (0: skip)
} PruneConfig;

typedef struct {
    char student[1024];       // "" = OUTPUT/student_init.safetensors (written by plan)
    double lambda_task, lambda_out, lambda_feat;
    FeatNorm feat_norm;       // l2sq (LAPTOP) or none (BK-SDM's plain MSE)
    int activation_interval;  // steps between /activations snapshots (0: off)
    int probe_samples;        // size of the fixed probe batch of the snapshots
} DistillConfig;

typedef struct {
    int samples;              // held-out (test split) samples for the loss metrics
    char classifier[1024];    // evaluator (model/classifier.h) for alignment and FID; "" = skip them
    int fid_samples;          // generated (class-balanced) and real test images for alignment and FID
    int speed_batch;          // N of the seconds_per_*_bN timings
} EvalConfig;

typedef struct {
    char out[1024];           // where train-classifier writes the evaluator
    int channels[CLF_MAX_LAYERS], n_layers, strides[CLF_MAX_LAYERS];
    int groups;               // GroupNorm groups
    int epochs, batch;        // passes over the train split; global batch (split across ranks)
    double lr, weight_decay;  // AdamW (beta1, beta2, adam_eps from the train section)
    int warmup_steps;
    int flip;                 // random horizontal flips of the training images
    int log_interval;
    int test_samples;         // test images for the reported accuracy
} ClassifierConfig;

typedef struct {
    char path[1024];  // the job file it came from ("" for defaults + overrides only)
    char weights[1024];  // model.weights: the trained U-Net (teacher) the prune/distill stages start from
    ModelConfig model;
    DataConfig data;
    DiffusionConfig diffusion;
    TrainConfig train;
    SampleConfig sample;
    PruneConfig prune;
    DistillConfig distill;
    EvalConfig eval;
    ClassifierConfig classifier;
    RuntimeConfig runtime;
    OutputConfig output;
} JobConfig;

// Every key at its default (SD-1.5's U-Net, CPU, seed 1234).
void job_config_defaults(JobConfig *jc);

// Loads a job file (path may be NULL: defaults only), then applies the
// overrides `sets` ("section.key=value", later ones win) and validates.
// Returns 0, or -1 with e->msg naming file:line (or the override) and the key;
// *jc is written only on success.
int job_config_load(JobConfig *jc, const char *path, const char *const *sets, int n_sets,
                    Error *e);

// The effective config as libconfig text (every key, defaults filled in);
// loading it gives back the same JobConfig. malloc'd: the caller frees it.
char *job_config_text(const JobConfig *jc);

// The reference of every key as a Markdown table (section, key, type,
// default, range, meaning), for the README and `laptop-diff config-reference`.
void job_config_print_reference(FILE *f);
#endif
