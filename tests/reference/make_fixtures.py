#!/usr/bin/python3
"""Reference fixtures for laptop-diff's U-Net, made with PyTorch + diffusers.

Pinned versions (checked at start; anything else is refused):
    diffusers == 0.27.2
    torch     1.13.x   (Debian's python3-torch, reports "1.13.0a0")
    safetensors, numpy (any recent)

Regenerate (from the repository root, with an interpreter that has Debian's torch 1.13 and
diffusers 0.27.2: scripts/setup.sh's venv, which sees Debian's torch through --system-site-packages):
    .venv/bin/python tests/reference/make_fixtures.py            # everything
    .venv/bin/python tests/reference/make_fixtures.py xlt        # one model

This is the only place in the project where PyTorch/diffusers are used. It builds small
UNet2DConditionModels, re-draws every parameter from a seeded normal, rounds weights and inputs to
float32, then runs forward and backward in float64 and writes, per model NAME, into
tests/reference/fixtures/:

    NAME_weights.safetensors  every parameter (diffusers names), F32 = exactly what the run used
    NAME_io.safetensors       inputs, output, every parameter gradient, stage taps, the same for a
                              variant with two candidate layers removed, and one-layer-removed
                              output-loss scores for every candidate; all F32
    NAME.cfg                  the architecture as a libconfig `model` section

and featkd.safetensors for the normalized feature-distillation loss. See README.md next to this
file for the exact contents and the removal semantics.
"""

import copy
import json
import math
import os
import sys

import numpy as np
import torch
from torch import nn

import diffusers
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from safetensors.numpy import load_file

PINNED_DIFFUSERS = "0.27.2"
PINNED_TORCH = "1.13"

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")

BATCH = 3
CONTEXT_LEN = 5
TIMESTEPS = [3.0, 420.0, 999.0]

# ---------------------------------------------------------------------------------------------
# The models. Each: diffusers config kwargs, the layers removed in its "removed" variant, a seed.
# Widths are small so that weights + grads + removed grads stay ~2.5 MB per model.
# ---------------------------------------------------------------------------------------------
MODELS = [
    {
        # SD-1.5-like layout: conv proj_in/out, one BasicTransformerBlock per Transformer2DModel,
        # three stages with three different widths, last down block without attention.
        "name": "conv",
        "seed": 1001,
        "config": dict(
            sample_size=16,
            in_channels=4,
            out_channels=3,
            block_out_channels=(8, 16, 24),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            mid_block_type="UNetMidBlock2DCrossAttn",
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=(2, 4, 8),  # diffusers: number of HEADS per down block
            transformer_layers_per_block=1,
            cross_attention_dim=12,
            norm_num_groups=4,
            norm_eps=1e-5,
            use_linear_projection=False,
            flip_sin_to_cos=True,
            freq_shift=0,
        ),
        # an up-block resnet (hidden 16 == out 16, skip 16) and a down-block attention
        "remove": ["up_blocks.1.resnets.1", "down_blocks.1.attentions.0"],
    },
    {
        # linear proj_in/out, two BasicTransformerBlocks per Transformer2DModel, every block with
        # attention (last down block has no downsampler, first up block is CrossAttnUpBlock2D),
        # non-SD time embedding options and a large norm_eps so that a wrong eps is visible.
        "name": "linear",
        "seed": 2002,
        "config": dict(
            sample_size=16,
            in_channels=3,
            out_channels=5,
            block_out_channels=(12, 16),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            mid_block_type="UNetMidBlock2DCrossAttn",
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=(4, 2),
            transformer_layers_per_block=2,
            cross_attention_dim=12,
            norm_num_groups=4,
            norm_eps=1e-3,
            use_linear_projection=True,
            flip_sin_to_cos=False,
            freq_shift=1,
        ),
        # a down-block resnet with in == out and the mid-block attention
        "remove": ["down_blocks.0.resnets.0", "mid_block.attentions.0"],
    },
    {
        # SDXL-like layout: first down block without attention, per-block transformer depth
        # (reversed for the up blocks), linear projections. Its removed variant takes out a single
        # BasicTransformerBlock (the optional finer candidate of DESIGN §3) and the last up resnet,
        # which consumes conv_in's skip.
        "name": "xl",
        "seed": 3003,
        "config": dict(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(8, 12, 16),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            mid_block_type="UNetMidBlock2DCrossAttn",
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(1, 2, 4),
            transformer_layers_per_block=(1, 1, 2),
            cross_attention_dim=12,
            norm_num_groups=4,
            norm_eps=1e-5,
            use_linear_projection=True,
            flip_sin_to_cos=True,
            freq_shift=0,
        ),
        "remove": ["mid_block.attentions.0.transformer_blocks.1", "up_blocks.2.resnets.2"],
    },
    {
        # SDXL's text-time conditioning on the xl layout: the pooled text embedding and 6 time
        # ids (add_time_proj, sinusoidal at addition_time_embed_dim) through add_embedding into
        # the time embedding; transformer stacks of 1, 2 and 3 (the mid block takes the last).
        # Its removed variant takes out whole layers only: a Transformer2DModel of a 2-stack and
        # a mid-block resnet.
        "name": "xlt",
        "seed": 4004,
        "config": None,  # xl's config with the changes below (filled in after the list)
        "remove": ["down_blocks.1.attentions.1", "mid_block.resnets.1"],
    },
]
_XLT = next(m for m in MODELS if m["name"] == "xlt")
_XLT["config"] = dict(
    next(m for m in MODELS if m["name"] == "xl")["config"],
    transformer_layers_per_block=(1, 2, 3),
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=10 + 6 * 8,  # pooled 10 + 6 time ids x 8
)

