#!/usr/bin/env bash
# CLI checks of `parallax-sim search`: the table and its sentence, JSON, the
# emitted plan read back by `plan`, the closest miss (exit 1), sizing, the
# GPT-3 seed, the Pareto plot, and one clear error line for bad input.
set -u
sim=$1
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

base=(--model llama2-13b --cluster dgx-h100 --gpus 64 --seq 4096 --gbs 512)

out=$("$sim" search "${base[@]}" --top 3 --threads 2); rc=$?
echo "$out"
check "search exits 0" "[ $rc = 0 ]"
check "table header states the units" "grep -Eq '^# +layout +mem GB +step ms +tokens/s +MFU % +bubble %' <<<\"\$out\""
check "the footnote says what the bubble column counts" "grep -q 'bubble: pipeline idle incl. p2p waits)' <<<\"\$out\""
check "three ranked rows" "[ \$(grep -Ec '^[123] +tp [0-9]+ pp [0-9]+ dp [0-9]+' <<<\"\$out\") = 3 ]"
check "one sentence on why #1 wins" "grep -Eq '^why #1: With .* the step (is|time is the same)' <<<\"\$out\""
# rows are ranked by step time (column 4 from the end)
check "rows ranked by step time" "grep -E '^[123] +tp' <<<\"\$out\" | awk '{print \$(NF-3)}' | sort -c -g"

# the winner's layout under every schedule: bubble, memory and p2p volume side
# by side (a pipelined winner: pp fixed at 4, whatever the cost model prefers)
piped=$("$sim" search "${base[@]}" --top 3 --threads 2 --fix pp=4)
check "schedule table lists all seven schedules" "[ \$(grep -Ec '^(gpipe|1f1b|interleaved|zb-h1|zb-h2|zb-v|dualpipev) +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +(yes|no) +[0-9.]+' <<<\"\$piped\") = 7 ]"
check "schedule table marks #1" "[ \$(grep -c '<- #1' <<<\"\$piped\") = 1 ]"
# a V rank sends both chunks' activations and gradients: twice 1f1b's p2p volume
check "zb-v sends twice 1f1b's p2p" "awk '\$1 == \"1f1b\" {a = \$7} \$1 == \"zb-v\" {b = \$7} END {exit !(a > 0 && b > 1.99 * a && b < 2.01 * a)}' <<<\"\$piped\""

# JSON: same winner as the text, for another thread count
json=$("$sim" search "${base[@]}" --top 3 --threads 1 --json --emit "$tmp/plan.ini"); rc=$?
check "json exits 0" "[ $rc = 0 ]"
check "json parses with 3 entries" "python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert len(d[\"top\"])==3' \"\$json\""
w_text=$(grep -E '^1 +tp' <<<"$out" | sed -E 's/^1 +//; s/ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$//')
w_json=$(python3 -c 'import json,sys; l=json.loads(sys.argv[1])["top"][0]["layout"]; print(l["tp"], l["pp"], l["dp"], l["zero"], l["ckpt"])' "$json")
read -r tp pp dp zero ckpt <<<"$w_json"
check "json winner = text winner (1 vs 2 threads)" "grep -q '^tp $tp pp $pp dp $dp .*ZeRO-$zero.*ckpt $ckpt' <<<\"\$w_text\""

# the emitted plan loads back with `plan`, fits, and is the winner
check "emit wrote model/cluster/nodes" "grep -qx 'model = llama2-13b' $tmp/plan.ini && grep -qx 'nodes = 8' $tmp/plan.ini"
pl=$("$sim" plan --plan "$tmp/plan.ini"); rc=$?
check "plan reads the emitted file" "[ $rc = 0 ]"
check "emitted plan fits" "grep -q '^fits       yes' <<<\"\$pl\""
check "emitted plan is the winner's layout" "grep -q \"^layout     dp $dp × pp $pp × tp $tp = 64 GPUs\" <<<\"\$pl\""

# nothing fits: the closest miss, exit 1
err=$("$sim" search --model gpt3-175b --cluster dgx-a100-80g --nodes 1 --gbs 64 --max-memory 40GB 2>&1 >/dev/null); rc=$?
echo "$err"
check "infeasible exits 1" "[ $rc = 1 ]"
check "closest miss named" "grep -Eq '^parallax-sim search: no layout fits: smallest memory need [0-9.]+ GB per GPU at tp [0-9]+ pp [0-9]+ dp [0-9]+ ZeRO-3 .*recompute; the limit is 40.0 GB \(the GPU has 85.9 GB\)$' <<<\"\$err\""
check "one line" "[ \$(wc -l <<<\"\$err\") = 1 ]"

# the seed's GPT-3 layout does not fit; search names another that does
out=$("$sim" search --model gpt3-175b --cluster dgx-a100-80g --nodes 8 --gbs 1536 --mbs 1 --top 1 --emit "$tmp/gpt3.ini"); rc=$?
check "gpt3 search exits 0" "[ $rc = 0 ]"
pl=$("$sim" plan --plan "$tmp/gpt3.ini")
check "gpt3 winner fits" "grep -q '^fits       yes' <<<\"\$pl\""
check "gpt3 winner is not the seed" "! grep -q '^layout     dp 8 × pp 4 × tp 2 ' <<<\"\$pl\" || ! grep -q 'ZeRO-2;' <<<\"\$pl\""
check "mbs 1 held (given as a flag)" "grep -q 'micro-batch 1;' <<<\"\$pl\""

