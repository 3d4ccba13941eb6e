#!/usr/bin/env python3
"""Writes py_small.safetensors with the reference `safetensors` package, so the
C reader is checked against files real tools produce (test_safetensors.c).

Each F16/BF16 tensor `x` has a twin `expect.x` holding torch's own fp32
conversion; the C test compares its conversion with it bit for bit.
Run: python3 tests/unit/data/make_py_small.py  (torch + safetensors needed).
The bytes may differ between runs (metadata order), the content does not.
"""
import os

import torch
from safetensors.torch import save_file

inf, nan = float("inf"), float("nan")
f16_vals = [1.0, -2.5, 65504.0, 2.0**-24, -(2.0**-15), 1023 * 2.0**-24, 2.0**-14,
            inf, -inf, nan, 0.1, -0.0]
bf16_vals = [1.0, -2.5, 3.0e38, 2.0**-133, inf, -inf, nan, 0.1]

t = {
    "f32.matrix": torch.tensor([[1.0, -2.5, 3.25], [0.1, 1e-40, -0.0]], dtype=torch.float32),
    "f32.scalar": torch.tensor(7.5, dtype=torch.float32),
    "f16.values": torch.tensor(f16_vals, dtype=torch.float16),
    "f16.scalar": torch.tensor(3.140625, dtype=torch.float16),
    "bf16.values": torch.tensor(bf16_vals, dtype=torch.bfloat16).reshape(2, 2, 2),
    "bf16.empty": torch.zeros((0, 3), dtype=torch.bfloat16),
}
for k in ["f16.values", "f16.scalar", "bf16.values", "bf16.empty"]:
    t["expect." + k] = t[k].float()

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "py_small.safetensors")
save_file(t, out, metadata={"format": "pt", "producer": "make_py_small.py"})
print(out, os.path.getsize(out), "bytes")
