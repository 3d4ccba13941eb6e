#!/usr/bin/env bash
# Checks the layering of src/ (README "Layout"): a file in one subsystem folder
# includes only from its own folder or from folders earlier in the data path,
# and nothing in src/ calls MPI. Prints each violation; exits 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
ORDER=(core kernels cuda model io diffusion data metrics prune train cli)
rank() { local i; for i in "${!ORDER[@]}"; do [ "${ORDER[$i]}" = "$1" ] && { echo "$i"; return; }; done; echo -1; }
bad=0
for f in src/*/*.[ch] src/*/*.cu src/*/*.cuh; do
  own=$(basename "$(dirname "$f")")
  ro=$(rank "$own")
  if [ "$ro" -lt 0 ]; then echo "$f: folder $own is not in the layout"; bad=1; continue; fi
  while IFS= read -r inc; do
    dir=${inc%%/*}
    [ "$dir" = "$inc" ] && { echo "$f: #include \"$inc\" names no subsystem folder"; bad=1; continue; }
    ri=$(rank "$dir")
    # cuda/ sits beside kernels/: the backend door, same level.
    [ "$own" = kernels ] && [ "$dir" = cuda ] && continue
    if [ "$ri" -lt 0 ] || [ "$ri" -gt "$ro" ]; then echo "$f: includes $inc (above $own in the data path)"; bad=1; fi
  done < <(grep -o '#include "[^"]*"' "$f" | sed 's/#include "\(.*\)"/\1/')
done
if grep -rn 'MPI_\|<mpi\.h>' src/; then echo "src/ calls MPI (only mpi/ may)"; bad=1; fi
[ "$bad" = 0 ] && echo "layout: src/ layering holds (${ORDER[*]})"
exit "$bad"
