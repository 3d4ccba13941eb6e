#!/usr/bin/env python3
"""A laptop-diff student as a diffusers UNet2DConditionModel.

    from diffusers_student import load_student
    unet = load_student("runs/x/student.safetensors")        # a torch module, float32, eval mode

A student safetensors file carries two metadata entries (src/model/checkpoint.c, unet_save):
`config`, the diffusers config JSON of the *full* architecture, and `removed`, the comma-separated
diffusers prefixes of the layers it was built without. load_student builds the full
UNet2DConditionModel from `config`, puts an identity module in place of every removed layer
(DESIGN §3: what removing a layer means) and loads the weights strictly: every parameter of the
resulting module must be in the file and every tensor of the file must be a parameter of it, with
the same shape.

  Transformer2DModel          -> its input (the blocks call it with return_dict=False and take [0])
  down/mid ResnetBlock2D      -> its input hidden state (called as resnet(x, temb))
  up-block ResnetBlock2D      -> the first C channels of cat([hidden, skip]): the hidden part, the
                                 skip it would have consumed is dropped
  BasicTransformerBlock       -> its hidden_states (`...attentions.i.transformer_blocks.j`,
                                 prune.granularity = "block")

The identity modules have no parameters, so `save_pretrained` + `from_pretrained` would not give
this network back (from_pretrained builds the full architecture and would initialise the removed
layers at random): load_student is the way to load a student.

As a command (the venv of scripts/setup.sh: diffusers 0.27.2 on torch):

    python scripts/diffusers_student.py STUDENT.safetensors
        prints the architecture summary: parameters, removed layers
    python scripts/diffusers_student.py STUDENT.safetensors --inputs IN.h5 --out OUT.h5 [--float64]
        diffusers' forward on the inputs of `laptop-diff forward` (/sample [B,C,H,W],
        /timestep [B], /context [B,L,D]; with text-time conditioning also /pooled [B,P] and
        /time_ids [B,6]); writes /out [B,C,H,W] float32 (temp file + rename)
"""
import argparse
import inspect
import json
import os
import re
import sys

import torch
from torch import nn


class RemovedTransformer2D(nn.Module):
    """A removed Transformer2DModel: residual, so identity."""

    def forward(self, hidden_states, *args, return_dict=True, **kwargs):
        if return_dict:
            from diffusers.models.transformers.transformer_2d import Transformer2DModelOutput
            return Transformer2DModelOutput(sample=hidden_states)
        return (hidden_states,)


class RemovedResnet(nn.Module):
    """A removed down/mid ResnetBlock2D (in == out channels): identity on the hidden state."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels

    def forward(self, input_tensor, temb=None, *args, **kwargs):
        if input_tensor.shape[1] != self.channels:
            raise ValueError(f"removed resnet of {self.channels} channels got {input_tensor.shape[1]}")
        return input_tensor


class RemovedUpResnet(nn.Module):
    """A removed up-block ResnetBlock2D. The up block hands it cat([hidden, skip], dim=1); it passes
    the hidden part through (already the output width) and drops the skip."""

    def __init__(self, in_channels, hidden_channels):
        super().__init__()
        self.in_channels, self.hidden_channels = in_channels, hidden_channels

    def forward(self, input_tensor, temb=None, *args, **kwargs):
        if input_tensor.shape[1] != self.in_channels:
            raise ValueError(f"removed up resnet of {self.in_channels} input channels got {input_tensor.shape[1]}")
        return input_tensor[:, : self.hidden_channels]


class RemovedTransformerBlock(nn.Module):
    """A removed BasicTransformerBlock inside a Transformer2DModel: residual, so identity
    (Transformer2DModel calls block(hidden_states, **kwargs) and uses the tensor it returns)."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def _module(root, prefix):
    m = root
    for part in prefix.split("."):
        if part.isdigit() and isinstance(m, (nn.ModuleList, nn.Sequential)):
            i = int(part)
            if i >= len(m):
                raise KeyError(prefix)
            m = m[i]
        elif hasattr(m, part) and isinstance(getattr(m, part), nn.Module):
            m = getattr(m, part)
        else:
            raise KeyError(prefix)
    return m


def _replace(root, prefix, new):
    parent, last = prefix.rsplit(".", 1)
    p = _module(root, parent)
    if last.isdigit():
        p[int(last)] = new
    else:
        setattr(p, last, new)


def identity_for(unet, name, where="removed"):
    """The identity module that stands in for the removed layer `name` of the full `unet`."""
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    try:
        old = _module(unet, name)
    except KeyError:
        raise ValueError(f"{where}: \"{name}\" is not a layer of this architecture") from None
    if isinstance(old, Transformer2DModel):
        return RemovedTransformer2D()
    if isinstance(old, BasicTransformerBlock):
        return RemovedTransformerBlock()
    if isinstance(old, ResnetBlock2D):
        m = re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)", name)
        if m:
            # the hidden half of cat([hidden, skip]) must already be the output width (DESIGN §3):
            # resnet 0 of up block i gets the previous up block's width, the others block i's own
            i, j = int(m.group(1)), int(m.group(2))
            rev = list(reversed(unet.config.block_out_channels))
            hidden = rev[max(i - 1, 0)] if j == 0 else rev[i]
            if hidden != old.out_channels:
                raise ValueError(f"{where}: \"{name}\" gets a hidden state of {hidden} channels and "
                                 f"returns {old.out_channels}: not a removable layer")
            return RemovedUpResnet(old.in_channels, old.out_channels)
        if old.in_channels != old.out_channels:
            raise ValueError(f"{where}: \"{name}\" changes the width ({old.in_channels} -> "
                             f"{old.out_channels} channels): not a removable layer")
        return RemovedResnet(old.in_channels)
    raise ValueError(f"{where}: \"{name}\" is a {type(old).__name__}, not a removable layer "
                     "(ResnetBlock2D, Transformer2DModel, BasicTransformerBlock)")


