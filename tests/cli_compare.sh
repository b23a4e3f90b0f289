#!/usr/bin/env bash
# CLI checks of `parallax-sim compare --trace`: the committed real trace
# (tests/ref/trace_tiny_cpu.json, tests/ref/make_trace.py) beside the plan's
# prediction, JSON, the shared timeline as a Chrome trace, the unmatched ops
# under "other", and one clear error line for bad input.
set -u
sim=$1
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
trace="$here/ref/trace_tiny_cpu.json"
plan=(--model tiny-gpt --cluster dgx-h100 --gpus 1 --gbs 4 --mbs 4 --seq 64 --precision fp32)

out=$(COLUMNS=100 "$sim" compare --trace "$trace" "${plan[@]}" --timeline "$tmp/tl.json"); rc=$?
echo "$out"
check "compare exits 0" "[ $rc = 0 ]"
check "names the step and the rank" "grep -q 'rank 0 of 1, CPU op self times, no GPU kernels, [0-9]* events in ProfilerStep#1' <<<\"\$out\""
check "table header with units" "grep -Eq '^stage +predicted ms +measured ms +meas/pred' <<<\"\$out\""
for s in forward backward optimizer communication other step; do
  check "a row for $s" "grep -Eq '^$s +[0-9.]+ +[0-9.]+ ' <<<\"\$out\""
done
check "unmatched ops listed under other" "grep -q '^other: .*torch.distributed.ddp.reducer::copy_bucket_to_grad' <<<\"\$out\""
check "both on one axis" "grep -Eq '^predicted compute +\\|[FBO?~.fbo-]+\\|$' <<<\"\$out\" && grep -Eq '^measured compute +\\|[FBO?~.fbo-]+\\|$' <<<\"\$out\""
check "timeline has both processes" "python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))[\"traceEvents\"]; n={x[\"args\"][\"name\"] for x in e if x.get(\"name\")==\"process_name\"}; assert n=={\"predicted (simulated)\",\"measured (trace)\"}, n' $tmp/tl.json"
json=$("$sim" compare --trace "$trace" "${plan[@]}" --json); rc=$?
check "json exits 0 and parses" "[ $rc = 0 ] && python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d[\"times\"]==\"cpu_ops\" and d[\"measured\"][\"backward_s\"]>0 and d[\"predicted\"][\"step_s\"]>0' \"\$json\""
# stages add up to at most the step on the main thread plus gloo's thread
check "measured stages sum to under two threads' worth of step" "python3 -c 'import json,sys; m=json.loads(sys.argv[1])[\"measured\"]; s=sum(v for k,v in m.items() if k!=\"step_s\"); assert 0<s<=2*m[\"step_s\"], m' \"\$json\""
only=$("$sim" compare --trace "$trace"); rc=$?
check "without a plan: measured only" "[ $rc = 0 ] && grep -q '^predicted: none' <<<\"\$only\""

err=$("$sim" compare 2>&1 >/dev/null); rc=$?
check "no --trace: exit 2, one line" "[ $rc = 2 ] && [ \"\$err\" = 'parallax-sim compare: give the measured step: --trace FILE.json' ]"
echo '{"rows": []}' >"$tmp/bad.json"
err=$("$sim" compare --trace "$tmp/bad.json" 2>&1 >/dev/null); rc=$?
check "not a trace: exit 1, one line" "[ $rc = 1 ] && [ \$(wc -l <<<\"\$err\") = 1 ] && grep -q 'not a Chrome trace' <<<\"\$err\""
err=$("$sim" compare --trace "$tmp/missing.json" 2>&1 >/dev/null); rc=$?
check "missing file: exit 1, one line" "[ $rc = 1 ] && [ \$(wc -l <<<\"\$err\") = 1 ]"
echo "1..$n"
exit $fail
