#!/usr/bin/env bash
# The bad-input probe (issue 12), as a new user would try it: every class of
# wrong input — missing / directory / empty / binary / endless files,
# malformed INI and JSON, impossible models, absurd numbers, unknown and
# contradictory flags, unwritable outputs, long strings, executor values, a
# corrupt checkpoint — must end with ONE clear line on stderr naming what is
# wrong, a non-zero exit that is not a signal, and no hang (30 s each).
#   cli_bad_input.sh SIM EXEC
set -u
sim=$1 exe=$2
fail=0; n=0
tmp=$(mktemp -d); trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
# bad NAME WANT CMD...: WANT is a fixed substring the one line must contain
bad() {
  local name=$1 want=$2; shift 2
  n=$((n+1))
  timeout 30 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; local rc=$?
  local lines; lines=$(grep -c . "$tmp/err")
  local why=""
  if [ $rc -eq 0 ]; then why="exit 0"
  elif [ $rc -eq 124 ]; then why="hung (30 s)"
  elif [ $rc -ge 128 ]; then why="killed by signal $((rc-128))"
  elif [ "$lines" -ne 1 ]; then why="$lines lines on stderr"
  elif ! grep -qiF -- "$want" "$tmp/err"; then why="no '$want' in: $(head -c 300 "$tmp/err")"
  fi
  if [ -z "$why" ]; then echo "ok $n - $name"; else echo "not ok $n - $name: $why"; head -3 "$tmp/err" | sed 's/^/#   /'; fail=1; fi
}

# ---- files: missing, a directory, empty, binary, endless, unreadable ----
printf '\x00\x01\xff\xfe garbage \x00' >"$tmp/binary"
: >"$tmp/empty"
mkdir "$tmp/dir"
echo '[model]' >"$tmp/noread.ini"; chmod 000 "$tmp/noread.ini"
for kind in model plan cluster deepspeed; do
  base=(--model 7b --gpus 8)
  [ $kind = model ] && base=()
  bad "$kind: missing file" "nonexistent" "$sim" plan "${base[@]}" --$kind "$tmp/nonexistent.ini"
  bad "$kind: a directory" "$tmp/dir" "$sim" plan "${base[@]}" --$kind "$tmp/dir"
  bad "$kind: empty file" "$tmp/empty" "$sim" plan "${base[@]}" --$kind "$tmp/empty"
  bad "$kind: binary file" "$tmp/binary" "$sim" plan "${base[@]}" --$kind "$tmp/binary"
done
bad "deepspeed: endless file" "/dev/zero" "$sim" plan --model 7b --gpus 8 --deepspeed /dev/zero
bad "model: endless file" "/dev/zero" "$sim" plan --model /dev/zero
[ "$(id -u)" -ne 0 ] && bad "model: unreadable" "noread" "$sim" plan --model "$tmp/noread.ini"

# ---- malformed INI and JSON ----
printf '[model]\nlayers = 12\nhidden = \n' >"$tmp/m1.ini"
bad "model INI: empty value" "hidden" "$sim" plan --model "$tmp/m1.ini"
printf '[model]\nlayers = twelve\nhidden = 768\nheads = 12\nvocab = 50257\nseq = 1024\n' >"$tmp/m2.ini"
bad "model INI: word for a number" "layers" "$sim" plan --model "$tmp/m2.ini"
printf '[model\nlayers = 12\n' >"$tmp/m3.ini"
bad "model INI: unclosed group" "$tmp/m3.ini" "$sim" plan --model "$tmp/m3.ini"
printf '{"model_type": "llama", "hidden_size": 4096,' >"$tmp/trunc.json"
bad "HF json: truncated" "trunc.json" "$sim" plan --model "$tmp/trunc.json"
python3 -c 'print("["*100000 + "]"*100000)' >"$tmp/deep.json"
bad "HF json: nested 100000 deep" "deep.json" "$sim" plan --model "$tmp/deep.json"
echo '{"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 32000, "intermediate_size": "big"}' >"$tmp/str.json"
bad "HF json: string for a number" "intermediate_size" "$sim" plan --model "$tmp/str.json"
echo '{"model_type": "mamba", "hidden_size": 768}' >"$tmp/mamba.json"
bad "HF json: unknown model_type" "mamba" "$sim" plan --model "$tmp/mamba.json"
echo '{"train_batch_size": "lots"}' >"$tmp/ds1.json"
bad "ds_config: string batch" "train_batch_size" "$sim" plan --model 7b --gpus 8 --deepspeed "$tmp/ds1.json"
echo '{"train_batch_size": 64, "zero_optimization": {"stage": 7}}' >"$tmp/ds2.json"
bad "ds_config: ZeRO stage 7" "stage" "$sim" plan --model 7b --gpus 8 --deepspeed "$tmp/ds2.json"
echo '{"train_micro_batch_size_per_gpu": "auto"}' >"$tmp/ds3.json"
bad "ds_config: auto without a value" "auto" "$sim" plan --model 7b --gpus 8 --deepspeed "$tmp/ds3.json"
echo '{"traceEvents": [{"ph": "X", "name": "ampere_sgemm", "cat": "kernel", "ts": "abc", "dur": 5}]}' >"$tmp/tr1.json"
bad "compare: trace ts not a number" "no valid time" "$sim" compare --model 7b --cluster dgx-h100 --gpus 8 --trace "$tmp/tr1.json"
echo '{"traceEvents": [{"ph": "X", "name": 5, "cat": [], "ts": 1, "dur": 1}]}' >"$tmp/tr4.json"
bad "compare: trace name a number, cat an array (g_critical)" "no complete" "$sim" compare --model 7b --cluster dgx-h100 --gpus 8 --trace "$tmp/tr4.json"
bad "compare: trace /dev/zero (read until memory ran out)" "/dev/zero: is a device, not a file" "$sim" compare --model 7b --cluster dgx-h100 --gpus 8 --trace /dev/zero
echo '{"traceEvents": [{"ph": "X", "name": "ampere_sgemm", "cat": "kernel", "ts": 10, "dur": -5}]}' >"$tmp/tr2.json"
bad "compare: trace negative duration" "no valid time" "$sim" compare --model 7b --cluster dgx-h100 --gpus 8 --trace "$tmp/tr2.json"
echo '{"traceEvents": [{"ph": "X", "name": "ampere_sgemm", "cat": "kernel", "ts": 1e300, "dur": 1e300}]}' >"$tmp/tr3.json"
bad "compare: trace time 1e300" "no valid time" "$sim" compare --model 7b --cluster dgx-h100 --gpus 8 --trace "$tmp/tr3.json"
echo '{"train_batch_size": 64, "zero_optimization": {"stage": 3, "offload_param": {"device": "gpu"}}}' >"$tmp/ds4.json"
bad "ds_config: offload device gpu" "device 'gpu' is not none, cpu or nvme" "$sim" plan --model 7b --gpus 8 --deepspeed "$tmp/ds4.json"
printf '[plan]\ndp = 2\ntp = 0\n' >"$tmp/p1.ini"
bad "plan INI: tp 0" "tp" "$sim" plan --model 7b --plan "$tmp/p1.ini"
printf '[plan]\nschedule = sideways\n' >"$tmp/p2.ini"
bad "plan INI: unknown schedule" "sideways" "$sim" plan --model 7b --plan "$tmp/p2.ini"
printf '[plan]\ndp = 2\ntensor_parallel = 4\n' >"$tmp/p3.ini"
bad "plan INI: misspelt key" "tensor_parallel is not a plan key" "$sim" plan --model 7b --plan "$tmp/p3.ini"
bad "run: plan INI misspelt key" "tensor_parallel is not a plan key" "$exe" run --model tiny-gpt --plan "$tmp/p3.ini"
printf '[plan]\ndp = 2\n[pipeline]\npp = 2\n' >"$tmp/p4.ini"
bad "plan INI: a second group" "[pipeline] is not a plan group" "$sim" plan --model 7b --plan "$tmp/p4.ini"
sed 's/^memory = .*/memory = -80GB/' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c1.ini"
bad "cluster INI: negative memory" "[gpu] memory = '-80GB' is not a positive size" "$sim" plan --model 7b --cluster "$tmp/c1.ini"
sed 's/^memory = .*/memory = 80/' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c0.ini"
bad "cluster INI: memory without its unit" "[gpu] memory = '80' is 80 B, below 1 MiB: give the unit" "$sim" plan --model 7b --cluster "$tmp/c0.ini"
sed 's/^pcie_bw =/pcie_bandwidth =/' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c2.ini"
bad "cluster INI: misspelt optional key" "pcie_bandwidth is not a cluster key" "$sim" simulate --model 7b --gpus 8 --cluster "$tmp/c2.ini"
sed 's/^\[node\]/[nodes]/' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c3.ini"
bad "cluster INI: misspelt group" "[nodes] is not a cluster group" "$sim" simulate --model 7b --gpus 8 --cluster "$tmp/c3.ini"