# The time ids of the text_time model's batch: (original H, W, crop top, left, target H, W) as
# SDXL's pipeline builds them, up to 1024 so the sinusoid's large arguments are exercised.
TIME_IDS = [[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0],
            [768.0, 1344.0, 16.0, 48.0, 1024.0, 1024.0],
            [64.0, 96.0, 3.0, 0.0, 128.0, 128.0]]


class _TorchWithSafeBaddbmm:
    """Stands in for `torch` inside diffusers.models.attention_processor.

    Attention.get_attention_scores calls torch.baddbmm(torch.empty(...), q, k^T, beta=0, alpha=scale).
    Debian's torch 1.13 sometimes returns NaN from baddbmm with beta=0 for small batched shapes
    (seen with [B*heads, 16, 5] cross-attention scores, float32 and float64, even with a zero
    input: its beta=0 path reads an uninitialized buffer). Same value, computed as
    1 * zeros + alpha * q k^T. Everything else is torch itself.
    """

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
        if beta == 0:
            input, beta = torch.zeros_like(input), 1
        return torch.baddbmm(input, batch1, batch2, beta=beta, alpha=alpha)


def patch_diffusers_attention():
    import diffusers.models.attention_processor as ap
    ap.torch = _TorchWithSafeBaddbmm()


def save_file(tensors, path, metadata):
    """Writes an F32 safetensors file with a reproducible byte layout (sorted names, sorted
    metadata; the safetensors package orders its header by hash, so reruns would differ), then
    reads it back with the safetensors package to prove it is valid."""
    header = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    blobs, off = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
    back = load_file(tmp)
    assert sorted(back) == sorted(tensors)
    for name, a in tensors.items():
        assert np.array_equal(back[name], np.asarray(a, dtype=np.float32)), name
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def check_versions():
    if diffusers.__version__ != PINNED_DIFFUSERS:
        sys.exit(f"make_fixtures.py: needs diffusers=={PINNED_DIFFUSERS}, found {diffusers.__version__} "
                 f"(run it with scripts/setup.sh's .venv/bin/python)")
    if not torch.__version__.startswith(PINNED_TORCH):
        sys.exit(f"make_fixtures.py: needs torch {PINNED_TORCH}.x, found {torch.__version__}")
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, numpy {np.__version__}")


def versions_string():
    import safetensors
    return (f"torch={torch.__version__} diffusers={diffusers.__version__} "
            f"safetensors={safetensors.__version__} numpy={np.__version__}")


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------
NORM_TYPES = (nn.GroupNorm, nn.LayerNorm)


