#!/usr/bin/env bash
# CLI checks of `parallax-sim plan`: the seed's tables, the JSON keys, and one
# clear error line with a non-zero exit for bad input.
set -u
sim=$1
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# the seed's 7B in fp32 with Adam: 28 / 28 / 56 GB
out=$("$sim" plan --model 7b --precision fp32)
check "7b fp32 table 28 28 56 GB" "grep -Eq '^0 +28\.00 +28\.00 +56\.00 ' <<<\"\$out\""
check "units are stated" "grep -q 'GB = 1e9 bytes' <<<\"\$out\""
out=$("$sim" plan --model 7b --precision fp32 --units GiB)
check "GiB offered" "grep -Eq '^0 +26\.08 +26\.08 +52\.16 ' <<<\"\$out\""

# the seed's GPT-3 layout does not fit, with the figure and what would
out=$("$sim" plan --model gpt3-175b --cluster dgx-a100-80g --nodes 8 --dp 8 --pp 4 --tp 2 --zero 2 --mbs 1 --gbs 1536)
check "gpt3 seed reported as not fitting" "grep -q 'fits       NO: stage 0 needs' <<<\"\$out\""
check "gpt3 seed names a layout that fits" "grep -q '^would fit' <<<\"\$out\""
# without a cluster there is no capacity: the fits line says so (it was left empty)
out=$("$sim" plan --model gpt2-124m --gpus 2)
check "no cluster: fits unknown" "grep -q '^fits       unknown: no cluster given' <<<\"\$out\""

json=$("$sim" plan --plan "$PARALLAX_DATA_DIR/configs/plans/gpt3-seed.ini" --json)
for key in '"parameters" : 174604259328' '"first_layer"' '"last_layer"' '"bubble_fraction"' '"unit" : "bytes"' \
           '"capacity"' '"fits" : false' '"activation_per_layer"' '"in_flight_microbatches"' '"buffers"' \
           '"total"' '"model_per_step"' '"hardware_per_step"' '"would_fit"'; do
  check "json has $key" "grep -qF -- '$key' <<<\"\$json\""
done

# --help lists the plan options, in UTF-8 even under LC_ALL=C
help=$(LC_ALL=C "$sim" plan --help)
check "plan --help lists --gbs-tokens and --json" "grep -q -- '--gbs-tokens' <<<\"\$help\" && grep -q -- '--json' <<<\"\$help\""
check "plan --help prints — and … (not ?)" "grep -q 'plan \[OPTION…\] — partition' <<<\"\$help\""

# bad input: one line on stderr, non-zero exit
bad() {  # name expected-substring args...
  local name=$1 want=$2; shift 2
  "$sim" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  check "$name: exit non-zero" "[ $rc -ne 0 ]"
  check "$name: one error line" "[ \$(wc -l <\"$tmp/err\") -eq 1 ] && grep -qF -- \"$want\" \"$tmp/err\""
}
bad "unknown model" "neither a file nor a preset" plan --model nope
bad "tp rule" "tp=3 does not divide 32 attention heads" plan --model llama2-7b --tp 3
bad "gpu count" "dp·tp·pp=48 but the cluster has 64 GPUs" plan --model gpt3-175b --cluster dgx-a100-80g --nodes 8 --dp 8 --pp 3 --tp 2
printf '[plan]\ndp = two\n' > "$tmp/bad.ini"
bad "malformed plan.ini" "dp = 'two' is not an integer" plan --model gpt2-124m --plan "$tmp/bad.ini"
printf '{"n_layer": 12, "n_embd":' > "$tmp/bad.json"
bad "truncated config.json" "bad.json" plan --model "$tmp/bad.json"
bad "missing plan file" "nowhere.ini" plan --model gpt2-124m --plan "$tmp/nowhere.ini"
bad "bad flag" "--zero" plan --model gpt2-124m --zero=x
bad "negative flag" "--mbs -3 must be a whole number from 1" plan --model gpt2-124m --mbs -3
# -1 is not "default", 0 and out-of-range values name the flag
bad "gbs -1" "--gbs -1 must be a whole number from 1" plan --model gpt2-124m --gbs -1
bad "gbs 0" "--gbs 0 must be a whole number from 1" plan --model gpt2-124m --gbs 0
bad "zero -1" "--zero -1 must be a whole number from 0" plan --model gpt2-124m --zero -1
bad "zero 5" "--zero 5 must be 0, 1, 2 or 3" plan --model gpt2-124m --zero 5
bad "vpp -1" "--vpp -1 must be a whole number from 1" plan --model gpt2-124m --vpp -1
bad "gpus -1" "--gpus -1 must be a whole number from 1" plan --model gpt2-124m --cluster dgx-h100 --gpus -1
bad "nodes -1" "--nodes -1 must be a whole number from 1" plan --model gpt2-124m --cluster dgx-h100 --nodes -1
bad "huge gbs" "--gbs 99999999999 must be a whole number" plan --model gpt2-124m --gbs 99999999999
bad "gpus and nodes" "--gpus 8 and --nodes 2 both give the size" plan --model gpt2-124m --cluster dgx-h100 --gpus 8 --nodes 2
bad "gbs and gbs-tokens" "--gbs 8 and --gbs-tokens 1M both give" plan --model gpt2-124m --gbs 8 --gbs-tokens 1M
bad "gbs-tokens nan" "--gbs-tokens 'nan' is not a token count" plan --model gpt2-124m --gbs-tokens nan
bad "gbs-tokens inf" "--gbs-tokens 'inf' is not a token count" plan --model gpt2-124m --gbs-tokens inf