# ---- second sweep: what was accepted silently, wrapped or overflowed ----
echo '{"train_micro_batch_size_per_gpu": 2147483647, "gradient_accumulation_steps": 2147483647, "train_batch_size": 1}' >"$tmp/ds5.json"
bad "ds_config: micro × accumulation × dp past 2^63" "micro 2147483647 × accumulation 2147483647 × dp 8 is a global batch above" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --deepspeed "$tmp/ds5.json"
echo '{"train_batch_size": 64, "pipeline": {"activation_checkpoint_interval": 99999999999}}' >"$tmp/ds6.json"
bad "ds_config: checkpoint interval 10^11 (was cut to 2^31-1)" "activation_checkpoint_interval = 99999999999 is too large" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --deepspeed "$tmp/ds6.json"
echo '{"train_batch_size": 64, "bf16": true}' >"$tmp/ds7.json"
bad "ds_config: bf16 true, not an object (was fp32)" '"bf16" must be an object' "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --deepspeed "$tmp/ds7.json"
echo '{"train_batch_size": 64, "zero_optimization": {"stage": 3, "offload_param": "cpu"}}' >"$tmp/ds8.json"
bad "ds_config: offload_param a string (was no offload)" "zero_optimization.offload_param must be an object" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --deepspeed "$tmp/ds8.json"
echo '{"train_batch_size": 64, "train_batch_size": 128}' >"$tmp/ds9.json"
bad "ds_config: a member twice (the last won)" 'member "train_batch_size" is given twice' "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --deepspeed "$tmp/ds9.json"
printf '{"train_batch_size": 64}\n{"train_batch_size": 128}\n' >"$tmp/ds10.json"
bad "ds_config: two JSON values (the first was read)" "line 2: text after the JSON value ends" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --deepspeed "$tmp/ds10.json"
echo '{"train_batch_size": 64, "zero_optimisation": {"stage": 3}}' >"$tmp/ds12.json"
bad "ds_config: zero_optimisation (was ignored: ZeRO-0)" "$tmp/ds12.json: unknown ds_config key \"zero_optimisation\" (did you mean 'zero_optimization'?)" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --deepspeed "$tmp/ds12.json"
echo '{"train_batch_size": 64, "zero_optimization": {"stage": 3, "shard_everything": true}}' >"$tmp/ds13.json"
bad "ds_config: unknown key inside zero_optimization (was ignored)" "$tmp/ds13.json: unknown ds_config key \"zero_optimization.shard_everything\"" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --deepspeed "$tmp/ds13.json"
sed 's/"hidden_size": [0-9]*/"hidden_size": 99999999999999999999/' "$(dirname "$0")/../configs/hf/llama-2-7b.json" >"$tmp/hf1.json"
bad "HF json: 10^20 (read as -1)" "the integer 99999999999999999999 is beyond 64 bits" "$sim" plan --model "$tmp/hf1.json"
sed 's/"rms_norm_eps": [0-9e.-]*/"rms_norm_eps": 0/' "$(dirname "$0")/../configs/hf/llama-2-7b.json" >"$tmp/hf2.json"
bad "HF json: rms_norm_eps 0 (became 1e-5)" '"rms_norm_eps" = 0 must be positive' "$sim" plan --model "$tmp/hf2.json"
printf '[plan]\ndp = 8\ndp = 4\n' >"$tmp/p5.ini"
bad "plan INI: a key twice (the last won)" "line 3: [plan] dp is given twice (first on line 2)" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --plan "$tmp/p5.ini"
printf '[plan]\ndp[de] = 4\n' >"$tmp/p6.ini"
bad "plan INI: a localized key (never read)" "[plan] dp[de] is a localized key" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --plan "$tmp/p6.ini"
printf '[plan]\nnodes = 99999999999\n' >"$tmp/p7.ini"
bad "plan INI: nodes 10^11 (was cut and called --nodes)" "[plan] nodes = 99999999999 is more than 16777216" "$sim" plan --model 7b --cluster dgx-h100 --plan "$tmp/p7.ini"
printf '[plan]\nworkspace_gb = 1e300\n' >"$tmp/p8.ini"
bad "plan INI: workspace 1e300 GB" "[plan] workspace_gb = 1e+300 is more than 1 PiB" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --plan "$tmp/p8.ini"
sed '/^\[gpu\]/a memory = 40GB' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c4.ini"
bad "cluster INI: memory twice (the last won)" "[gpu] memory is given twice" "$sim" plan --model 7b --cluster "$tmp/c4.ini"
# ---- third sweep: keys read only for being there, limits of one key set by another ----
sed 's/"factor": 8.0/"factor": 0/' "$(dirname "$0")/../configs/hf/llama-3.1-8b.json" >"$tmp/hf3.json"
bad "HF json: rope_scaling factor 0 (only its presence was read)" 'rope_scaling "factor" = 0 must be a finite number above 0' "$sim" plan --model "$tmp/hf3.json"
sed 's/"high_freq_factor": 4.0/"high_freq_factor": 0.5/' "$(dirname "$0")/../configs/hf/llama-3.1-8b.json" >"$tmp/hf4.json"
bad "HF json: llama3 high_freq_factor below low_freq_factor" 'rope_scaling "high_freq_factor" = 0.5 must be above "low_freq_factor" = 1' "$sim" plan --model "$tmp/hf4.json"
sed 's/^collective_sms = .*/collective_sms = 200/' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c5.ini"
bad "cluster INI: collective_sms above sms (cut to all SMs)" "[node] collective_sms = 200 is more than the GPU's [gpu] sms = 132" "$sim" plan --model 7b --cluster "$tmp/c5.ini"
sed '/^sms = /d' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c6.ini"
bad "cluster INI: collective_sms without sms (not read)" "[node] collective_sms needs [gpu] sms, the GPU's SM count" "$sim" plan --model 7b --cluster "$tmp/c6.ini"
sed 's/^latency = 3e-6/latency = 1e308/' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c7.ini"
bad "cluster INI: latency 1e308 (a step of inf ms)" "[node] latency = 1e+308 is more than 1 s" "$sim" simulate --model 7b --cluster "$tmp/c7.ini" --gpus 8
sed 's/^peak_bf16 = .*/peak_bf16 = 1e308/' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c8.ini"
bad "cluster INI: peak_bf16 1e308 (printed with 300 digits)" "[gpu] peak_bf16 = 1e+308 is more than 1e+18 FLOP/s" "$sim" simulate --model 7b --cluster "$tmp/c8.ini" --gpus 8
sed 's/^\[gpu\]/[gpu]\nmembound_bw_norm_fwd = 1e-300/' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c9.ini"
bad "cluster INI: a rate of 1e-300 B/s (a step of inf ms)" "[gpu] membound_bw_norm_fwd = 1e-300 is below 1e+06 B/s" "$sim" simulate --model 7b --cluster "$tmp/c9.ini" --gpus 8
bad "search --tokens 1e308 (days printed with 300 digits)" "--tokens 1e308 is more than 1e16 tokens" "$sim" search --model 7b --cluster dgx-h100 --gbs 64 --tokens 1e308 --days 30
bad "search --days 1e308" "--days 1e308 is more than a century (36525 days)" "$sim" search --model 7b --cluster dgx-h100 --gbs 64 --tokens 1T --days 1e308
bad "search --all-counts over 2^20 node counts (hours)" "--all-counts over 1-1048576 nodes is 1048576 searches, more than 1024" "$sim" search --model 7b --cluster dgx-h100 --gbs 64 --tokens 1T --days 1 --nodes-range 1-1048576 --all-counts
bad "plan: --out without --emit (ignored)" "--out $tmp/dir is the directory of --emit's files: give --emit" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --out "$tmp/dir"
bad "plan: --vpp 2 on one pipeline stage (did nothing)" "interleaved schedule needs pp ≥ 2 pipeline stages" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --vpp 2
bad "plan: --attention flash in fp32 (costed as if FlashAttention ran fp32)" "--attention flash takes bf16 or fp16 inputs, not fp32" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --attention flash --precision fp32
bad "--workspace 1e308" "--workspace '1e308' is more than 1 PiB per GPU" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --workspace 1e308
bad "--ckpt-interval without --ckpt full (ignored)" "--ckpt-interval 4 needs --ckpt full" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --ckpt-interval 4
bad "--imbalance on a dense model (ignored)" "imbalance 2 needs a mixture-of-experts model (7b has no experts)" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --imbalance 2