def diffusers_config(cfg_json, where="config"):
    """The UNet2DConditionModel keyword arguments in laptop-diff's config JSON (keys diffusers does
    not know, such as context_length, are laptop-diff's own and left out)."""
    from diffusers import UNet2DConditionModel
    cfg = json.loads(cfg_json)
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: not a JSON object")
    known = set(inspect.signature(UNet2DConditionModel.__init__).parameters) - {"self"}
    return {k: v for k, v in cfg.items() if k in known}


def read_student(path):
    """(config JSON, removed names, tensors) of a laptop-diff student file."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: no \"config\" metadata: not a file laptop-diff wrote "
                         "(a diffusers unet/ folder loads with UNet2DConditionModel.from_pretrained)")
    removed = [s.strip() for s in meta.get("removed", "").split(",") if s.strip()]
    return meta["config"], removed, load_file(path)


def load_student(path, dtype=torch.float32):
    """A diffusers UNet2DConditionModel for the laptop-diff student `path`, removed layers as
    identity modules, weights loaded strictly; in eval mode, on the CPU, in `dtype`."""
    from diffusers import UNet2DConditionModel
    cfg_json, removed, tensors = read_student(path)
    unet = UNet2DConditionModel(**diffusers_config(cfg_json, f"{path}: config"))
    for name in removed:
        _replace(unet, name, identity_for(unet, name, f"{path}: removed"))
    want = unet.state_dict()
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    if missing or extra:
        def some(names):
            return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} parameters of the network are not in the file ({some(missing)})")
        if extra:
            parts.append(f"{len(extra)} tensors of the file are not parameters of it ({some(extra)})")
        raise ValueError(f"{path}: the file does not match its config and removed layers: " + "; ".join(parts))
    for k, v in want.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise ValueError(f"{path}: {k} is {list(tensors[k].shape)} in the file, the network's is {list(v.shape)}")
    unet.load_state_dict({k: t.to(torch.float32) for k, t in tensors.items()}, strict=True)
    return unet.to(dtype).eval()


def patch_torch1_baddbmm():
    """Debian's torch 1.13 can return NaN from baddbmm(empty, a, b, beta=0) (it reads the
    uninitialised input), which diffusers' default attention (AttnProcessor, the only one without
    torch 2's scaled_dot_product_attention) calls for every score. beta = 0 means a plain bmm."""
    import diffusers.models.attention_processor as ap

    class _Torch:
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
            if beta == 0:
                return alpha * torch.bmm(batch1, batch2)
            return torch.baddbmm(input, batch1, batch2, beta=beta, alpha=alpha)

    ap.torch = _Torch()


def forward_file(unet, inputs, out, dtype):
    import h5py
    import numpy as np
    with h5py.File(inputs, "r") as f:
        for need in ("sample", "timestep", "context"):
            if need not in f:
                raise ValueError(f"{inputs}: no dataset /{need}")
        x = torch.from_numpy(f["sample"][()].astype(np.float64)).to(dtype)
        t = torch.from_numpy(f["timestep"][()].astype(np.float64)).to(dtype)
        c = torch.from_numpy(f["context"][()].astype(np.float64)).to(dtype)
        added = {}
        if unet.config.addition_embed_type == "text_time":
            for need in ("pooled", "time_ids"):
                if need not in f:
                    raise ValueError(f"{inputs}: no dataset /{need} (the model has text-time conditioning)")
            added = {"text_embeds": torch.from_numpy(f["pooled"][()].astype(np.float64)).to(dtype),
                     "time_ids": torch.from_numpy(f["time_ids"][()].astype(np.float64)).to(dtype)}
    with torch.no_grad():
        y = unet(x, t, encoder_hidden_states=c, added_cond_kwargs=added or None, return_dict=False)[0]
    tmp = out + ".tmp"
    with h5py.File(tmp, "w") as g:
        g["out"] = y.to(torch.float32).numpy()
    os.replace(tmp, out)
    return y.shape


def main(argv=None):
    ap = argparse.ArgumentParser(description="A laptop-diff student as a diffusers UNet2DConditionModel.")
    ap.add_argument("student", help="STUDENT.safetensors written by laptop-diff (plan or distill)")
    ap.add_argument("--inputs", help="IN.h5 in `laptop-diff forward`'s format")
    ap.add_argument("--out", help="OUT.h5: /out of diffusers' forward on --inputs")
    ap.add_argument("--float64", action="store_true", help="run the forward in float64 (a reference)")
    a = ap.parse_args(argv)
    if bool(a.inputs) != bool(a.out):
        ap.error("--inputs and --out go together")
    dtype = torch.float64 if a.float64 else torch.float32
    try:
        unet = load_student(a.student, dtype)
        _, removed, _ = read_student(a.student)
        n = sum(p.numel() for p in unet.parameters())
        print(f"{a.student}: diffusers UNet2DConditionModel, {n:,} parameters, "
              f"{len(removed)} layers removed{': ' + ', '.join(removed) if removed else ''}")
        if a.inputs:
            if torch.__version__.split(".")[0] == "1":
                patch_torch1_baddbmm()
            shape = forward_file(unet, a.inputs, a.out, dtype)
            print(f"{a.out}: /out {list(shape)}")
    except (OSError, ValueError) as err:
        print(f"diffusers_student.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
