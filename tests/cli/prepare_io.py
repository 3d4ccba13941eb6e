#!/usr/bin/env python3
"""Helpers of test_prepare_data.sh, run in the venv of scripts/setup.sh (no downloads: every model
is built from a small config with random weights).

    prepare_io.py models DIR sd|sdxl    a diffusers model folder: vae/ (AutoencoderKL, 2 blocks: 2x
                                        downsampling, 4 latent channels), text_encoder/ + tokenizer/
                                        (CLIP, width 16, 8 tokens) and for sdxl text_encoder_2/ +
                                        tokenizer_2/ (CLIP with projection, width 24, projection 20)
    prepare_io.py images DIR            7 images of several sizes and modes, list.csv (a quoted
                                        caption with a comma) and test.jsonl (imagefolder names)
    prepare_io.py check OUT.h5 DIR sd|sdxl RES   the file against diffusers' own code on the same
                                        inputs: StableDiffusion(XL)Pipeline.encode_prompt for
                                        /context, /pooled, /uncond_*, the VAE's posterior mean for
                                        /latents, the time ids by hand; shapes, dtypes
    prepare_io.py same A.h5 B.h5        every dataset and attribute equal, bit for bit
"""
import json
import os
import sys
import types

import h5py
import numpy as np
import torch

L = 8  # tokens per caption of the tiny tokenizers
SIZES = [(40, 32, "RGB"), (32, 48, "RGB"), (64, 64, "L"), (33, 37, "RGBA"), (50, 32, "RGB"), (32, 32, "RGB"),
         (90, 45, "P")]
CAPTIONS = ["cat", "a dog, big", "sky", "", "a small red house by the sea", "x", "tree"]


def models(out, layout):
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
    from transformers.models.clip.tokenization_clip import bytes_to_unicode
    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                  latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.5).save_pretrained(f"{out}/vae")
    # a byte-level BPE vocabulary without merges: one token per character
    chars = list(bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}

    def tokenizer(d):
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/vocab.json", "w") as f:
            json.dump(vocab, f)
        with open(f"{d}/merges.txt", "w") as f:
            f.write("#version: 0.2\n")
        CLIPTokenizer(f"{d}/vocab.json", f"{d}/merges.txt", model_max_length=L).save_pretrained(d)

    def cfg(width, **kw):
        return CLIPTextConfig(vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width,
                              num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=L,
                              bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                              pad_token_id=vocab["<|endoftext|>"], **kw)
    tokenizer(f"{out}/tokenizer")
    CLIPTextModel(cfg(16)).save_pretrained(f"{out}/text_encoder")
    if layout == "sdxl":
        tokenizer(f"{out}/tokenizer_2")
        CLIPTextModelWithProjection(cfg(24, projection_dim=20)).save_pretrained(f"{out}/text_encoder_2")


