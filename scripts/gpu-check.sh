#!/usr/bin/env bash
# scripts/gpu-check.sh — the GPU check of the executor (issue 10), in one run
# on one GPU (about 8 minutes on an H100/H200), from binaries built elsewhere
# and carried (scripts/gpu-pack.sh; docs/gpu.md):
#
#   1 ops       every CUDA op against the cpu backend (test_cuda_backend: fp32
#               tight, bf16 with its stated tolerance), the default paths: the
#               PX_CUDA_ATTN=flash tests are left to step flash
#   1b flash    the opt-in fused attention (PX_CUDA_ATTN=flash, exec/cuda/
#               flash_attn.cu) against the cpu backend on its own:
#               test_cuda_backend -p /cuda/attention-flash -p
#               /cuda/attention-blocks-flash (bf16 5e-2, f16 1e-2; T 100, 257,
#               130, 90, 70, 64, GQA, head_dim 64 / 80 / 96 / 128, ring blocks), and
#               that the fused kernels ran (no tensor-core workspace taken);
#               it must pass before flash can become the default
#   2 train     3 steps of GPT-2 124M (B 4, T 64, fp32): --backend cuda against
#               --backend cpu; per step |Δloss| / loss ≤ 1e-5 at step 1 (no
#               update yet: kernels only), ≤ 1e-4 after (Adam amplifies ULPs);
#               the same in bf16 (half activations): ≤ 2e-3 (bf16's unit
#               roundoff) at step 1, ≤ 1e-2 after
#   3 layout    pp 2 × tp 2 = 4 ranks on the one GPU (--comm local, CUDA
#               buffers, its collectives, sends and receives on the device
#               path) against 1 rank,
#               3 steps, B 8 (mbs 2), T 128, fp32: ≤ 1e-5 relative per step
#               (tests/mpi_parity.c's f32 bound); the same 4 ranks with the
#               calls staged through host memory
#               (PX_COMM_LOCAL_DEVICE=0) give the same losses exactly;
#               and dp 2 ZeRO-2 with --offload optimizer (AdamW on the host)
#               and dp 2 ZeRO-3 with --offload optimizer+params (the parameter
#               shard on the host, each layer uploaded into its gather)
#               against the same 1 rank, same bound; parameter offload also
#               holds no device weights, its host bytes are the planner's and
#               (cuda) its host memory is pinned
#   4 nccl      the conformance suite over nccl at world size 1 (test_comm
#               --comm nccl, device buffers included), and a 1-rank run with
#               --comm nccl against --comm local: ≤ 1e-6 relative
#   5 memory    measured against predicted per category, from the 1-rank and
#               4-rank runs of 3: weights, gradients, optimizer exactly;
#               activation peak within 5 % (tests/test_runtime.c's bounds);
#               buffers printed (temporaries: the planner's workspace)
#   6 bench     bench_attn (when packed): causal attention, bf16, the
#               tensor-core path against the warp kernels and the flash
#               kernels, TFLOP/s forward and backward at the 124M and 1.3B
#               shapes; then
#               bench/gpu_bench.sh: parallax-exec, PyTorch eager and
#               torch.compile (and llm.c when a checkout is carried), GPT-2
#               124M and a 1.3B GPT, tokens/s and MFU; GEMM TFLOP/s. Figures
#               are printed, never asserted: the step fails only if a run fails
#
# Usage (repository root, on the GPU machine):
#   scripts/gpu-check.sh [PACK=.gpu]
# PACK holds parallax-exec, test_cuda_backend, test_comm, bench_attn and lib/, or
# lib.tar.gz, unpacked into lib/ first (scripts/gpu-unpack.sh): what
# scripts/gpu-pack.sh made. Logs and summary.txt go to $OUT/gpu-check when
# OUT is set (else a temporary folder, named at the end). GPU_CHECK_SKIP=
# "bench" (space-separated step names) leaves steps out. GPU_CHECK_BUDGET
# (seconds, default 570: the device tool stops a command at 600) caps the
# whole run: each step's limit is cut to what is left, and a step that would
# start with under 15 s left is skipped (and the run fails: a check that did
# not run did not pass), so the summary is always written.
# Prints one summary
# table; exits 0 when every step passed, 1 when one failed, 77 without a GPU.
#
# Dry run without a GPU (tests/cli_gpu_check.sh, so that the script and the
# JSON it reads cannot drift apart unseen): GPU_CHECK_BACKEND=cpu runs steps
# train, layout and memory with the cpu backend in the place of cuda (ops,
# nccl and bench are skipped: they need CUDA), GPU_CHECK_MODEL picks a smaller
# model than gpt2-124m. The figures of a dry run say nothing about a GPU.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pack=$(cd "${1:-$here/.gpu}" 2>/dev/null && pwd) || { echo "gpu-check: no pack at ${1:-$here/.gpu} (scripts/gpu-pack.sh makes it)" >&2; exit 2; }
"$here/scripts/gpu-unpack.sh" "$pack" || exit 2 # lib.tar.gz -> lib/
logs=${OUT:-$(mktemp -d)}/gpu-check
mkdir -p "$logs"
export LD_LIBRARY_PATH=$pack/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PARALLAX_DATA_DIR=$here
exe=$pack/parallax-exec
skip=" ${GPU_CHECK_SKIP:-} "
BACKEND=${GPU_CHECK_BACKEND:-cuda}
MODEL=${GPU_CHECK_MODEL:-gpt2-124m}
export BACKEND MODEL
cd "$here"