# ---- model semantics ----
printf '[model]\nlayers = 12\nhidden = 770\nheads = 12\nvocab = 50257\nmax_seq = 1024\n' >"$tmp/m4.ini"
bad "heads do not divide hidden" "heads" "$sim" plan --model "$tmp/m4.ini"
printf '[model]\nlayers = 2147483647\nhidden = 768\nheads = 12\nvocab = 50257\nmax_seq = 1024\n' >"$tmp/m5.ini"
bad "layers 2^31-1" "layers" "$sim" plan --model "$tmp/m5.ini"
printf '[model]\nlayers = 12\nhidden = 768\nheads = 12\nvocab = 0\nmax_seq = 1024\n' >"$tmp/m6.ini"
bad "vocab 0" "vocab" "$sim" plan --model "$tmp/m6.ini"
bad "unknown preset" "no-such-model" "$sim" plan --model no-such-model
bad "unknown cluster" "no-such-cluster" "$sim" plan --model 7b --cluster no-such-cluster

# ---- numbers: zero, negative, NaN, Inf, overflow, sentinels ----
for flag in --dp --tp --pp --mbs --gbs --gpus --nodes --vpp --seq; do
  bad "$flag 0" "${flag#--}" "$sim" plan --model 7b $flag 0
  bad "$flag -1" "${flag#--}" "$sim" plan --model 7b $flag -1
