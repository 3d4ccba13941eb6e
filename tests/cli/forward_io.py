#!/usr/bin/env python3
"""Helpers of test_forward.sh (h5py + numpy; no torch or safetensors module needed).

    forward_io.py make FIXTURE_io.safetensors IN.h5 [--float64] [--int-timestep] [--drop NAME]
                       [--channels C] [--timesteps B] [--repeat N] [--nan] [--pooled-width P]
    forward_io.py compare OUT.h5 FIXTURE_io.safetensors [--taps] [--repeat N] [--tol T]
    forward_io.py same A.h5 B.h5
    forward_io.py prune FIXTURE_weights.safetensors FIXTURE_io.safetensors OUT.safetensors
    forward_io.py unetdir FIXTURE_weights.safetensors DIR [--f16 | --f16-rounded | --shards N [--break WHAT]]

make writes the fixture's diffusers inputs as the `forward` command's IN.h5 (/sample, /timestep,
/context, and /pooled, /time_ids for a text_time fixture), optionally in float64, with a dataset left out, with the wrong channel count or the
wrong number of timesteps, with a NaN in the last sample, or with the batch repeated N times (more rows than one chunk).
compare checks /out (and /taps/<name> against tap.<name>) against diffusers' stored outputs:
max |C - ref| <= tol * max |ref| (tol 3e-5, test_reference.c's), every row (--removed: against
the removed variant's removed.out / removed.tap.*). same: /out bitwise equal. prune writes the
fixture's removed variant as a pruned checkpoint (the removed layers' tensors left out, metadata
"removed" and "config"); unetdir writes a diffusers unet/ folder (diffusion_pytorch_model.safetensors
without metadata, config.json beside it); --f16 writes the weights as F16 under diffusers' fp16 name
diffusion_pytorch_model.fp16.safetensors, --f16-rounded the same F16-rounded values as F32 (what the
F16 folder must compute, bit for bit); --shards N splits the weights over N shard files with
diffusers' diffusion_pytorch_model.safetensors.index.json (--break missing-shard | unmapped |
wrong-shard: an index naming an absent shard, a shard tensor the map leaves out, a tensor mapped to
the wrong shard).
"""
import json
import struct
import sys

import h5py
import numpy as np


def read_safetensors(path, with_meta=False):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", f"{path}: {name} is {info['dtype']}"
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"])
    return (out, meta) if with_meta else out


def write_safetensors(path, tensors, meta, dtype="F32"):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f2" if dtype == "F16" else "<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def prune(args):
    w, meta = read_safetensors(args[0], with_meta=True)
    _, io_meta = read_safetensors(args[1], with_meta=True)
    removed = io_meta["removed"].split(",")
    keep = {k: v for k, v in w.items() if not any(k.startswith(p + ".") for p in removed)}
    assert len(keep) < len(w)
    write_safetensors(args[2], keep, {"config": meta["config"], "removed": io_meta["removed"]})
    return 0


