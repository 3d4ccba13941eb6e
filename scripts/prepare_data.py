#!/usr/bin/env python3
"""Images with captions -> the HDF5 dataset `data.source = "hdf5"` reads (README "Data in").

    python scripts/prepare_data.py LISTING --model DIR --out data.h5 [--resolution 512]
           [--test-listing LISTING] [--shard-size 256] [--batch-size 8] [--device cpu|cuda]

Run once, before a job, in the venv of scripts/setup.sh (diffusers + transformers); never at run time.

LISTING is a CSV file with a header row naming the columns `file` and `caption` (csv module
quoting: a caption with a comma is "quoted"), or a JSONL file (one {"file": ..., "caption": ...}
object a line); Hugging Face's imagefolder names `file_name` and `text` are accepted too. A
relative `file` is relative to the folder of the listing. --test-listing, the same for the test
split (written under /test/).

--model is a diffusers model folder: vae/, text_encoder/, tokenizer/ (SD-1.x) and, for SDXL,
text_encoder_2/ and tokenizer_2/ (its presence selects the SDXL layout); --vae, --text-encoder,
--tokenizer, --text-encoder-2, --tokenizer-2 name the parts one by one instead (or override one).

What it writes (float32; the rows of one split in listing order):
  /latents [N,C,H,W]   the VAE posterior's mean (not a sample: the file is a pure function of the
                       inputs, so a resumed run gives the same file), x vae.config.scaling_factor
                       (with the config's latents_mean/latents_std, (mean - m) * scaling / s)
  /context [N,L,D]     SD-1.x: the text encoder's last hidden state (L = the tokenizer's
                       model_max_length, 77 for CLIP), as StableDiffusionPipeline.encode_prompt;
                       SDXL: the penultimate hidden states of both encoders concatenated on D
                       (768 + 1280 = 2048), as StableDiffusionXLPipeline.encode_prompt
  /pooled [N,P]        SDXL: text_encoder_2's projected pooled output (text_embeds, P = 1280)
  /time_ids [N,6]      SDXL: original size (h, w), crop top-left (top, left), target size (h, w),
                       in the order of StableDiffusionXLPipeline._get_add_time_ids
  /uncond_context [L,D]  the empty prompt: SD-1.x its encoding; SDXL zeros, as the pipeline does
                       with force_zeros_for_empty_prompt (model_index.json; true for SDXL-base),
                       else the empty prompt's encoding; SDXL also /uncond_pooled [P]
  /test/...            the same for --test-listing
Root attributes record the layout, resolution, scaling factor and the inputs.

Images: RGB, the shorter side resized to --resolution (bicubic), center-cropped to a square,
scaled to [-1, 1].

Shards: every --shard-size rows of a split are encoded and written to OUT.parts/ as one file
(temporary name, then renamed), so an interrupted run, started again with the same arguments,
keeps the finished shards and continues after them; --max-shards K stops after K new shards
(exit status 3: run again to continue). When every shard is there they are joined into OUT
(again a temporary name, then renamed: OUT is complete or absent) and OUT.parts/ is removed.
Bad input stops the run before anything is encoded: a line of the listing that is malformed or
names a missing image (file and line number), a model folder without a part it needs; an image
that cannot be decoded stops it at its shard (file and line; the finished shards are kept).
"""
import argparse
import csv
import hashlib
import json
import os
import shutil
import sys

FORMAT = "laptop-diff prepare_data 1"  # the shard format; a folder of another one is not resumed


class Bad(Exception):
    """Bad input: printed as one line, exit status 1."""


# ----------------------------------------------------------------------------------------------
# The listing
# ----------------------------------------------------------------------------------------------
def _pick(row, names, where):
    for n in names:
        if n in row:
            v = row[n]
            if v is None or not isinstance(v, str):
                raise Bad(f"{where}: \"{n}\" must be a string")
            return v
    raise Bad(f"{where}: no \"{names[0]}\" (or \"{names[1]}\")")


