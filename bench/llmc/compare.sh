#!/usr/bin/env bash
# Side-by-side CPU training throughput: Parallax's CPU backend against llm.c's
# CPU trainer (karpathy/llm.c train_gpt2.c), GPT-2 124M, B 4, T 64, fp32, one
# rank, all cores, on this machine.
#   bash bench/llmc/compare.sh LLMC_SOURCE_DIR [BUILD_DIR=build] [STEPS=10] [ROUNDS=3]
# LLMC_SOURCE_DIR is a checkout of llm.c (none of its code is part of Parallax;
# train_gpt2.c is built in a temporary folder with llm.c's own flags: -O3
# -Ofast -march=native -fopenmp). Weights are random (GPT-2 initialisation) in
# both, written by bench/llmc/llmc_ckpt.c; tokens are Parallax's synthetic
# corpus over the GPT-2 vocabulary, the same file for both.
#
# The two engines run back to back, ROUNDS times (llm.c, Parallax, llm.c, ...),
# STEPS training steps each, so that load from elsewhere on the machine falls
# on both alike. The figure for each engine is the median step time over all
# its rounds, the first step of every run left out (warm-up). The copy of
# train_gpt2.c is edited in two places, both outside its timed region: the
# loop runs STEPS steps instead of 40, and the sampling every 20 steps (64
# forward passes, untimed) is skipped. Its step time is what it prints: data
# loading, forward, zero_grad, backward and AdamW. Parallax's is its
# "time_s": the same work plus the global-norm gradient clipping and weight
# decay llm.c does not do.
set -euo pipefail
src=${1:?usage: compare.sh LLMC_SOURCE_DIR [BUILD_DIR] [STEPS] [ROUNDS]}
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-build}
[ -d "$build" ] || build=$here/$build
build=$(cd "$build" && pwd)
steps=${3:-10}
rounds=${4:-3}
export PARALLAX_DATA_DIR=$here
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
threads=$(nproc)

cp "$src/train_gpt2.c" "$work/"
cp -r "$src/llmc" "$work/"
sed -i -e "s/for (int step = 0; step <= 40; step++)/for (int step = 0; step <= $steps; step++)/" \
       -e 's/if (step > 0 \&\& step % 20 == 0)/if (0)/' "$work/train_gpt2.c"
grep -q "step <= $steps; step++" "$work/train_gpt2.c" && grep -q 'if (0)' "$work/train_gpt2.c" ||
  { echo "compare.sh: train_gpt2.c changed upstream: its step loop or sampling was not found" >&2; exit 1; }
gcc -O3 -Ofast -march=native -fopenmp -DOMP -Wno-unused-result "$work/train_gpt2.c" -lm -o "$work/train_gpt2"
gcc -O2 "$here/bench/llmc/llmc_ckpt.c" -lm -o "$work/llmc_ckpt"
"$work/llmc_ckpt" "$work/gpt2_124M.bin"
mkdir -p "$work/dev/data/tinyshakespeare"
for split in train val; do
  "$build/exec/parallax-exec" data --synthetic --tokens 300000 --vocab 50257 --seed 7 \
    --out "$work/dev/data/tinyshakespeare/tiny_shakespeare_$split.bin" > /dev/null
done

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
: > "$work/llmc.ms"
: > "$work/px.ms"
printf '# round  load(1m)  llm.c ms  parallax ms   (medians of the round)\n'
for r in $(seq "$rounds"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  # llm.c: its step times exclude validation
  (cd "$work" && OMP_NUM_THREADS=$threads ./train_gpt2 > llmc.log)
  awk '/^step [0-9]+: train loss/ { if ($2+0 >= 1) { gsub(/[()]/, ""); print $7 } }' "$work/llmc.log" > "$work/llmc.r"
  # Parallax: the same shapes through `parallax-exec run`
  "$build/exec/parallax-exec" run --model gpt2-124m --mbs 4 --gbs 4 --seq 64 --precision fp32 --backend cpu \
    --steps "$steps" --seed 1 --data "$work/dev/data/tinyshakespeare/tiny_shakespeare_train.bin" --json > "$work/px.json"
  grep -o '"time_s" *: *[0-9.eE+-]*' "$work/px.json" | awk -F: 'NR > 1 { print $2 * 1000 }' > "$work/px.r"
  printf '  %5d  %8s  %8.1f  %11.1f\n' "$r" "$load" "$(median < "$work/llmc.r")" "$(median < "$work/px.r")"
  cat "$work/llmc.r" >> "$work/llmc.ms"
  cat "$work/px.r" >> "$work/px.ms"
done
llmc_ms=$(median < "$work/llmc.ms")
px_ms=$(median < "$work/px.ms")

tokens=$((4 * 64))
printf '# GPT-2 124M, B 4, T 64, fp32, %d threads, median step time over %d rounds of %d steps (first step of each left out)\n' \
  "$threads" "$rounds" "$steps"
printf '# %-10s %12s %14s\n' engine "step (ms)" "tokens/s"
printf '  %-10s %12.1f %14.1f\n' llm.c "$llmc_ms" "$(awk -v ms="$llmc_ms" -v t=$tokens 'BEGIN { print t / (ms / 1000) }')"
printf '  %-10s %12.1f %14.1f\n' parallax "$px_ms" "$(awk -v ms="$px_ms" -v t=$tokens 'BEGIN { print t / (ms / 1000) }')"
printf '  speed-up   %.2fx\n' "$(awk -v a="$llmc_ms" -v b="$px_ms" 'BEGIN { print a / b }')"
