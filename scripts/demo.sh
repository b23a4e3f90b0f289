#!/usr/bin/env bash
# The demo: plan the seed models, simulate a pipeline and draw its timeline.
#   bash scripts/demo.sh [BUILD_DIR=build] [OUT_DIR=out/demo]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
out=${2:-out/demo}
sim="$build/sim/parallax-sim"
[ -x "$sim" ] || { echo "demo: $sim not found: build first (cmake -B $build && cmake --build $build)" >&2; exit 1; }
export PARALLAX_DATA_DIR=${PARALLAX_DATA_DIR:-$here}
mkdir -p "$out"
say() { printf '\n\033[1m== %s\033[0m\n$ %s\n\n' "$1" "${*:2}"; "${@:2}"; }

say "The seed's 7B model in fp32 with Adam, one GPU (GB = 1e9 bytes)" \
  "$sim" plan --model 7b --precision fp32
say "The seed's GPT-3 175B layout on 64 A100-80GB: does it fit?" \
  "$sim" plan --model gpt3-175b --cluster dgx-a100-80g --nodes 8 --dp 8 --pp 4 --tp 2 --zero 2 --mbs 1 --gbs 1536
say "Llama-2 70B on 4 DGX H100 nodes, tp 8 × pp 4, interleaved 1F1B, selective recompute" \
  "$sim" plan --model llama2-70b --cluster dgx-h100 --nodes 4 --tp 8 --pp 4 --vpp 2 --mbs 1 --gbs 64 --ckpt selective --sp
say "GPT-2 1.5B, 4 pipeline stages × 8 micro-batches, 1F1B: simulated timeline" \
  "$sim" simulate --model gpt2-1.5b --cluster dgx-a100-80g --gpus 4 --pp 4 --mbs 4 --gbs 32 --gantt \
  --trace "$out/timeline.json" --csv "$out/timeline.csv" --plot "$out"
say "Bubble versus micro-batches for each schedule (4 stages)" \
  "$sim" bubble --pp 4 --m 1,2,4,8,16,32 --vpp 2 --plot "$out"
say "Which layout is fastest for GPT-3 175B on those 64 A100s? (the search, confirmed by simulation)" \
  "$sim" search --model gpt3-175b --cluster dgx-a100-80g --nodes 8 --gbs 1536 --mbs 1 --top 5 \
  --pareto "$out/pareto.png" --emit "$out/gpt3-best.ini"
exe="$build/exec/parallax-exec"
if [ -x "$exe" ]; then
  say "Run a plan for real on CPU ranks: tiny GPT, dp 2 × tp 2 × pp 2 (8 threads), 1F1B" \
    "$exe" run --model tiny-gpt --dp 2 --tp 2 --pp 2 --gbs 16 --steps 20 --backend cpu \
    --trace "$out/exec-trace.json"
fi
printf '\nwritten to %s:\n' "$out"
ls -1 "$out" | sed 's/^/  /'
