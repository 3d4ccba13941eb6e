#!/usr/bin/env bash
# `laptop-diff forward` end to end on the diffusers reference fixtures
# (tests/reference): /out and the taps match diffusers' stored outputs to
# test_reference.c's tolerance for all four models (xlt: SDXL's text_time
# conditioning, /pooled and /time_ids inputs), a pruned checkpoint matches
# diffusers' removed variant, a diffusers unet/ folder loads (F32, and F16 under
# the fp16 name bit for bit as its F16-rounded F32 weights), float64 and integer
# inputs give the float32 result bit for bit, a batch of several chunks matches
# row by row; malformed inputs and outputs each give a clear error, a nonzero
# exit and no output file (an existing one stays as it was). Args: BINARY SOURCE_DIR.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py
PY=/usr/bin/python3
IO="$SRC/tests/cli/forward_io.py"
FX="$SRC/tests/reference/fixtures"
# tiny U-Nets: more threads only add OpenMP barriers (run passes runtime.threads=1)

# run NAME -- forward args...: log in $T/NAME.log, exit status in $rc
run() { local name=$1; shift 2; "$BIN" forward "$@" --set runtime.threads=1 >"$T/$name.log" 2>&1; rc=$?; }
# check NAME WHAT -- python args: the helper's verdict
check() {
  local name=$1 what=$2; shift 3
  if $PY "$IO" "$@" >"$T/$name.cmp" 2>&1; then ok; else bad "$what: $(cat "$T/$name.cmp")"; fi
}

for m in conv linear xl xlt; do
  $PY "$IO" make "$FX/${m}_io.safetensors" "$T/in_$m.h5"
  run $m -- "$FX/${m}_weights.safetensors" --inputs "$T/in_$m.h5" --out "$T/out_$m.h5" --taps
  [ $rc -eq 0 ] && ok || { bad "$m: forward exited $rc"; sed 's/^/    /' "$T/$m.log" | head -5; continue; }
  grep -q "forward: 3 samples" "$T/$m.log" && ok || bad "$m: no summary line: $(head -3 "$T/$m.log")"
  check $m "$m: /out and taps vs diffusers" -- compare "$T/out_$m.h5" "$FX/${m}_io.safetensors" --taps
  [ ! -e "$T/out_$m.h5.tmp" ] && ok || bad "$m: the temp file was left behind"
done

# float64 inputs, integer timesteps: the same float32 values, so the same bits
$PY "$IO" make "$FX/conv_io.safetensors" "$T/in64.h5" --float64 --int-timestep
run f64 -- "$FX/conv_weights.safetensors" --inputs "$T/in64.h5" --out "$T/out64.h5"
[ $rc -eq 0 ] && ok || bad "float64 inputs: exit $rc: $(head -3 "$T/f64.log")"
check f64 "float64 vs float32 inputs" -- same "$T/out64.h5" "$T/out_conv.h5"

# 9 rows: two full chunks and a partial one, each row as diffusers'
$PY "$IO" make "$FX/linear_io.safetensors" "$T/in9.h5" --repeat 3
run r9 -- "$FX/linear_weights.safetensors" --inputs "$T/in9.h5" --out "$T/out9.h5" --taps
[ $rc -eq 0 ] && ok || bad "9 rows: exit $rc: $(head -3 "$T/r9.log")"
check r9 "9 rows in chunks vs diffusers" -- compare "$T/out9.h5" "$FX/linear_io.safetensors" --taps --repeat 3

# a pruned checkpoint (layers absent, "removed" metadata) against diffusers' removed variant
for m in conv linear; do
  $PY "$IO" prune "$FX/${m}_weights.safetensors" "$FX/${m}_io.safetensors" "$T/${m}_pruned.safetensors"
  run pr_$m -- "$T/${m}_pruned.safetensors" --inputs "$T/in_$m.h5" --out "$T/out_pr_$m.h5" --taps
  [ $rc -eq 0 ] && ok || bad "$m pruned: exit $rc: $(head -3 "$T/pr_$m.log")"
  check pr_$m "$m pruned vs diffusers' removed variant" -- compare "$T/out_pr_$m.h5" "$FX/${m}_io.safetensors" --taps --removed
done

