#!/usr/bin/env python3
"""Sanity checks of tests/reference/fixtures/ (for manual use; numpy + safetensors only).

    python3 tests/reference/check_fixtures.py [FIXTURE_DIR]

Verifies that every file make_fixtures.py writes is there and self-consistent: all tensors F32
and finite, every parameter has a gradient of its shape (full and removed variant), removed
layers' gradients are zero and no other gradient tensor is, inputs/outputs/taps have the shapes
the .cfg implies, the .cfg agrees with the diffusers config in the metadata, the stored loss
matches sum(out * loss_weight), and the feature-KD values recompute. Exits 1 on any failure.
"""

import json
import os
import re
import struct
import sys

import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ["conv", "linear", "xl", "xlt"]
REQUIRED_META = ["config", "removed", "versions", "loss"]
SIZE_BUDGET = 16 * 1024 * 1024  # 14.0 MB with xlt (9.8 MB before it, over the old 8 MiB)

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
    return cond


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return h.pop("__metadata__", {}), h


def parse_cfg(path):
    """Reads the flat `model = { key = value; ... };` section make_fixtures.py writes."""
    text = open(path).read()
    body = re.search(r"model\s*=\s*\{(.*)\}\s*;", text, re.S).group(1)
    out = {}
    for key, val in re.findall(r"(\w+)\s*=\s*([^;]+);", body):
        out[key] = json.loads(val)
    return out


def load_checked(path):
    meta, hdr = header(path)
    for name, info in hdr.items():
        check(info["dtype"] == "F32", f"{path}: {name} is {info['dtype']}, not F32")
    tensors = load_file(path)
    for name, arr in tensors.items():
        check(np.isfinite(arr).all(), f"{path}: {name} has non-finite values")
    return meta, tensors