def redraw_parameters(model, seed):
    """Re-draws every parameter from a seeded normal and rounds it to float32.

    weights of Linear/Conv: N(0, 1/fan_in)   (variance preserving, so every layer matters)
    GroupNorm/LayerNorm weight: 1 + N(0, 0.1^2);  every bias: N(0, 0.05^2)
    """
    gen = torch.Generator().manual_seed(seed)
    owner = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            owner[f"{mname}.{pname}" if mname else pname] = mod
    with torch.no_grad():
        for name, p in model.named_parameters():
            mod = owner[name]
            z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("bias"):
                v = 0.05 * z
            elif isinstance(mod, NORM_TYPES):
                v = 1.0 + 0.1 * z
            else:
                fan_in = int(np.prod(p.shape[1:]))
                v = z / math.sqrt(fan_in)
            p.copy_(v.to(torch.float32))


class Float64Timesteps(nn.Module):
    """diffusers' Timesteps (get_timestep_embedding), computed in float64.

    diffusers 0.27.2 builds the sinusoid in float32 whatever the model dtype (its frequency table
    is a float32 arange and it calls timesteps.float()), which would make the float64 reference
    only float32-exact at t ~ 1000. Same formula, float64 throughout.
    """

    def __init__(self, orig):
        super().__init__()
        self.num_channels = orig.num_channels
        self.flip_sin_to_cos = orig.flip_sin_to_cos
        self.shift = orig.downscale_freq_shift

    def forward(self, timesteps):
        half = self.num_channels // 2
        j = torch.arange(half, dtype=torch.float64)
        freqs = torch.exp(-math.log(10000.0) * j / (half - self.shift))
        arg = timesteps.to(torch.float64)[:, None] * freqs[None, :]
        sin, cos = torch.sin(arg), torch.cos(arg)
        emb = torch.cat([cos, sin] if self.flip_sin_to_cos else [sin, cos], dim=-1)
        if self.num_channels % 2 == 1:
            emb = nn.functional.pad(emb, (0, 1, 0, 0))
        return emb


def text_time(model):
    return model.config.addition_embed_type == "text_time"


def call(model, inputs):
    """The U-Net on the batch, with SDXL's added conditioning for text_time models."""
    kw = {}
    if "pooled" in inputs:
        kw["added_cond_kwargs"] = {"text_embeds": inputs["pooled"], "time_ids": inputs["time_ids"]}
    return model(inputs["sample"], inputs["timesteps"], encoder_hidden_states=inputs["context"],
                 return_dict=False, **kw)[0]


def build_model(spec):
    torch.manual_seed(0)  # construction init is overwritten, but keep it deterministic anyway
    model = UNet2DConditionModel(**spec["config"])
    redraw_parameters(model, spec["seed"])
    model.eval()
    return model  # float32, weights exactly representable


# ---------------------------------------------------------------------------------------------
# Candidates (DESIGN §3)
# ---------------------------------------------------------------------------------------------
def up_block_hidden_channels(model):
    """For every up block, the channel count of `hidden` entering each resnet (before the concat)."""
    rev = list(model.config.block_out_channels)[::-1]
    out = []
    prev = rev[0]  # the mid block's output
    for i, blk in enumerate(model.up_blocks):
        hid, h = [], prev
        for r in blk.resnets:
            hid.append(h)
            h = r.out_channels
        out.append(hid)
        prev = rev[i]  # up block i's output
    return out


def enumerate_candidates(model):
    """Layer candidates in execution order: (prefix, kind, module)."""
    cands = []
    for i, blk in enumerate(model.down_blocks):
        atts = getattr(blk, "attentions", None)
        for j, r in enumerate(blk.resnets):
            if r.in_channels == r.out_channels:
                cands.append((f"down_blocks.{i}.resnets.{j}", "resnet", r))
            if atts is not None:
                cands.append((f"down_blocks.{i}.attentions.{j}", "attention", atts[j]))
    mb = model.mid_block  # resnets[0], then (attentions[k], resnets[k + 1]) pairs
    mid = [("resnets", 0, mb.resnets[0])]
    for k, a in enumerate(mb.attentions):
        mid += [("attentions", k, a), ("resnets", k + 1, mb.resnets[k + 1])]
    for kind, k, mod in mid:
        if kind == "resnets" and mod.in_channels != mod.out_channels:
            continue
        cands.append((f"mid_block.{kind}.{k}", "resnet" if kind == "resnets" else "attention", mod))
    hidden = up_block_hidden_channels(model)
    for i, blk in enumerate(model.up_blocks):
        atts = getattr(blk, "attentions", None)
        for j, r in enumerate(blk.resnets):
            if hidden[i][j] == r.out_channels:
                cands.append((f"up_blocks.{i}.resnets.{j}", "up_resnet", r))
            if atts is not None:
                cands.append((f"up_blocks.{i}.attentions.{j}", "attention", atts[j]))
    return cands


