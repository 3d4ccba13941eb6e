#!/usr/bin/env bash
# Student out: scripts/diffusers_student.py's load_student builds a diffusers
# UNet2DConditionModel from a student laptop-diff wrote (its config and removed
# metadata; removed layers as identity modules) and diffusers' forward on it equals
# `laptop-diff forward` on the same inputs within the reference tests' tolerance
# (3e-5 of the max magnitude), for
#  - a conv-projection model: a down resnet, a mid resnet, an up-block resnet and a
#    Transformer2DModel removed (plan's handcrafted student), and the same student after
#    one distillation step;
#  - a linear-projection model with 2 BasicTransformerBlocks per Transformer2DModel: an
#    UpBlock2D resnet and a down Transformer2DModel removed, and, where the binary
#    knows block candidates (prune.granularity = "block"), one BasicTransformerBlock too;
#  - the unpruned teacher (nothing removed);
#  - where the binary has SDXL's text-time conditioning: a text_time student and teacher (/pooled,
#    /time_ids in the inputs);
#  - the README's recipe: StableDiffusionPipeline.from_pretrained(folder, unet=load_student(...))
#    samples (a pipeline folder of tiny random parts);
#  - the reference fixtures' removed variants (tests/reference: diffusers with modules replaced by
#    make_fixtures.py), one of them a single BasicTransformerBlock: removed.out to 3e-5.
# Errors: a file without laptop-diff's metadata, a student with a tensor missing or one too
# many, a removed name that is no removable layer: exit 1 and a message naming it.
# Runs in the venv of scripts/setup.sh (SKIPPED without it). Args: BINARY SOURCE_DIR.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_venv
DS="$SRC/scripts/diffusers_student.py"
JOB="$SRC/jobs/fmnist_tiny.cfg"
"$MAKE_LATENTS" "$T/lat.h5" 8 4 4 16 16 8 16 >/dev/null || { echo "make_latents failed"; exit 1; }
LAT=(--set model.in_channels=4 --set model.out_channels=4 --set model.sample_size=16 --set data.source=hdf5
     --set data.path="$T/lat.h5" --set runtime.threads=1 --set prune.calib_samples=4 --set prune.batch=2
     --set prune.additivity_sets=0)
LIN=(--set 'model.block_out_channels=[8, 16, 16]' --set model.layers_per_block=2
     --set 'model.down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]'
     --set 'model.up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]'
     --set 'model.attention_head_dim=[2, 4, 4]' --set model.transformer_layers_per_block=2
     --set model.use_linear_projection=true)

# the inputs of `forward`: 3 rows, timesteps across the schedule
"$VPY" - "$T/in.h5" <<'PY' || { echo "inputs failed"; exit 1; }
import sys, h5py, numpy as np
r = np.random.default_rng(7)
with h5py.File(sys.argv[1], "w") as f:
    f["sample"] = r.standard_normal((3, 4, 16, 16)).astype(np.float32)
    f["timestep"] = np.array([3.0, 420.0, 999.0], np.float32)
    f["context"] = r.standard_normal((3, 8, 16)).astype(np.float32)
    # SDXL's added conditioning (models without it ignore these): pooled [3,20], time ids [3,6]
    f["pooled"] = r.standard_normal((3, 20)).astype(np.float32)
    f["time_ids"] = np.array([[512, 512, 0, 0, 512, 512], [600, 480, 44, 0, 512, 512], [32, 40, 0, 4, 32, 32]], np.float32)
PY

# student NAME LAYERS SETS...: init_model teacher + plan's handcrafted student in $T/NAME/
student() {
  local name=$1 layers=$2; shift 2
  mkdir -p "$T/$name"
  "$INIT_MODEL" "$JOB" "$T/$name/teacher.safetensors" 11 "${LAT[@]}" "$@" >/dev/null || { bad "$name: init_model"; return 1; }
  mpirun_n 1 "$BIN" plan "$JOB" "${LAT[@]}" "$@" --set model.weights="$T/$name/teacher.safetensors" \
    --set output.dir="$T/$name" --set "prune.layers=[$layers]" >"$T/$name/plan.log" 2>&1 ||
    { bad "$name: plan: $(tail -2 "$T/$name/plan.log")"; return 1; }
}
# same FILE WHAT: laptop-diff forward and diffusers on the exported student agree
same() {
  local st=$1 what=$2 d=${1%.safetensors}
  "$BIN" forward "$st" --inputs "$T/in.h5" --out "$d.c.h5" --set runtime.threads=1 >"$d.c.log" 2>&1 ||
    { bad "$what: laptop-diff forward: $(tail -2 "$d.c.log")"; return; }
  "$VPY" "$DS" "$st" --inputs "$T/in.h5" --out "$d.py.h5" --float64 >"$d.py.log" 2>&1 ||
    { bad "$what: diffusers_student.py: $(tail -3 "$d.py.log")"; return; }
  if "$VPY" - "$d.c.h5" "$d.py.h5" >"$d.cmp" 2>&1 <<'PY'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r")["out"][()] for p in sys.argv[1:3])
assert a.shape == b.shape and a.dtype == b.dtype == np.float32, (a.shape, b.shape, a.dtype, b.dtype)
err = float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())
print(f"max error {err:.3g} of the max magnitude (tolerance 3e-5)")
sys.exit(0 if err <= 3e-5 else 1)
PY
  then ok; echo "$what: $(head -1 "$d.py.log" | sed 's/^[^:]*: //'); $(cat "$d.cmp")"
  else bad "$what: $(cat "$d.cmp")"; fi
}

