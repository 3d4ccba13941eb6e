#!/usr/bin/env bash
# Data in: scripts/prepare_data.py with tiny random models built from configs (no downloads):
# an AutoencoderKL, CLIP text encoder(s) and a character-level CLIP tokenizer (prepare_io.py).
#  - SD-1.x layout (CSV listing, a JSONL test split): /latents, /context, /uncond_context and
#    /test/*; SDXL layout: also /pooled, /time_ids, /uncond_pooled; shapes and float32, and the
#    values diffusers' own code gives on the same inputs (encode_prompt of the pipelines, the VAE's
#    posterior mean x scaling_factor, the time ids of the resize + crop)
#  - resumable: --max-shards 1 stops with exit 3 and no output file, a stale half-written shard is
#    ignored, the second run finishes, and the file equals a straight run's bit for bit
#  - the C reader accepts the SD-layout file: `laptop-diff score` with data.source = "hdf5" on a
#    tiny model of the same context shape (the SDXL file: where the binary knows text-time
#    conditioning)
#  - bad input: a missing image, a malformed CSV or JSONL line (file and line number), a model
#    folder without a part, resuming with other arguments, an image that does not decode (at its
#    shard, the shards before it kept): exit 1, a message, no output file
# Runs in the venv of scripts/setup.sh (SKIPPED without it). Args: BINARY SOURCE_DIR.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_venv PIL tqdm
PD="$SRC/scripts/prepare_data.py"
IO="$SRC/tests/cli/prepare_io.py"
"$VPY" "$IO" images "$T" && "$VPY" "$IO" models "$T/model" sd && "$VPY" "$IO" models "$T/xl/model" sdxl &&
  "$VPY" "$IO" images "$T/xl" || { echo "making the tiny models failed"; exit 1; }
ARGS=(--resolution 32 --shard-size 3 --batch-size 2 --quiet)
# prep NAME args...: exit status in $rc, output in $T/NAME.log
prep() { local name=$1; shift; "$VPY" "$PD" "$@" >"$T/$name.log" 2>&1; rc=$?; }
check() {  # check NAME OUT DIR LAYOUT
  if "$VPY" "$IO" check "$2" "$3" "$4" 32 >"$T/$1.chk" 2>&1; then ok; tail -1 "$T/$1.chk"; else bad "$1: $(tail -3 "$T/$1.chk")"; fi
}