def enumerate_block_candidates(model):
    """The optional finer candidates: single BasicTransformerBlocks in stacks of 2 or more."""
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, Transformer2DModel) and len(mod.transformer_blocks) >= 2:
            for k, b in enumerate(mod.transformer_blocks):
                out.append((f"{name}.transformer_blocks.{k}", "transformer_block", b))
    return out


def verify_up_hidden_channels(model, inputs):
    """Checks up_block_hidden_channels() against what the up blocks actually receive."""
    expected = up_block_hidden_channels(model)
    seen = {}

    # torch 1.13 forward pre-hooks see no keyword arguments, and the U-Net calls its up blocks
    # with keywords only, so wrap each block's forward for one pass instead.
    def wrap(idx, blk, orig):
        def f(*args, **kwargs):
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            skips = kwargs["res_hidden_states_tuple"]
            chans, skip_ch = [], []
            h = hidden.shape[1]
            for j, r in enumerate(blk.resnets):
                s = skips[-1 - j].shape[1]
                chans.append(h)
                skip_ch.append(s)
                assert h + s == r.in_channels, (idx, j, h, s, r.in_channels)
                h = r.out_channels
            seen[idx] = (chans, skip_ch)
            return orig(*args, **kwargs)
        return f

    for i, blk in enumerate(model.up_blocks):
        blk.forward = wrap(i, blk, blk.forward)
    try:
        with torch.no_grad():
            call(model, inputs)
    finally:
        for blk in model.up_blocks:
            del blk.forward
    for i, exp in enumerate(expected):
        assert seen[i][0] == exp, (i, seen[i], exp)
    return seen


# ---------------------------------------------------------------------------------------------
# Removal by module replacement
# ---------------------------------------------------------------------------------------------
class RemovedResnet(nn.Module):
    """A down/mid ResnetBlock2D with in == out channels, removed: identity."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels

    def forward(self, input_tensor, temb=None, *args, **kwargs):
        assert input_tensor.shape[1] == self.channels
        return input_tensor


class RemovedUpResnet(nn.Module):
    """An up-block ResnetBlock2D removed: the block hands it cat([hidden, skip], dim=1); pass
    hidden through and drop the skip it consumed."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, input_tensor, temb=None, *args, **kwargs):
        assert input_tensor.shape[1] == self.in_channels
        return input_tensor[:, : self.out_channels]


class RemovedTransformer(nn.Module):
    """A Transformer2DModel removed: identity. The blocks call it as
    attn(h, encoder_hidden_states=..., cross_attention_kwargs=..., attention_mask=...,
    encoder_attention_mask=..., return_dict=False)[0]."""

    def forward(self, hidden_states, *args, return_dict=True, **kwargs):
        assert return_dict is False
        return (hidden_states,)


