#!/usr/bin/env python3
"""PyTorch/diffusers reference timing for the benches in tests/bench/ (run it with
the venv scripts/setup.sh makes: .venv/bin/python, or $LD_VENV/bin/python).

usage: bench_torch.py MODEL BATCH REPEATS THREADS [forward]

MODEL is a laptop-diff model file (its weights are loaded; every file
laptop-diff writes carries its config in the metadata) or a diffusers config
JSON (bench_step --config-out writes one; the U-Net is randomly initialised,
which does not change its timing). Builds diffusers' UNet2DConditionModel from
it and times one training step's forward + backward (MSE to a random target)
at BATCH on THREADS CPU threads, the best of REPEATS after one warm-up step (as
bench_step). With `forward` it times the forward alone under torch.no_grad()
(the scoring pass). Prints one line: "torch: fwd F s  bwd B s  step S s"
("torch: fwd F s" with `forward`). Reference only: laptop-diff never runs PyTorch.

LD_TORCH_DEVICE=cuda runs it on GPU 0 instead (for tests/bench/bench_gpu's
comparison), synchronising around each timed part; LD_TORCH_PRECISION=tf32
lets its matmuls and convolutions use TF32 (the default there is FP32, like
bench_gpu's fp32), bf16 runs them under torch.autocast(bfloat16) with FP32
weights (GPU only).
"""
import contextlib
import os
import json
import sys
import time

import torch
from diffusers import UNet2DConditionModel


def build(path):
    if path.endswith(".json"):
        with open(path) as f:
            cfg = json.load(f)
        weights = None
    else:
        from safetensors.torch import load_file, safe_open
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        if "config" not in meta:
            sys.exit(f"{path}: no 'config' in __metadata__: not a file laptop-diff wrote")
        cfg = json.loads(meta["config"])
        weights = (load_file(path), meta)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    ctx_len = cfg.pop("context_length", 77)  # laptop-diff's key, not diffusers'
    model = UNet2DConditionModel(**cfg)
    if weights:
        missing, unexpected = model.load_state_dict(weights[0], strict=False)
        if unexpected or (missing and weights[1].get("removed")):
            sys.exit(f"{path}: weights do not fit the config (pruned students cannot be timed here)")
    return model, cfg, ctx_len


def main(path, batch, reps, threads, forward_only):
    torch.set_num_threads(threads)
    dev = os.environ.get("LD_TORCH_DEVICE", "cpu")
    prec = os.environ.get("LD_TORCH_PRECISION", "fp32")
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
        torch.backends.cudnn.allow_tf32 = prec == "tf32"
    if prec == "bf16" and dev != "cuda":
        sys.exit("bench_torch.py: LD_TORCH_PRECISION=bf16 is for LD_TORCH_DEVICE=cuda")

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if prec == "bf16" else contextlib.nullcontext()

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    model, cfg, ctx_len = build(path)
    model.train()
    g = torch.Generator().manual_seed(0)
    n, c = cfg.get("sample_size", 64), cfg.get("in_channels", 4)
    x = torch.randn(batch, c, n, n, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    ctx = torch.randn(batch, ctx_len, cfg["cross_attention_dim"], generator=g)
    target = torch.randn(batch, cfg.get("out_channels", 4), n, n, generator=g)
    model, x, t, ctx, target = (v.to(dev) for v in (model, x, t, ctx, target))
    fwd, bwd = [], []
    for i in range(reps + 1):
        if forward_only:
            sync()
            t0 = time.perf_counter()
            with torch.no_grad(), autocast():
                model(x, t, encoder_hidden_states=ctx)
            sync()
            if i:
                fwd.append(time.perf_counter() - t0)
            continue
        model.zero_grad(set_to_none=False)
        sync()
        t0 = time.perf_counter()
        with autocast():
            out = model(x, t, encoder_hidden_states=ctx).sample
            loss = torch.nn.functional.mse_loss(out.float(), target)
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        if i:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    if forward_only:
        print(f"torch: fwd {min(fwd):.3f} s")
        return
    f, b = min(fwd), min(bwd)
    print(f"torch: fwd {f:.3f} s  bwd {b:.3f} s  step {f + b:.3f} s")


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6) or (len(sys.argv) == 6 and sys.argv[5] != "forward"):
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), len(sys.argv) == 6)
