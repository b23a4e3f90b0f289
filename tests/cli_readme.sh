#!/usr/bin/env bash
# The README's commands run as written (parallax-sim and parallax-exec on
# PATH, as after `cmake --install`), from a scratch directory holding links
# to configs/ and tests/: each exits 0. So do the example commands of
# docs/*.md (a line of a code block that starts with the command, after an
# optional "$ " prompt or indent; a trailing backslash joins the next line),
# but those that need a GPU (--backend cuda).
set -u
sim=$(realpath "$1") exe=$(realpath "$2")
fail=0; n=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export PATH="$(dirname "$sim"):$(dirname "$exe"):$PATH"
ln -s "$PARALLAX_DATA_DIR/configs" "$tmp/configs"
ln -s "$PARALLAX_DATA_DIR/tests" "$tmp/tests"
cd "$tmp" || exit 1
while IFS= read -r line; do
  cmd=${line%%#*}
  n=$((n+1))
  if bash -c "$cmd" >"$tmp/log" 2>&1; then echo "ok $n - $cmd"; else echo "not ok $n - $cmd"; grep -iE "error|cannot|fail" "$tmp/log" | head -3; fail=1; fi
done < <(grep -E '^parallax-(sim|exec) ' "$PARALLAX_DATA_DIR/README.md")
[ "$n" -ge 10 ] || { echo "not ok - only $n README commands found"; fail=1; }
nr=$n
while IFS= read -r line; do
  cmd=${line%%#*}
  n=$((n+1))
  if bash -c "$cmd" >"$tmp/log" 2>&1; then echo "ok $n - $cmd"; else echo "not ok $n - $cmd"; grep -iE "error|cannot|fail" "$tmp/log" | head -3; fail=1; fi
done < <(awk '/^(\$ |    )?parallax-(sim|exec) / || cont { sub(/^(\$ |    )/, ""); cont = sub(/\\$/, ""); line = line $0;
               if (!cont) { print line; line = "" } }' "$PARALLAX_DATA_DIR"/docs/*.md | grep -v -- '--backend cuda')
[ "$((n - nr))" -ge 5 ] || { echo "not ok - only $((n - nr)) docs/ commands found"; fail=1; }
echo "1..$n"
exit $fail
