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
