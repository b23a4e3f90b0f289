#!/usr/bin/env bash
# bench/gpu_bench.sh — training throughput on one GPU, side by side, same GPU,
# same run: `parallax-exec run --backend cuda`, PyTorch eager and
# torch.compile (bench/torch_gpt.py), and llm.c's train_gpt2cu for GPT-2 124M
# when a checkout of karpathy/llm.c is carried next to the project (none of its
# code is part of Parallax; it is built from that checkout in a scratch copy).
#
#   bash bench/gpu_bench.sh [PACK=.gpu] [OUTDIR]
#
# Shapes: GPT-2 124M at B 16, T 1024, and the 1.3B GPT of bench/gpt-1.3b.ini
# at B 8, T 1024 (BENCH_MODELS="gpt2-124m:16 gpt-1.3b:8" overrides), bf16
# where parallax-exec has a bf16 compute type (else fp32, said in the table).
# BENCH_STEPS (default 8) steps each; parallax-exec's and llm.c's tokens/s
# are the median step of all but the first (warm-up), PyTorch's the mean of
# BENCH_STEPS steps after 3 warm-up steps (compilation happens there).
# tokens/s × FLOPs/token / peak = MFU, with FLOPs/token = 6N + 12 L h s and
# the dense bf16 peak of the GPU's datasheet, both from bench/torch_gpt.py
# (one convention for every engine; llm.c's own MFU column is not used).
# Then the bf16 GEMM TFLOP/s of each model's shapes (torch.matmul: cuBLAS).
#
# Writes OUTDIR/table.txt (the table), OUTDIR/summary.txt (one line) and the
# logs; prints the table. Figures are printed, never asserted; the exit status
# is 1 only when a run failed. Targets (issue 10): tokens/s ≥ torch.compile and
# ≥ llm.c, and ≥ 50 % MFU for the 1.3B model: shown in the "target" column.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pack=${1:-$here/.gpu}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
exe=$pack/parallax-exec
[ -x "$exe" ] || exe=$here/build/exec/parallax-exec
"$here/scripts/gpu-unpack.sh" "$pack" || exit 1 # a pack's lib.tar.gz -> lib/
[ -d "$pack/lib" ] && export LD_LIBRARY_PATH=$pack/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PARALLAX_DATA_DIR=$here
steps=${BENCH_STEPS:-8}
models=${BENCH_MODELS:-"gpt2-124m:16 gpt-1.3b:8"}
llmc=${LLMC_DIR:-$here/../llm.c}
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -n 1)
[ -n "$gpu" ] || { echo "gpu_bench: no CUDA device: skipped"; exit 77; }
failed=0
rows=$out/rows.tsv
: > "$rows"

# the compute type: bf16 when `run --dtype` offers it
if "$exe" run --help 2> /dev/null | grep -- '--dtype' | grep -q bf16; then
  px_type="--dtype bf16 --precision bf16"; px_name="bf16"
else
  px_type="--dtype f32 --precision fp32"; px_name="fp32: no bf16 in this build"
fi