# --gbs-tokens: one rule (nearest multiple of a power of two within 5 %), said on stderr:
# 1M tokens at 8192 = 122.07 sequences → 128 (+4.9 %), the same as search
"$sim" plan --model llama3-8b --gbs-tokens 1M >"$tmp/out" 2>"$tmp/err"
check "1M tokens at 8192 is 128 sequences" "grep -q 'global batch 128 sequences = 1048576 tokens (+4.9 %)' \"$tmp/err\" && grep -q 'global 128 sequences' \"$tmp/out\""
# 3.1M at 4096 = 756.8 → 768 (not 512); 1.6M at 4096 = 390.6 → 384 (not 512)
"$sim" plan --model llama2-7b --gbs-tokens 3.1M 2>"$tmp/err" >/dev/null
check "3.1M tokens at 4096 is 768 sequences" "grep -q 'global batch 768 sequences' \"$tmp/err\""
"$sim" plan --model llama2-7b --gbs-tokens 1.6M 2>"$tmp/err" >/dev/null
check "1.6M tokens at 4096 is 384 sequences" "grep -q 'global batch 384 sequences' \"$tmp/err\""
# no batch: the stated default, said
out=$("$sim" plan --model gpt2-124m)
check "no batch: the default is said" "grep -q 'no batch given: one micro-batch per data-parallel rank' <<<\"\$out\""
# an imported HF model defaults to seq 4096, not max_position_embeddings (131072)
out=$("$sim" plan --model "$PARALLAX_DATA_DIR/configs/hf/llama-3.1-8b.json")
check "HF import: default sequence 4096" "grep -q '× 4096 tokens' <<<\"\$out\""
check "HF import: published count" "grep -q '(8030261248)' <<<\"\$out\""
# sizes never overflow: checked products, one line naming what is too large
bad "nodes overflow" "--nodes 2000000000 × 8 GPUs is more than" plan --model gpt2-124m --cluster dgx-h100 --nodes 2000000000
bad "mbs × dp overflow" "is too large" plan --model gpt2-124m --mbs 2000000000 --dp 2
bad "tp × pp overflow" "is too many GPUs" plan --model gpt2-124m --cluster dgx-h100 --tp 65536 --pp 65536
# bounded input: an endless file, deep nesting, a directory
bad "endless ds_config" "/dev/zero: is a device, not a file" plan --model gpt2-124m --deepspeed /dev/zero
bad "endless plan file" "/dev/zero: is a device, not a file" plan --model gpt2-124m --plan /dev/zero
head -c 2000000 /dev/zero | tr '\0' ' ' >"$tmp/big.json"
bad "a 2 MB ds_config" "larger than 1048576 bytes" plan --model gpt2-124m --deepspeed "$tmp/big.json"
python3 -c "print('{\"a\":' * 100000 + '1' + '}' * 100000)" > "$tmp/deep.json"
bad "deep JSON" "JSON nested deeper than 32 levels" plan --model "$tmp/deep.json"
bad "deep ds_config" "JSON nested deeper than 32 levels" plan --model gpt2-124m --deepspeed "$tmp/deep.json"
bad "directory as ds_config" "is a directory" plan --model gpt2-124m --deepspeed "$tmp"
printf '[model]\nlayers = 50000000\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\n' > "$tmp/big.ini"
bad "layers beyond the limit" "layers = 50000000 exceeds the limit 4096" plan --model "$tmp/big.ini"
printf '{"model_type": "deepseek_v3", "n_routed_experts": 256}' > "$tmp/ds3.json"
bad "deepseek_v3 refused" "multi-head latent attention" plan --model "$tmp/ds3.json"
bad "unknown command" "unknown command" frobnicate

