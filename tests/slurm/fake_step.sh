#!/usr/bin/env bash
# Stands in for laptop-diff in test_slurm.sh's requeue-bound checks: exits 3
# ("checkpointed") every time, writing a new checkpoint into output.dir first
# when FAKE_NEW_CKPT=1 (a job that progresses) and none otherwise (one that
# stops the same way again). Gets laptop-diff's arguments; reads output.dir.
out=""
while [ $# -gt 0 ]; do
  case $1 in --set) shift; case $1 in output.dir=*) out=${1#output.dir=} ;; esac ;; esac
  shift
done
[ -n "$out" ] || { echo "fake_step: no output.dir"; exit 1; }
if [ "${FAKE_NEW_CKPT:-0}" = 1 ]; then
  mkdir -p "$out/checkpoints"
  n=$(ls "$out/checkpoints" | wc -l)
  : >"$out/checkpoints/ckpt_$(printf %08d $((n + 1))).safetensors"
fi
echo "fake_step: exit 3"
exit 3