def check_model(d, name):
    wpath = os.path.join(d, f"{name}_weights.safetensors")
    iopath = os.path.join(d, f"{name}_io.safetensors")
    cpath = os.path.join(d, f"{name}.cfg")
    for p in (wpath, iopath, cpath):
        if not check(os.path.exists(p), f"missing {p}"):
            return
    _, W = load_checked(wpath)
    meta, io = load_checked(iopath)
    cfg = parse_cfg(cpath)

    for k in REQUIRED_META:
        check(k in meta, f"{iopath}: metadata {k} missing")
    dcfg = json.loads(meta["config"])
    for k, v in cfg.items():
        if k == "context_length":
            continue
        dv = dcfg.get(k)
        if isinstance(dv, list) or isinstance(v, list):
            ok = list(dv) == list(v) if isinstance(dv, list) and isinstance(v, list) else False
        elif isinstance(v, float) or isinstance(dv, float):
            ok = dv is not None and abs(float(dv) - float(v)) <= 1e-12 * max(1.0, abs(float(v)))
        else:
            ok = dv == v
        check(ok, f"{cpath}: {k} = {v} but diffusers config says {dv}")

    n_params = sum(a.size for a in W.values())
    if "n_params" in meta:
        check(int(meta["n_params"]) == n_params, f"{name}: n_params {meta['n_params']} != {n_params}")

    B = io["sample"].shape[0]
    H = cfg["sample_size"]
    L = cfg["context_length"]
    check(io["sample"].shape == (B, cfg["in_channels"], H, H), f"{name}: sample {io['sample'].shape}")
    check(io["timesteps"].shape == (B,), f"{name}: timesteps {io['timesteps'].shape}")
    check(io["context"].shape == (B, L, cfg["cross_attention_dim"]), f"{name}: context shape")
    if cfg.get("addition_embed_type") == "text_time":  # SDXL's added conditioning among the inputs
        P = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
        check("pooled" in io and io["pooled"].shape == (B, P), f"{name}: pooled missing/shape")
        check("time_ids" in io and io["time_ids"].shape == (B, 6), f"{name}: time_ids missing/shape")
        check(any(n.startswith("add_embedding.") for n in W), f"{name}: no add_embedding parameters")
    else:
        check("pooled" not in io and "time_ids" not in io, f"{name}: pooled/time_ids without text_time")
    for k in ("out", "removed.out", "loss_weight"):
        check(k in io and io[k].shape == (B, cfg["out_channels"], H, H), f"{name}: {k} missing/shape")

    removed = [p for p in meta.get("removed", "").split(",") if p]
    check(len(removed) >= 1, f"{name}: no removed layers listed")
    for p in removed:
        check(any(n.startswith(p + ".") for n in W), f"{name}: removed {p} has no parameters")
    for n, w in W.items():
        for pre in ("grad.", "removed.grad."):
            g = io.get(pre + n)
            if not check(g is not None, f"{name}: {pre}{n} missing"):
                continue
            check(g.shape == w.shape, f"{name}: {pre}{n} shape {g.shape} != {w.shape}")
            gone = pre == "removed.grad." and any(n.startswith(p + ".") for p in removed)
            if gone:
                check(not g.any(), f"{name}: {pre}{n} of a removed layer is not zero")
            else:
                check(g.any(), f"{name}: {pre}{n} is all zero")
    extra = [k for k in io if (k.startswith("grad.") and k[5:] not in W) or
             (k.startswith("removed.grad.") and k[13:] not in W)]
    check(not extra, f"{name}: gradients of unknown parameters: {extra[:5]}")

    # taps: channels and spatial size implied by the config
    boc = cfg["block_out_channels"]
    n = len(boc)
    expect = {}
    h = H
    for i in range(n):
        expect[f"tap.down.{i}"] = (B, boc[i], h // 2 if i < n - 1 else h, h // 2 if i < n - 1 else h)
        if i < n - 1:
            h //= 2
    expect["tap.mid"] = (B, boc[-1], h, h)
    for i in range(n):
        if i < n - 1:
            h *= 2
        expect[f"tap.up.{i}"] = (B, boc[::-1][i], h, h)
    # the stored order of down taps is the tuple's first element, i.e. the block's final hidden
    # state (after the downsampler)
    for t, shp in expect.items():
        for pre in ("", "removed."):
            a = io.get(pre + t)
            if check(a is not None, f"{name}: {pre}{t} missing"):
                check(a.shape == shp, f"{name}: {pre}{t} shape {a.shape} != {shp}")
    if "taps" in meta:
        check(meta["taps"].split(",") == list(expect), f"{name}: metadata taps {meta['taps']}")

    # loss
    if "loss_value" in meta:
        loss = float((io["out"].astype(np.float64) * io["loss_weight"]).sum())
        ref = float(meta["loss_value"])
        check(abs(loss - ref) <= 1e-5 * max(1.0, abs(ref)), f"{name}: loss {loss} vs metadata {ref}")

    # candidate scores
    cands = [c for c in meta.get("candidates", "").split(",") if c]
    if cands:
        check(io["cand_score"].shape == (len(cands),), f"{name}: cand_score shape")
        check(io["cand_params"].shape == (len(cands),), f"{name}: cand_params shape")
        for c, p in zip(cands, io["cand_params"]):
            cnt = sum(a.size for k, a in W.items() if k.startswith(c + "."))
            check(cnt == int(p), f"{name}: cand_params of {c} {int(p)} != {cnt}")
        check((io["cand_score"] > 0).all(), f"{name}: a candidate score is not positive")
    print(f"{name}: {len(W)} parameter tensors, {n_params} parameters, {len(io)} io tensors, "
          f"{len(cands)} candidates, removed {removed}")


def check_featkd(d):
    path = os.path.join(d, "featkd.safetensors")
    if not check(os.path.exists(path), f"missing {path}"):
        return
    meta, t = load_checked(path)
    n = int(meta.get("n_taps", "3"))
    for l in range(n):
        keys = [f"feat.T.{l}", f"feat.S.{l}", f"featnorm.{l}", f"featraw.{l}", f"featnorm_grad.{l}"]
        if not all(check(k in t, f"featkd: {k} missing") for k in keys):
            continue
        T = t[f"feat.T.{l}"].astype(np.float64)
        S = t[f"feat.S.{l}"].astype(np.float64)
        check(T.shape == S.shape == t[f"featnorm_grad.{l}"].shape, f"featkd: shapes of tap {l}")
        b = T.shape[0]
        d2 = ((S - T) ** 2).reshape(b, -1).sum(1)
        tn = (T ** 2).reshape(b, -1).sum(1)
        fn = (d2 / tn).mean()
        fr = ((S - T) ** 2).mean()
        gn = 2 * (S - T) / tn.reshape((b,) + (1,) * (T.ndim - 1)) / b
        check(abs(fn - t[f"featnorm.{l}"][0]) <= 1e-5 * abs(fn), f"featkd: featnorm.{l}")
        check(abs(fr - t[f"featraw.{l}"][0]) <= 1e-5 * abs(fr), f"featkd: featraw.{l}")
        check(np.abs(gn - t[f"featnorm_grad.{l}"]).max() <= 1e-5 * np.abs(gn).max(),
              f"featkd: featnorm_grad.{l}")
        if f"featraw_grad.{l}" in t:
            gr = 2 * (S - T) / S.size
            check(np.abs(gr - t[f"featraw_grad.{l}"]).max() <= 1e-5 * np.abs(gr).max(),
                  f"featkd: featraw_grad.{l}")
    print(f"featkd: {n} taps, {len(t)} tensors")


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures")
    for name in MODELS:
        check_model(d, name)
    check_featkd(d)
    total = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    check(total < SIZE_BUDGET, f"fixtures total {total} bytes over {SIZE_BUDGET}")
    print(f"total {total / 1e6:.2f} MB")
    if failures:
        for f in failures:
            print("FAIL:", f)
        sys.exit(1)
    print("all fixture checks passed")


if __name__ == "__main__":
    main()
