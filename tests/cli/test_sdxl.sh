#!/usr/bin/env bash
# SDXL's text_time conditioning through the commands: a tiny text_time U-Net
# (fmnist_tiny's layout + add_embedding, 2-deep transformer stacks) trains on
# Fashion-MNIST (neutral pooled/time ids), is scored, planned and distilled;
# its files say text_time; on HDF5 data /pooled and /time_ids are required
# (the error names the file and dataset) and, given, change the scores.
# Args: BINARY SOURCE_DIR.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
require_h5py
JOB="$SRC/jobs/fmnist_tiny.cfg"
TT=(--set 'model.addition_embed_type="text_time"' --set model.addition_time_embed_dim=4
    --set model.projection_class_embeddings_input_dim=30 --set model.transformer_layers_per_block=2
    --set prune.calib_samples=4 --set prune.batch=2 --set prune.additivity_sets=0 --set train.steps=2
    --set runtime.threads=1)
# go NAME CMD [args]: laptop-diff CMD on the job into $T/run, log $T/NAME.log, status in $rc
go() { local name=$1 cmd=$2; shift 2; "$BIN" "$cmd" "$JOB" --set output.dir="$T/run" "${TT[@]}" "$@" >"$T/$name.log" 2>&1; rc=$?; }

go train train
[ $rc -eq 0 ] && ok || { bad "train: exit $rc: $(tail -3 "$T/train.log")"; finish test_sdxl; exit; }
"$BIN" info "$T/run/model.safetensors" >"$T/info.log" 2>&1
grep -q "add_embedding .* 2,048" "$T/info.log" && ok || bad "the trained model has no add_embedding: $(grep Param "$T/info.log")"
/usr/bin/python3 - "$T/run/model.safetensors" <<'PY' && ok || bad "model.safetensors' config metadata lacks text_time"
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    meta = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]
c = json.loads(meta["config"])
assert c["addition_embed_type"] == "text_time" and c["addition_time_embed_dim"] == 4, c
assert c["projection_class_embeddings_input_dim"] == 30 and c["transformer_layers_per_block"] == [2, 2], c
PY
W=(--set model.weights="$T/run/model.safetensors")
go score score "${W[@]}"
[ $rc -eq 0 ] && ok || bad "score: exit $rc: $(tail -3 "$T/score.log")"
go plan plan "${W[@]}"
[ $rc -eq 0 ] && grep -q "plan: student" "$T/plan.log" && ok || bad "plan: exit $rc: $(tail -3 "$T/plan.log")"
go distill distill "${W[@]}" --set train.steps=1
[ $rc -eq 0 ] && [ -s "$T/run/student.safetensors" ] && ok || bad "distill: exit $rc: $(tail -3 "$T/distill.log")"

# HDF5 data: 8 rows of [1,32,32] with 8 x 16 contexts; /pooled [8,6] and /time_ids [8,6] as asked
mkh5() {  # FILE with|without|zeros
  /usr/bin/python3 - "$@" <<'PY'
import h5py, numpy as np, sys
r = np.random.default_rng(3)
with h5py.File(sys.argv[1], "w") as f:
    f["latents"] = r.standard_normal((8, 1, 32, 32)).astype(np.float32)
    f["context"] = r.standard_normal((8, 8, 16)).astype(np.float32)
    if sys.argv[2] != "without":
        f["pooled"] = (r.standard_normal((8, 6)) * (sys.argv[2] == "with")).astype(np.float32)
        f["time_ids"] = np.tile(np.array([32, 32, 0, 0, 32, 32], np.float32), (8, 1))
PY
}
mkh5 "$T/no.h5" without; mkh5 "$T/yes.h5" with; mkh5 "$T/zero.h5" zeros
H=(--set 'data.source="hdf5"' --set train.steps=1)
go h5no score "${W[@]}" "${H[@]}" --set data.path="$T/no.h5"
[ $rc -ne 0 ] && grep -qF "$T/no.h5: no dataset /pooled" "$T/h5no.log" && ok || bad "no /pooled: exit $rc: $(tail -2 "$T/h5no.log")"
scores() {  # NAME FILE: score on FILE, then its output_loss scores into $T/NAME.txt
  go "$1" score "${W[@]}" "${H[@]}" --set data.path="$2" --set output.dir="$T/$1"
  [ $rc -eq 0 ] || { bad "score on $2: exit $rc: $(tail -2 "$T/$1.log")"; return; }
  /usr/bin/python3 -c "
import h5py, numpy as np
print(' '.join('%.9g' % v for v in h5py.File('$T/$1/run.h5', 'r')['prune/scores/output_loss'][()]))" >"$T/$1.txt" && ok
}
scores s_yes "$T/yes.h5"; scores s_zero "$T/zero.h5"
[ -s "$T/s_yes.txt" ] && ! cmp -s "$T/s_yes.txt" "$T/s_zero.txt" && ok || bad "the pooled embedding does not reach the scores"
# tests/tools/make_latents with a pooled width (what scripts/sdxl_smoke.sh makes) is accepted as it is
"$MAKE_LATENTS" "$T/ml.h5" 8 4 1 32 32 8 16 7 6 >/dev/null && ok || bad "make_latents with P"
scores s_ml "$T/ml.h5"

finish test_sdxl
