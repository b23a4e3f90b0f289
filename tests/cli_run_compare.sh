#!/usr/bin/env bash
# CLI checks of `parallax-exec run --compare`: the comparison's structure
# (text and JSON), and that its predicted side is exactly what
# `parallax-sim simulate --full` reports for the same plan and cluster (one
# cost model, one engine): step time, every rank's time per instruction kind,
# and the predicted memory equal to the run's own planner column. Measured
# values are timings: their presence is checked, never their size.
set -u
sim=$1 exe=$2
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# a cluster written by hand (ideal rates would do as well: the values only have to be the same on both sides)
cat > "$tmp/c.ini" <<'INI'
[cluster]
name = compare-test
nodes = 1
[gpu]
name = test
memory = 16GiB
peak_fp32 = 50e9
peak_bf16 = 100e9
hbm_bw = 20e9
kernel_overhead = 2e-6
[node]
gpus = 4
bandwidth = 5e9
latency = 5e-6
[network]
bandwidth = 1e9
latency = 20e-6
INI
flags=(--model tiny-gpt --seq 16 --mbs 2 --gbs 8 --cluster "$tmp/c.ini" --precision fp32)

for layout in "--pp 2" "--dp 2 --zero 1" "--tp 2" "--pp 2 --schedule zb-h1" "--dp 2 --bucket 80000"; do
  # shellcheck disable=SC2086
  "$exe" run "${flags[@]}" $layout --gpus 2 --steps 2 --compare --json > "$tmp/run.json" 2> "$tmp/err"
  rc=$?
  # shellcheck disable=SC2086
  "$sim" simulate "${flags[@]}" $layout --gpus 2 --full --json > "$tmp/sim.json" 2>> "$tmp/err"
  rc2=$?
  check "$layout: run --compare and simulate exit 0" "[ $rc -eq 0 ] && [ $rc2 -eq 0 ]"
  check "$layout: predicted equals simulate's, structure complete" "python3 - '$tmp/run.json' '$tmp/sim.json' <<'PY'
import json, sys
run = json.load(open(sys.argv[1])); sim = json.load(open(sys.argv[2]))
c = run['compare']
assert c['cluster'] == 'compare-test' and 'seconds' in c['units']
assert c['step_time_s']['predicted'] == sim['step_time_s'], (c['step_time_s'], sim['step_time_s'])
assert c['step_time_s']['measured'] > 0
assert c['bubble_fraction_predicted'] == sim['bubble_fraction']
assert c['dp_exposed_fraction_predicted'] == sim['dp_exposed_fraction']
ranks = {r['rank']: r for r in c['per_rank']}
assert sorted(ranks) == [0, 1], sorted(ranks)
for s in sim['per_rank']:
    r = ranks[s['rank']]
    assert r['stage'] == s['stage']
    assert abs(r['idle_fraction']['predicted'] - s['idle_s'] / sim['step_time_s']) < 1e-12
    for kind, t in s['op_time_s'].items():
        if kind.startswith('RECV'): continue
        assert r['op_time_s'][kind]['predicted'] == t, (kind, r['op_time_s'][kind], t)
    for kind, t in r['op_time_s'].items():
        assert t['measured'] >= 0 and t['predicted'] == s['op_time_s'].get(kind, 0)
    assert 'FORWARD' in r['op_time_s'] and r['op_time_s']['FORWARD']['measured'] > 0
for m in run['memory']:
    got = ranks[m['rank']]['memory_bytes']
    for cat in ('weights', 'gradients', 'optimizer', 'activations', 'buffers'):
        assert got[cat]['predicted'] == m['predicted'][cat] and got[cat]['measured'] == m['measured'][cat]
PY"
done