# a diffusers unet/ folder: weights without metadata, the architecture from config.json
$PY "$IO" unetdir "$FX/xl_weights.safetensors" "$T/unet"
run dir -- "$T/unet" --inputs "$T/in_xl.h5" --out "$T/out_dir.h5"
[ $rc -eq 0 ] && ok || bad "unet folder: exit $rc: $(head -3 "$T/dir.log")"
check dir "unet folder vs diffusers" -- compare "$T/out_dir.h5" "$FX/xl_io.safetensors"
mkdir -p "$T/pipe" && mv "$T/unet" "$T/pipe/unet"  # a pipeline folder: its unet/
run pipe -- "$T/pipe/" --inputs "$T/in_xl.h5" --out "$T/out_pipe.h5"
[ $rc -eq 0 ] && ok || bad "pipeline folder: exit $rc: $(head -3 "$T/pipe.log")"
check pipe "pipeline folder vs unet folder" -- same "$T/out_pipe.h5" "$T/out_dir.h5"

# fail NAME RC PATTERN -- forward args: exit RC, PATTERN in the output, no $T/bad.h5 (or .tmp)
fail() {
  local name=$1 want=$2 pat=$3; shift 4
  rm -f "$T/bad.h5" "$T/bad.h5.tmp"
  "$BIN" forward "$@" >"$T/$name.log" 2>&1; local rc=$?
  if [ $rc -ne "$want" ]; then bad "$name: exit $rc (wanted $want)"; sed 's/^/    /' "$T/$name.log" | head -5; return; fi
  grep -qF -- "$pat" "$T/$name.log" && ok || { bad "$name: no '$pat' in: $(head -3 "$T/$name.log")"; return; }
  [ ! -e "$T/bad.h5" ] && [ ! -e "$T/bad.h5.tmp" ] && ok || bad "$name: an output file was left"
}
W="$FX/conv_weights.safetensors"
$PY "$IO" make "$FX/conv_io.safetensors" "$T/no_t.h5" --drop timestep
fail no_timestep 1 "no_t.h5: no dataset /timestep (expected the diffusion timesteps [B])" -- "$W" --inputs "$T/no_t.h5" --out "$T/bad.h5"
$PY "$IO" make "$FX/conv_io.safetensors" "$T/no_c.h5" --drop context
fail no_context 1 "no_c.h5: no dataset /context" -- "$W" --inputs "$T/no_c.h5" --out "$T/bad.h5"
$PY "$IO" make "$FX/conv_io.safetensors" "$T/c3.h5" --channels 3
fail wrong_c 1 "c3.h5: /sample is [3,3,16,16] but the model $W takes in_channels = 4" -- "$W" --inputs "$T/c3.h5" --out "$T/bad.h5"
$PY "$IO" make "$FX/conv_io.safetensors" "$T/t2.h5" --timesteps 2
fail b_mismatch 1 "t2.h5: /timestep is [2] but /sample is [3,4,16,16]" -- "$W" --inputs "$T/t2.h5" --out "$T/bad.h5"
# D: the linear model's inputs (D = 12) are fine; a context of another width is not
/usr/bin/python3 -c "
import h5py, numpy as np
with h5py.File('$T/d7.h5', 'w') as f:
    f['sample'] = np.zeros((2, 4, 16, 16), np.float32); f['timestep'] = np.array([1.0, 2.0]); f['context'] = np.zeros((2, 5, 7))"
fail wrong_d 1 "d7.h5: /context is [2,5,7] but the model $W has cross_attention_dim = 12" -- "$W" --inputs "$T/d7.h5" --out "$T/bad.h5"
/usr/bin/python3 -c "
import h5py, numpy as np
with h5py.File('$T/hw.h5', 'w') as f:
    f['sample'] = np.zeros((1, 4, 16, 10), np.float32); f['timestep'] = np.array([1.0]); f['context'] = np.zeros((1, 5, 12))"