median_tps() { # median_tps RUN_JSON: tokens/s of the median step, the first left out
  python3 - "$1" << 'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
t = sorted(s["time_s"] for s in run["steps"][1:]) or [run["steps"][0]["time_s"]]
print(run["tokens_per_step"] / t[(len(t) - 1) // 2])
EOF
}

row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$rows"; } # model engine tokens/s fpt peak|note

# the table: MFU from the one convention; parallax-exec against the best of torch.compile and llm.c;
# written after each model, so that a run stopped by its time limit (scripts/gpu-check.sh) keeps the
# figures of the models done
write_table() {
  python3 - "$rows" "$gpu" > "$out/table.txt.new" << 'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print(f"# {sys.argv[2]}: training tokens/s, MFU = tokens/s x (6N + 12 L h s) / dense bf16 peak")
print(f"{'model':10s} {'engine':40s} {'tokens/s':>12s} {'MFU':>7s}  target")
def num(x):
    try: return float(x)
    except ValueError: return None
summary = []
for model in dict.fromkeys(r[0] for r in rows):
    mine = [r for r in rows if r[0] == model]
    refs = [num(r[2]) for r in mine if ("compile" in r[1] or "llm.c" in r[1]) and num(r[2])]
    for _, engine, tps, fpt, peak in mine:
        v = num(tps)
        mfu = v * float(fpt) / float(peak) if v and float(peak) else None
        target = ""
        if engine.startswith("parallax") and v:
            target = "≥ torch.compile / llm.c: " + ("met" if refs and v >= max(refs) else f"not met ({v / max(refs):.2f}x)" if refs else "no reference")
            if model == "gpt-1.3b" and mfu is not None:
                target += ", ≥ 50 % MFU: " + ("met" if mfu >= 0.5 else "not met")
            summary.append(f"{model} parallax {v:.0f} tokens/s" + (f" ({100 * mfu:.1f} % MFU)" if mfu is not None else ""))
        cell = f"{v:12.0f}" if v else f"{tps:>12s}"
        print(f"{model:10s} {engine:40s} {cell} {'' if mfu is None else f'{100 * mfu:6.1f}%':>7s}  {target}")
open(sys.argv[1].replace("rows.tsv", "summary.txt"), "w").write("; ".join(summary or ["no parallax-exec figure"]) + "\n")
EOF
  mv "$out/table.txt.new" "$out/table.txt"
}

for spec in $models; do
  model=${spec%%:*}; batch=${spec##*:}
  count=$(python3 "$here/bench/torch_gpt.py" --model "$model" --count --device-name "$gpu") || { failed=1; continue; }
  fpt=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["flops_per_token"])' "$count")
  peak=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["peak_flops"] or 0)' "$count")
  px_model=$model
  [ -f "$here/bench/$model.ini" ] && px_model=$here/bench/$model.ini
  echo "== $model B $batch T 1024 on $gpu" >&2

  # parallax-exec
  if "$exe" run --backend cuda --model "$px_model" --mbs "$batch" --gbs "$batch" --seq 1024 --steps "$steps" \
       $px_type --json > "$out/px-$model.json" 2> "$out/px-$model.log"; then
    row "$model" "parallax-exec ($px_name)" "$(median_tps "$out/px-$model.json")" "$fpt" "$peak"
  else
    row "$model" "parallax-exec ($px_name)" "failed: $(tail -n 1 "$out/px-$model.log")" "$fpt" "$peak"
    failed=1
  fi

  # PyTorch eager and torch.compile
  if python3 -c 'import torch' 2> /dev/null; then
    if python3 "$here/bench/torch_gpt.py" --model "$model" --batch "$batch" --steps "$steps" --json \
         > "$out/torch-$model.json" 2> "$out/torch-$model.log"; then
      while IFS=$'\t' read -r mode tps; do row "$model" "pytorch $mode (bf16 autocast)" "$tps" "$fpt" "$peak"; done < <(
        python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))
for x in r["runs"]: print(x["mode"], x["tokens_per_s"], sep="\t")' "$out/torch-$model.json")
    else
      row "$model" "pytorch" "failed: $(tail -n 1 "$out/torch-$model.log")" "$fpt" "$peak"
      failed=1
    fi
    python3 "$here/bench/torch_gpt.py" --model "$model" --batch "$batch" --gemm > "$out/gemm-$model.txt" 2>&1 || failed=1
  else
    row "$model" "pytorch" "skipped: PyTorch is not installed" "$fpt" "$peak"
  fi

  # llm.c (GPT-2 124M only: its model descriptor d12)
  if [ "$model" = gpt2-124m ]; then
    if [ -f "$llmc/train_gpt2.cu" ] && [ -f "$llmc/Makefile" ]; then
      work=$out/llmc
      rm -rf "$work" && mkdir -p "$work" && cp -r "$llmc/." "$work/" && rm -rf "$work/.git"
      if make -C "$work" train_gpt2cu NO_MULTI_GPU=1 > "$out/llmc-build.log" 2>&1 &&
         "$exe" data --synthetic --tokens 2000000 --vocab 50257 --seed 7 --out "$work/bench_train.bin" > /dev/null &&
         "$exe" data --synthetic --tokens 200000 --vocab 50257 --seed 8 --out "$work/bench_val.bin" > /dev/null &&
         (cd "$work" && ./train_gpt2cu -e d12 -b "$batch" -t 1024 -x "$steps" -v 100000 -m 1 -s 0 \
            -i bench_train.bin -j bench_val.bin) > "$out/llmc.log" 2>&1; then
        # "step    2/8 | loss ... | 123.45 ms | 45.6% bf16 MFU | 123456 tok/s": the median ms of steps 2..
        tps=$(awk -F'|' '/^step +[0-9]+\/[0-9]+ \|/ { split($1, s, /[ \/]+/); if (s[2] + 0 >= 2) { split($5, ms, " "); print ms[1] } }' \
                "$out/llmc.log" | sort -g | awk -v bt=$((batch * 1024)) '{ t[NR] = $1 } END { if (!NR) exit 1; print bt / (t[int((NR + 1) / 2)] / 1000) }') &&
          row "$model" "llm.c train_gpt2cu (bf16)" "$tps" "$fpt" "$peak" ||
          { row "$model" "llm.c train_gpt2cu" "failed: no step lines in llmc.log" "$fpt" "$peak"; failed=1; }
      else
        row "$model" "llm.c train_gpt2cu" "failed: see llmc-build.log / llmc.log" "$fpt" "$peak"
        failed=1
      fi
    else
      row "$model" "llm.c train_gpt2cu" "skipped: no llm.c checkout at $llmc (LLMC_DIR)" "$fpt" "$peak"
    fi
  fi
  write_table
done

write_table
cat "$out/table.txt"
for f in "$out"/gemm-*.txt; do [ -f "$f" ] && cat "$f"; done
exit $failed