if [ "$BACKEND" != cuda ]; then
  echo "GPU check, dry run: backend $BACKEND in the place of cuda, model $MODEL" > "$logs/gpus.txt"
  skip="$skip ops flash nccl bench "
elif ! nvidia-smi -L > "$logs/gpus.txt" 2>&1 || ! grep -q '^GPU ' "$logs/gpus.txt"; then
  echo "no CUDA device: skipped (gpu-check needs a GPU)"
  exit 77
fi
[ -x "$exe" ] || { echo "gpu-check: $exe is missing from the pack" >&2; exit 2; }

declare -a rows=()
failed=0
row() { # row STEP RESULT SECONDS DETAIL
  rows+=("$(printf '%-8s %-5s %6s  %s' "$1" "$2" "$3" "$4")")
  [ "$2" = FAIL ] && failed=1
  printf '%-8s %-5s %6s  %s\n' "$1" "$2" "$3" "$4" >> "$logs/progress.txt"
}

# step NAME SECONDS_LIMIT FUNCTION: runs FUNCTION (which prints one detail line
# last and returns 0 pass / 1 fail / 77 skip) under a time limit, logged.
budget=${GPU_CHECK_BUDGET:-570}
step() {
  local name=$1 limit=$2 fn=$3 t0=$SECONDS rc detail left
  left=$((budget - SECONDS - 5))
  if [[ $skip == *" $name "* ]]; then
    row "$name" SKIP 0 "$([ "$BACKEND" = cuda ] && echo GPU_CHECK_SKIP || echo "dry run: needs CUDA")"
    return
  fi
  if [ "$left" -lt 15 ]; then # not run is not passed
    row "$name" SKIP 0 "out of the ${budget} s budget (GPU_CHECK_BUDGET)"
    failed=1
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name" >&2
  export -f "$fn"
  timeout "$limit" bash -c "$fn" > "$logs/$name.out" 2> "$logs/$name.log"
  rc=$?
  detail=$(tail -n 1 "$logs/$name.out")
  case $rc in
    0) row "$name" PASS $((SECONDS - t0)) "$detail" ;;
    77) row "$name" SKIP $((SECONDS - t0)) "$detail" ;;
    124) row "$name" FAIL $((SECONDS - t0)) "ran past ${limit} s (log: $logs/$name.log)" ;;
    *) row "$name" FAIL $((SECONDS - t0)) "${detail:-exit $rc} (log: $logs/$name.log)" ;;
  esac
}

export exe pack logs here

# Compare the step losses of two `run --json` outputs: compare A B LABEL TOL1 TOL
# (TOL1 for step 1, TOL after); prints the worst relative difference.
compare_losses() {
  python3 - "$@" << 'EOF'
import json, sys
a, b, label, tol1, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
la = [s["loss"] for s in json.load(open(a))["steps"]]
lb = [s["loss"] for s in json.load(open(b))["steps"]]
if len(la) != len(lb) or not la:
    print(f"{label}: {len(la)} steps against {len(lb)}"); sys.exit(1)
bad, worst = [], 0.0
for i, (x, y) in enumerate(zip(la, lb)):
    rel = abs(x - y) / abs(y)
    worst = max(worst, rel)
    if rel > (tol1 if i == 0 else tol):
        bad.append(f"step {i + 1}: {x:.8g} vs {y:.8g} ({rel:.2e})")
print(("; ".join(bad) + "; ") if bad else "", end="")
print(f"{label}: {len(la)} steps, losses {' '.join(f'{x:.6f}' for x in la)}, worst |Δ|/loss {worst:.2e} "
      f"(bound {tol1:g} at step 1, {tol:g} after)")
sys.exit(1 if bad else 0)
EOF
}
export -f compare_losses

