#!/usr/bin/env bash
# CLI checks of mixture-of-experts plans: the experts' grid in plan, simulate
# and search (--ep, --etp, --imbalance), the MFU convention, and one clear
# error line naming the rule for each refused layout.
set -u
sim=$1
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bad() {  # name expected-substring args...
  local name=$1 want=$2; shift 2
  "$sim" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  check "$name: exit non-zero" "[ $rc -ne 0 ]"
  check "$name: one error line" "[ \$(wc -l <\"$tmp/err\") -eq 1 ] && grep -qF -- \"$want\" \"$tmp/err\""
}

# Mixtral on 64 H100s with ep 8: each GPU holds one expert of each block
out=$("$sim" plan --model mixtral-8x7b --cluster dgx-h100 --gpus 64 --ep 8 --zero 1 --gbs 256)
check "plan names the experts' grid" "grep -q 'experts on etp 1 × ep 8 × edp 8 per stage' <<<\"\$out\""
check "plan gives active parameters" "grep -q '12.88 B active of 46.70 B parameters' <<<\"\$out\""
check "plan states the FLOPs convention" "grep -q 'from active parameters' <<<\"\$out\""
json=$("$sim" plan --model "$PARALLAX_DATA_DIR/configs/hf/qwen1.5-moe-a2.7b.json" --json)
check "json active parameters (Qwen1.5-MoE-A2.7B)" "grep -qF '\"active_parameters\" : 2689173504' <<<\"\$json\""
json=$("$sim" plan --model mixtral-8x7b --gpus 16 --cluster dgx-h100 --tp 2 --sp --ep 4 --etp 1 --json)
check "json plan has ep, etp, edp" "grep -qF '\"edp\" : 4' <<<\"\$json\" && grep -qF '\"etp\" : 1' <<<\"\$json\""

out=$("$sim" simulate --model mixtral-8x7b --cluster dgx-h100 --gpus 16 --ep 8 --gbs 32 --seq 2048 --zero 3 --ckpt full)
check "simulate states the MFU convention" "grep -q 'model FLOPs from active parameters' <<<\"\$out\""
slow=$("$sim" simulate --model mixtral-8x7b --cluster dgx-h100 --gpus 16 --ep 8 --gbs 32 --seq 2048 --zero 3 --ckpt full --imbalance 2 --json)
fast=$("$sim" simulate --model mixtral-8x7b --cluster dgx-h100 --gpus 16 --ep 8 --gbs 32 --seq 2048 --zero 3 --ckpt full --json)
st() { python3 -c 'import json,sys; print(json.load(sys.stdin)["step_time_s"])'; }
check "imbalance 2 makes the step longer" "python3 -c 'import sys; sys.exit(0 if $(st <<<"$slow") > $(st <<<"$fast") else 1)'"

out=$("$sim" search --model mixtral-8x7b --cluster dgx-h100 --gpus 16 --gbs 64 --seq 2048 --fix ep=8 --fix pp=1 --top 2)
check "search turns ep (fixed at 8)" "grep -q 'ep 8 etp' <<<\"\$out\""

bad "ep divides the experts" "ep=3 does not divide the 8 experts" plan --model mixtral-8x7b --dp 3 --ep 3
bad "folding divides the GPUs" "etp·ep·pp = 2·8·1 = 16 does not divide the 24 GPUs" plan --model mixtral-8x7b --cluster dgx-h100 --gpus 24 --tp 2 --sp --ep 8
bad "ep under tp needs sp" "needs sequence parallelism" plan --model mixtral-8x7b --dp 8 --tp 2 --ep 4
bad "dense model takes no ep" "needs a mixture-of-experts model" plan --model llama3-8b --dp 8 --ep 2
bad "imbalance below 1" "--imbalance '0.5' must be a number ≥ 1" plan --model mixtral-8x7b --imbalance 0.5
bad "search: ep on a dense model" "--fix ep=2 needs a mixture-of-experts model" search --model llama3-8b --cluster dgx-h100 --gpus 8 --gbs 64 --fix ep=2
bad "search: ep divides the experts" "--fix ep=3 does not divide the 8 experts" search --model mixtral-8x7b --cluster dgx-h100 --gpus 8 --gbs 64 --fix ep=3
printf '{"model_type": "deepseek_v3", "n_routed_experts": 256}' > "$tmp/ds3.json"
bad "deepseek_v3 refused in a sentence" "multi-head latent attention" plan --model "$tmp/ds3.json"

# launch files: Megatron gets the experts and their grid; formats without experts refuse
"$sim" plan --model deepseek-moe-16b --cluster dgx-h100 --gpus 8 --ep 8 --emit megatron --out "$tmp/launch" >/dev/null 2>&1
check "megatron launch has the experts' grid" "grep -q -- '--expert-model-parallel-size 8' \"$tmp/launch/pretrain_gpt.sh\" && grep -q -- '--num-experts 64' \"$tmp/launch/pretrain_gpt.sh\""
check "megatron launch has the dense first layer" "grep -qF -- '--moe-layer-freq \"[0,1,1,' \"$tmp/launch/pretrain_gpt.sh\""
bad "deepspeed launch refuses experts" "carry no experts" plan --model mixtral-8x7b --emit deepspeed --out "$tmp/ds"

echo "1..$n"
exit $fail
