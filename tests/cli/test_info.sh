#!/usr/bin/env bash
# `laptop-diff info` end to end: SD-1.5's numbers, checkpoints, and clean
# errors (message + nonzero exit) for bad input. Args: BINARY SOURCE_DIR.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"

# expect RC PATTERN -- command...: exit code and a pattern in stdout+stderr
expect() {
  local want_rc=$1 pat=$2; shift 3
  "$@" >"$T/out" 2>&1; local rc=$?
  if [ "$rc" -ne "$want_rc" ]; then bad "exit $rc (wanted $want_rc): $*"; sed 's/^/    /' "$T/out" | head -5; return; fi
  if ! grep -qF -- "$pat" "$T/out"; then bad "no '$pat' in output of: $*"; sed 's/^/    /' "$T/out" | head -5; return; fi
  ok
}

expect 0 "Parameters: 859,520,964 in 686 tensors" -- "$BIN" info "$SRC/jobs/sd15.cfg"
expect 0 "Candidates: 34 (18 resnets, 16 attentions)" -- "$BIN" info "$SRC/jobs/sd15.cfg"
expect 0 "up_blocks.3.attentions.2" -- "$BIN" info "$SRC/jobs/sd15.cfg"
# SDXL-base (diffusers 0.27.2: 2,567,463,684 parameters in 1,680 tensors), text_time conditioning included
expect 0 "Parameters: 2,567,463,684 in 1680 tensors" -- "$BIN" info "$SRC/jobs/sdxl.cfg"
expect 0 "add_embedding              TimestepEmbedding          2 linear         5,245,440" -- "$BIN" info "$SRC/jobs/sdxl.cfg"
expect 0 "Candidates: 24 (13 resnets, 11 attentions)" -- "$BIN" info "$SRC/jobs/sdxl.cfg"
expect 0 "Candidates by prune.granularity: 24 (layer), 83 (block)" -- "$BIN" info "$SRC/jobs/sdxl.cfg"
expect 0 "Parameters: 2,567,463,684 in 1680 tensors" -- "$BIN" info "$SRC/jobs/sdxl_smoke.cfg"
expect 0 "Parameters: 2,562,218,244 in 1676 tensors" -- "$BIN" info "$SRC/jobs/sdxl.cfg" --set model.addition_embed_type=\"\"
expect 1 "model.projection_class_embeddings_input_dim = 1536 must exceed 6 * model.addition_time_embed_dim = 1536" -- "$BIN" info "$SRC/jobs/sdxl.cfg" --set model.projection_class_embeddings_input_dim=1536
expect 1 "--set model.addition_time_embed_dim=255: model.addition_time_embed_dim" -- "$BIN" info "$SRC/jobs/sdxl.cfg" --set model.addition_time_embed_dim=255
sed 's/addition_time_embed_dim = 256;/addition_time_embed_dim = 255;/' "$SRC/jobs/sdxl.cfg" > "$T/odd.cfg"
expect 1 "$T/odd.cfg:25: model.addition_time_embed_dim" -- "$BIN" info "$T/odd.cfg"
sed 's/addition_embed_type = "text_time";/addition_embed_type = "text_image";/' "$SRC/jobs/sdxl.cfg" > "$T/kind.cfg"
expect 1 "$T/kind.cfg:24: model.addition_embed_type" -- "$BIN" info "$T/kind.cfg"
# a diffusers unet/ folder (config.json + diffusion_pytorch_model.safetensors), the text_time fixture's
mkdir -p "$T/unet" && cp "$SRC/tests/reference/fixtures/xlt_weights.safetensors" "$T/unet/diffusion_pytorch_model.safetensors"
/usr/bin/python3 - "$SRC/tests/reference/fixtures/xlt_weights.safetensors" "$T/unet/config.json" <<'PY' || bad "config.json from the fixture"
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    meta = json.loads(f.read(n))["__metadata__"]
open(sys.argv[2], "w").write(meta["config"])
PY
expect 0 "Parameters: 214,992 in 840 tensors" -- "$BIN" info "$T/unet"
expect 0 "add_embedding" -- "$BIN" info "$T/unet"
mkdir -p "$T/nounet"
expect 1 "$T/nounet: a folder without diffusion_pytorch_model.safetensors" -- "$BIN" info "$T/nounet"
expect 0 "Parameters: 201,275 in 496 tensors" -- "$BIN" info "$SRC/tests/reference/fixtures/conv_weights.safetensors"
expect 0 "Candidates: 24" -- "$BIN" info "$SRC/tests/reference/fixtures/conv.cfg"
expect 0 "layers_per_block 1" -- "$BIN" info "$SRC/jobs/tiny.cfg" --set model.layers_per_block=1
expect 1 "wrong_type.cfg:4: model.norm_num_groups" -- "$BIN" info "$SRC/tests/unit/data/config/wrong_type.cfg"
expect 1 "unknown key" -- "$BIN" info "$SRC/jobs/sd15.cfg" --set model.bogus=1
expect 1 "$T/none.safetensors" -- "$BIN" info "$T/none.safetensors"
printf 'this is not a safetensors file at all' > "$T/junk.safetensors"
expect 1 "$T/junk.safetensors" -- "$BIN" info "$T/junk.safetensors"
expect 1 "cannot read the job file" -- "$BIN" info "$T/missing.cfg"
expect 2 "unknown command" -- "$BIN" frobnicate "$SRC/jobs/sd15.cfg"
expect 2 "needs a JOB.cfg" -- "$BIN" info
expect 0 "| model | block_out_channels |" -- "$BIN" config-reference

finish test_info