check_ops() {
  [ -x "$pack/test_cuda_backend" ] || { echo "test_cuda_backend is not in the pack"; return 1; }
  # the opt-in flash attention has a step of its own (flash): a failure there is not one of the default paths
  local skips=() p d
  for p in attention-flash attention-blocks-flash; do for d in f32 bf16 f16; do skips+=(-s "/cuda/$p/$d"); done; done
  "$pack/test_cuda_backend" --tap "${skips[@]}" > "$logs/ops.tap" 2>&1
  local rc=$? ok notok
  cat "$logs/ops.tap" >&2
  ok=$(grep -c '^ok' "$logs/ops.tap"); notok=$(grep -c '^not ok' "$logs/ops.tap")
  [ $rc -eq 77 ] && { echo "test_cuda_backend skipped: $(tail -n 1 "$logs/ops.tap")"; return 1; }
  echo "every CUDA op against cpu: $ok ok, $notok not ok (test_cuda_backend exit $rc)"
  [ $rc -eq 0 ] && [ "$notok" -eq 0 ]
}

check_flash() {
  [ -x "$pack/test_cuda_backend" ] || { echo "test_cuda_backend is not in the pack"; return 1; }
  "$pack/test_cuda_backend" --tap -p /cuda/attention-flash -p /cuda/attention-blocks-flash > "$logs/flash.tap" 2>&1
  local rc=$? ok notok ran worst
  cat "$logs/flash.tap" >&2
  [ $rc -eq 77 ] && { echo "test_cuda_backend skipped: $(tail -n 1 "$logs/flash.tap")"; return 1; }
  ok=$(grep -c '^ok' "$logs/flash.tap"); notok=$(grep -c '^not ok' "$logs/flash.tap")
  ran=$(grep -c 'the fused kernels ran) ok' "$logs/flash.tap")
  # the comparison closest to its tolerance (the lines of the fused kernels' shapes say "flash")
  worst=$(grep '^# cuda vs cpu: .*flash' "$logs/flash.tap" |
    sed -n 's/.*max err \([0-9.e+-]*\) (tol \([0-9.e+-]*\)).*/\1 \2/p' |
    awk '$1 / $2 >= w { w = $1 / $2; l = sprintf("%s of tol %s", $1, $2) } END { print l }')
  echo "PX_CUDA_ATTN=flash against cpu: $ok ok, $notok not ok, $ran calls on the fused kernels, worst max err ${worst:-none} (exit $rc)"
  [ $rc -eq 0 ] && [ "$notok" -eq 0 ] && [ "$ran" -gt 0 ]
}

RUN_FP32="--precision fp32 --dtype f32 --json"
export RUN_FP32
check_train() {
  local args="--model $MODEL --mbs 4 --gbs 4 --seq 64 --steps 3 $RUN_FP32"
  "$exe" run --backend cpu $args > "$logs/train-cpu.json" || { echo "the cpu run failed"; return 1; }
  "$exe" run --backend "$BACKEND" $args > "$logs/train-cuda.json" || { echo "the $BACKEND run failed"; return 1; }
  local cmp32 cmp16
  cmp32=$(compare_losses "$logs/train-cuda.json" "$logs/train-cpu.json" "$BACKEND vs cpu, $MODEL B4 T64 fp32" 1e-5 1e-4) ||
    { echo "$cmp32"; return 1; }
  # bf16 (half activations, fp32 statistics and master): the cpu backend runs
  # each op on f32 copies and rounds its outputs once; cuda's kernels round the
  # same outputs once but sum in another order, so single values may differ by
  # a bf16 unit (2^-8 relative). The mean loss over 256 tokens differs far
  # less; the bounds: bf16's unit roundoff 2^-9 ≈ 2e-3 at step 1, and 1e-2
  # after two AdamW steps (the first moves every weight by about lr)
  local b16="--model $MODEL --mbs 4 --gbs 4 --seq 64 --steps 3 --dtype bf16 --json"
  "$exe" run --backend cpu $b16 > "$logs/train-cpu-bf16.json" || { echo "the cpu bf16 run failed"; return 1; }
  "$exe" run --backend "$BACKEND" $b16 > "$logs/train-cuda-bf16.json" || { echo "the $BACKEND bf16 run failed"; return 1; }
  cmp16=$(compare_losses "$logs/train-cuda-bf16.json" "$logs/train-cpu-bf16.json" "bf16" 2e-3 1e-2) ||
    { echo "$cmp32; $cmp16"; return 1; }
  echo "$cmp32; $cmp16"
}

