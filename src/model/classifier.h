// classifier.h — the evaluator network: a small CNN that classifies images as
// the U-Net sees them ([in_channels, side, side], Fashion-MNIST: [1,32,32] in
// [-1,1]). Layer l is conv3x3 (stride strides[l], pad 1) -> GroupNorm(groups)
// -> SiLU; then global average pooling gives the features (channels[last]
// wide: what FID compares) and a linear layer the class logits. One
// contiguous parameter buffer and one gradient buffer (core/params.h), forward
// and backward side by side. Saved as safetensors with the architecture in
// __metadata__ ("format" = "laptop-diff-classifier", "architecture" = JSON),
// so a file describes itself.
#ifndef LD_CLASSIFIER_H
#define LD_CLASSIFIER_H
#include <stdint.h>

#include "core/common.h"
#include "core/params.h"

#define CLF_MAX_LAYERS 8
#define CLF_FORMAT "laptop-diff-classifier"

typedef struct {
    int in_channels, side, classes;
    int n_layers;
    int channels[CLF_MAX_LAYERS], strides[CLF_MAX_LAYERS];  // strides 1 or 2
    int groups;  // GroupNorm groups: divides every channels[l]
} ClfArch;

typedef struct {
    ClfArch arch;
    ParamTable pt;
    float *params, *grads;  // pt.total floats each
    size_t conv_w[CLF_MAX_LAYERS], conv_b[CLF_MAX_LAYERS], gn_w[CLF_MAX_LAYERS], gn_b[CLF_MAX_LAYERS];
    size_t fc_w, fc_b;
    int side_in[CLF_MAX_LAYERS + 1];  // spatial side entering layer l (side_in[n_layers]: the last output)
    // activations of the last forward, for `cap` samples (grown on demand)
    int cap, B;
    const float *x;  // the last forward's input (the caller's; read by backward)
    float *y[CLF_MAX_LAYERS], *z[CLF_MAX_LAYERS], *a[CLF_MAX_LAYERS];  // conv out, norm out, silu out
    float *mean[CLF_MAX_LAYERS], *rstd[CLF_MAX_LAYERS];
    float *feat, *logits, *probs;  // [B, feat_dim], [B, classes], [B, classes]
    float *scratch, *d0, *d1, *d2;  // im2col columns; backward work buffers
    size_t scratch_n, act_max;
} Classifier;

// The architecture checked: shapes positive, at most CLF_MAX_LAYERS layers,
// strides 1/2, groups dividing the channels, side divisible by the strides.
int clf_arch_check(const ClfArch *a, Error *e);
// A classifier of that architecture, parameters zero (clf_init seeds them).
Classifier *clf_create(const ClfArch *a, Error *e);
void clf_free(Classifier *c);
// torch's default initialisation: conv/linear weight and bias
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), norm weight 1, bias 0; keyed by the
// parameter's index, so the same on every rank.
void clf_init(Classifier *c, uint64_t seed);
static inline int clf_feat_dim(const Classifier *c) { return c->arch.channels[c->arch.n_layers - 1]; }

// Forward of B images x [B, in_channels, side, side] (kept: backward reads
// it): c->feat, c->logits, c->probs hold the result. labels given: returns the
// mean cross-entropy, else 0.
double clf_forward(Classifier *c, const float *x, const int *labels, int B);
// Backward of the last forward: adds d(scale * sum_n xent_n)/dparams into
// c->grads (scale 1/B: the gradient of the mean; 1/global batch for ranks).
void clf_backward(Classifier *c, const int *labels, float scale);

// Predicted classes and/or features (either may be NULL) of n images, in
// batches of `batch`.
void clf_predict(Classifier *c, const float *x, int n, int batch, int *pred, float *feat);

// Alignment: the fraction of the n images x whose predicted class is cls[i]
// (what eval reports for class-conditioned samples; for real images with their
// labels it is the accuracy). per_class (may be NULL) gets one fraction per
// class, NaN for a class without images. n >= 1.
double clf_alignment(Classifier *c, const float *x, const int *cls, int n, int batch, double *per_class);

// Writes the parameters (tensor names as params_add registered them) and the
// architecture, plus extra metadata pairs (meta[2i], meta[2i+1]), atomically.
int clf_save(const Classifier *c, const char *path, const char *const *meta, int n_meta, Error *e);
// Loads a file clf_save wrote; anything else (no or wrong "format", bad
// architecture, a tensor missing, extra or of the wrong shape) is an Error
// naming the file and what is wrong.
Classifier *clf_load(const char *path, Error *e);
#endif