# a bf16 / f16 run: simulated at its own precision (the GEMMs at peak_bf16 /
# peak_fp16, 2 B activations), with the runtime's fp32 gradient reduction and
# bucket boundaries: the same as simulate at that precision with
# grad_reduce_bytes = 4 (the plan file) and the bucket's elements in 2 B
# each (80000 B of fp32 = 20000 elements = 40000 B of bf16). simulate at the
# precision alone reduces in bf16: another REDUCE_GRADS time.
printf '[plan]\ngrad_reduce_bytes = 4\n' > "$tmp/fp32-reduce.ini"
for half in "bf16 bf16 --pp 2" "f16 fp16 --dp 2 --zero 1" "bf16 bf16 --dp 2 --bucket 80000"; do
  read -r dt prec layout <<<"$half"
  simlayout=${layout/--bucket 80000/--bucket 40000}
  # shellcheck disable=SC2086
  "$exe" run "${flags[@]}" $layout --gpus 2 --steps 2 --dtype "$dt" --compare --json > "$tmp/run.json" 2> "$tmp/err"
  rc=$?
  # shellcheck disable=SC2086
  "$sim" simulate "${flags[@]}" $simlayout --precision "$prec" --plan "$tmp/fp32-reduce.ini" --gpus 2 --full --json \
    > "$tmp/sim.json" 2>> "$tmp/err"
  rc2=$?
  # shellcheck disable=SC2086
  "$sim" simulate "${flags[@]}" $layout --precision "$prec" --gpus 2 --full --json > "$tmp/sim16.json" 2>> "$tmp/err"
  rc3=$?
  [ "$dt $layout" = "bf16 --pp 2" ] && cp "$tmp/run.json" "$tmp/bf16-pp2.json"
  check "--dtype $dt $layout: run --compare and simulate exit 0" "[ $rc -eq 0 ] && [ $rc2 -eq 0 ] && [ $rc3 -eq 0 ]"
  check "--dtype $dt $layout: predicted at $prec with fp32 gradient reduction, as simulate's" "python3 - '$tmp/run.json' '$tmp/sim.json' '$tmp/sim16.json' '$prec' <<'PY'
import json, sys
run = json.load(open(sys.argv[1])); sim = json.load(open(sys.argv[2])); sim16 = json.load(open(sys.argv[3]))
c = run['compare']
assert c['precision'] == sys.argv[4], c['precision']
assert c['step_time_s']['predicted'] == sim['step_time_s'], (c['step_time_s'], sim['step_time_s'])
ranks = {r['rank']: r for r in c['per_rank']}
for s in sim['per_rank']:
    for kind, t in s['op_time_s'].items():
        if kind.startswith('RECV'): continue
        assert ranks[s['rank']]['op_time_s'][kind]['predicted'] == t, (kind, ranks[s['rank']]['op_time_s'][kind], t)
# the gradients reduced in fp32, not in the half dtype
for s in sim16['per_rank']:
    if 'REDUCE_GRADS' in s['op_time_s']:
        assert ranks[s['rank']]['op_time_s']['REDUCE_GRADS']['predicted'] != s['op_time_s']['REDUCE_GRADS']
PY"
done
"$exe" run "${flags[@]}" --pp 2 --gpus 2 --steps 2 --compare --json > "$tmp/f32-pp2.json" 2> /dev/null
check "--pp 2: the f32 run predicted at fp32, its FORWARD slower than bf16's (peak_bf16 twice peak_fp32, 2 B activations)" "python3 - '$tmp/f32-pp2.json' '$tmp/bf16-pp2.json' <<'PY'
import json, sys
f32 = json.load(open(sys.argv[1]))['compare']; bf16 = json.load(open(sys.argv[2]))['compare']
assert f32['precision'] == 'fp32' and bf16['precision'] == 'bf16'
for a, b in zip(f32['per_rank'], bf16['per_rank']):
    assert a['op_time_s']['FORWARD']['predicted'] > b['op_time_s']['FORWARD']['predicted'], (a, b)
PY"

# a profile calibrated in another dtype predicts other kernels: refused before any step
for pair in "f32 bf16" "bf16 f32" "bf16 f16"; do
  read -r cal dt <<<"$pair"
  sed "s/^name = compare-test/name = compare-test\ncalibrated_dtype = $cal/" "$tmp/c.ini" > "$tmp/cal.ini"
  "$exe" run --model tiny-gpt --seq 16 --mbs 2 --gbs 8 --cluster "$tmp/cal.ini" --steps 1 --dtype "$dt" --compare \
    > "$tmp/o" 2> "$tmp/e"
  rc=$?
  check "profile calibrated in $cal, run in $dt: exit non-zero, one line, no step" "[ $rc -ne 0 ] && [ \$(wc -l < '$tmp/e') -eq 1 ] && grep -qF 'the cluster profile was calibrated in $cal; this run computes in $dt: run calibrate --dtype $dt' '$tmp/e' && ! grep -q '^ *1 ' '$tmp/o'"