done
bad "--zero 4" "zero" "$sim" plan --model 7b --zero 4
bad "--zero -1" "zero" "$sim" plan --model 7b --zero -1
bad "--gbs 2^40" "gbs" "$sim" plan --model 7b --gbs 1099511627776
bad "--gbs-tokens NaN" "gbs-tokens" "$sim" plan --model 7b --gbs-tokens nan
bad "--gbs-tokens Inf" "gbs-tokens" "$sim" plan --model 7b --gbs-tokens inf
bad "--gbs-tokens 1e400" "gbs-tokens" "$sim" plan --model 7b --gbs-tokens 1e400
bad "--workspace -5" "workspace" "$sim" plan --model 7b --workspace -5
bad "--dp 2^31 overflow" "dp" "$sim" plan --model 7b --dp 2147483648
# 2^24 GPUs, the most a cluster may have: an answer, not hours in the link costs
n=$((n+1)); timeout 30 "$sim" plan --model 7b --cluster dgx-h100 --nodes 2097152 >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 0 ]; then echo "ok $n - plan on 2^24 GPUs ends"; else echo "not ok $n - plan on 2^24 GPUs: rc $rc"; fail=1; fi
bad "dp·tp·pp overflows" "" "$sim" plan --model 7b --dp 65536 --tp 65536 --pp 65536
bad "simulate --steps 0" "steps" "$exe" run --model tiny-gpt --steps 0
# 2^30 micro-batches a step: refused, not simulated for hours (PX_PLAN_MAX_PASSES)
bad "simulate --gbs 2^30" "passes per step" "$sim" simulate --model 7b --cluster dgx-h100 --gpus 8 --gbs 1073741824
bad "plan --gbs 2^30" "passes per step" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --gbs 1073741824
bad "search --gbs 2^20 on 8 GPUs (hours of candidates)" "global batch 1048576 on 8 GPUs is more than 2048 sequences per GPU" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 1048576
n=$((n+1)); out=$(timeout 30 "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --gbs 1048576 2>/dev/null); rc=$?
if [ $rc -eq 0 ] && grep -q "would fit  not searched: 1048576 sequences on 8 GPUs is more than 2048 per GPU" <<<"$out"; then
  echo "ok $n - plan --gbs 2^20 on 8 GPUs: the fitting layout is not searched for hours"
else echo "not ok $n - plan --gbs 2^20 on 8 GPUs: rc $rc"; fail=1; fi
bad "search --gbs 2^30" "sequences per GPU" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 1073741824
bad "run --gbs 10^9" "passes per step" "$exe" run --model tiny-gpt --gbs 1000000000
bad "simulate --full on 2^24 GPUs" "--full simulates every rank" "$sim" simulate --model 7b --cluster dgx-h100 --gpus 16777216 --tp 8 --pp 32 --full
bad "bubble --pp 10^5" "passes per step" "$sim" bubble --pp 100000
bad "bubble --m of 10000 points (an hour of simulations)" "--m's first 65 points are 17039360 passes of --pp 64 × 2 chunks in all, more than 2^24" "$sim" bubble --pp 64 --m "$(python3 -c "print(','.join(['2048'] * 10000))")"
bad "bubble --vpp 10^6" "passes per step" "$sim" bubble --vpp 1000000

# ---- unknown and contradictory flags ----
bad "unknown flag" "--frobnicate" "$sim" plan --model 7b --frobnicate
bad "unknown command" "frobnicate" "$sim" frobnicate
bad "--gpus and --nodes disagree" "gpus" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --nodes 2
bad "--gbs and --gbs-tokens both" "gbs" "$sim" plan --model 7b --gbs 8 --gbs-tokens 4M
bad "--sp without tp" "sequence parallelism" "$sim" plan --model 7b --sp
bad "--tp-overlap unknown" "is not one of none, te" "$sim" plan --model 7b --gpus 8 --tp 8 --sp --stack megatron-core --tp-overlap fast
bad "--tp-overlap without tp" "needs tp > 1" "$sim" simulate --model 7b --cluster dgx-h100 --stack megatron-core --tp-overlap te
bad "--tp-overlap without sp" "needs sequence parallelism" "$sim" simulate --model 7b --cluster dgx-h100 --tp 8 --stack megatron-core --tp-overlap te
bad "--tp-overlap off megatron-core" "needs --stack megatron-core" "$sim" simulate --model 7b --cluster dgx-h100 --tp 8 --sp --tp-overlap te
bad "--tp-overlap search off megatron-core" "needs --stack megatron-core" "$sim" search --model 7b --cluster dgx-h100 --gbs 64 --tp-overlap te
bad "--compile off torchtitan" "needs --stack torchtitan (stack is parallax)" "$sim" simulate --model llama3-8b --cluster dgx-h100 --compile
bad "--compile under fsdp" "needs --stack torchtitan (stack is fsdp)" "$sim" plan --model llama3-8b --gpus 8 --stack fsdp --compile
bad "--compile search off torchtitan" "needs --stack torchtitan" "$sim" search --model llama3-8b --cluster dgx-h100 --gbs 64 --compile
bad "--compile on a GPT block" "gpt2-124m is not one" "$sim" simulate --model gpt2-124m --cluster dgx-h100 --stack torchtitan --compile
bad "gbs not a multiple of mbs·dp" "global batch" "$sim" plan --model 7b --gpus 8 --dp 8 --mbs 2 --gbs 12
bad "unknown schedule" "sideways" "$sim" simulate --model 7b --cluster dgx-h100 --gpus 8 --schedule sideways
bad "partition: weights summing to inf" "sum beyond the largest number" "$sim" partition --weights 1e308,1e308 --stages 1
bad "unknown --units" "units" "$sim" plan --model 7b --units furlongs
bad "search --max-mbs 0" "--max-mbs 0 must be a whole number" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --max-mbs 0
bad "search: --fix tp twice (one won)" "--fix 'tp=4': this knob is already held" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --fix tp=2 --fix tp=4
bad "search: --tp and --fix tp (one won)" "--fix 'tp=2': this knob is already held" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --tp 4 --fix tp=2
bad "search: --nodes-range without sizing (ignored)" "--nodes-range sizes a cluster: it needs --tokens and --days" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --nodes-range 1-4
bad "search: --out without --emit (ignored)" "give --emit" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --out "$tmp/dir"
bad "search: --max-memory above the GPU's (cut to it)" "--max-memory 1e308 is more than the H100-SXM5-80GB's 85.5 GB" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --max-memory 1e308
bad "search: --margin of all the memory" "--margin 100GB leaves no memory" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --margin 100GB
bad "search --confirm 10^6 (every layout simulated, for minutes)" "--confirm 1000000 is more than 10000" "$sim" search --model 7b --cluster dgx-h100 --nodes 128 --gbs 1024 --confirm 1000000
bad "search --top 10^6" "--top 1000000 is more than 1000" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --top 1000000
mkdir "$tmp/d.ini"
bad "search: --emit FILE.ini that is a directory (named a temporary file)" "$tmp/d.ini: is a directory" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --emit "$tmp/d.ini"
bad "search --threads 100000" "--threads 100000 is more than 1024" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --threads 100000
bad "program: --rank and --stage disagree" "--rank 7 is on pipeline stage 1, not --stage 0" "$sim" program --model 7b --gpus 8 --pp 2 --stage 0 --rank 7
bad "unknown --order" "order" "$sim" plan --model 7b --order tp,tp,pp
bad "--emit unknown format" "emit" "$sim" plan --model 7b --gpus 8 --emit nonsense
bad "extra positional argument" "stray" "$sim" plan --model 7b stray

# ---- unwritable outputs and long strings ----
mkdir "$tmp/ro"; chmod 555 "$tmp/ro"
if [ "$(id -u)" -ne 0 ]; then
  bad "--trace into a read-only dir" "ro" "$sim" simulate --model 7b --cluster dgx-h100 --gpus 8 --trace "$tmp/ro/t.json"
fi
bad "--trace into a missing dir" "missing" "$sim" simulate --model 7b --cluster dgx-h100 --gpus 8 --trace "$tmp/missing/t.json"
bad "--csv is a directory" "dir" "$sim" simulate --model 7b --cluster dgx-h100 --gpus 8 --csv "$tmp/dir"
long=$(head -c 100000 /dev/zero | tr '\0' x)
bad "100 kB model name" "model" "$sim" plan --model "$long"
printf '[plan]\nschedule = %s\n' "$long" >"$tmp/p9.ini"
bad "plan INI: a 100 kB value (repeated whole in the message)" "[plan] schedule = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…' is 100000 bytes long, more than 1024" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --plan "$tmp/p9.ini"
python3 -c 'import json,sys; print(json.dumps({"model_type": "x" * 500000}))' >"$tmp/hf5.json"
bad "HF json: a model_type of 500 kB (repeated whole in the message)" "line 1: a string of 500000 bytes" "$sim" plan --model "$tmp/hf5.json"
python3 -c 'print("{\"train_batch_size\": " + "9" * 900000 + "}")' >"$tmp/ds11.json"
bad "ds_config: an integer of 900000 digits (repeated whole in the message)" "line 1: the integer 9999999999999999999999999999999999999999999999999999999999999999… is beyond 64 bits" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --deepspeed "$tmp/ds11.json"
python3 -c 'import json,sys; print(json.dumps({"traceEvents": [{"ph": "X", "name": "k" * 500000, "cat": "kernel", "ts": "a", "dur": 1}]}))' >"$tmp/tr6.json"
n=$((n+1)); timeout 30 "$sim" compare --model 7b --cluster dgx-h100 --gpus 8 --trace "$tmp/tr6.json" >/dev/null 2>"$tmp/err"
if [ "$(wc -c <"$tmp/err")" -lt 1000 ]; then echo "ok $n - compare: an event name of 500 kB is cut in the message"; else echo "not ok $n - compare: the event name of 500 kB fills the message"; fail=1; fi
bad "100 kB schedule" "schedule" "$sim" plan --model 7b --schedule "$long"

# ---- the executor ----
bad "run: --gpus not a multiple of tp·cp·pp" "multiple" "$exe" run --model tiny-gpt --gpus 3 --tp 2
bad "run: --gpus against dp·tp·pp" "--gpus" "$exe" run --model tiny-gpt --gpus 4 --dp 1 --tp 2
bad "run: --nodes without a cluster" "--nodes" "$exe" run --model tiny-gpt --nodes 2
bad "run: --lr NaN" "lr" "$exe" run --model tiny-gpt --lr nan
bad "run: --tp-overlap" "not run by the executor" "$exe" run --model tiny-gpt --gpus 2 --tp 2 --sp --stack megatron-core --tp-overlap te --steps 1
bad "run: --lr -1" "lr" "$exe" run --model tiny-gpt --lr -1
bad "run: --clip Inf" "clip" "$exe" run --model tiny-gpt --clip inf
bad "run: --weight-decay 2" "weight-decay" "$exe" run --model tiny-gpt --weight-decay 2
bad "run: --warmup beyond decay" "warmup" "$exe" run --model tiny-gpt --steps 5 --warmup 50
bad "run: --timeout 0" "timeout" "$exe" run --model tiny-gpt --timeout 0
bad "run: --dtype f8" "dtype" "$exe" run --model tiny-gpt --dtype f8
bad "run: --backend nosuch" "nosuch" "$exe" run --model tiny-gpt --backend nosuch
bad "run: --comm nosuch" "nosuch" "$exe" run --model tiny-gpt --comm nosuch
bad "run: --trace into a missing dir (before training)" "--trace $tmp/missing/t.json: $tmp/missing does not exist" "$exe" run --model tiny-gpt --steps 1 --trace "$tmp/missing/t.json"
bad "run: --csv is a directory" "is a directory" "$exe" run --model tiny-gpt --steps 1 --csv "$tmp/dir"
bad "run: data file missing" "nonexistent.bin: no such file" "$exe" run --model tiny-gpt --data "$tmp/nonexistent.bin"
bad "run: data file binary junk" "binary" "$exe" run --model tiny-gpt --data "$tmp/binary"
bad "run: --resume from nothing" "nothing" "$exe" run --model tiny-gpt --resume "$tmp/nothing"
bad "run: --save to a file" "binary" "$exe" run --model tiny-gpt --steps 1 --save "$tmp/binary"
bad "run: --loss-scale with f32 (ignored)" "--loss-scale is f16's dynamic loss scale: it has no meaning with --dtype f32" "$exe" run --model tiny-gpt --loss-scale 1024
bad "run: --save-every without --save (ignored)" "--save-every needs --save DIR" "$exe" run --model tiny-gpt --save-every 2
bad "run: --keep without --save (ignored)" "--keep needs --save DIR" "$exe" run --model tiny-gpt --keep=1
bad "run: --decay-steps 0 (meant --steps)" "--decay-steps must be at least 1" "$exe" run --model tiny-gpt --decay-steps 0
bad "run: --seed -1 (wrapped to 2^64-1)" "--seed -1 must be 0 or more" "$exe" run --model tiny-gpt --seed -1
bad "data: --seed 2^32 (wrapped to 0)" "--seed 4294967296 must be 0..4294967295" "$exe" data --synthetic --seed 4294967296 --out "$tmp/d.bin"
bad "data: --tokens with --info (ignored)" "--tokens writes a synthetic corpus: it has no meaning with --info" "$exe" data --info "$tmp/binary" --tokens 5
bad "data: --seq with --synthetic (ignored)" "--seq counts --info's windows" "$exe" data --synthetic --seq 8 --out "$tmp/d.bin"
bad "data: --out a directory (named a temporary file)" "token file $tmp/dir: is a directory" "$exe" data --synthetic --tokens 100 --out "$tmp/dir"
python3 -c 'import struct,sys; open(sys.argv[1],"wb").write(struct.pack("<256i", 20240520, 1, -5, *[0]*253))' "$tmp/neg.bin"
bad "data: a header of -5 tokens (said the sizes differ: 1024 and 1024 bytes)" "header says -5 tokens, a negative count" "$exe" data --info "$tmp/neg.bin"
bad "data: --tokens 0" "tokens" "$exe" data --synthetic --tokens 0 --out "$tmp/d.bin"
bad "calibrate: --seq -1" "--seq -1 must be a whole number" "$exe" calibrate --seq -1 --out "$tmp/cal.ini"
bad "calibrate: --ranks 100000" "--ranks 100000 is not in 1..64" "$exe" calibrate --ranks 100000 --out "$tmp/cal.ini"
bad "calibrate: --out in a missing dir" "missing does not exist" "$exe" calibrate --out "$tmp/missing/cal.ini"
bad "calibrate: --out a directory" "is a directory" "$exe" calibrate --out "$tmp/dir"
bad "launch: --grace 1e308 (overflowed its timer)" "--grace 1e+308 is not 0 or a number of seconds in 0.001..86400" "$exe" launch -n 1 --grace 1e308 -- run
bad "calibrate: --seq beyond the model (hours of seq² attention)" "--seq 1000000 exceeds tiny-gpt's 64 positions" "$exe" calibrate --seq 1000000 --out "$tmp/cal.ini"
bad "calibrate: --name with a newline (broke the profile)" "argument 'a\\nb' holds a control character" "$exe" calibrate --name "$(printf 'a\nb')" --out "$tmp/cal.ini"
bad "launch: -n 100000" "more than 256 local ranks" "$exe" launch -n 100000 -- /bin/true
# a corrupt checkpoint: one flipped byte in a shard
"$exe" run --model tiny-gpt --steps 1 --save "$tmp/ck" >/dev/null 2>&1
shard=$(find "$tmp/ck" -name 'rank-*.ckpt' | head -1)
if [ -n "$shard" ]; then
  printf '\x5a' | dd of="$shard" bs=1 seek=200 conv=notrunc status=none
  bad "run: a shard with a flipped byte" "corrupt" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck"
  rm -f "$shard"
  bad "run: a missing shard" "rank-" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck"
fi
# a manifest whose step overflows an int (it was read as 1215752191)
"$exe" run --model tiny-gpt --steps 1 --save "$tmp/ck2" >/dev/null 2>&1
man=$(find "$tmp/ck2" -name manifest.json | head -1)
if [ -n "$man" ]; then
  sed -i 's/"step" : 1,/"step" : 99999999999,/' "$man"
  bad "run: manifest step 99999999999" "not a parallax checkpoint manifest" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck2"
fi

# the second sweep's checkpoints: a shard listed twice, a shard or 'latest'
# that is a device (read without end), 'latest' holding binary garbage
"$exe" run --model tiny-gpt --steps 1 --save "$tmp/ck3" >/dev/null 2>&1
man=$(find "$tmp/ck3" -name manifest.json | head -1)
if [ -n "$man" ]; then
  cp -r "$tmp/ck3" "$tmp/ck4"; cp -r "$tmp/ck3" "$tmp/ck5"
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); m["files"]=m["files"]*2; json.dump(m,open(sys.argv[1],"w"))' "$man"
  bad "run: a shard listed twice" "file entries 0 and 1 both name file rank-00000.ckpt" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck3"
  shard=$(find "$tmp/ck4" -name 'rank-*.ckpt' | head -1); rm "$shard"; ln -s /dev/zero "$shard"
  bad "run: a shard that is /dev/zero" "not a regular file" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck4"
  rm "$tmp/ck5/latest"; ln -s /dev/zero "$tmp/ck5/latest"
  bad "run: 'latest' that is /dev/zero" "latest: is a device, not a file" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck5"
  rm "$tmp/ck5/latest"; printf 'step\001\n\377' >"$tmp/ck5/latest"
  bad "run: 'latest' holding binary" "holds 'step\\001" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck5"
  rm "$tmp/ck5/latest"; ln -s loop "$tmp/ck5/latest"; ln -s latest "$tmp/ck5/loop"
  bad "run: 'latest' a symbolic link loop (said: no 'latest' file)" "'latest' is a symbolic link to 'loop' that leads nowhere (Too many levels of symbolic links)" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck5"