# SD-1.x layout, straight
prep sd "$T/list.csv" --model "$T/model" --test-listing "$T/test.jsonl" --out "$T/sd.h5" "${ARGS[@]}"
[ $rc -eq 0 ] && [ -f "$T/sd.h5" ] && [ ! -e "$T/sd.h5.parts" ] && [ ! -e "$T/sd.h5.tmp" ] && ok || bad "sd: exit $rc: $(tail -3 "$T/sd.log")"
check sd "$T/sd.h5" "$T" sd
"$VPY" -c "
import sys, h5py
f = h5py.File(sys.argv[1], 'r')
assert f['test/latents'].shape == (3, 4, 16, 16) and f['test/context'].shape == (3, 8, 16), list(f['test'])
assert (f['test/latents'][()] == f['latents'][:3]).all() and (f['test/context'][()] == f['context'][:3]).all()
" "$T/sd.h5" && ok || bad "sd: /test/* is not the JSONL listing's 3 rows"

# resumed: one shard, a stale temp file of the next, then the rest
prep r1 "$T/list.csv" --model "$T/model" --test-listing "$T/test.jsonl" --out "$T/res.h5" "${ARGS[@]}" --max-shards 1
[ $rc -eq 3 ] && grep -q "stopped after 1 shards (--max-shards); 3 of 10 rows done" "$T/r1.log" && [ ! -e "$T/res.h5" ] &&
  [ -f "$T/res.h5.parts/train_00000.h5" ] && [ ! -e "$T/res.h5.parts/train_00001.h5" ] && ok || bad "max-shards: exit $rc: $(tail -2 "$T/r1.log")"
printf 'half a shard' >"$T/res.h5.parts/train_00001.h5.tmp"  # a run killed while writing it
prep r2 "$T/list.csv" --model "$T/model" --test-listing "$T/test.jsonl" --out "$T/res.h5" "${ARGS[@]}"
[ $rc -eq 0 ] && grep -q "resuming: 3 of 10 rows already in" "$T/r2.log" && [ ! -e "$T/res.h5.parts" ] && ok || bad "resume: exit $rc: $(tail -2 "$T/r2.log")"
"$VPY" "$IO" same "$T/res.h5" "$T/sd.h5" >"$T/same.log" 2>&1 && ok || bad "resumed file differs: $(tail -2 "$T/same.log")"

# SDXL layout: both encoders, pooled, time ids
prep xl "$T/xl/list.csv" --model "$T/xl/model" --out "$T/xl.h5" "${ARGS[@]}"
[ $rc -eq 0 ] && ok || bad "sdxl: exit $rc: $(tail -3 "$T/xl.log")"
check xl "$T/xl.h5" "$T/xl" sdxl
# the parts one by one instead of a model folder
prep parts "$T/xl/list.csv" --vae "$T/xl/model/vae" --text-encoder "$T/xl/model/text_encoder" --tokenizer "$T/xl/model/tokenizer" \
  --text-encoder-2 "$T/xl/model/text_encoder_2" --tokenizer-2 "$T/xl/model/tokenizer_2" --out "$T/xl2.h5" "${ARGS[@]}"
[ $rc -eq 0 ] && "$VPY" - "$T/xl2.h5" "$T/xl.h5" <<'PY' && ok || bad "sdxl from --vae, --text-encoder, ...: exit $rc: $(tail -2 "$T/parts.log")"
import sys, h5py, numpy as np  # the same data; only the "inputs" attribute (the part folders) differs
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert sorted(a) == sorted(b) and all(np.array_equal(a[k][()], b[k][()]) for k in b)
PY

# the C reader: laptop-diff score on the SD-layout file (context [8,16], latents [4,16,16])
JOB="$SRC/jobs/fmnist_tiny.cfg"
C=(--set model.in_channels=4 --set model.out_channels=4 --set model.sample_size=16 --set runtime.threads=1
   --set data.source=hdf5 --set data.path="$T/sd.h5" --set prune.calib_samples=4 --set prune.batch=2 --set prune.additivity_sets=0)
"$INIT_MODEL" "$JOB" "$T/teacher.safetensors" 3 "${C[@]}" >/dev/null || bad "init_model"
mpirun_n 1 "$BIN" score "$JOB" "${C[@]}" --set model.weights="$T/teacher.safetensors" --set output.dir="$T/score" >"$T/score.log" 2>&1 &&
  grep -q "score: wrote /prune/candidates" "$T/score.log" && ok || bad "laptop-diff score on the prepared file: $(tail -3 "$T/score.log")"
# The SDXL-layout file, where this binary has text-time conditioning (issue #12 item 1): cross_attention_dim
# 16 + 24, pooled 20, time ids 6 x addition_time_embed_dim 8
XL=(--set model.cross_attention_dim=40 --set 'model.addition_embed_type="text_time"' --set model.addition_time_embed_dim=8
    --set model.projection_class_embeddings_input_dim=68)
if "$BIN" info "$JOB" "${C[@]}" "${XL[@]}" >"$T/xlinfo.log" 2>&1; then
  "$INIT_MODEL" "$JOB" "$T/xl_teacher.safetensors" 3 "${C[@]}" "${XL[@]}" >/dev/null || bad "init_model (text-time)"
  mpirun_n 1 "$BIN" score "$JOB" "${C[@]}" "${XL[@]}" --set data.path="$T/xl.h5" --set model.weights="$T/xl_teacher.safetensors" \
    --set output.dir="$T/xlscore" >"$T/xlscore.log" 2>&1 && grep -q "score: wrote /prune/candidates" "$T/xlscore.log" && ok ||
    bad "laptop-diff score on the SDXL-layout file: $(tail -3 "$T/xlscore.log")"
else
  echo "(this binary has no text-time conditioning ($(grep -o 'unknown key [^ ]*' "$T/xlinfo.log" | head -1)): the SDXL file is not read by C here)"
fi

# bad input: exit 1, the message, no output file, no shard folder for a run that never started
fail() {  # fail NAME PATTERN args...
  local name=$1 pat=$2; shift 2
  rm -rf "$T/bad.h5" "$T/bad.h5.parts"
  prep "$name" "$@" --out "$T/bad.h5" "${ARGS[@]}"
  [ $rc -eq 1 ] && grep -qF -- "$pat" "$T/$name.log" && [ ! -e "$T/bad.h5" ] && [ ! -e "$T/bad.h5.parts" ] && ok ||
    bad "$name: exit $rc, wanted 1 and '$pat': $(tail -2 "$T/$name.log")"
}
{ head -3 "$T/list.csv"; echo "img/9.png,not there"; } >"$T/missing.csv"
fail missing "missing.csv:4: image img/9.png not found" "$T/missing.csv" --model "$T/model"
{ head -2 "$T/list.csv"; echo "img/2.png,a dog, unquoted"; } >"$T/fields.csv"
fail fields "fields.csv:3: 3 fields, the header has 2 (quote a caption that holds a comma)" "$T/fields.csv" --model "$T/model"
printf 'name,caption\nimg/0.png,cat\n' >"$T/header.csv"
fail header 'header.csv:1: the header name,caption has no "file" column' "$T/header.csv" --model "$T/model"
{ head -1 "$T/test.jsonl"; echo '{"file": "img/1.png", "caption": 3}'; } >"$T/type.jsonl"
fail type 'type.jsonl:2: "caption" must be a string' "$T/type.jsonl" --model "$T/model"
{ head -2 "$T/test.jsonl"; echo '{"file": "img/1.png",'; } >"$T/json.jsonl"
fail json "json.jsonl:3: not a JSON object" "$T/json.jsonl" --model "$T/model"
mkdir -p "$T/nomodel" && cp -r "$T/model/vae" "$T/model/tokenizer" "$T/nomodel/"
fail part "$T/nomodel: no text_encoder/ (a diffusers model folder has vae/, text_encoder/, tokenizer/" "$T/list.csv" --model "$T/nomodel"
fail listing "nothere.csv: no such listing file" "$T/nothere.csv" --model "$T/model"
"$VPY" "$PD" "$T/list.csv" --model "$T/model" --out "$T/nodir/x.h5" "${ARGS[@]}" >"$T/nodir.log" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -qF "the folder $T/nodir does not exist" "$T/nodir.log" && [ ! -e "$T/nodir" ] && ok || bad "missing output folder: exit $rc: $(tail -2 "$T/nodir.log")"
printf '\xef\xbb\xbffile,caption\nimg/0.png,cat\n' >"$T/bom.csv"  # a spreadsheet's export: byte-order mark
prep bom "$T/bom.csv" --model "$T/model" --out "$T/bom.h5" "${ARGS[@]}"
[ $rc -eq 0 ] && [ -f "$T/bom.h5" ] && ok || bad "CSV with a byte-order mark: exit $rc: $(tail -2 "$T/bom.log")"
# an image that does not decode: found while encoding its shard, named with its line; the shard before it kept
printf 'not a png' >"$T/img/junk.png"
{ cat "$T/list.csv"; echo "img/junk.png,junk"; } >"$T/junk.csv"
rm -rf "$T/bad.h5" "$T/bad.h5.parts"
prep junk "$T/junk.csv" --model "$T/model" --out "$T/bad.h5" "${ARGS[@]}"
[ $rc -eq 1 ] && grep -qF "junk.csv:9: cannot read image $T/img/junk.png" "$T/junk.log" && [ ! -e "$T/bad.h5" ] &&
  [ -f "$T/bad.h5.parts/train_00001.h5" ] && [ ! -e "$T/bad.h5.parts/train_00002.h5" ] && ok || bad "undecodable image: exit $rc: $(tail -2 "$T/junk.log")"
# resuming with another resolution: refused, the finished shards kept
prep o1 "$T/list.csv" --model "$T/model" --out "$T/other.h5" "${ARGS[@]}" --max-shards 1
"$VPY" "$PD" "$T/list.csv" --model "$T/model" --out "$T/other.h5" --resolution 64 --shard-size 3 --quiet >"$T/o2.log" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -qF "other.h5.parts: shards of another run" "$T/o2.log" && [ -f "$T/other.h5.parts/train_00000.h5" ] &&
  [ ! -e "$T/other.h5" ] && ok || bad "resume with another resolution: exit $rc: $(tail -2 "$T/o2.log")"

finish test_prepare_data