def read_listing(path):
    """[(line number, image path, caption)] of a CSV or JSONL listing; every image checked to exist."""
    if not os.path.isfile(path):
        raise Bad(f"{path}: no such listing file")
    base = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
        if path.endswith(".jsonl"):
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise Bad(f"{path}:{ln}: not a JSON object ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise Bad(f"{path}:{ln}: not a JSON object")
                where = f"{path}:{ln}"
                rows.append((ln, _pick(obj, ("file", "file_name"), where), _pick(obj, ("caption", "text"), where)))
        elif path.endswith(".csv"):
            r = csv.reader(f)
            header = next(r, None)
            if header is None:
                raise Bad(f"{path}: empty (expected a header row: file,caption)")
            header = [h.strip() for h in header]
            col = {}
            for key, names in (("file", ("file", "file_name")), ("caption", ("caption", "text"))):
                hit = [i for i, h in enumerate(header) if h in names]
                if not hit:
                    raise Bad(f"{path}:1: the header {','.join(header)} has no \"{names[0]}\" column "
                              f"(expected file,caption)")
                col[key] = hit[0]
            for row in r:
                ln = r.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise Bad(f"{path}:{ln}: {len(row)} fields, the header has {len(header)} "
                              "(quote a caption that holds a comma)")
                rows.append((ln, row[col["file"]], row[col["caption"]]))
        else:
            raise Bad(f"{path}: a listing is a .csv (header file,caption) or a .jsonl file")
    if not rows:
        raise Bad(f"{path}: no images listed")
    out = []
    for ln, file, caption in rows:
        if not file.strip():
            raise Bad(f"{path}:{ln}: empty file name")
        p = file if os.path.isabs(file) else os.path.join(base, file)
        if not os.path.isfile(p):
            raise Bad(f"{path}:{ln}: image {file} not found ({p})")
        out.append((ln, p, caption))
    return out


# ----------------------------------------------------------------------------------------------
# The model parts
# ----------------------------------------------------------------------------------------------
PARTS = [("vae", "vae", "config.json"), ("text_encoder", "text-encoder", "config.json"),
         ("tokenizer", "tokenizer", None), ("text_encoder_2", "text-encoder-2", "config.json"),
         ("tokenizer_2", "tokenizer-2", None)]


def model_parts(a):
    """{part: folder} for the parts this run uses; SDXL when text_encoder_2 is given or present."""
    got = {}
    for part, opt, _ in PARTS:
        given = getattr(a, part)
        if given:
            got[part] = given
        elif a.model and os.path.isdir(os.path.join(a.model, part)):
            got[part] = os.path.join(a.model, part)
    sdxl = "text_encoder_2" in got or "tokenizer_2" in got
    need = [p for p in PARTS if sdxl or not p[0].endswith("_2")]
    for part, opt, must in need:
        if part not in got:
            where = f"{a.model}: no {part}/" if a.model else f"no --{opt}"
            raise Bad(f"{where} (a diffusers model folder has vae/, text_encoder/, tokenizer/, and for "
                      f"SDXL text_encoder_2/, tokenizer_2/; or pass --{opt} DIR)")
        d = got[part]
        if not os.path.isdir(d):
            raise Bad(f"{d}: not a folder (--{opt})")
        if must and not os.path.isfile(os.path.join(d, must)):
            raise Bad(f"{d}: no {must} (expected the diffusers/transformers folder of the {part})")
        if part.startswith("tokenizer") and not any(
                os.path.isfile(os.path.join(d, n)) for n in ("vocab.json", "tokenizer.json")):
            raise Bad(f"{d}: no vocab.json or tokenizer.json (expected a CLIP tokenizer folder)")
    return got, sdxl


def force_zeros(a, sdxl):
    """SDXL's empty prompt: zeros unless the pipeline's model_index.json says otherwise."""
    if not sdxl:
        return False
    mi = os.path.join(a.model, "model_index.json") if a.model else None
    if mi and os.path.isfile(mi):
        with open(mi) as f:
            return bool(json.load(f).get("force_zeros_for_empty_prompt", True))
    return True


class Encoders:
    def __init__(self, parts, sdxl, device):
        import torch
        from diffusers import AutoencoderKL
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
        self.torch, self.device, self.sdxl = torch, device, sdxl

        def load(what, fn, d):
            try:
                return fn(d)
            except Exception as e:  # a broken folder: say which part
                raise Bad(f"{d}: cannot load the {what}: {e}") from None
        from transformers.utils import logging as tlog
        # the untruncated tokenisation that counts cut captions would warn once per run
        tlog.get_logger("transformers.tokenization_utils_base").setLevel(tlog.ERROR)
        self.vae = load("VAE", lambda d: AutoencoderKL.from_pretrained(d, torch_dtype=torch.float32,
                                                                      low_cpu_mem_usage=False), parts["vae"])
        self.tok = [load("tokenizer", CLIPTokenizer.from_pretrained, parts["tokenizer"])]
        self.te = [load("text encoder", lambda d: CLIPTextModel.from_pretrained(d, torch_dtype=torch.float32),
                        parts["text_encoder"])]
        if sdxl:
            self.tok.append(load("tokenizer", CLIPTokenizer.from_pretrained, parts["tokenizer_2"]))
            self.te.append(load("text encoder", lambda d: CLIPTextModelWithProjection.from_pretrained(
                d, torch_dtype=torch.float32), parts["text_encoder_2"]))
        for m in [self.vae] + self.te:
            m.to(device).eval().requires_grad_(False)
        c = self.vae.config
        self.scale = float(c.scaling_factor)
        self.lat_mean = self.lat_std = None
        if getattr(c, "latents_mean", None) is not None and getattr(c, "latents_std", None) is not None:
            self.lat_mean = torch.tensor(c.latents_mean, dtype=torch.float32).view(1, -1, 1, 1).to(device)
            self.lat_std = torch.tensor(c.latents_std, dtype=torch.float32).view(1, -1, 1, 1).to(device)
        self.truncated = 0

    def latents(self, pixels):
        torch = self.torch
        with torch.no_grad():
            x = torch.from_numpy(pixels).to(self.device)
            z = self.vae.encode(x).latent_dist.mean
            if self.lat_mean is not None:
                z = (z - self.lat_mean) * self.scale / self.lat_std
            else:
                z = z * self.scale
        return z.float().cpu().numpy()

    def text(self, captions):
        """(context [B,L,D], pooled [B,P] or None)."""
        torch = self.torch
        states, pooled = [], None
        with torch.no_grad():
            for k, (tok, te) in enumerate(zip(self.tok, self.te)):
                ids = tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
                          return_tensors="pt").input_ids
                if k == 0:  # counted once: both tokenizers cut at the same length
                    full = tok(captions, padding="longest", return_tensors="pt").attention_mask.sum(1)
                    self.truncated += int((full > tok.model_max_length).sum())
                out = te(ids.to(self.device), output_hidden_states=self.sdxl)
                if self.sdxl:
                    states.append(out.hidden_states[-2])
                    if k == len(self.te) - 1:
                        pooled = out[0]  # CLIPTextModelWithProjection: text_embeds
                else:
                    states.append(out[0])  # last_hidden_state (after the final layer norm)
        ctx = torch.cat(states, dim=-1).float().cpu().numpy()
        return ctx, (pooled.float().cpu().numpy() if pooled is not None else None)


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------
def load_image(path, res, where):
    """(pixels [3,res,res] float32 in [-1,1], time ids [orig h, orig w, top, left, res, res])."""
    import numpy as np
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert("RGB")
    except Exception as e:
        raise Bad(f"{where}: cannot read image {path}: {e}") from None
    w, h = im.size
    s = res / min(w, h)
    nw, nh = max(res, round(w * s)), max(res, round(h * s))
    im = im.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - res) // 2, (nh - res) // 2
    im = im.crop((left, top, left + res, top + res))
    x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    return x, [h, w, top, left, res, res]


