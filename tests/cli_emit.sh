#!/usr/bin/env bash
# CLI checks of `--emit FORMAT --out DIR` on plan and search: each format's
# files, the header with the prediction, the ds_config.json read back by
# `plan --deepspeed`, the older `search --emit FILE.ini`, and one clear error
# line for an unknown format.
set -u
sim=$1
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

plan=(--model llama3-8b --cluster dgx-h100 --gpus 32 --tp 2 --pp 4 --vpp 2 --sp --ckpt selective --gbs 256 --mbs 1)
for fmt in megatron deepspeed torchtitan ini; do
  "$sim" plan "${plan[@]}" --emit $fmt --out "$tmp/$fmt" >/dev/null 2>"$tmp/$fmt.err"; rc=$?
  check "plan --emit $fmt exits 0" "[ $rc = 0 ]"
  check "plan --emit $fmt names what it wrote" "grep -q '^parallax-sim plan: wrote $tmp/$fmt/' $tmp/$fmt.err"
done
check "megatron script carries the layout" "grep -qx '  --num-layers-per-virtual-pipeline-stage 4' $tmp/megatron/pretrain_gpt.sh || grep -q -- '--pipeline-model-parallel-layout' $tmp/megatron/pretrain_gpt.sh"
check "megatron script is valid bash" "bash -n $tmp/megatron/pretrain_gpt.sh"
check "header has the simulated prediction" "grep -Eq '^# Predicted: step [0-9.]+ ms, .* tokens/s, MFU [0-9.]+ %' $tmp/torchtitan/torchtitan.toml"
check "toml parses (python tomllib)" "python3 -c 'import tomllib,sys; d=tomllib.load(open(sys.argv[1],\"rb\")); assert d[\"parallelism\"][\"pipeline_parallel_schedule\"]==\"Interleaved1F1B\"' $tmp/torchtitan/torchtitan.toml"
check "ds_config.json parses" "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d[\"train_batch_size\"]==256 and d[\"gradient_accumulation_steps\"]==64' $tmp/deepspeed/ds_config.json"
# round trip: the emitted ds_config.json gives the same batch back
rt=$("$sim" plan --model llama3-8b --cluster dgx-h100 --gpus 32 --tp 2 --pp 4 --vpp 2 --sp --ckpt selective --deepspeed "$tmp/deepspeed/ds_config.json" --json); rc=$?
check "plan reads the emitted ds_config.json" "[ $rc = 0 ]"
check "same gbs and mbs back" "python3 -c 'import json,sys; p=json.loads(sys.argv[1])[\"plan\"]; assert (p[\"gbs\"],p[\"mbs\"],p[\"micro_batches\"])==(256,1,64), p' \"\$rt\""
pl=$("$sim" plan --plan "$tmp/ini/plan.ini"); rc=$?
check "plan reads the emitted plan.ini" "[ $rc = 0 ] && grep -q '^layout     dp 4 × pp 4 × tp 2 = 32 GPUs' <<<\"\$pl\""

# --compile under the torchtitan stack: the config compiles the blocks (the model component), and the plan.ini keeps it
"$sim" plan --model llama3-8b --cluster dgx-h100 --gpus 8 --stack torchtitan --compile --emit torchtitan --out "$tmp/tc" >/dev/null 2>&1; rc=$?
check "torchtitan --compile: [compile] enable, components model" "[ $rc = 0 ] && python3 -c 'import tomllib,sys; d=tomllib.load(open(sys.argv[1],\"rb\")); assert d[\"compile\"]==dict(enable=True, components=[\"model\"]), d' $tmp/tc/torchtitan.toml"
check "torchtitan without --compile: no [compile]" "! grep -q '^\[compile\]' $tmp/torchtitan/torchtitan.toml"
"$sim" plan --model llama3-8b --cluster dgx-h100 --gpus 8 --stack torchtitan --compile --emit ini --out "$tmp/tci" >/dev/null 2>&1
check "plan.ini keeps compile" "grep -qx 'compile = true' $tmp/tci/plan.ini && \"$sim\" simulate --plan $tmp/tci/plan.ini | grep -q \"torch.compile'd\""

# search: the winner as megatron files, and the older FILE.ini form
"$sim" search --model llama2-13b --cluster dgx-h100 --gpus 16 --seq 4096 --gbs 64 --threads 2 --top 1 --emit megatron --out "$tmp/s" >/dev/null 2>&1; rc=$?
check "search --emit megatron exits 0" "[ $rc = 0 ] && [ -x $tmp/s/pretrain_gpt.sh ]"
check "search header names the command" "grep -q '^# Emitted by parallax-sim search (Parallax) for llama2-13b on dgx-h100, 16 GPUs.' $tmp/s/pretrain_gpt.sh"

err=$("$sim" plan "${plan[@]}" --emit nemo --out "$tmp/x" 2>&1 >/dev/null); rc=$?
check "unknown format: exit 1, one line" "[ $rc = 1 ] && [ \$(wc -l <<<\"\$err\") = 1 ]"
check "unknown format: names the formats" "grep -q \"^parallax-sim plan: --emit 'nemo' is not one of megatron, deepspeed, torchtitan, ini\" <<<\"\$err\""
err=$("$sim" search --model llama2-13b --cluster dgx-h100 --gpus 16 --gbs 64 --emit nemo 2>&1 >/dev/null); rc=$?
check "search refuses it before searching" "[ $rc = 1 ] && grep -q \"^parallax-sim search: --emit 'nemo'\" <<<\"\$err\""
err=$("$sim" search --model llama2-13b --cluster dgx-h100 --gbs 64 --tokens 1T --days 30 --emit ini 2>&1 >/dev/null); rc=$?
check "sizing refuses --emit (no winner to write)" "[ $rc = 2 ] && grep -q '^parallax-sim search: --emit writes a search' <<<\"\$err\""
echo "1..$n"
exit $fail