check_layout() {
  local args="--backend $BACKEND --comm local --model $MODEL --mbs 2 --gbs 8 --seq 128 --steps 3 $RUN_FP32"
  "$exe" run $args > "$logs/layout-1.json" || { echo "the 1-rank $BACKEND run failed"; return 1; }
  # the local communicator's collectives and pipeline transfers on its device path (stream copies, the reduction
  # kernel, events across the ranks' streams: cuda's default, set here so that the cpu dry run takes it too), then staged through host
  # memory (PX_COMM_LOCAL_DEVICE=0, the path before it): the same arithmetic, so the same losses exactly
  PX_COMM_LOCAL_DEVICE=1 "$exe" run $args --pp 2 --tp 2 > "$logs/layout-4.json" ||
    { echo "the pp 2 x tp 2 $BACKEND run failed"; return 1; }
  compare_losses "$logs/layout-4.json" "$logs/layout-1.json" "pp2 x tp2 (4 ranks, local, one GPU) vs 1 rank" 1e-5 1e-5 ||
    return 1
  PX_COMM_LOCAL_DEVICE=0 "$exe" run $args --pp 2 --tp 2 > "$logs/layout-4-staged.json" ||
    { echo "the pp 2 x tp 2 $BACKEND run with staged collectives failed"; return 1; }
  compare_losses "$logs/layout-4-staged.json" "$logs/layout-4.json" "pp2 x tp2 staged vs device-path collectives" 0 0 ||
    return 1
  # ZeRO-Offload: AdamW on the host (the host backend, pinned buffers on cuda), the gradients down and the parameters up
  "$exe" run $args --dp 2 --zero 2 --offload optimizer > "$logs/layout-offload.json" ||
    { echo "the dp 2 ZeRO-2 --offload optimizer $BACKEND run failed"; return 1; }
  compare_losses "$logs/layout-offload.json" "$logs/layout-1.json" "dp2 ZeRO-2 offload (AdamW on the host) vs 1 rank" \
    1e-5 1e-5 || return 1
  # ZeRO-Infinity's parameter offload: the ZeRO-3 shard on the host, uploaded layer by layer into the gathers
  "$exe" run $args --dp 2 --zero 3 --offload optimizer+params > "$logs/layout-poffload.json" ||
    { echo "the dp 2 ZeRO-3 --offload optimizer+params $BACKEND run failed"; return 1; }
  compare_losses "$logs/layout-poffload.json" "$logs/layout-1.json" \
    "dp2 ZeRO-3 parameter offload (shard on the host) vs 1 rank" 1e-5 1e-5 || return 1
  python3 - "$logs/layout-poffload.json" "$BACKEND" << 'EOF'
import json, sys
bad = []
for m in json.load(open(sys.argv[1]))["memory"]:
    if m["measured"]["weights"] != 0:
        bad.append(f"rank {m['rank']}: {m['measured']['weights']:.0f} B of weights on the device")
    if m["host"]["measured"] != m["host"]["predicted"]:
        bad.append(f"rank {m['rank']}: host {m['host']['measured']:.0f} B, predicted {m['host']['predicted']:.0f} B")
    if sys.argv[2] == "cuda" and not m["host"].get("pinned"):
        bad.append(f"rank {m['rank']}: host memory pageable (cudaHostAlloc failed?), expected pinned")
print("; ".join(bad) if bad else "parameter offload: no device weights, host bytes = the planner's, host memory pinned on cuda")
sys.exit(1 if bad else 0)
EOF
}

