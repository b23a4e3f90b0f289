#!/usr/bin/env bash
# nightly_parity.sh — the full parity product of the executor: for tiny-gpt
# and tiny-llama, every layout in
#   {pp 1,2,4} x {tp 1,2} x {dp 1,2} x {ZeRO 0,1,2,3} x {ckpt none, full}
#   x {gpipe, 1f1b, interleaved (vpp 2 where the model has the chunks), zb-h1,
#      zb-h2, zb-v and dualpipev (two chunks per rank in a V: pp 2 here)}
#   x {sequence parallel or not (tp 2)}
# runs 5 steps, and each step's loss must equal the single-rank run's on the
# same global batch to 1e-5 relative (fp32; --dtype f64: 1e-10). ZeRO > 0 with
# dp = 1 is the same program as ZeRO 0 and is skipped. (CI runs a covering
# subset: tests/test_runtime.c with thread-ranks, tests/mpi_parity.sh with
# processes.)
#
# Usage: scripts/nightly_parity.sh [BUILD_DIR] [f32|f64] [threads|processes]
# processes: every rank a process of its own under mpirun (--comm mpi).
set -u
build=${1:-build}
dtype=${2:-f32}
mode=${3:-threads}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
exe="$build/exec/parallax-exec"
tol=1e-5; [ "$dtype" = f64 ] && tol=1e-10
[ -x "$exe" ] || { echo "nightly_parity: no $exe (build first)" >&2; exit 2; }
common=(run --seq 16 --mbs 1 --gbs 8 --steps 5 --seed 7 --lr 3e-3 --warmup 2 --dtype "$dtype")
losses() { awk '!/^#/ && NF == 6 {printf "%s ", $2}'; }
runs=0; failed=0
for model in tiny-gpt tiny-llama; do
  ref=$("$exe" "${common[@]}" --model "$model" | losses)
  [ -n "$ref" ] || { echo "FAIL $model single rank did not run"; exit 1; }
  for pp in 1 2 4; do for tp in 1 2; do for dp in 1 2; do for zero in 0 1 2 3; do
    [ "$dp" = 1 ] && [ "$zero" != 0 ] && continue
    for ckpt in none full; do for sched in gpipe 1f1b interleaved zb-h1 zb-h2 zb-v dualpipev; do for sp in no yes; do
      [ "$sp" = yes ] && [ "$tp" = 1 ] && continue
      vpp=1
      # two chunks per rank: pp 2 (tiny models have 4 blocks); dualpipev's m = 8 / dp >= 2 pp holds there
      case $sched in interleaved|zb-v|dualpipev) [ "$pp" = 2 ] || continue; vpp=2 ;; esac
      args=(--model "$model" --pp "$pp" --tp "$tp" --dp "$dp" --zero "$zero" --ckpt "$ckpt" --schedule "$sched" --vpp "$vpp")
      [ "$sp" = yes ] && args+=(--sp)
      if [ "$mode" = processes ]; then
        got=$(mpirun -n $((pp * tp * dp)) "$exe" "${common[@]}" "${args[@]}" --comm mpi < /dev/null 2>&1 | losses)
      else
        got=$("$exe" "${common[@]}" "${args[@]}" --comm local 2>&1 | losses)
      fi
      runs=$((runs+1))
      if ! awk -v a="$ref" -v b="$got" -v tol="$tol" 'BEGIN {
             n = split(a, x, " "); m = split(b, y, " "); if (n != m || n == 0) exit 1;
             for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > tol * (x[i] < 0 ? -x[i] : x[i])) exit 1 }
           }'; then
        echo "FAIL ${args[*]}: losses [$got] vs single rank [$ref]"
        failed=$((failed+1))
      fi
    done; done; done
  done; done; done; done
done
echo "nightly_parity ($dtype, $mode): $runs layouts, $failed failed"
[ "$failed" = 0 ]
