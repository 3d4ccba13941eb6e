#!/usr/bin/env bash
# The README's config reference must be what the binary prints (docs stay true).
set -u
BIN=$1; SRC=$2
missing=0
while IFS= read -r line; do
  grep -qxF -- "$line" "$SRC/README.md" || { echo "README lacks: $line"; missing=$((missing+1)); }
done < <("$BIN" config-reference)
n=$("$BIN" config-reference | wc -l)
echo "test_readme: $((n-missing)) passed, $missing failed"
[ "$missing" -eq 0 ]