check_nccl() {
  "$pack/test_comm" --comm nccl --tap > "$logs/nccl.tap" 2>&1
  local rc=$? ok skipped
  cat "$logs/nccl.tap" >&2
  ok=$(grep -c '^ok' "$logs/nccl.tap"); skipped=$(grep -c '# SKIP' "$logs/nccl.tap")
  [ $rc -eq 77 ] && { echo "test_comm --comm nccl skipped: $(tail -n 1 "$logs/nccl.tap")"; return 1; }
  if [ $rc -ne 0 ]; then echo "test_comm --comm nccl: exit $rc ($(grep -c '^not ok' "$logs/nccl.tap") not ok)"; return 1; fi
  local args="--backend cuda --model gpt2-124m --mbs 4 --gbs 4 --seq 64 --steps 3 $RUN_FP32"
  "$exe" run --comm nccl $args > "$logs/nccl-run.json" || { echo "run --comm nccl (world size 1) failed"; return 1; }
  "$exe" run --comm local $args > "$logs/local-run.json" || { echo "run --comm local failed"; return 1; }
  local cmp
  cmp=$(compare_losses "$logs/nccl-run.json" "$logs/local-run.json" "run --comm nccl vs local" 1e-6 1e-6) ||
    { echo "$cmp"; return 1; }
  echo "conformance at world size 1: $((ok - skipped)) ran, $skipped skipped (need 2 ranks or a capability); $cmp"
}

check_memory() {
  [ -s "$logs/layout-1.json" ] && [ -s "$logs/layout-4.json" ] || { echo "no run of step layout to read"; return 1; }
  python3 - "$logs/layout-1.json" "$logs/layout-4.json" << 'EOF'
import json, sys
cats = ["weights", "gradients", "optimizer", "activations", "buffers"]
bad, lines = [], []
for path in sys.argv[1:]:
    run = json.load(open(path))
    for m in run["memory"]:
        meas, pred = m["measured"], m["predicted"]
        cells = []
        for c in cats:
            x, y = meas[c], pred[c]
            cells.append(f"{c} {x / 2**20:.1f}/{y / 2**20:.1f}")
            if c in ("weights", "gradients", "optimizer") and x != y:
                bad.append(f"rank {m['rank']} of {path.split('/')[-1]}: {c} measured {x:.0f} B, predicted {y:.0f} B")
            if c == "activations" and abs(x - y) > 0.05 * y:
                bad.append(f"rank {m['rank']} of {path.split('/')[-1]}: activation peak {x:.0f} B, predicted {y:.0f} B ({100 * (x - y) / y:+.1f} %)")
        lines.append(f"{path.split('/')[-1]} rank {m['rank']} (stage {m['stage']}, tp {m['tp']}): " + ", ".join(cells))
print("# measured / predicted per category, MiB (2^20 B); activations: peak", file=sys.stderr)
for l in lines:
    print("  " + l, file=sys.stderr)
for b in bad:
    print("  " + b, file=sys.stderr)
print(f"{len(lines)} ranks: weights, gradients, optimizer {'exact' if not any('weights' in b or 'gradients' in b or 'optimizer' in b for b in bad) else 'DIFFER'}; "
      f"activation peaks {'within 5 %' if not any('activation' in b for b in bad) else 'OFF'} (table in memory.log)")
sys.exit(1 if bad else 0)
EOF
}

check_bench() {
  if [ -x "$pack/bench_attn" ]; then
    "$pack/bench_attn" > "$logs/bench-attn.txt" || { echo "bench_attn failed (bench-attn.txt, bench.log)"; return 1; }
    cat "$logs/bench-attn.txt" >&2
  fi
  bash "$here/bench/gpu_bench.sh" "$pack" "$logs/bench" >&2 || { echo "a benchmark run failed (bench.log)"; return 1; }
  tail -n 1 "$logs/bench/summary.txt"
}

step ops 180 check_ops
step flash 90 check_flash
step train 300 check_train
step layout 240 check_layout
step nccl 180 check_nccl
step memory 30 check_memory
step bench 480 check_bench

{
  echo "# gpu-check on $(head -n 1 "$logs/gpus.txt"), $(date -u '+%Y-%m-%d %H:%M UTC')"
  printf '%-8s %-5s %6s  %s\n' step result s detail
  printf '%s\n' "${rows[@]}"
  [ -s "$logs/bench-attn.txt" ] && { echo "# attention (bench_attn)"; cat "$logs/bench-attn.txt"; }
  [ -s "$logs/bench/table.txt" ] && { echo "# benchmarks (bench/gpu_bench.sh)"; cat "$logs/bench/table.txt"; }
  echo "# logs: $logs"
} | tee "$logs/summary.txt"
exit $failed