# sizing: an answer with GPU-hours
out=$("$sim" search --model llama2-7b --cluster dgx-h100 --seq 4096 --gbs 512 --tokens 100G --days 10 --nodes-range 1-16 --max-mbs 2); rc=$?
echo "$out"
check "sizing exits 0" "[ $rc = 0 ]"
check "sizing answers with GPUs and GPU-hours" "grep -Eq '^answer: [0-9]+ GPUs \([0-9]+ nodes\) in tp .* finish in [0-9.]+ days, [0-9]+ GPU-hours' <<<\"\$out\""
# --objective gpus without --tokens: the fewest GPUs, no days nor GPU-hours (it printed "0 tokens in any
# time" and "finish in 0.0 days, 0 GPU-hours"); gpt2-124m fits on one node of 8
out=$("$sim" search --model gpt2-124m --cluster dgx-h100 --gbs 64 --objective gpus --nodes-range 1-2 --threads 2); rc=$?
check "--objective gpus without tokens: one node, a step time, no GPU-hours" "[ $rc = 0 ] && grep -Eq '^answer: 8 GPUs \(1 node\) in tp .*, [0-9.]+ ms per step \([0-9.]+ % MFU\)$' <<<\"\$out\" && ! grep -q 'GPU-hours (' <<<\"\$out\" && ! grep -q '0 tokens' <<<\"\$out\""
out=$("$sim" search --model llama2-7b --cluster dgx-h100 --seq 4096 --gbs 512 --tokens 100G --days 0.001 --nodes-range 1-2 2>&1); rc=$?
check "sizing that cannot meet the deadline exits 1" "[ $rc = 1 ] && grep -q 'no GPU count of 1-2 nodes' <<<\"\$out\""

# Pareto plot (gnuplot)
if command -v gnuplot >/dev/null; then
  "$sim" search --model llama2-7b --cluster dgx-h100 --gpus 16 --seq 4096 --gbs 256 --pareto "$tmp/front.png" >/dev/null
  check "pareto png and svg" "[ -s $tmp/front.png ] && [ -s $tmp/front.svg ] && [ -s $tmp/pareto.dat ]"
fi

# context parallelism is a knob of the search: Llama 3 8B at 8192 tokens, FP8, tp 8 on
# 16 H100s: cp 2 (4096 tokens per CP rank) is tried and named in the table and JSON
cpout=$("$sim" search --model llama3-8b --cluster dgx-h100 --gpus 16 --seq 8192 --gbs 16 --tp 8 --top 3 --threads 2 --precision fp8)
check "search tries cp" "grep -Eq '^[123] +tp 8 cp 2 pp 1 dp 1 ' <<<\"\$cpout\""
cpjson=$("$sim" search --model llama3-8b --cluster dgx-h100 --gpus 16 --seq 8192 --gbs 16 --tp 8 --top 1 --threads 2 --fix cp=1 --json)
check "--fix cp=1 holds cp, JSON names it" "grep -q '\"cp\" : 1' <<<\"\$cpjson\" && ! grep -q '\"cp\" : 2' <<<\"\$cpjson\""

# bad input: one line on stderr, non-zero exit
bad() {  # name expected-substring args...
  local name=$1 want=$2; shift 2
  local e; e=$("$sim" search "$@" 2>&1 >/dev/null); local rc=$?
  check "$name" "[ $rc != 0 ] && [ \$(wc -l <<<\"\$e\") = 1 ] && grep -qF -- \"$want\" <<<\"\$e\""
}
bad "bad --fix knob" "--fix 'colour=red'" "${base[@]}" --fix colour=red
bad "bad --fix value" "ckpt is none, selective or full" "${base[@]}" --fix ckpt=often
bad "--fix schedule=naive names the schedules it takes" "schedule is 1f1b, gpipe, interleaved, zb-h1, zb-h2, zb-v or dualpipev" "${base[@]}" --fix schedule=naive
# every knob the refusal names is in --help (cp, ep, etp were missing from it), and a V schedule can be held
help=$("$sim" search --help)
check "search --help names every --fix knob" "grep -- '--fix=K=V' <<<\"\$help\" | grep -q 'tp, cp, pp, dp, zero, mbs, vpp, ckpt, schedule, sp, offload, order, ep, etp'"
zbv=$("$sim" search --model gpt2-124m --cluster dgx-h100 --gpus 8 --gbs 64 --top 1 --threads 2 --fix schedule=zb-v 2>/dev/null)
check "--fix schedule=zb-v holds the V schedule" "grep -Eq '^1 +tp .* zb-v v2 ' <<<\"\$zbv\""
bad "bad objective" "--objective 'fast'" "${base[@]}" --objective fast
bad "bad max-memory" "--max-memory 'lots'" "${base[@]}" --max-memory lots
bad "no cluster" "no cluster" --model llama2-7b
bad "bad node range" "--nodes-range '8-2'" --model llama2-7b --cluster dgx-h100 --gbs 512 --tokens 1T --days 3 --nodes-range 8-2
# the same --gbs-tokens rule as plan: 1M tokens at 8192 → 128 sequences, said
"$sim" search --model llama3-8b --cluster dgx-h100 --gpus 8 --gbs-tokens 1M --top 1 --threads 2 >"$tmp/out" 2>"$tmp/err"
check "search: 1M tokens at 8192 is 128 sequences" "grep -q 'global batch 128 sequences = 1048576 tokens (+4.9 %)' \"$tmp/err\" && grep -q 'global batch 128 × 8192' \"$tmp/out\""
bad "sizing without a batch" "needs the global batch" --model llama2-7b --cluster dgx-h100 --tokens 1T --days 3
bad "search without a batch" "needs the global batch" --model llama2-7b --cluster dgx-h100 --gpus 8

exit $fail