# ----------------------------------------------------------------------------------------------
# Shards
# ----------------------------------------------------------------------------------------------
def fingerprint(a, parts, sdxl, splits, device):
    """What the shards depend on (the batch size and device too: they change the last bits), so
    a parts folder of other inputs is not resumed."""
    h = {}
    for split, (path, rows) in splits.items():
        d = hashlib.sha256()
        with open(path, "rb") as f:
            d.update(f.read())
        h[split] = {"listing": os.path.abspath(path), "sha256": d.hexdigest(), "rows": len(rows)}
    return {"format": FORMAT, "resolution": a.resolution, "shard_size": a.shard_size, "sdxl": sdxl,
            "batch_size": a.batch_size, "device": device,
            "parts": {k: os.path.abspath(v) for k, v in sorted(parts.items())}, "splits": h}


def write_h5_atomic(path, fill):
    import h5py
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)  # a run killed while writing it
    with h5py.File(tmp, "w") as f:
        fill(f)
    os.replace(tmp, path)


def shard_name(parts_dir, split, k):
    return os.path.join(parts_dir, f"{split}_{k:05d}.h5")


def encode_shard(enc, rows, a, listing, path):
    import numpy as np
    lat, ctx, pooled, tids = [], [], [], []
    for b in range(0, len(rows), a.batch_size):
        batch = rows[b:b + a.batch_size]
        px, ti = zip(*(load_image(p, a.resolution, f"{listing}:{ln}") for ln, p, _ in batch))
        lat.append(enc.latents(np.stack(px)))
        c, pl = enc.text([cap for _, _, cap in batch])
        ctx.append(c)
        if pl is not None:
            pooled.append(pl)
        tids.append(np.array(ti, dtype=np.float32))
        yield len(batch)

    def fill(f):
        f["latents"] = np.concatenate(lat)
        f["context"] = np.concatenate(ctx)
        if enc.sdxl:
            f["pooled"] = np.concatenate(pooled)
            f["time_ids"] = np.concatenate(tids)
        f.attrs["rows"] = sum(len(x) for x in lat)
    write_h5_atomic(path, fill)


