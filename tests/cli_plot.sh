#!/usr/bin/env bash
# cli_plot.sh SIM EXEC — `parallax-sim bubble`: simulated bubbles against the
# hand-computed formulas, the plot files it draws, and its behaviour without
# gnuplot (a one-line error naming the Debian package, data still written).
set -u
SIM=$1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

out=$("$SIM" bubble --pp 4 --m 4,8 --vpp 2) || fail "bubble exit $?"
echo "$out"
# pp 4, m 8: gpipe = 1f1b = 3/11 = 0.2727; interleaved v 2: 3/19 = 0.1579;
# zb-h1: 3/27 = 0.1111 — simulated and formula columns alike.
grep -Eq '^ +8  0\.2727  0\.2727    0\.2727  0\.2727    0\.1579  0\.1579    0\.1111  0\.1111' <<<"$out" \
  || fail "m=8 row differs from 3/11, 3/19, 3/27"
# m 4: 3/7 = 0.4286, 3/11 = 0.2727, 3/15 = 0.2000
grep -Eq '^ +4  0\.4286  0\.4286    0\.4286  0\.4286    0\.2727  0\.2727    0\.2000  0\.2000' <<<"$out" \
  || fail "m=4 row differs from 3/7, 3/11, 3/15"

json=$("$SIM" bubble --pp 2 --m 2 --json) || fail "json exit $?"
# pp 2, m 2, 1f1b: 1/3
python3 - "$json" <<'PY' || fail "json 1f1b m=2 is not 1/3"
import json, sys
d = json.loads(sys.argv[1])
s = {x["schedule"]: x["points"][0] for x in d["schedules"]}
assert abs(s["1f1b"]["simulated"] - 1/3) < 1e-12 and abs(s["1f1b"]["analytic"] - 1/3) < 1e-12, s
PY

if command -v gnuplot >/dev/null; then
  "$SIM" bubble --pp 4 --m 1,2,4,8 --plot "$tmp/plot" >/dev/null || fail "--plot exit $?"
  for f in bubble.png bubble.svg bubble.dat bubble_curve.dat; do
    [ -s "$tmp/plot/$f" ] || fail "$f missing"
  done
  [ "$(head -c 8 "$tmp/plot/bubble.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] \
    || fail "bubble.png is not a PNG"
  grep -q '<svg' "$tmp/plot/bubble.svg" || fail "bubble.svg is not SVG"
else
  echo "gnuplot absent: plot files not checked"
fi

# without gnuplot on PATH: exit 1, one line naming the package, data written
err=$(PATH=/nonexistent "$SIM" bubble --pp 4 --m 4 --plot "$tmp/nognuplot" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] || fail "no gnuplot: exit $rc, want 1"
[ "$err" = "parallax-sim bubble: gnuplot not found: install the Debian package gnuplot-nox" ] \
  || fail "no gnuplot: message '$err'"
[ -s "$tmp/nognuplot/bubble.dat" ] || fail "no gnuplot: bubble.dat not written"

# simulate --plot: timeline and memory pictures; without gnuplot the trace and
# CSV are still written and the error is the last line
sim=(simulate -M gpt2-124m --gpus 4 --pp 4 --gbs 8 --mbs 1 --schedule 1f1b --ideal)
if command -v gnuplot >/dev/null; then
  "$SIM" "${sim[@]}" --plot "$tmp/sim" >/dev/null || fail "simulate --plot exit $?"
  for f in timeline.png timeline.svg memory.png memory.svg timeline.dat memory.dat; do
    [ -s "$tmp/sim/$f" ] || fail "simulate --plot: $f missing"
  done
  # 1f1b, pp 4, m 8, ideal: stage 0 runs 8 forwards and 8 backwards = 16 boxes
  awk 'NF == 0 { exit } $2 == 0 && $4 > 0.3' "$tmp/sim/timeline.dat" | wc -l | grep -qx 16 \
    || fail "simulate --plot: stage 0 does not have 16 compute boxes"
fi
mkdir -p "$tmp/nogp"
err=$(PATH=/nonexistent "$SIM" "${sim[@]}" --plot "$tmp/nogp" --trace "$tmp/nogp/t.json" --csv "$tmp/nogp/t.csv" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] || fail "simulate without gnuplot: exit $rc, want 1"
[ "$err" = "parallax-sim simulate: gnuplot not found: install the Debian package gnuplot-nox" ] \
  || fail "simulate without gnuplot: message '$err'"
[ -s "$tmp/nogp/t.json" ] && [ -s "$tmp/nogp/t.csv" ] || fail "simulate without gnuplot: trace/CSV not written"

# bad input: one line, exit 2
err=$("$SIM" bubble --m 4,x 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] || fail "--m 4,x exited $rc, want 2"
[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "--m 4,x: more than one line: $err"

[ $fails -eq 0 ] && echo "cli_plot: all passed"
exit $((fails > 0))