fi

# the fifth sweep's: a NaN written into a tensor with the manifest's SHA-256 made to match (it was
# resumed silently, and the next step stopped on a non-finite gradient norm, blaming the learning rate)
"$exe" run --model tiny-gpt --steps 1 --save "$tmp/ck8" >/dev/null 2>&1
shard=$(find "$tmp/ck8" -name 'rank-00000.ckpt' | head -1)
if [ -n "$shard" ]; then
  python3 -c '
import hashlib, json, os, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
H = struct.unpack("<Q", b[8:16])[0]; t = json.loads(b[16:16 + H])["tensors"][0]
o = 16 + H + t["offset"] * 4; b[o:o + 4] = struct.pack("<f", float("nan")); open(p, "wb").write(b)
m = os.path.join(os.path.dirname(p), "manifest.json"); j = json.load(open(m))
for f in j["files"]:
    if f["file"] == "rank-00000.ckpt": f["sha256"] = hashlib.sha256(b).hexdigest()
json.dump(j, open(m, "w"))' "$shard"
  bad "run: a NaN in a shard whose checksum matches" "of weight of tensor wte.weight is nan, not a finite number" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck8"
fi
# a shard whose header says another step (or rank) than the manifest, and a dimension of 2^40 (its
# element count overflowed), both with the manifest's SHA-256 made to match: read as this step's
"$exe" run --model tiny-gpt --steps 1 --save "$tmp/ck9" >/dev/null 2>&1
shard=$(find "$tmp/ck9" -name 'rank-00000.ckpt' | head -1)
if [ -n "$shard" ]; then
  cp -r "$tmp/ck9" "$tmp/ck10"
  edit() { python3 -c '
import hashlib, json, os, struct, sys
p = sys.argv[1]; b = open(p, "rb").read(); H = struct.unpack("<Q", b[8:16])[0]; h = json.loads(b[16:16 + H])
exec(sys.argv[2])
hb = json.dumps(h).encode(); b = b[:8] + struct.pack("<Q", len(hb)) + hb + b[16 + H:]; open(p, "wb").write(b)
m = os.path.join(os.path.dirname(p), "manifest.json"); j = json.load(open(m))
for f in j["files"]:
    if f["file"] == "rank-00000.ckpt": f["sha256"] = hashlib.sha256(b).hexdigest(); f["bytes"] = len(b)
json.dump(j, open(m, "w"))' "$1" "$2"; }
  edit "$shard" 'h["step"] = 7'
  bad "run: a shard of step 7 under a manifest of step 1" "its header says rank 0 step 7, the manifest rank 0 step 1" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck9"
  edit "$(find "$tmp/ck10" -name 'rank-00000.ckpt')" 'h["tensors"][0]["shape"] = [2**40, 2**40]'
  bad "run: a shard tensor of shape 2^40 x 2^40 (overflowed)" "tensor wte.weight: a dimension of 1099511627776" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck10"
fi

# the third sweep's: JSON nested 200000 deep (json-glib's recursion overflowed
# the stack) in a manifest and in a profiler trace, a manifest that is /dev/zero
"$exe" run --model tiny-gpt --steps 1 --save "$tmp/ck6" >/dev/null 2>&1
man=$(find "$tmp/ck6" -name manifest.json | head -1)
if [ -n "$man" ]; then
  cp -r "$tmp/ck6" "$tmp/ck7"
  python3 -c 'print("[" * 200000)' >"$man"
  bad "run: a manifest nested 200000 deep (segfault)" "manifest.json: JSON nested deeper than 32 levels" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck6"
  man=$(find "$tmp/ck7" -name manifest.json | head -1); rm "$man"; ln -s /dev/zero "$man"
  bad "run: a manifest that is /dev/zero (read without end)" "manifest.json: is a device, not a file" "$exe" run --model tiny-gpt --steps 2 --resume "$tmp/ck7"
fi
python3 -c 'print("{\"traceEvents\": " + "[" * 200000 + "]" * 200000 + "}")' >"$tmp/tr5.json"
bad "compare: a trace nested 200000 deep (segfault)" "tr5.json: JSON nested deeper than 32 levels" "$sim" compare --model 7b --cluster dgx-h100 --gpus 8 --trace "$tmp/tr5.json"
bad "simulate: --trace a directory (named a temporary file)" "$tmp/dir: is a directory" "$sim" simulate --model 7b --cluster dgx-h100 --gpus 8 --trace "$tmp/dir"

# ---- fourth sweep: empty output names, outputs met after the work, runs that did nothing ----
bad "simulate: --trace '' (named a temporary file in g_rename)" "--trace '': the file name is empty" "$sim" simulate --model 7b --cluster dgx-h100 --gpus 8 --trace ""
bad "run: --trace '' (failed after the run, naming a temporary file)" "--trace '': the file name is empty" "$exe" run --model tiny-gpt --steps 1 --trace ""
bad "calibrate: --out ''" "--out '': the file name is empty" "$exe" calibrate --out ""
bad "plan: --emit --out '' ('cannot create : Invalid argument')" "the directory name is empty" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --emit ini --out ""
: >"$tmp/afile"
bad "plan: --emit --out a file" "$tmp/afile exists and is not a directory" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --emit ini --out "$tmp/afile"
bad "run: --plot a file (failed after the whole run)" "--plot: $tmp/afile exists and is not a directory" "$exe" run --model tiny-gpt --steps 1 --plot "$tmp/afile"
"$exe" run --model tiny-gpt --steps 3 --save "$tmp/ck8" >/dev/null 2>&1
bad "run: --resume at step 3 with --steps 1 (ran nothing, exit 0)" "--resume $tmp/ck8 is at step 3, --steps 1 is the step to reach: no step would run (give --steps above 3)" "$exe" run --model tiny-gpt --steps 1 --resume "$tmp/ck8"
bad "run: --resume at step 3 with --steps 3" "no step would run" "$exe" run --model tiny-gpt --steps 3 --resume "$tmp/ck8"
bad "run: RANK=1 WORLD_SIZE=2 without MASTER_ADDR (ran the whole world as threads)" "RANK=1 of WORLD_SIZE=2 has no way to meet the others" env RANK=1 WORLD_SIZE=2 MASTER_PORT=29999 "$exe" run --model tiny-gpt --steps 1 --gpus 2
bad "run: WORLD_SIZE without RANK or MASTER_ADDR (ignored)" "WORLD_SIZE=2 is set but RANK is not" env WORLD_SIZE=2 "$exe" run --model tiny-gpt --steps 1 --gpus 2
# --gantt beside --json: drawn on stderr, stdout one JSON object (the chart was dropped)
n=$((n+1)); timeout 30 "$exe" run --model tiny-gpt --steps 1 --gantt --json >"$tmp/out" 2>"$tmp/err"; rc=$?
if [ $rc -eq 0 ] && python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/out" && grep -q "measured timeline of step 1" "$tmp/err"; then
  echo "ok $n - run: --gantt with --json draws on stderr"
else echo "not ok $n - run: --gantt with --json: rc $rc"; fail=1; fi

# plan file keys the flags' checks did not reach, and sizes below one element
printf '[plan]\nckpt_interval = 4\n' >"$tmp/p10.ini"
bad "plan INI: ckpt_interval without ckpt full (ignored)" "p10.ini: [plan] ckpt_interval = 4 needs ckpt = full (checkpointing is none)" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --plan "$tmp/p10.ini"
printf '[plan]\nimbalance = 2\n' >"$tmp/p11.ini"
bad "plan INI: imbalance on a dense model (ignored)" "imbalance 2 needs a mixture-of-experts model (7b has no experts)" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --plan "$tmp/p11.ini"
printf '[plan]\ngrad_reduce_bytes = 1000\n' >"$tmp/p12.ini"
bad "plan INI: grad_reduce_bytes 1000 (1000 B of gradient a parameter)" "grad_reduce_bytes = 1000 is not the size of a gradient element" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --plan "$tmp/p12.ini"
bad "--bucket 1e-300 B (emitted reduce_bucket_size 0)" "gradient bucket 1e-300 B is less than one 2-byte gradient element" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --bucket 1e-300
printf '[plan]\nbucket_bytes = 3\nprecision = fp32\n' >"$tmp/p13.ini"
bad "plan INI: bucket_bytes 3 in fp32" "gradient bucket 3 B is less than one 4-byte gradient element" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --plan "$tmp/p13.ini"

# an efficiency of 0 taken as the ideal 1; MoE keys ignored where nothing reads them
sed 's/^gemm_efficiency = .*/gemm_efficiency = 0/' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c10.ini"
bad "cluster INI: gemm_efficiency 0 (planned as the ideal 1)" "[gpu] gemm_efficiency = 0 is no achieved rate: give a fraction in (0, 1], or leave the key out" "$sim" simulate --model 7b --cluster "$tmp/c10.ini" --gpus 8
printf '[model]\nlayers = 2\nhidden = 64\nheads = 4\nvocab = 256\nmax_seq = 64\naux_loss_coef = 0.01\n' >"$tmp/m7.ini"
bad "model INI: aux_loss_coef on a dense model (ignored)" "aux_loss_coef and norm_topk describe a mixture of experts: give experts too" "$sim" plan --model "$tmp/m7.ini"
printf '[model]\nlayers = 2\nhidden = 64\nheads = 4\nvocab = 256\nmax_seq = 64\nexperts = 4\ntop_k = 2\nshared_ffn = 32\n' >"$tmp/m8.ini"
bad "model INI: shared_ffn without shared_experts (ignored)" "[model] shared_ffn needs shared_experts" "$sim" plan --model "$tmp/m8.ini"

bad "calibrate: --ranks 4 with --comm mpi (replaced by the world's 1)" "--ranks 4 counts the thread-ranks of --comm local; under --comm mpi the ranks are mpirun's processes" "$exe" calibrate --comm mpi --ranks 4 --out "$tmp/cal.ini"

echo '{"train_batch_size": 64, "zero_optimization": {"stage": 2, "reduce_bucket_size": 0}}' >"$tmp/ds14.json"
bad "ds_config: reduce_bucket_size 0 (read as absent: 5e8)" "zero_optimization.reduce_bucket_size = 0 is a bucket of no elements" "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --deepspeed "$tmp/ds14.json"
echo '{"train_batch_size": 64, "communication_data_type": "int7"}' >"$tmp/ds15.json"
bad "ds_config: communication_data_type int7 (accepted; DeepSpeed raises)" 'communication_data_type must be "fp16", "bf16" or "fp32"' "$sim" plan --model 7b --cluster dgx-h100 --gpus 8 --deepspeed "$tmp/ds15.json"

bad "search: --pareto '' (after the search: 'could not rename ./pareto.png to ')" "--pareto '': the file name is empty" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --pareto ""
bad "search: --pareto a directory (after the search)" "--pareto $tmp/dir: is a directory" "$sim" search --model 7b --cluster dgx-h100 --gpus 8 --gbs 64 --pareto "$tmp/dir"

echo '{"traceEvents": [{"ph": "X", "name": "ampere_sgemm", "cat": "kernel", "ts": 10, "dur": 5}]}' >"$tmp/tr7.json"
bad "compare: --timeline a directory (named json-glib's temporary file)" "--timeline $tmp/dir: is a directory" "$sim" compare --model 7b --cluster dgx-h100 --gpus 8 --trace "$tmp/tr7.json" --timeline "$tmp/dir"
bad "compare: --timeline ''" "--timeline '': the file name is empty" "$sim" compare --model 7b --cluster dgx-h100 --gpus 8 --trace "$tmp/tr7.json" --timeline ""

# GOption read the commands' own integer flags with strtol's base 0: "010" was 8, "0x10" 16
bad "run: --steps 0x3 (trained 3 steps)" "--steps '0x3' is not a whole number (decimal digits)" "$exe" run --model tiny-gpt --seq 16 --mbs 2 --gbs 8 --steps 0x3
bad "data: -n 0x100 (wrote 256 tokens)" "-n '0x100' is not a whole number (decimal digits)" "$exe" data --synthetic -n 0x100 --out "$tmp/hex.bin"
bad "bubble: --pp 2^31 (glib's message)" "--pp 2147483648 is beyond 2147483647" "$sim" bubble --pp 2147483648
bad "launch: --master-port 0 (took a free port)" "--master-port 0 is not in 1..65535" "$exe" launch --master-port 0 -n 1 -- run
n=$((n+1)); timeout 30 "$exe" data --synthetic --tokens 0100 --vocab 010 --out "$tmp/oct.bin" >"$tmp/out" 2>"$tmp/err"; rc=$?
if [ $rc -eq 0 ] && grep -q "100 tokens, vocab 10," "$tmp/out"; then echo "ok $n - data: --tokens 0100 --vocab 010 are 100 and 10 (were 64 and 8)"
else echo "not ok $n - data: --tokens 0100 --vocab 010: rc $rc, $(cat "$tmp/out" "$tmp/err")"; fail=1; fi

bad "search: sizing with --gpus 32 (answered 8 GPUs, the size dropped)" "--gpus 32 gives the size; sizing (--tokens/--days, --objective gpus) chooses it" "$sim" search --model 7b --cluster dgx-h100 --gpus 32 --gbs 64 --tokens 1T --days 300
bad "search: --objective gpus with --nodes 2 (dropped)" "--nodes 2 gives the size" "$sim" search --model 7b --cluster dgx-h100 --nodes 2 --gbs 64 --objective gpus

bad "run: --timeout 1e-9 (a deadline of 0 s)" "--timeout must be in [1e-6, 86400] seconds" "$exe" run --model tiny-gpt --seq 16 --mbs 2 --gbs 8 --steps 1 --timeout 1e-9
bad "launch: --grace 0.0001 (a timer of 0 ms)" "--grace 0.0001 is not 0 or a number of seconds in 0.001..86400" "$exe" launch -n 1 --grace 0.0001 -- run

# a name is written into launch files' header comments: a newline in a model file's name put a command
# into pretrain_gpt.sh; a '"' in [model] name ended torchtitan's TOML string. A newline on the command
# line is refused before any command (every message quoting the value was two lines and more).
printf '[model]\nlayers = 2\nhidden = 64\nheads = 4\nvocab = 256\nmax_seq = 64\n' >"$tmp/x
touch PWNED
#.ini"
bad "model: a file name with newlines (a command in pretrain_gpt.sh)" "argument '$tmp/x\ntouch PWNED\n#.ini' holds a control character" "$sim" plan --model "$tmp/x
touch PWNED
#.ini" --gpus 8 --emit megatron --out "$tmp/emit-nl"
printf '[model]\nlayers = 2\nhidden = 64\nheads = 4\nvocab = 256\nmax_seq = 64\n' >"$tmp/x	z.ini"
printf '[plan]\nmodel = %s\n' "$tmp/x	z.ini" >"$tmp/p14.ini"
bad "plan INI: a model file named with a tab (its name went into launch files)" "model name 'x\tz' is not one line of text" "$sim" plan --plan "$tmp/p14.ini" --gpus 8
sed 's/^name = H100-SXM5-80GB/name = H100\tSXM/' "$(dirname "$0")/../configs/clusters/dgx-h100.ini" >"$tmp/c11.ini"
bad "cluster INI: a GPU name with a tab" "the GPU name 'H100\tSXM' is not one line of text" "$sim" plan --model 7b --cluster "$tmp/c11.ini" --gpus 8
printf '[model]\nname = a"b\nlayers = 2\nhidden = 64\nheads = 4\nvocab = 256\nmax_seq = 64\n' >"$tmp/m9.ini"
n=$((n+1)); timeout 30 "$sim" plan --model "$tmp/m9.ini" --gpus 8 --emit torchtitan --out "$tmp/emit-q" >/dev/null 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -qF 'description = "Parallax plan: a\"b, dp 8' "$tmp"/emit-q/*.toml; then echo "ok $n - emit torchtitan: a '\"' in the model name is escaped in TOML"
else echo "not ok $n - emit torchtitan: a '\"' in the name: rc $rc, $(grep description "$tmp"/emit-q/* 2>&1)"; fail=1; fi

bad "--partition with a newline (a command line in launch_deepspeed.sh)" "argument 'type:transformerlayer|\ntouch pwned' holds a control character" "$sim" plan --model 7b --gpus 8 --pp 2 --partition "type:transformerlayer|
touch pwned" --emit deepspeed --out "$tmp/emit-part"
printf '[plan]\npp = 2\npartition = type:transformerlayer|\tx\n' >"$tmp/p15.ini"
bad "plan INI: a partition with a tab (written into launch files)" "partition 'type:transformerlayer|\tx' is not one line of text" "$sim" plan --model 7b --gpus 8 --plan "$tmp/p15.ini" --emit deepspeed --out "$tmp/emit-part2"

# COLUMNS sized the charts through atoi: 99999999999 asked for a 39 GB Gantt chart (GLib-ERROR, SIGTRAP)
bad "simulate --gantt: COLUMNS=99999999999 (a 39 GB chart, killed by SIGTRAP)" "COLUMNS=99999999999 is not a terminal width (a whole number of columns, 1..4096)" env COLUMNS=99999999999 "$sim" simulate --model tiny-gpt --gpus 2 --pp 2 --gantt --ideal
bad "compare: COLUMNS=1000000 (lines of a million characters)" "COLUMNS=1000000 is not a terminal width" env COLUMNS=1000000 "$sim" compare --trace "$tmp/tr7.json"

printf '[plan]\nmodel = no\tsuch\n' >"$tmp/p16.ini"
bad "plan INI: a model name with a tab (quoted raw)" "model 'no\tsuch' is neither a file nor a preset" "$sim" plan --plan "$tmp/p16.ini" --gpus 8
bad "a newline in a flag's value (a message of two lines)" "argument 'a\nb' holds a control character" "$sim" plan --model 7b --gpus 8 --schedule "a
b"

# --comm local under mpirun -np 2: each process trained the whole world and wrote the same --save
# (with --comm mpi on the other rank, it waited in MPI_Init for ever); mpirun's variable is enough
bad "run: --comm local under mpirun -np 2 (the whole run twice)" "--comm local runs the whole world in this process, but mpirun started 2" env OMPI_COMM_WORLD_SIZE=2 "$exe" run --model tiny-gpt --seq 16 --mbs 2 --gbs 8 --gpus 2 --steps 1 --comm local
bad "calibrate: --comm local under mpirun -np 2 (two profiles onto one --out)" "--comm local measures in this process, but mpirun started 2" env OMPI_COMM_WORLD_SIZE=2 "$exe" calibrate --comm local --out "$tmp/cal2.ini"

bad "run: --comm local under launch -n 2 (the whole run twice)" "--comm local runs the whole world in this process, but the launcher started 2 (WORLD_SIZE)" env RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29999 "$exe" run --model tiny-gpt --seq 16 --mbs 2 --gbs 8 --gpus 2 --steps 1 --comm local

bad "--stack deepspeed --schedule zb-h1 (a 'deadlock' of the engine's own)" "--stack deepspeed pipelines with DeepSpeed's TrainSchedule, 1F1B over one chunk per stage: it has no zb-h1 schedule" "$sim" simulate --model 7b --cluster dgx-h100 --gpus 8 --pp 2 --gbs 16 --schedule zb-h1 --stack deepspeed

# partition --method optimal: the scan over every boundary was O(stages · weights²), hours for 60000
# weights over 64 stages; the heaviest part of 60000 equal weights is ceil(60000 / 64) = 938
n=$((n+1)); timeout 30 "$sim" partition --method optimal --stages 64 --weights "$(python3 -c "print(','.join(['1'] * 60000))")" >"$tmp/out" 2>"$tmp/err"; rc=$?
if [ $rc -eq 0 ] && grep -q "^max 938 " "$tmp/out"; then echo "ok $n - partition: optimal over 60000 weights ends"
else echo "not ok $n - partition: optimal over 60000 weights: rc $rc"; fail=1; fi

echo "1..$n"
exit $fail