class RemovedTransformerBlock(nn.Module):
    """A single BasicTransformerBlock removed: identity (Transformer2DModel calls it with
    hidden_states plus keyword arguments and uses the returned tensor)."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def get_module(model, prefix):
    mod = model
    for part in prefix.split("."):
        mod = mod[int(part)] if part.isdigit() else getattr(mod, part)
    return mod


def set_module(model, prefix, new):
    parent_name, last = prefix.rsplit(".", 1)
    parent = get_module(model, parent_name)
    if last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)


def remove_layers(model, prefixes, cand_kinds):
    """Returns a deep copy of model with the given candidate prefixes replaced."""
    m = copy.deepcopy(model)
    for p in prefixes:
        if p not in cand_kinds:
            raise SystemExit(f"{p} is not a candidate of this model")
        kind = cand_kinds[p]
        old = get_module(m, p)
        if kind == "resnet":
            assert isinstance(old, ResnetBlock2D) and old.in_channels == old.out_channels
            new = RemovedResnet(old.in_channels)
        elif kind == "up_resnet":
            assert isinstance(old, ResnetBlock2D)
            new = RemovedUpResnet(old.in_channels, old.out_channels)
        elif kind == "attention":
            assert isinstance(old, Transformer2DModel)
            new = RemovedTransformer()
        elif kind == "transformer_block":
            assert isinstance(old, BasicTransformerBlock)
            new = RemovedTransformerBlock()
        else:
            raise AssertionError(kind)
        set_module(m, p, new)
    return m


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def tap_names(model):
    return ([f"tap.down.{i}" for i in range(len(model.down_blocks))] + ["tap.mid"] +
            [f"tap.up.{i}" for i in range(len(model.up_blocks))])


def run(model, inputs, weight, grads=True, tap_weights=None):
    """Forward (+ backward of sum(out * weight) [+ sum over taps of sum(tap * tap_weights[tap])]);
    returns out, taps, {param name: grad}."""
    taps, live = {}, {}

    def hook(name):
        def f(mod, args, output):
            t = output[0] if isinstance(output, tuple) else output
            taps[name] = t.detach().clone()
            live[name] = t
        return f

    mods = list(model.down_blocks) + [model.mid_block] + list(model.up_blocks)
    hs = [m.register_forward_hook(hook(n)) for m, n in zip(mods, tap_names(model))]
    model.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(grads):
        out = call(model, inputs)
        if grads:
            loss = (out * weight).sum()
            if tap_weights:
                loss = loss + sum((live[t] * w).sum() for t, w in tap_weights.items())
            loss.backward()
    for h in hs:
        h.remove()
    g = {}
    if grads:
        for n, p in model.named_parameters():
            assert p.grad is not None, f"no gradient for {n}"
            g[n] = p.grad.detach().clone()
    return out.detach(), taps, g


def make_inputs(model, seed):
    gen = torch.Generator().manual_seed(seed + 7)
    cfg = model.config
    H = cfg.sample_size

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(torch.float32)

    inputs = {
        "sample": rnd(BATCH, cfg.in_channels, H, H),
        "timesteps": torch.tensor(TIMESTEPS, dtype=torch.float32),
        "context": rnd(BATCH, CONTEXT_LEN, cfg.cross_attention_dim),
    }
    weight = rnd(BATCH, cfg.out_channels, H, H)
    if text_time(model):  # drawn after everything else, so the other models' inputs stay as they were
        P = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        inputs["pooled"] = rnd(BATCH, P)
        inputs["time_ids"] = torch.tensor(TIME_IDS, dtype=torch.float32)
    return inputs, weight


def as64(d):
    return {k: v.to(torch.float64) for k, v in d.items()}


def f32(t):
    return np.ascontiguousarray(t.detach().to(torch.float32).numpy())


# ---------------------------------------------------------------------------------------------
# libconfig
# ---------------------------------------------------------------------------------------------
def cfg_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        s = repr(v)
        return s if ("." in s or "e" in s or "E" in s) else s + ".0"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(cfg_value(x) for x in v) + "]"
    raise TypeError(v)


def write_cfg(path, model, name):
    c = model.config
    keys = [
        ("in_channels", int(c.in_channels)),
        ("out_channels", int(c.out_channels)),
        ("sample_size", int(c.sample_size)),
        ("block_out_channels", [int(x) for x in c.block_out_channels]),
        ("layers_per_block", int(c.layers_per_block)),
        ("down_block_types", list(c.down_block_types)),
        ("up_block_types", list(c.up_block_types)),
        ("mid_block_type", c.mid_block_type),
        ("attention_head_dim", c.attention_head_dim if isinstance(c.attention_head_dim, int)
         else [int(x) for x in c.attention_head_dim]),
        ("transformer_layers_per_block", c.transformer_layers_per_block
         if isinstance(c.transformer_layers_per_block, int)
         else [int(x) for x in c.transformer_layers_per_block]),
        ("cross_attention_dim", int(c.cross_attention_dim)),
        ("norm_num_groups", int(c.norm_num_groups)),
        ("norm_eps", float(c.norm_eps)),
        ("use_linear_projection", bool(c.use_linear_projection)),
        ("flip_sin_to_cos", bool(c.flip_sin_to_cos)),
        ("freq_shift", float(c.freq_shift)),
        ("context_length", CONTEXT_LEN),
    ]
    if c.addition_embed_type == "text_time":
        keys += [("addition_embed_type", "text_time"),
                 ("addition_time_embed_dim", int(c.addition_time_embed_dim)),
                 ("projection_class_embeddings_input_dim", int(c.projection_class_embeddings_input_dim))]
    lines = [f"# {name}: reference U-Net of tests/reference/fixtures/{name}_*.safetensors",
             "# written by tests/reference/make_fixtures.py (diffusers config of the same run)",
             "model = {"]
    lines += [f"  {k} = {cfg_value(v)};" for k, v in keys]
    lines.append("};")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# One model
# ---------------------------------------------------------------------------------------------
def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def fd_check(model, inputs, weight, grads, n_checks, seed, label):
    """Central finite differences of the float64 loss for a few random parameter elements."""
    gen = np.random.default_rng(seed)
    params = dict(model.named_parameters())
    names = sorted(grads)
    worst = 0.0
    with torch.no_grad():
        def loss():
            o = call(model, inputs)
            return float((o * weight).sum())

        for _ in range(n_checks):
            n = names[gen.integers(len(names))]
            p = params[n]
            idx = tuple(int(gen.integers(s)) for s in p.shape)
            h = 1e-5
            old = float(p[idx])
            p[idx] = old + h
            lp = loss()
            p[idx] = old - h
            lm = loss()
            p[idx] = old
            fd = (lp - lm) / (2 * h)
            g = float(grads[n][idx])
            err = abs(fd - g) / max(abs(g), 1e-3)
            worst = max(worst, err)
            assert err < 1e-5, f"{label}: finite difference {fd} vs grad {g} for {n}{list(idx)}"
    return worst


def make_model_fixture(spec):
    name = spec["name"]
    m32 = build_model(spec)
    inputs32, weight32 = make_inputs(m32, spec["seed"])
    weights = {n: f32(p) for n, p in m32.named_parameters()}
    n_params = sum(p.numel() for p in m32.parameters())

    # float64 copy, with the float64 sinusoidal embedding
    m64 = copy.deepcopy(m32).double()
    m64.time_proj = Float64Timesteps(m64.time_proj)
    if text_time(m64):
        m64.add_time_proj = Float64Timesteps(m64.add_time_proj)
    inputs, weight = as64(inputs32), weight32.to(torch.float64)
    procs = {type(p).__name__ for p in m64.attn_processors.values()}

    out, taps, grads = run(m64, inputs, weight)
    loss = float((out * weight).sum())
    assert torch.isfinite(out).all() and all(torch.isfinite(v).all() for v in taps.values())
    assert all(torch.isfinite(g).all() for g in grads.values())
    fd_worst = fd_check(m64, inputs, weight, grads, 24, spec["seed"], name)

    # cross-check against stock diffusers in float32 (its own float32 time embedding)
    out32, _, _ = run(m32, inputs32, weight32, grads=False)
    e32 = rel_err(out32.double(), out)
    assert e32 < 1e-4, f"{name}: float32 stock diffusers differs from float64 run by {e32}"

    # gradients must be nontrivial everywhere
    for n, g in grads.items():
        assert g.abs().max() > 0, f"{name}: zero gradient for {n}"
    zero_frac = sum(int((g == 0).sum()) for g in grads.values()) / n_params

    # candidates
    verify_up_hidden_channels(m64, inputs)
    cands = enumerate_candidates(m64)
    bcands = enumerate_block_candidates(m64)
    kinds = {p: k for p, k, _ in cands + bcands}

    def params_under(prefix):
        return sum(p.numel() for n, p in m64.named_parameters() if n.startswith(prefix + "."))

    def score(prefixes):
        mr = remove_layers(m64, prefixes, kinds)
        o, _, _ = run(mr, inputs, weight, grads=False)
        return float(((o - out) ** 2).mean())

    cand_score = [score([p]) for p, _, _ in cands]
    bcand_score = [score([p]) for p, _, _ in bcands]

    # removed variant
    rem = spec["remove"]
    mr = remove_layers(m64, rem, kinds)
    rout, rtaps, rgrads_part = run(mr, inputs, weight)
    assert torch.isfinite(rout).all() and all(torch.isfinite(g).all() for g in rgrads_part.values())
    fd_worst = max(fd_worst, fd_check(mr, inputs, weight, rgrads_part, 8, spec["seed"] + 1,
                                      name + " removed"))
    rgrads = {}
    for n, p in m64.named_parameters():
        gone = any(n.startswith(pre + ".") for pre in rem)
        assert gone == (n not in rgrads_part), n
        rgrads[n] = rgrads_part[n] if not gone else torch.zeros_like(p)
        if not gone:
            assert rgrads[n].abs().max() > 0, f"{name}: removed variant has zero gradient for {n}"
    removed_params = sum(params_under(p) for p in rem)

    # gradients arriving at the taps too (feature distillation): loss + sum_t sum(tap_t * Q_t)
    gq = torch.Generator().manual_seed(spec["seed"] + 11)
    tap_w = {t: torch.randn(v.shape, generator=gq, dtype=torch.float64).to(torch.float32).to(torch.float64)
             for t, v in taps.items()}
    _, _, tgrads = run(m64, inputs, weight, tap_weights=tap_w)

    # write
    tensors = {
        "sample": f32(inputs["sample"]),
        "timesteps": f32(inputs["timesteps"]),
        "context": f32(inputs["context"]),
        "loss_weight": f32(weight),
        **({"pooled": f32(inputs["pooled"]), "time_ids": f32(inputs["time_ids"])} if "pooled" in inputs else {}),
        "out": f32(out),
        "removed.out": f32(rout),
        "cand_score": np.array(cand_score, dtype=np.float32),
        "cand_params": np.array([params_under(p) for p, _, _ in cands], dtype=np.float32),
    }
    if bcands:
        tensors["block_cand_score"] = np.array(bcand_score, dtype=np.float32)
        tensors["block_cand_params"] = np.array([params_under(p) for p, _, _ in bcands],
                                                dtype=np.float32)
    for n in weights:
        tensors[f"grad.{n}"] = f32(grads[n])
        tensors[f"removed.grad.{n}"] = f32(rgrads[n])
    for n in weights:
        tensors[f"tapgrad.{n}"] = f32(tgrads[n])
    for t, v in taps.items():
        tensors[t] = f32(v)
        tensors[f"tap_weight.{t[len('tap.'):]}"] = f32(tap_w[t])
    for t, v in rtaps.items():
        tensors[f"removed.{t}"] = f32(v)

    cfg_json = json.dumps({k: v for k, v in dict(m64.config).items() if not k.startswith("_")},
                          sort_keys=True)
    meta = {
        "config": cfg_json,
        "removed": ",".join(rem),
        "versions": versions_string(),
        "loss": "sum(out * loss_weight); tapgrad.*: + sum over taps t of sum(tap.t * tap_weight.t)",
        "loss_value": repr(loss),
        "removed_loss_value": repr(float((rout * weight).sum())),
        "candidates": ",".join(p for p, _, _ in cands),
        "candidate_kinds": ",".join(k for _, k, _ in cands),
        "block_candidates": ",".join(p for p, _, _ in bcands),
        "cand_score": "mean over all output elements of (out without that one layer - out)^2",
        "taps": ",".join(tap_names(m64)),
        "precision": "weights and inputs rounded to float32, run in float64, stored as float32",
        "n_params": str(n_params),
    }
    os.makedirs(OUT_DIR, exist_ok=True)
    save_file(weights, os.path.join(OUT_DIR, f"{name}_weights.safetensors"),
              metadata={"config": cfg_json, "versions": versions_string()})
    save_file(tensors, os.path.join(OUT_DIR, f"{name}_io.safetensors"), metadata=meta)
    write_cfg(os.path.join(OUT_DIR, f"{name}.cfg"), m64, name)

    print(f"\n== {name}: {n_params} parameters in {len(weights)} tensors; attention processors {procs}")
    print(f"   config: {cfg_json}")
    print(f"   loss {loss:.6g}; |out| max {float(out.abs().max()):.4g} std {float(out.std()):.4g}; "
          f"stock float32 vs float64 rel err {e32:.2e}; zero grad elements {zero_frac:.2e}; "
          f"finite-difference worst rel err {fd_worst:.1e}")
    for t, v in taps.items():
        print(f"   {t:10s} {tuple(v.shape)} std {float(v.std()):.4g}")
    print(f"   candidates ({len(cands)}):")
    for (p, k, _), s in zip(cands, cand_score):
        print(f"     {p:36s} {k:10s} params {params_under(p):6d} score {s:.4g}")
    for (p, k, _), s in zip(bcands, bcand_score):
        print(f"     {p:36s} {k:10s} params {params_under(p):6d} score {s:.4g}")
    print(f"   removed {rem}: {removed_params} params; output mse vs full "
          f"{float(((rout - out) ** 2).mean()):.4g}")
    return n_params


# ---------------------------------------------------------------------------------------------
# Normalized feature KD
# ---------------------------------------------------------------------------------------------
def make_featkd_fixture():
    """Three taps of different shapes and very different scales (the imbalance LAPTOP fixes).

    featnorm.l = mean_b ||S_b - T_b||^2 / ||T_b||^2   (teacher norm a constant)
    featraw.l  = mean over all elements of (S - T)^2  (BK-SDM's per-element MSE)
    featnorm_grad.l = d(sum_l featnorm.l)/dS_l,  featraw_grad.l = d(sum_l featraw.l)/dS_l
    """
    gen = torch.Generator().manual_seed(4242)
    shapes = [(BATCH, 8, 16, 16), (BATCH, 16, 8, 8), (BATCH, 24, 4, 4)]
    scales = [0.1, 1.0, 30.0]
    tensors = {}
    S_list, T_list = [], []
    for l, (shape, sc) in enumerate(zip(shapes, scales)):
        T = (sc * torch.randn(shape, generator=gen, dtype=torch.float64)).float().double()
        noise = torch.randn(shape, generator=gen, dtype=torch.float64)
        S = (T + sc * 0.3 * noise).float().double().requires_grad_(True)
        S_list.append(S)
        T_list.append(T)
    fn, fr = [], []
    for S, T in zip(S_list, T_list):
        d = (S - T).flatten(1)
        tn = (T.flatten(1) ** 2).sum(1)  # constant
        fn.append(((d ** 2).sum(1) / tn).mean())
        fr.append(((S - T) ** 2).mean())
    gn = torch.autograd.grad(sum(fn), S_list, retain_graph=True)
    gr = torch.autograd.grad(sum(fr), S_list)
    for l in range(len(shapes)):
        tensors[f"feat.T.{l}"] = f32(T_list[l])
        tensors[f"feat.S.{l}"] = f32(S_list[l])
        tensors[f"featnorm.{l}"] = np.array([float(fn[l])], dtype=np.float32)
        tensors[f"featraw.{l}"] = np.array([float(fr[l])], dtype=np.float32)
        tensors[f"featnorm_grad.{l}"] = f32(gn[l])
        tensors[f"featraw_grad.{l}"] = f32(gr[l])
    meta = {
        "featnorm": "mean_b ||S_b - T_b||^2 / ||T_b||^2 (teacher norm held constant)",
        "featraw": "mean over all elements of (S - T)^2",
        "featnorm_grad": "gradient of sum_l featnorm.l w.r.t. feat.S.l",
        "featraw_grad": "gradient of sum_l featraw.l w.r.t. feat.S.l",
        "n_taps": str(len(shapes)),
        "versions": versions_string(),
    }
    save_file(tensors, os.path.join(OUT_DIR, "featkd.safetensors"), metadata=meta)
    print("\n== featkd: featnorm", [f"{float(x):.5g}" for x in fn],
          "featraw", [f"{float(x):.5g}" for x in fr])


def main():
    check_versions()
    patch_diffusers_attention()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead; fixed reduction order
    names = sys.argv[1:]
    for spec in MODELS:
        if not names or spec["name"] in names:
            make_model_fixture(spec)
    if not names or "featkd" in names:
        make_featkd_fixture()


if __name__ == "__main__":
    main()
