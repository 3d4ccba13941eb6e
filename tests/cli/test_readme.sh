#!/usr/bin/env bash
# The README's config reference must be what the binary prints (docs stay true):
# `config-reference` exits 0 and prints a table (header, separator, at least one
# key), every printed line is in the README, and the README's table (the block of
# '|' lines from the same header) holds no line the binary does not print, so a
# binary that prints nothing, or a README row for a removed key, fails.
set -u
BIN=$1; SRC=$2
. "$SRC/tests/cli/harness.sh"
HEADER='| section | key | type | default | range | meaning |'

"$BIN" config-reference >"$T/ref.txt" 2>"$T/ref.err"; rc=$?
[ $rc -eq 0 ] && ok || bad "config-reference exited $rc: $(head -3 "$T/ref.err")"
n=$(wc -l <"$T/ref.txt")
[ "$(head -1 "$T/ref.txt")" = "$HEADER" ] && ok || bad "config-reference does not start with the table header (got: $(head -1 "$T/ref.txt"))"
[ "$n" -ge 3 ] && ok || bad "config-reference printed $n lines: no keys"

# binary -> README: every printed line
missing=0
while IFS= read -r line; do
  grep -qxF -- "$line" "$SRC/README.md" || { missing=$((missing+1)); [ $missing -le 5 ] && echo "README lacks: $line"; }
done <"$T/ref.txt"
[ "$missing" -eq 0 ] && ok || bad "$missing of $n lines of config-reference are not in README.md"

# README -> binary: the README's table, from the header to the first line that is not a table row
awk -v h="$HEADER" '$0 == h {f=1} f && !/^\|/ {exit} f' "$SRC/README.md" >"$T/readme_table.txt"
[ -s "$T/readme_table.txt" ] && ok || bad "README.md has no config table (no line '$HEADER')"
stale=0
while IFS= read -r line; do
  grep -qxF -- "$line" "$T/ref.txt" || { stale=$((stale+1)); [ $stale -le 5 ] && echo "not printed by config-reference: $line"; }
done <"$T/readme_table.txt"
[ "$stale" -eq 0 ] && ok || bad "$stale README table lines are not what config-reference prints"

finish test_readme