DESCRIPTIONS = {
    "latents": "VAE posterior mean x scaling_factor, [N,C,H,W]",
    "context": "text-encoder hidden states [N,L,D] (SD-1.x: last; SDXL: penultimate of both, concatenated)",
    "pooled": "text_encoder_2 projected pooled output (text_embeds) [N,P]",
    "time_ids": "SDXL micro-conditioning [N,6]: original (h, w), crop top-left (top, left), target (h, w)",
}


def join(out, parts_dir, counts, enc, uncond, fp, a):
    import h5py

    def fill(f):
        for split, (n_rows, n_shards) in counts.items():
            g = f if split == "train" else f.require_group(split)
            with h5py.File(shard_name(parts_dir, split, 0), "r") as s0:
                names = list(s0.keys())
                shapes = {k: s0[k].shape[1:] for k in names}
            ds = {k: g.create_dataset(k, (n_rows,) + shapes[k], dtype="f4") for k in names}
            for k in names:
                ds[k].attrs["description"] = DESCRIPTIONS[k]
            r = 0
            for i in range(n_shards):
                with h5py.File(shard_name(parts_dir, split, i), "r") as s:
                    n = int(s.attrs["rows"])
                    for k in names:
                        ds[k][r:r + n] = s[k][()]
                r += n
            assert r == n_rows, (split, r, n_rows)
        f["uncond_context"] = uncond[0]
        f["uncond_context"].attrs["description"] = "the empty prompt's context [L,D]"
        if uncond[1] is not None:
            f["uncond_pooled"] = uncond[1]
            f["uncond_pooled"].attrs["description"] = "the empty prompt's pooled embedding [P]"
        f.attrs["layout"] = "sdxl" if enc.sdxl else "sd"
        f.attrs["resolution"] = a.resolution
        f.attrs["scaling_factor"] = enc.scale
        f.attrs["latents"] = "posterior mean"
        f.attrs["made_by"] = "scripts/prepare_data.py"
        f.attrs["inputs"] = json.dumps(fp, sort_keys=True)
    write_h5_atomic(out, fill)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Images + captions -> laptop-diff's HDF5 dataset (README \"Data in\").")
    ap.add_argument("listing", help="CSV (header file,caption) or JSONL ({\"file\", \"caption\"}) of the training images")
    ap.add_argument("--out", required=True, help="the HDF5 file to write (data.path of the job)")
    ap.add_argument("--model", help="diffusers model folder (vae/, text_encoder/, tokenizer/[, text_encoder_2/, tokenizer_2/])")
    for part, opt, _ in PARTS:
        ap.add_argument(f"--{opt}", dest=part, help=f"the {part} folder (instead of MODEL/{part})")
    ap.add_argument("--test-listing", help="a listing of the test split (written under /test/)")
    ap.add_argument("--resolution", type=int, default=512, help="square image size in pixels (default 512)")
    ap.add_argument("--shard-size", type=int, default=256, help="rows per shard (default 256)")
    ap.add_argument("--batch-size", type=int, default=8, help="images per encoder call (default 8)")
    ap.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    ap.add_argument("--max-shards", type=int, default=0, help="stop after this many new shards (0: all)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    for k in ("resolution", "shard_size", "batch_size"):
        if getattr(a, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be >= 1")
    if a.resolution % 8:
        ap.error("--resolution must be a multiple of 8 (the VAE downsamples 8x)")
    try:
        return run(a)
    except Bad as e:
        print(f"prepare_data.py: {e}", file=sys.stderr)
        return 1


def run(a):
    parts, sdxl = model_parts(a)
    splits = {"train": (a.listing, read_listing(a.listing))}
    if a.test_listing:
        splits["test"] = (a.test_listing, read_listing(a.test_listing))
    import torch
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    fp = fingerprint(a, parts, sdxl, splits, device)
    out_dir = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(out_dir):
        raise Bad(f"{a.out}: the folder {out_dir} does not exist")
    parts_dir = a.out + ".parts"
    fp_path = os.path.join(parts_dir, "inputs.json")
    if os.path.isdir(parts_dir):
        try:
            with open(fp_path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = None
        if old != fp:
            raise Bad(f"{parts_dir}: shards of another run (other listing, model, resolution, shard "
                      "size, batch size or device): remove the folder to start over")
    else:
        os.makedirs(parts_dir)
        with open(fp_path + ".tmp", "w") as f:
            json.dump(fp, f, sort_keys=True, indent=1)
        os.replace(fp_path + ".tmp", fp_path)

    from tqdm import tqdm
    enc = Encoders(parts, sdxl, device)
    todo, counts, done_rows = [], {}, 0
    for split, (listing, rows) in splits.items():
        shards = [rows[i:i + a.shard_size] for i in range(0, len(rows), a.shard_size)]
        counts[split] = (len(rows), len(shards))
        for k, sh in enumerate(shards):
            path = shard_name(parts_dir, split, k)
            if os.path.exists(path):
                done_rows += len(sh)
            else:
                todo.append((listing, sh, path))
    total = sum(n for n, _ in counts.values())
    if done_rows:
        print(f"prepare_data.py: resuming: {done_rows} of {total} rows already in {parts_dir}")
    new = 0
    with tqdm(total=total, initial=done_rows, unit="img", disable=a.quiet, desc="encoding") as bar:
        for listing, sh, path in todo:
            if a.max_shards and new == a.max_shards:
                bar.close()
                print(f"prepare_data.py: stopped after {new} shards (--max-shards); {done_rows} of {total} "
                      "rows done: run the same command again to continue")
                return 3
            for n in encode_shard(enc, sh, a, listing, path):
                bar.update(n)
            done_rows += len(sh)
            new += 1
    if enc.truncated:
        print(f"prepare_data.py: {enc.truncated} captions were longer than the tokenizer's "
              f"{enc.tok[0].model_max_length} tokens and were truncated")
    ctx, pooled = enc.text([""])
    if force_zeros(a, sdxl):
        ctx, pooled = 0 * ctx, 0 * pooled
    join(a.out, parts_dir, counts, enc, (ctx[0], pooled[0] if pooled is not None else None), fp, a)
    shutil.rmtree(parts_dir)
    shapes = []
    import h5py
    with h5py.File(a.out, "r") as f:
        f.visititems(lambda n, o: shapes.append(f"/{n} {list(o.shape)}") if isinstance(o, h5py.Dataset) else None)
    print(f"prepare_data.py: {a.out}: " + ", ".join(shapes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