fail wrong_hw 1 "hw.h5: /sample is [1,4,16,10] but the model $W downsamples 2 times: H and W must be multiples of 4" -- "$W" --inputs "$T/hw.h5" --out "$T/bad.h5"
$PY "$IO" make "$FX/conv_io.safetensors" "$T/nan.h5" --nan --repeat 2
fail nan 1 "nan.h5: /sample row 5 holds a non-finite value" -- "$W" --inputs "$T/nan.h5" --out "$T/bad.h5"
printf 'this is not an HDF5 file' >"$T/junk.h5"
fail not_hdf5 1 "junk.h5: not an HDF5 file" -- "$W" --inputs "$T/junk.h5" --out "$T/bad.h5"
fail missing_in 1 "missing.h5: cannot open the inputs" -- "$W" --inputs "$T/missing.h5" --out "$T/bad.h5"
fail missing_model 1 "none.safetensors" -- "$T/none.safetensors" --inputs "$T/in_conv.h5" --out "$T/bad.h5"
mkdir -p "$T/empty"  # a folder without a U-Net: the file looked for is named
fail empty_dir 1 "$T/empty: a folder without diffusion_pytorch_model.safetensors, diffusion_pytorch_model.fp16.safetensors or a sharded" -- "$T/empty" --inputs "$T/in_xl.h5" --out "$T/bad.h5"
# text_time (xlt): the added conditioning is required and shape-checked
WX="$FX/xlt_weights.safetensors"
$PY "$IO" make "$FX/xlt_io.safetensors" "$T/no_pool.h5" --drop pooled
fail no_pooled 1 "no_pool.h5: no dataset /pooled (expected the pooled text embeddings [B,10] (the model has addition_embed_type \"text_time\"))" -- "$WX" --inputs "$T/no_pool.h5" --out "$T/bad.h5"
$PY "$IO" make "$FX/xlt_io.safetensors" "$T/no_tid.h5" --drop time_ids
fail no_time_ids 1 "no_tid.h5: no dataset /time_ids" -- "$WX" --inputs "$T/no_tid.h5" --out "$T/bad.h5"
$PY "$IO" make "$FX/xlt_io.safetensors" "$T/p9.h5" --pooled-width 9
fail pooled_width 1 "p9.h5: /pooled is [3,9] but /sample is [3,4,16,16] and the model $WX takes 10 pooled features" -- "$WX" --inputs "$T/p9.h5" --out "$T/bad.h5"
# ... and a model without it ignores them: conv on xlt-style inputs is conv's result
$PY "$IO" make "$FX/conv_io.safetensors" "$T/conv_extra.h5"
/usr/bin/python3 -c "
import h5py, numpy as np
with h5py.File('$T/conv_extra.h5', 'a') as f:
    f['pooled'] = np.ones((3, 10), np.float32); f['time_ids'] = np.ones((3, 6), np.float32)"
run extra -- "$W" --inputs "$T/conv_extra.h5" --out "$T/out_extra.h5"
[ $rc -eq 0 ] && ok || bad "conv with /pooled: exit $rc: $(head -3 "$T/extra.log")"
check extra "conv ignores /pooled, /time_ids" -- same "$T/out_extra.h5" "$T/out_conv.h5"
# diffusers unet/ folders of the text_time model: F32, and F16 under the fp16 name
$PY "$IO" unetdir "$WX" "$T/unet_xlt"
run dir_xlt -- "$T/unet_xlt" --inputs "$T/in_xlt.h5" --out "$T/out_dir_xlt.h5"
[ $rc -eq 0 ] && ok || bad "xlt unet folder: exit $rc: $(head -3 "$T/dir_xlt.log")"
check dir_xlt "xlt unet folder vs diffusers" -- compare "$T/out_dir_xlt.h5" "$FX/xlt_io.safetensors"
$PY "$IO" unetdir "$WX" "$T/unet_f16" --f16
$PY "$IO" unetdir "$WX" "$T/unet_f16r" --f16-rounded
run f16 -- "$T/unet_f16" --inputs "$T/in_xlt.h5" --out "$T/out_f16.h5"
[ $rc -eq 0 ] && grep -qF "unet_f16/diffusion_pytorch_model.fp16.safetensors" "$T/f16.log" && ok || bad "F16 folder: exit $rc: $(head -3 "$T/f16.log")"
run f16r -- "$T/unet_f16r" --inputs "$T/in_xlt.h5" --out "$T/out_f16r.h5"
check f16 "F16 folder vs its F16-rounded weights in F32" -- same "$T/out_f16.h5" "$T/out_f16r.h5"
check f16d "F16 folder vs diffusers (F16 weight rounding: tolerance 1e-2)" -- compare "$T/out_f16.h5" "$FX/xlt_io.safetensors" --tol 1e-2
# a sharded unet/ folder (index.json + 3 shards): the same bits as the single file
$PY "$IO" unetdir "$WX" "$T/unet_sh" --shards 3
run sh -- "$T/unet_sh" --inputs "$T/in_xlt.h5" --out "$T/out_sh.h5"
[ $rc -eq 0 ] && grep -qF "unet_sh/diffusion_pytorch_model.safetensors.index.json" "$T/sh.log" && ok || bad "sharded folder: exit $rc: $(head -3 "$T/sh.log")"
check sh "sharded folder vs the single file" -- same "$T/out_sh.h5" "$T/out_dir_xlt.h5"
for b in missing-shard unmapped wrong-shard; do
  rm -rf "$T/unet_b"; $PY "$IO" unetdir "$WX" "$T/unet_b" --shards 3 --break $b
  case $b in
    missing-shard) want="unet_b/diffusion_pytorch_model-00003-of-00003.safetensors: cannot open" ;;
    unmapped) want="which weight_map does not name" ;;
    wrong-shard) want="which does not hold it" ;;
  esac
  fail shard_$b 1 "$want" -- "$T/unet_b" --inputs "$T/in_xlt.h5" --out "$T/bad.h5"