done
sed "s/^name = compare-test/name = compare-test\ncalibrated_dtype = bf16/" "$tmp/c.ini" > "$tmp/cal.ini"
"$exe" run --model tiny-gpt --seq 16 --mbs 2 --gbs 8 --cluster "$tmp/cal.ini" --steps 1 --dtype bf16 --compare > "$tmp/o" 2> "$tmp/e"
check "profile calibrated in bf16, run in bf16: compared" "[ $? -eq 0 ] && grep -q '^# step time' '$tmp/o'"

out=$("$exe" run "${flags[@]}" --pp 2 --gpus 2 --steps 2 --compare --trace "$tmp/both.json")
check "--trace with --compare: predicted and measured rows of both ranks in one trace" "python3 - '$tmp/both.json' <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))['traceEvents']
names = {x['pid']: x['args']['name'] for x in e if x.get('name') == 'process_name'}
assert sorted(names.values()) == ['measured rank 0 (stage 0)', 'measured rank 1 (stage 1)',
                                  'predicted rank 0 (stage 0)', 'predicted rank 1 (stage 1)'], names
for who in ('predicted', 'measured'):
    pids = {p for p, n in names.items() if n.startswith(who)}
    assert sum(1 for x in e if x.get('ph') == 'X' and x['pid'] in pids and x['cat'] == 'FORWARD') == 8, who
PY"
check "text: step time with units" "grep -Eq '^# step time +predicted +[0-9.]+ ms +measured +[0-9.]+ ms' <<<\"\$out\""
check "text: idle share" "grep -q '^# idle compute share' <<<\"\$out\""
check "text: a FORWARD row per rank" "[ \$(grep -Ec '^ +[01] +[01] FORWARD ' <<<\"\$out\") -eq 2 ]"

# one gnuplot figure of both timelines: its data names a predicted and a
# measured row for each rank and every box sits on one of them; gnuplot drew it
"$exe" run "${flags[@]}" --pp 2 --gpus 2 --steps 2 --compare --plot "$tmp/plot" > /dev/null 2> "$tmp/e"
rc=$?
check "--plot with --compare: exit 0, compare.png and compare.svg drawn" "[ $rc -eq 0 ] && [ -s '$tmp/plot/compare.png' ] && [ -s '$tmp/plot/compare.svg' ] && grep -q '<svg' '$tmp/plot/compare.svg'"
check "--plot with --compare: predicted and measured rows of both ranks, boxes on each" "python3 - '$tmp/plot/compare.dat' <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rows = dict((int(n), name) for n, name in re.findall(r'^# row (\\d+): (.+)$', text, re.M))
assert sorted(rows.values()) == ['measured rank 0 (stage 0)', 'measured rank 1 (stage 1)',
                                 'predicted rank 0 (stage 0)', 'predicted rank 1 (stage 1)'], rows
boxes = text.split('\\n\\n\\n')[0]
used = set()
for line in boxes.splitlines():
    if line.startswith('#') or not line.strip(): continue
    x, y, hw, hh, rgb = line.split()
    used.add(round(float(y)))
assert used == set(rows), (used, rows)
PY"

"$exe" run --model tiny-gpt --seq 16 --mbs 2 --gbs 8 --steps 1 --compare > /dev/null 2> "$tmp/e"
rc=$?
check "no cluster: exit non-zero, one line naming --cluster" "[ $rc -ne 0 ] && [ \$(wc -l < '$tmp/e') -eq 1 ] && grep -q -- '--cluster' '$tmp/e'"
"$exe" run "${flags[@]}" --gpus 1 --steps 1 --save "$tmp/ck" > /dev/null 2>&1
"$exe" run "${flags[@]}" --gpus 1 --steps 1 --resume "$tmp/ck" --compare > /dev/null 2> "$tmp/e"
rc=$?
check "nothing ran (resumed at --steps): exit non-zero, one line" "[ $rc -ne 0 ] && [ \$(wc -l < '$tmp/e') -eq 1 ] && grep -q 'no step would run' '$tmp/e'"
echo "1..$n"
exit $fail
