#!/usr/bin/python3
"""PyTorch/diffusers reference timing for tests/bench/compare_torch.sh.

usage: bench_torch.py MODEL.safetensors BATCH REPEATS THREADS

Builds diffusers' UNet2DConditionModel from the config a laptop-diff model file
carries in its metadata (every file laptop-diff writes has one), loads its
weights, and times one training step's forward + backward (MSE to a random
target) at BATCH on THREADS CPU threads, the best of REPEATS after one warm-up
step (as bench_step). Prints one line: "torch: fwd F s  bwd B s  step S s". Reference only:
laptop-diff never runs PyTorch.
"""
import json
import sys
import time

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, safe_open


def main(path, batch, reps, threads):
    torch.set_num_threads(threads)
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        sys.exit(f"{path}: no 'config' in __metadata__: not a file laptop-diff wrote")
    cfg = json.loads(meta["config"])
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    ctx_len = cfg.pop("context_length", 77)  # laptop-diff's key, not diffusers'
    model = UNet2DConditionModel(**cfg)
    missing, unexpected = model.load_state_dict(load_file(path), strict=False)
    if unexpected or (missing and meta.get("removed")):
        sys.exit(f"{path}: weights do not fit the config (pruned students cannot be timed here)")
    model.train()
    g = torch.Generator().manual_seed(0)
    n, c = cfg.get("sample_size", 64), cfg.get("in_channels", 4)
    x = torch.randn(batch, c, n, n, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    ctx = torch.randn(batch, ctx_len, cfg["cross_attention_dim"], generator=g)
    target = torch.randn(batch, cfg.get("out_channels", 4), n, n, generator=g)
    fwd, bwd = [], []
    for i in range(reps + 1):
        model.zero_grad(set_to_none=False)
        t0 = time.perf_counter()
        out = model(x, t, encoder_hidden_states=ctx).sample
        loss = torch.nn.functional.mse_loss(out, target)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if i:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    f, b = min(fwd), min(bwd)
    print(f"torch: fwd {f:.3f} s  bwd {b:.3f} s  step {f + b:.3f} s")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