done
# a user's OPENBLAS_CORETYPE narrower than the CPU: kept, with a warning on stderr (stdout is the report)
if [ -n "$(blas_fit_coretype)" ]; then
  OPENBLAS_CORETYPE=Prescott "$BIN" forward "$W" --inputs "$T/in_conv.h5" --out "$T/ct.h5" >"$T/ct.out" 2>"$T/ct.err"
  rc=$?
  [ $rc -eq 0 ] && grep -q "warning: OPENBLAS_CORETYPE=Prescott runs OpenBLAS's Prescott kernels" "$T/ct.err" &&
    ! grep -q OPENBLAS_CORETYPE "$T/ct.out" && ok || bad "forward, OPENBLAS_CORETYPE=Prescott: exit $rc, no warning on stderr: $(head -2 "$T/ct.err")"
fi
fail no_out 2 "forward needs --inputs IN.h5 and --out OUT.h5" -- "$W" --inputs "$T/in_conv.h5"
fail bad_set 1 "unknown key" -- "$W" --inputs "$T/in_conv.h5" --out "$T/bad.h5" --set model.bogus=1
"$BIN" info "$W" --out "$T/bad.h5" >"$T/info_out.log" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -qF "only go with forward" "$T/info_out.log" && ok || bad "info --out: exit $rc: $(head -2 "$T/info_out.log")"
# an unwritable --out (a missing folder: root may write anywhere else)
"$BIN" forward "$W" --inputs "$T/in_conv.h5" --out "$T/nodir/out.h5" >"$T/nodir.log" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -qF "$T/nodir/out.h5: cannot create the output" "$T/nodir.log" && ok || bad "unwritable --out: exit $rc: $(head -2 "$T/nodir.log")"
cp "$T/in_conv.h5" "$T/same.h5"
"$BIN" forward "$W" --inputs "$T/same.h5" --out "$T/same.h5" >"$T/same.log" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -qF "is the --inputs file" "$T/same.log" && cmp -s "$T/same.h5" "$T/in_conv.h5" && ok || bad "--out = --inputs: exit $rc: $(head -2 "$T/same.log")"
# a failure leaves an existing OUT.h5 as it was
cp "$T/out_conv.h5" "$T/keep.h5"
"$BIN" forward "$W" --inputs "$T/nan.h5" --out "$T/keep.h5" >"$T/keep.log" 2>&1; rc=$?
[ $rc -eq 1 ] && cmp -s "$T/keep.h5" "$T/out_conv.h5" && [ ! -e "$T/keep.h5.tmp" ] && ok || bad "failed forward changed the existing output (exit $rc)"
# more than one rank: refused, not split
mpirun_n 2 "$BIN" forward "$W" --inputs "$T/in_conv.h5" --out "$T/bad.h5" >"$T/np2.log" 2>&1; rc=$?
[ $rc -ne 0 ] && grep -qF "forward runs on one process, not 2 ranks" "$T/np2.log" && [ ! -e "$T/bad.h5" ] && ok || bad "-np 2: exit $rc: $(head -3 "$T/np2.log")"

finish test_forward