student conv "down_blocks.0.resnets.0, mid_block.resnets.0, up_blocks.0.attentions.0, up_blocks.0.resnets.1" &&
  same "$T/conv/student_init.safetensors" "conv, 4 removed" &&
  same "$T/conv/teacher.safetensors" "conv teacher"
# the same student after a distillation step: what a user exports
mpirun_n 1 "$BIN" distill "$JOB" "${LAT[@]}" --set model.weights="$T/conv/teacher.safetensors" --set output.dir="$T/conv" \
  --set train.steps=1 --set train.batch=2 --set distill.activation_interval=0 >"$T/conv/distill.log" 2>&1 &&
  same "$T/conv/student.safetensors" "conv, distilled" || bad "distill: $(tail -2 "$T/conv/distill.log")"

student lin "up_blocks.0.resnets.1, down_blocks.1.attentions.0" "${LIN[@]}" &&
  same "$T/lin/student_init.safetensors" "linear, 2 removed"
# a single BasicTransformerBlock (prune.granularity = "block") where the binary has block candidates
BLK=mid_block.attentions.0.transformer_blocks.1
if "$BIN" info "$JOB" --set prune.granularity=block >"$T/gran.log" 2>&1; then
  # (both blocks of one stack too: its norm, proj_in and proj_out stay)
  student blk "$BLK, up_blocks.1.attentions.2.transformer_blocks.0, up_blocks.1.attentions.2.transformer_blocks.1, up_blocks.2.resnets.1" \
      "${LIN[@]}" --set prune.granularity=block &&
    same "$T/blk/student_init.safetensors" "linear, transformer blocks removed" &&
    { grep -q "$BLK" "$T/blk/student_init.py.log" && ok || bad "block student: $BLK not listed as removed"; }
else
  echo "(this binary has no prune.granularity ($(grep -o 'unknown key[^;]*' "$T/gran.log" | head -1)): block removal not run)"
fi

# SDXL's text-time conditioning (add_time_proj + add_embedding), where the binary has it (issue #12
# item 1): a text_time student with a Transformer2DModel and an up-block resnet removed
TT=(--set 'model.addition_embed_type="text_time"' --set model.addition_time_embed_dim=8
    --set model.projection_class_embeddings_input_dim=68 --set model.transformer_layers_per_block=2)
if "$BIN" info "$JOB" "${LAT[@]}" "${TT[@]}" >"$T/tt.log" 2>&1; then
  "$VPY" - "$T/lat_tt.h5" <<'PY' || bad "text_time data"
import sys, h5py, numpy as np  # make_latents' shapes plus the added conditioning plan reads
r = np.random.default_rng(3)
with h5py.File(sys.argv[1], "w") as f:
    f["latents"] = r.standard_normal((8, 4, 16, 16)).astype(np.float32)
    f["context"] = r.standard_normal((8, 8, 16)).astype(np.float32)
    f["pooled"] = r.standard_normal((8, 20)).astype(np.float32)
    f["time_ids"] = np.tile(np.array([64, 64, 0, 0, 64, 64], np.float32), (8, 1))
PY
  student tt "up_blocks.0.attentions.1, up_blocks.1.resnets.1" "${TT[@]}" --set data.path="$T/lat_tt.h5" &&
    same "$T/tt/student_init.safetensors" "text_time, 2 removed" && same "$T/tt/teacher.safetensors" "text_time teacher"
else
  echo "(this binary has no text-time conditioning ($(grep -o 'unknown key [^ ]*' "$T/tt.log" | head -1)): that part not run)"
fi

# diffusers' own removed variants (tests/reference): each fixture's pruned checkpoint through
# load_student equals the output make_fixtures.py stored for it (removed.out), among them a single
# BasicTransformerBlock (xl: mid_block.attentions.0.transformer_blocks.1) and an up-block resnet
IO="$SRC/tests/cli/forward_io.py"; FX="$SRC/tests/reference/fixtures"
for m in conv linear xl; do
  /usr/bin/python3 "$IO" prune "$FX/${m}_weights.safetensors" "$FX/${m}_io.safetensors" "$T/fx_$m.safetensors" &&
    /usr/bin/python3 "$IO" make "$FX/${m}_io.safetensors" "$T/fx_in_$m.h5" || { bad "$m fixture: making the student"; continue; }
  "$VPY" "$DS" "$T/fx_$m.safetensors" --inputs "$T/fx_in_$m.h5" --out "$T/fx_out_$m.h5" --float64 >"$T/fx_$m.log" 2>&1 ||
    { bad "$m fixture: diffusers_student.py: $(tail -2 "$T/fx_$m.log")"; continue; }
  if /usr/bin/python3 "$IO" compare "$T/fx_out_$m.h5" "$FX/${m}_io.safetensors" --removed >"$T/fx_$m.cmp" 2>&1; then
    ok; echo "$m fixture, removed $(sed -n 's/.*removed: //p' "$T/fx_$m.log"): $(cat "$T/fx_$m.cmp")"
  else bad "$m fixture vs diffusers' removed variant: $(cat "$T/fx_$m.cmp")"; fi