# context parallelism: Llama 3 405B at 131,072 tokens as the Llama 3 paper ran it
# (Table 4: 16,384 H100s, TP 8, CP 16, PP 16, DP 8, 16M tokens per step) fits on
# H100-80GB; the flags say the same as the plan file
out=$("$sim" plan --plan "$PARALLAX_DATA_DIR/configs/plans/llama3-405b-128k.ini")
check "llama3 405B 128k: fits on H100-80GB" "grep -q '^fits       yes' <<<\"\$out\""
check "llama3 405B 128k: the grid, cp inside dp" "grep -q 'dp 8 × cp 16 × pp 16 × tp 8 = 16384 GPUs, rank order tp,cp,dp,pp' <<<\"\$out\""
check "llama3 405B 128k: 8192 tokens per CP rank" "grep -q 'cp 16: 8192 tokens per CP rank' <<<\"\$out\""
check "llama3 405B 128k: 16.78 M tokens per step" "grep -q 'global 128 sequences × 131072 tokens = 16.78 M tokens' <<<\"\$out\""
check "llama3 405B 128k: the ring's K/V buffers named" "grep -q 'ring attention.s K/V blocks' <<<\"\$out\""
flags=$("$sim" plan --model llama3-405b --cluster dgx-h100 --nodes 2048 --tp 8 --cp 16 --pp 16 --dp 8 --seq 131072 \
        --gbs 128 --sp --zero 1 --stack megatron-core)
check "llama3 405B 128k: flags = plan file" "[ \"\$(grep -v '^Parallax' <<<\"\$flags\")\" = \"\$(grep -v '^Parallax' <<<\"\$out\")\" ]"
json=$("$sim" plan --plan "$PARALLAX_DATA_DIR/configs/plans/llama3-405b-128k.ini" --json)
for key in '"cp" : 16' '"grid_order" : "tp,cp,dp,pp"' '"cp_kv_buffers"' '"fits" : true'; do
  check "cp json has $key" "grep -qF -- '$key' <<<\"\$json\""
done
# FP8: the H100 has it (the FP8 terms are named), the A100 refuses it in one sentence
out=$("$sim" plan --model llama3-8b --cluster dgx-h100 --gpus 8 --tp 8 --precision fp8)
check "fp8 on H100: Transformer Engine recipe said" "grep -q 'fp8 (Transformer Engine, delayed scaling' <<<\"\$out\""
check "fp8 on H100: FP8 weight copies named" "grep -q 'fp8: total includes the FP8 weight copies' <<<\"\$out\""
bad "fp8 on A100" "--precision fp8 needs FP8 tensor cores, which the A100-SXM4-80GB of cluster dgx-a100-80g does not have" \
    plan --model llama3-8b --cluster dgx-a100-80g --gpus 8 --precision fp8
bad "cp chunks" "context parallelism cuts the sequence into 2·cp = 6 chunks: 8188 tokens are not divisible by 6" \
    plan --model llama3-8b --cp 3 --seq 8188
bad "cp counts GPUs" "dp·cp·tp·pp=16 but the cluster has 8 GPUs" plan --model llama3-8b --cluster dgx-h100 --gpus 8 --cp 2 --dp 8
bad "cp 0" "--cp 0 must be a whole number from 1" plan --model llama3-8b --cp 0
bad "cp with fp32" "needs bf16, fp16 or fp8, not fp32" plan --model llama3-8b --cp 2 --precision fp32
bad "bad precision" "is not one of fp32, fp16, bf16, fp8" plan --model llama3-8b --precision fp4

echo "1..$n"
exit $fail
