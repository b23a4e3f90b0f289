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

# unequal passes, pp 4, m 8, T_F,T_B,T_W = 1,2,1: zb-h1 idles (p-1)(T_F+T_B-T_W)
# = 6 on 8·4 busy: 6/38 (Qi et al. 2024 §3.1), simulated and formula alike;
# 1f1b 3/11 whatever the costs; dualpipev has no closed form (null)
json=$("$SIM" bubble --pp 4 --m 8 --costs 1,2,1 --json) || fail "--costs json exit $?"
python3 - "$json" <<'PY' || fail "--costs 1,2,1: zb-h1 is not 6/38, 1f1b not 3/11 or dualpipev has a formula"
import json, sys
d = json.loads(sys.argv[1])
assert d["costs"]["t_b"] == 2, d["costs"]
s = {x["schedule"]: x["points"][0] for x in d["schedules"]}
for k in ("simulated", "analytic"):
    assert abs(s["zb-h1"][k] - 6 / 38) < 1e-12, s["zb-h1"]
    assert abs(s["1f1b"][k] - 3 / 11) < 1e-12, s["1f1b"]
assert s["dualpipev"]["analytic"] is None and s["dualpipev"]["simulated"] > 0, s["dualpipev"]
PY
for bad in 1,0,1 1,2 1,2,x 1,2,-1 1,2,1,1 1,2,1e9; do
  err=$("$SIM" bubble --pp 4 --m 8 --costs "$bad" 2>&1 >/dev/null); rc=$?
  [ $rc -eq 2 ] && [ "$(wc -l <<<"$err")" -eq 1 ] && grep -q -- "--costs" <<<"$err" \
    || fail "--costs $bad: exit $rc, '$err'"
done

if command -v gnuplot >/dev/null; then
  "$SIM" bubble --pp 4 --m 4,8 --costs 1,1.5,0.5 --plot "$tmp/plotc" >/dev/null || fail "--costs --plot exit $?"
  [ -s "$tmp/plotc/bubble.png" ] || fail "--costs --plot: bubble.png missing"
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

# the new schedules, pp 4, m 8, ideal (T_F = T_B = T_W = 1 per chunk): zb-h2
# 3/(3·8+3) = 0.1111 and a span of 3m = 24 (no bubble within a rank's span);
# zb-v 3/(6·8+3) = 0.0588, span 6m = 48; dualpipev 2(p-1) = 6 idle on 6m = 48:
# 6/54 = 0.1111 (the DualPipe README's (p-1)(F&B+B-3W))
json=$("$SIM" bubble --pp 4 --m 8 --json) || fail "json exit $?"
python3 - "$json" <<'PY' || fail "zb-h2 / zb-v / dualpipev at pp 4, m 8 differ from the closed forms"
import json, sys
d = json.loads(sys.argv[1])
s = {x["schedule"]: x["points"][0] for x in d["schedules"]}
for k, want, span in (("zb-h2", 3/27, 24), ("zb-v", 3/51, 48), ("dualpipev", 6/54, 54)):
    assert abs(s[k]["simulated"] - want) < 1e-12 and abs(s[k]["analytic"] - want) < 1e-12, (k, s[k])
    assert abs(s[k]["span"] - span) < 1e-12, (k, s[k])
PY

# zb-v draws a V: micro-batch 0's forward goes down the ranks on chunk 0 and
# back up on chunk 1 (the last rank first), then its backward the other way
vsim=(simulate -M gpt2-124m --gpus 4 --pp 4 --gbs 8 --mbs 1 --schedule zb-v --ideal)
"$SIM" "${vsim[@]}" --gantt --csv "$tmp/v.csv" >/dev/null || fail "zb-v simulate exit $?"
python3 - "$tmp/v.csv" <<'PY' || fail "zb-v timeline is not a V"
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["stream"] == "compute" and r["mb"] == "0"]
def starts(kind, chunk):
    return [float(next(r["start_s"] for r in rows if r["kind"] == kind and r["chunk"] == str(chunk) and r["stage"] == str(s)))
            for s in range(4)]
f0, f1 = starts("FORWARD", 0), starts("FORWARD", 1)
assert f0 == sorted(f0) and f1 == sorted(f1, reverse=True) and f1[3] > f0[3], (f0, f1)
assert f0 == [0, 1, 2, 3] and f1 == [7, 6, 5, 4], (f0, f1)
PY
if command -v gnuplot >/dev/null; then
  "$SIM" "${vsim[@]}" --gantt --plot "$tmp/v" >/dev/null || fail "zb-v --plot exit $?"
  [ -s "$tmp/v/timeline.png" ] || fail "zb-v timeline.png missing"
  # dualpipev: the overlapped F&B pairs get a border each (block 2 of timeline.dat):
  # pp 4, m 8: pairs 2(m - 2p + r + 1) + (p - r - 1), one fewer on the last rank = 5 + 6 + 7 + 7
  "$SIM" simulate -M gpt2-124m --gpus 4 --pp 4 --gbs 8 --mbs 1 --schedule dualpipev --ideal --plot "$tmp/dpv" >/dev/null \
    || fail "dualpipev --plot exit $?"
  n=$(awk '/^# overlapped/ { on = 1; next } on && NF == 4' "$tmp/dpv/timeline.dat" | wc -l)
  [ "$n" -eq 25 ] || fail "dualpipev: $n overlapped pairs drawn, want 25"
fi

# bad input: one line, exit 2
err=$("$SIM" bubble --m 4,x 2>&1 >/dev/null); rc=$?
[ $rc -eq 2 ] || fail "--m 4,x exited $rc, want 2"
[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "--m 4,x: more than one line: $err"

[ $fails -eq 0 ] && echo "cli_plot: all passed"
exit $((fails > 0))
