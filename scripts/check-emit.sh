#!/usr/bin/env bash
# Validate `parallax-sim plan --emit` files with the frameworks' own parsers:
# DeepSpeed's DeepSpeedConfig, torchtitan's ConfigManager (torchtitan 0.2.x,
# the last release that reads TOML job configs), megatron-core's pipeline
# layout parser and — when MEGATRON_LM names a Megatron-LM checkout —
# Megatron-LM's own parse_args/validate_args. Not part of CI: the packages
# (torch with its CUDA wheels) take several GB.
#   bash scripts/check-emit.sh BUILD_DIR [VENV]
# VENV (default: a new one under a temporary directory) is created and
# filled from PyPI when it has no deepspeed yet.
set -euo pipefail
build=${1:?usage: check-emit.sh BUILD_DIR [VENV]}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
sim="$build/sim/parallax-sim"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
venv=${2:-$work/venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import deepspeed, torchtitan' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch deepspeed "torchtitan>=0.2,<0.3" megatron-core typing_extensions
fi
export PARALLAX_DATA_DIR=${PARALLAX_DATA_DIR:-$root}
# the three plans of tests/test_emit.c: name, dp tp pp, plan flags
plans=(
  "gpt3-175b-ptdp|16 8 8|--model gpt3-175b --cluster dgx-a100-80g --gpus 1024 --tp 8 --pp 8 --gbs 1536 --mbs 1 --seq 2048 --ckpt full"
  "llama2-70b-zero3|64 1 1|--model llama2-70b --cluster dgx-h100 --gpus 64 --dp 64 --tp 1 --pp 1 --zero 3 --ckpt full --gbs 512 --mbs 1 --seq 4096"
  "llama3-8b-interleaved|4 2 4|--model llama3-8b --cluster dgx-h100 --gpus 32 --tp 2 --pp 4 --vpp 2 --sp --ckpt selective --zero 1 --gbs 256 --mbs 1 --partition type:TransformerLayer"
  "llama3-8b-interleaved-layout|4 2 4|--model llama3-8b --cluster dgx-h100 --gpus 32 --tp 2 --pp 4 --vpp 2 --sp --ckpt selective --gbs 256 --mbs 1"
)
fail=0
for p in "${plans[@]}"; do
  IFS='|' read -r name sizes flags <<<"$p"
  read -r dp tp pp <<<"$sizes"
  echo "== $name"
  for fmt in megatron deepspeed torchtitan; do
    # shellcheck disable=SC2086
    "$sim" plan $flags --emit $fmt --out "$work/$name/$fmt" >/dev/null 2>&1
  done
  "$venv/bin/python" -W ignore "$here/check_emit.py" "$work/$name" "$dp" "$tp" "$pp" 2>&1 \
    | grep -E '^(PASS|FAIL|SKIP|Traceback|  File|[A-Za-z]+Error)' || fail=1
  [ "${PIPESTATUS[0]}" = 0 ] || fail=1
done
exit $fail
