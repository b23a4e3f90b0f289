#!/usr/bin/env bash
# Side-by-side CPU training throughput: Parallax's CPU backend against llm.c's
# CPU trainer (karpathy/llm.c train_gpt2.c), GPT-2 124M, B 4, T 64, fp32, one
# rank, all cores, on this machine, in one run.
#   bash bench/llmc/compare.sh LLMC_SOURCE_DIR [BUILD_DIR=build] [STEPS=20]
# LLMC_SOURCE_DIR is a checkout of llm.c (none of its code is part of Parallax;
# it is built in a temporary folder with llm.c's own flags: -O3 -Ofast
# -march=native -fopenmp). Weights are random (GPT-2 initialisation) in both,
# written by bench/llmc/llmc_ckpt.c; tokens are Parallax's synthetic corpus
# over the GPT-2 vocabulary, the same file for both.
set -euo pipefail
src=${1:?usage: compare.sh LLMC_SOURCE_DIR [BUILD_DIR] [STEPS]}
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$here/build}
steps=${3:-20}
export PARALLAX_DATA_DIR=$here
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
threads=$(nproc)

cp -r "$src"/. "$work/"
gcc -O3 -Ofast -march=native -fopenmp -DOMP -Wno-unused-result "$work/train_gpt2.c" -lm -o "$work/train_gpt2"
gcc -O2 "$here/bench/llmc/llmc_ckpt.c" -lm -o "$work/llmc_ckpt"
"$work/llmc_ckpt" "$work/gpt2_124M.bin"
mkdir -p "$work/dev/data/tinyshakespeare"
for split in train val; do
  "$build/exec/parallax-exec" data --synthetic --tokens 300000 --vocab 50257 --seed 7 \
    --out "$work/dev/data/tinyshakespeare/tiny_shakespeare_$split.bin" > /dev/null
done

# llm.c: 40 steps; its step times exclude validation and sampling.
(cd "$work" && OMP_NUM_THREADS=$threads ./train_gpt2 > llmc.log)
llmc_ms=$(awk '/^step [0-9]+: train loss/ { if ($2+0 >= 1) { gsub(/[()]/, ""); print $7 } }' "$work/llmc.log" \
          | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')

# Parallax: the same shapes through `parallax-exec run`
"$build/exec/parallax-exec" run --model gpt2-124m --mbs 4 --gbs 4 --seq 64 --precision fp32 --backend cpu \
  --steps "$steps" --seed 1 --data "$work/dev/data/tinyshakespeare/tiny_shakespeare_train.bin" --json > "$work/px.json"
px_ms=$(grep -o '"time_s" *: *[0-9.eE+-]*' "$work/px.json" | awk -F: 'NR > 1 { print $2 * 1000 }' \
        | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')

tokens=$((4 * 64))
printf '# GPT-2 124M, B 4, T 64, fp32, %d threads, median step time after the first step\n' "$threads"
printf '# %-10s %12s %14s\n' engine "step (ms)" "tokens/s"
printf '  %-10s %12.1f %14.1f\n' llm.c "$llmc_ms" "$(awk -v ms="$llmc_ms" -v t=$tokens 'BEGIN { print t / (ms / 1000) }')"
printf '  %-10s %12.1f %14.1f\n' parallax "$px_ms" "$(awk -v ms="$px_ms" -v t=$tokens 'BEGIN { print t / (ms / 1000) }')"
printf '  speed-up   %.2fx\n' "$(awk -v a="$llmc_ms" -v b="$px_ms" 'BEGIN { print a / b }')"