def images(out):
    import csv
    from PIL import Image
    r = np.random.default_rng(1)
    os.makedirs(f"{out}/img", exist_ok=True)
    rows = []
    for i, (w, h, mode) in enumerate(SIZES):
        im = Image.fromarray(r.integers(0, 256, (h, w, 3), dtype=np.uint8))
        im = im.convert(mode) if mode != "P" else im.quantize(16)
        im.save(f"{out}/img/{i}.png")
        rows.append((f"img/{i}.png", CAPTIONS[i]))
    with open(f"{out}/list.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "caption"])
        w.writerows(rows)
    with open(f"{out}/test.jsonl", "w") as f:
        for a, b in rows[:3]:
            f.write(json.dumps({"file_name": a, "text": b}) + "\n")


def expected_pixels(path, res):
    """Shorter side to res (bicubic), center crop, [-1, 1]; and the SDXL time ids."""
    from PIL import Image
    im = Image.open(path).convert("RGB")
    w, h = im.size
    nw, nh = (res, round(h * res / w)) if w <= h else (round(w * res / h), res)
    im = im.resize((nw, nh), Image.BICUBIC)
    top, left = (nh - res) // 2, (nw - res) // 2
    x = np.asarray(im.crop((left, top, left + res, top + res)), np.float32).transpose(2, 0, 1) / 127.5 - 1
    return x, [h, w, top, left, res, res]


def check(path, d, layout, res):
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
    from transformers.utils import logging as tlog
    tlog.set_verbosity_error()  # encode_prompt's truncation warnings: the captions are cut on purpose
    torch.set_grad_enabled(False)
    res = int(res)
    n = len(SIZES)
    f = h5py.File(path, "r")
    sdxl = layout == "sdxl"
    D, P = (16 + 24, 20) if sdxl else (16, None)
    want = {"latents": (n, 4, res // 2, res // 2), "context": (n, L, D), "uncond_context": (L, D)}
    if sdxl:
        want.update({"pooled": (n, P), "time_ids": (n, 6), "uncond_pooled": (P,)})
    have = {}
    f.visititems(lambda k, o: have.__setitem__(k, o) if isinstance(o, h5py.Dataset) and "/" not in k else None)
    assert sorted(have) == sorted(want), (sorted(have), sorted(want))
    for k, s in want.items():
        assert f[k].shape == s and f[k].dtype == np.float32, (k, f[k].shape, f[k].dtype, s)
    assert f.attrs["layout"] == layout and f.attrs["resolution"] == res and f.attrs["scaling_factor"] == 0.5
    # latents: the VAE's posterior mean of the expected pixels x scaling_factor (0.5 here)
    vae = AutoencoderKL.from_pretrained(f"{d}/model/vae", low_cpu_mem_usage=False).eval()
    px, tids = zip(*(expected_pixels(f"{d}/img/{i}.png", res) for i in range(n)))
    lat = (vae.encode(torch.from_numpy(np.stack(px))).latent_dist.mean * 0.5).numpy()
    rel = lambda a, b: float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
    assert rel(f["latents"][()], lat) < 1e-5, ("latents", rel(f["latents"][()], lat))
    # text: the pipelines' encode_prompt on the same captions, called on a stand-in for the pipeline
    # (it reads only the tokenizers, text encoders and config)
    tok = CLIPTokenizer.from_pretrained(f"{d}/model/tokenizer")
    te = CLIPTextModel.from_pretrained(f"{d}/model/text_encoder").eval()
    if sdxl:
        me = types.SimpleNamespace(tokenizer=tok, text_encoder=te,
                                   tokenizer_2=CLIPTokenizer.from_pretrained(f"{d}/model/tokenizer_2"),
                                   text_encoder_2=CLIPTextModelWithProjection.from_pretrained(f"{d}/model/text_encoder_2").eval(),
                                   config=types.SimpleNamespace(force_zeros_for_empty_prompt=True))
        pe, npe, pp, npp = StableDiffusionXLPipeline.encode_prompt(me, CAPTIONS, device="cpu", num_images_per_prompt=1,
                                                                    do_classifier_free_guidance=True)
        assert rel(f["pooled"][()], pp.numpy()) < 1e-5, ("pooled", rel(f["pooled"][()], pp.numpy()))
        assert np.array_equal(f["uncond_pooled"][()], npp.numpy()[0]), "uncond_pooled"
        assert np.array_equal(f["time_ids"][()], np.array(tids, np.float32)), (f["time_ids"][()], tids)
        # by hand for two of them: 33x37 -> 32x36, crop 2 rows off the top; 90x45 -> 64x32, 16 columns off the left
        assert res != 32 or list(f["time_ids"][3]) == [37, 33, 2, 0, 32, 32], f["time_ids"][3]
        assert res != 32 or list(f["time_ids"][6]) == [45, 90, 0, 16, 32, 32], f["time_ids"][6]
    else:
        me = types.SimpleNamespace(tokenizer=tok, text_encoder=te)
        pe, npe = StableDiffusionPipeline.encode_prompt(me, CAPTIONS, device="cpu", num_images_per_prompt=1,
                                                        do_classifier_free_guidance=True)
    assert rel(f["context"][()], pe.numpy()) < 1e-5, ("context", rel(f["context"][()], pe.numpy()))
    # the empty prompt: SD-1.x its encoding, SDXL zeros (force_zeros_for_empty_prompt)
    assert rel(f["uncond_context"][()], npe.numpy()[0]) < 1e-5 or not np.abs(npe.numpy()).max(), "uncond_context"
    if sdxl:
        assert not np.abs(f["uncond_context"][()]).max()
    print(f"{path}: {', '.join(f'/{k} {list(s)}' for k, s in want.items())} as diffusers computes them")


def same(a, b):
    A, B = h5py.File(a, "r"), h5py.File(b, "r")

    def items(f):
        out = {}
        f.visititems(lambda k, o: out.__setitem__(k, o[()]) if isinstance(o, h5py.Dataset) else None)
        return out
    x, y = items(A), items(B)
    assert sorted(x) == sorted(y), (sorted(x), sorted(y))
    for k in x:
        assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), k
    assert dict(A.attrs) == dict(B.attrs), (dict(A.attrs), dict(B.attrs))
    print(f"{a} == {b}: {len(x)} datasets and the attributes")


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    {"models": models, "images": images, "check": check, "same": same}[cmd](*rest)