def unetdir(args):
    import os
    w, meta = read_safetensors(args[0], with_meta=True)
    os.makedirs(args[1], exist_ok=True)
    if "--f16" in args:
        write_safetensors(os.path.join(args[1], "diffusion_pytorch_model.fp16.safetensors"), w, None, "F16")
    elif "--shards" in args:
        k = int(opt(args, "--shards"))
        names = list(w)
        parts = [names[i::k] for i in range(k)]
        files = [f"diffusion_pytorch_model-{i + 1:05d}-of-{k:05d}.safetensors" for i in range(k)]
        wmap = {n: files[i] for i, part in enumerate(parts) for n in part}
        brk = opt(args, "--break")
        for i, part in enumerate(parts):
            write_safetensors(os.path.join(args[1], files[i]), {n: w[n] for n in part}, None)
        if brk == "missing-shard":
            os.remove(os.path.join(args[1], files[-1]))
        elif brk == "unmapped":
            del wmap[parts[0][0]]
        elif brk == "wrong-shard":
            wmap[parts[0][0]] = files[1]
        with open(os.path.join(args[1], "diffusion_pytorch_model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f)
    elif "--f16-rounded" in args:
        r = {k: v.astype(np.float16).astype(np.float32) for k, v in w.items()}
        write_safetensors(os.path.join(args[1], "diffusion_pytorch_model.safetensors"), r, None)
    else:
        write_safetensors(os.path.join(args[1], "diffusion_pytorch_model.safetensors"), w, None)
    with open(os.path.join(args[1], "config.json"), "w") as f:
        f.write(meta["config"])
    return 0


def opt(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


def make(args):
    src, dst = args[0], args[1]
    t = read_safetensors(src)
    rep = int(opt(args, "--repeat", "1"))
    sample = np.concatenate([t["sample"]] * rep)
    timestep = np.concatenate([t["timesteps"]] * rep)
    context = np.concatenate([t["context"]] * rep)
    added = {k: np.concatenate([t[k]] * rep) for k in ("pooled", "time_ids") if k in t}
    if "--pooled-width" in args:  # the wrong pooled width
        p = added["pooled"]
        added["pooled"] = np.resize(p, (p.shape[0], int(opt(args, "--pooled-width")))).astype(np.float32)
    if "--channels" in args:  # wrong C: cut or pad channels
        c = int(opt(args, "--channels"))
        sample = np.resize(sample, (sample.shape[0], c) + sample.shape[2:]).astype(np.float32)
    if "--timesteps" in args:
        timestep = timestep[: int(opt(args, "--timesteps"))]
    dt = np.float64 if "--float64" in args else np.float32
    if "--nan" in args:  # one non-finite value in the last row
        sample = sample.copy()
        sample[-1, 0, 1, 2] = np.nan
    drop = opt(args, "--drop")
    with h5py.File(dst, "w") as f:
        if drop != "sample":
            f["sample"] = sample.astype(dt)
        if drop != "timestep":
            f["timestep"] = timestep.astype(np.int64) if "--int-timestep" in args else timestep.astype(dt)
        if drop != "context":
            f["context"] = context.astype(dt)
        for k, v in added.items():
            if drop != k:
                f[k] = v.astype(dt)


def compare(args):
    out_path, ref_path = args[0], args[1]
    tol = float(opt(args, "--tol", "3e-5"))
    rep = int(opt(args, "--repeat", "1"))
    t = read_safetensors(ref_path)
    if "--removed" in args:  # the removed variant's outputs under the plain names
        t = {k[len("removed."):]: v for k, v in t.items() if k.startswith("removed.")}
    pairs = [("out", "out")]
    with h5py.File(out_path, "r") as f:
        if "--taps" in args:
            names = sorted(k[len("tap."):] for k in t if k.startswith("tap."))
            have = sorted(f["taps"].keys()) if "taps" in f else []
            if have != names:
                print(f"taps in {out_path}: {have}, fixture: {names}")
                return 1
            pairs += [(f"taps/{n}", f"tap.{n}") for n in names]
        worst = 0.0
        for ours, theirs in pairs:
            a = f[ours][()]
            if a.dtype != np.float32:
                print(f"{ours} is {a.dtype}, not float32")
                return 1
            ref = np.concatenate([t[theirs]] * rep)
            if a.shape != ref.shape:
                print(f"{ours} has shape {a.shape}, diffusers' {theirs} {ref.shape}")
                return 1
            err = float(np.abs(a.astype(np.float64) - ref).max() / np.abs(ref).max())
            worst = max(worst, err)
            if not err <= tol:
                print(f"{ours}: max error {err:.3g} of the max magnitude, tolerance {tol:g}")
                return 1
    print(f"max error {worst:.3g} of the max magnitude over {len(pairs)} tensors (tolerance {tol:g})")
    return 0


def same(args):
    with h5py.File(args[0], "r") as a, h5py.File(args[1], "r") as b:
        x, y = a["out"][()], b["out"][()]
        if x.shape != y.shape or not np.array_equal(x, y):
            d = np.abs(x.astype(np.float64) - y).max() if x.shape == y.shape else "shape"
            print(f"/out of {args[0]} and {args[1]} differ (max {d})")
            return 1
    return 0


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        make(rest)
        sys.exit(0)
    sys.exit({"compare": compare, "same": same, "prune": prune, "unetdir": unetdir}[cmd](rest))
