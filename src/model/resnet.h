// resnet.h — diffusers' ResnetBlock2D: GN-SiLU-conv3x3, + time_emb_proj,
// GN-SiLU-conv3x3, + shortcut (1x1 conv_shortcut when channels change).
// In up blocks its input is cat([hidden, skip]); `hidden_ch` records the
// hidden part so a removed up-block resnet can pass the hidden state through.
#ifndef LD_RESNET_H
#define LD_RESNET_H
#include "model/layer.h"

typedef struct Resnet {
    char prefix[LD_NAME_MAX];
    int cin, cout, temb_dim, groups;
    float eps;
    int hidden_ch;  // up blocks: channels of the hidden input before the skip concat; 0 elsewhere
    int first_tensor, end_tensor;  // its tensors in the ParamTable, [first, end)
    size_t n1w, n1b, c1w, c1b, tw, tb, n2w, n2b, c2w, c2b, sw, sb;
    int has_shortcut;
    int cand;  // candidate index, -1 if not removable
    // saved by forward
    int B, H, W;
    const float *x, *silu_temb;
    float *m1, *r1, *a1, *h, *m2, *r2, *a2;  // a = silu(groupnorm(.)): the normalised value is recomputed
    int inner_layout;  // the backend's resnet_inner_layout for h and a2 (0: NCHW, the separate ops)
} Resnet;

void resnet_init(Resnet *r, ParamTable *pt, const char *prefix, int cin, int cout, int temb_dim,
                 int groups, float eps);
// x [B,cin,H,W] (kept by pointer: must stay valid until backward), silu_temb [B,temb_dim].
void resnet_forward(Resnet *r, const LayerCtx *c, float *out, const float *x,
                    const float *silu_temb, int B, int H, int W);
// Accumulates into dx [B,cin,H,W], dsilu_temb [B,temb_dim] and the gradients.
void resnet_backward(Resnet *r, const LayerCtx *c, float *dx, float *dsilu_temb,
                     const float *dout);
long long resnet_macs(const Resnet *r, int H, int W);  // -1 at or beyond LD_MACS_EXACT
#endif