done

# the README's recipe: a diffusers pipeline folder (here of tiny random parts: prepare_io.py's VAE,
# CLIP text encoder and tokenizer, context [8,16] as the student's) loaded with the student as its
# U-Net, sampling 2 DDIM steps
"$VPY" "$SRC/tests/cli/prepare_io.py" models "$T/pipe" sd >/dev/null 2>&1 || bad "the tiny pipeline parts"
"$VPY" - "$T" "$SRC/scripts" >"$T/pipe.log" 2>&1 <<'PY' && ok || bad "pipeline with the student: $(tail -4 "$T/pipe.log")"
import sys
import numpy as np, torch
T = sys.argv[1]
sys.path.insert(0, sys.argv[2])
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
from transformers import CLIPTextModel, CLIPTokenizer
from diffusers_student import load_student, patch_torch1_baddbmm
if torch.__version__.startswith("1."):
    patch_torch1_baddbmm()
# a pipeline folder as a real one is laid out, with the teacher (nothing removed, so it round-trips)
StableDiffusionPipeline(vae=AutoencoderKL.from_pretrained(f"{T}/pipe/vae"), text_encoder=CLIPTextModel.from_pretrained(f"{T}/pipe/text_encoder"),
                        tokenizer=CLIPTokenizer.from_pretrained(f"{T}/pipe/tokenizer"), unet=load_student(f"{T}/conv/teacher.safetensors"),
                        scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
                        requires_safety_checker=False).save_pretrained(f"{T}/pipe")
# the recipe
unet = load_student(f"{T}/conv/student.safetensors")
pipe = StableDiffusionPipeline.from_pretrained(f"{T}/pipe", unet=unet, safety_checker=None)
assert pipe.unet is unet
img = pipe("a photo of a cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
assert img.shape == (1, 32, 32, 3) and np.isfinite(img).all(), img.shape
print("pipeline image", img.shape)
PY

# errors: load_student raises ValueError / FileNotFoundError naming the file and what is wrong
# (one interpreter for all: each start costs seconds), and the command exits 1 with the message
S="$T/conv/student_init.safetensors"
"$VPY" - "$S" "$T" "$SRC/scripts" >"$T/errors.log" 2>&1 <<'PY' && ok || bad "load_student errors: $(tail -5 "$T/errors.log")"
import sys
import torch
from safetensors import safe_open
from safetensors.torch import save_file
src, T = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
from diffusers_student import load_student
with safe_open(src, framework="pt") as f:
    meta = f.metadata(); t = {k: f.get_tensor(k) for k in f.keys()}
less = dict(t); del less["conv_out.bias"]
cases = [("nometa", t, None, 'nometa.safetensors: no "config" metadata'),
         ("less", less, meta, "1 parameters of the network are not in the file (conv_out.bias)"),
         ("more", {**t, "extra.weight": torch.zeros(2)}, meta, "1 tensors of the file are not parameters of it (extra.weight)"),
         ("shape", {**t, "conv_out.bias": torch.zeros(5)}, meta, "conv_out.bias is [5] in the file, the network's is [4]"),
         ("notcand", t, {**meta, "removed": meta["removed"] + ",up_blocks.1.resnets.0"},
          '"up_blocks.1.resnets.0" gets a hidden state of 16 channels and returns 8: not a removable layer'),
         ("noname", t, {**meta, "removed": meta["removed"] + ",mid_block.resnets.7"},
          '"mid_block.resnets.7" is not a layer of this architecture'),
         ("conv", t, {**meta, "removed": meta["removed"] + ",conv_in"}, '"conv_in" is a Conv2d, not a removable layer')]
for name, tensors, m, want in cases:
    path = f"{T}/{name}.safetensors"
    save_file(tensors, path, m)
    try:
        load_student(path)
    except ValueError as e:
        assert want in str(e) and path in str(e), (name, str(e))
    else:
        raise AssertionError(f"{name}: loaded")
try:
    load_student(f"{T}/none.safetensors")
except FileNotFoundError as e:
    assert "none.safetensors: no such file" in str(e), str(e)
print(len(cases) + 1, "errors as expected")
PY
"$VPY" "$DS" "$T/less.safetensors" >"$T/cli_err.log" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -qF "diffusers_student.py: $T/less.safetensors: the file does not match" "$T/cli_err.log" && ok ||
  bad "command on a broken student: exit $rc: $(tail -2 "$T/cli_err.log")"

finish test_export
