#!/usr/bin/env bash
# CLI checks of `parallax-exec calibrate`: it writes a cluster profile that
# `parallax-sim simulate --cluster FILE` accepts, with every rate the cost
# model reads present and positive (values are measurements: not asserted),
# and bad input gets one line and a non-zero exit.
set -u
sim=$1 exe=$2
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# medians of 3: one run of a small op preempted on a busy machine measured
# under 1 MB/s, a rate the loader refuses (calibrate then writes nothing)
"$exe" calibrate --model tiny-gpt --seq 32 --ranks 2 --reps 3 --max-bytes 65536 --out "$tmp/c.ini" > "$tmp/out" 2>&1
check "calibrate exit 0" "[ $? -eq 0 ]"
for key in peak_fp32 peak_bf16 hbm_bw kernel_overhead bandwidth latency p2p_latency; do
  check "profile has $key" "grep -Eq '^$key = [0-9.e+-]+$' '$tmp/c.ini'"
done
# the per-op-class rates cost.c charges apart (docs/cost.md section 8), each with its measurement as a comment
for key in membound_bw_norm_fwd membound_bw_norm_bwd membound_bw_act_fwd membound_bw_act_bwd \
           membound_bw_residual_fwd membound_bw_residual_bwd membound_bw_ce_fwd membound_bw_ce_bwd \
           membound_bw_embedding_fwd membound_bw_embedding_bwd membound_bw_optimizer \
           attention_fwd_flops attention_bwd_flops pcie_bw cpu_adam_rate; do
  check "profile has $key > 0" "awk -F' = ' '/^$key = / { found = 1; ok = (\$2 > 0) } END { exit !(found && ok) }' '$tmp/c.ini'"
done
check "op classes listed with their times" "grep -q '^# op classes at 1 x 32 tokens' '$tmp/c.ini' && [ \$(grep -cE '^#   [a-z ]+ +[0-9.]+ us' '$tmp/c.ini') -eq 13 ]"
# a TP rank's shapes: the FFN and attention halve (the attention's FLOPs with them)
"$exe" calibrate --model tiny-gpt --seq 32 --tp 2 --ranks 1 --reps 3 --out "$tmp/tp2.ini" > /dev/null 2>&1
check "--tp 2: a TP rank's shapes" "[ $? -eq 0 ] && grep -q '32 x 128 x 64 (h.0.mlp.fc.weight)' '$tmp/tp2.ini' && grep -Eq '^#   activation forward .* 32768 B' '$tmp/tp2.ini' && grep -Eq '^#   attention forward .* 131072 FLOP' '$tmp/tp2.ini'"
check "peak positive" "awk -F' = ' '/^peak_fp32/ { exit !(\$2 > 0) }' '$tmp/c.ini'"
check "all-reduce sizes 4, 16, 64 KiB listed" "[ \$(grep -cE '^# +[0-9]+ B +[0-9.]+ us +[0-9.]+ GB/s' '$tmp/c.ini') -eq 3 ]"
"$sim" simulate --model tiny-gpt --cluster "$tmp/c.ini" --gpus 2 --pp 2 --gbs 4 --precision fp32 > "$tmp/sim" 2>&1
check "simulate reads the profile" "[ $? -eq 0 ] && grep -q 'step time' '$tmp/sim'"
check "f32 by default: calibrated_dtype = f32, the fp32 comments" "grep -q '^calibrated_dtype = f32$' '$tmp/c.ini' && grep -q 'fp32, medians of 3 runs' '$tmp/c.ini'"

# --dtype bf16: the run's kernels (bf16 GEMMs and activations, fp32
# statistics, the mixed-precision optimizer), the GEMM rate under peak_bf16,
# the dtype recorded; the bytes cost.c charges are 2 per activation element
# (tiny-gpt, 32 tokens: the GELU forward reads and writes 32 x 256 elements,
# 2 x 8192 x 2 B = 32768 B where fp32 is 65536 B) and the optimizer's 24 + 4
# (fp32 gradient reduction) + 2 = 30 B per parameter (fp32: 32)
"$exe" calibrate --model tiny-gpt --seq 32 --ranks 1 --reps 3 --dtype bf16 --out "$tmp/bf16.ini" > /dev/null 2>&1
check "--dtype bf16: exit 0, calibrated_dtype = bf16" "[ $? -eq 0 ] && grep -q '^calibrated_dtype = bf16$' '$tmp/bf16.ini'"
check "--dtype bf16: peak_bf16 measured, said so" "grep -Eq '^peak_bf16 = [0-9.e+-]+$' '$tmp/bf16.ini' && grep -q '^# peak_bf16 measured' '$tmp/bf16.ini' && grep -q 'bf16 activations and GEMMs' '$tmp/bf16.ini'"
check "--dtype bf16: 2 B activations, 30 B per parameter of the optimizer" "grep -Eq '^#   activation forward .* 32768 B' '$tmp/bf16.ini' && grep -Eq '^#   activation forward .* 65536 B' '$tmp/c.ini' && python3 - '$tmp/bf16.ini' '$tmp/c.ini' <<'PY'
import re, sys
for path, per in ((sys.argv[1], 30), (sys.argv[2], 32)):
    b, n = map(float, re.search(r'^#   optimizer step .* ([0-9]+) B over ([0-9]+) parameters', open(path).read(), re.M).groups())
    assert b == per * n, (path, b, n)
PY"
for key in membound_bw_norm_fwd membound_bw_ce_bwd membound_bw_optimizer attention_fwd_flops hbm_bw kernel_overhead cpu_adam_rate; do
  check "--dtype bf16: $key > 0" "awk -F' = ' '/^$key = / { found = 1; ok = (\$2 > 0) } END { exit !(found && ok) }' '$tmp/bf16.ini'"
done
"$exe" calibrate --model tiny-gpt --seq 32 --ranks 1 --reps 3 --dtype f16 --out "$tmp/f16.ini" > /dev/null 2>&1
check "--dtype f16: exit 0, calibrated_dtype = f16, peak_fp16 measured" "[ $? -eq 0 ] && grep -q '^calibrated_dtype = f16$' '$tmp/f16.ini' && grep -q '^# peak_fp16 measured' '$tmp/f16.ini'"
# the profile against runs: a bf16 run compared on the bf16 profile prints its
# table; on the f32 one it is refused before any step, with one line
run=(run --model tiny-gpt --seq 32 --mbs 1 --gbs 2 --steps 2 --precision fp32)
"$exe" "${run[@]}" --dtype bf16 --compare --cluster "$tmp/bf16.ini" > "$tmp/cmp" 2>&1
check "bf16 calibrate -> bf16 run --compare: the table" "[ $? -eq 0 ] && grep -q 'bf16 GEMMs' '$tmp/cmp' && grep -Eq '^# step time +predicted +[0-9.]+ ms +measured +[0-9.]+ ms' '$tmp/cmp' && grep -Eq '^ +0 +0 FORWARD ' '$tmp/cmp'"
"$exe" "${run[@]}" --dtype bf16 --compare --cluster "$tmp/c.ini" > "$tmp/o" 2> "$tmp/e"
check "f32 profile, bf16 run --compare: exit non-zero, one line" "[ $? -ne 0 ] && [ \$(wc -l < '$tmp/e') -eq 1 ] && grep -qF 'the cluster profile was calibrated in f32; this run computes in bf16: run calibrate --dtype bf16' '$tmp/e'"
"$exe" "${run[@]}" --compare --cluster "$tmp/c.ini" > "$tmp/cmp" 2>&1
check "f32 calibrate -> f32 run --compare: the table" "[ $? -eq 0 ] && grep -q 'fp32 GEMMs' '$tmp/cmp'"

"$exe" calibrate --model tiny-gpt --ranks 1 --reps 3 --out "$tmp/one.ini" > /dev/null 2>&1
check "one rank: no collectives, still a profile" "[ $? -eq 0 ] && grep -q 'not measured (1 rank)' '$tmp/one.ini' && ! grep -q '^p2p_latency' '$tmp/one.ini'"

# under mpirun: one process per rank, rank 0 writes the profile (skipped without mpirun)
if command -v mpirun > /dev/null; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
    mpirun -n 2 "$exe" calibrate --model tiny-gpt --seq 32 --reps 3 --max-bytes 16384 --out "$tmp/mpi.ini" \
    < /dev/null > "$tmp/mpi.out" 2>&1
  rc=$?
  if [ $rc -eq 0 ] || ! grep -q "mpi" "$tmp/mpi.out"; then
    check "mpi: 2 processes, one profile" "[ $rc -eq 0 ] && grep -q 'over 2 ranks (mpi communicator)' '$tmp/mpi.ini' && [ \$(grep -c '^wrote' '$tmp/mpi.out') -eq 1 ]"
  else
    echo "# mpi: skipped (built without the mpi communicator)"
  fi
fi

bad() {
  local name=$1 want=$2; shift 2
  "$exe" "$@" >"$tmp/o" 2>"$tmp/e"; local rc=$?
  check "$name: exit non-zero, one line" "[ $rc -ne 0 ] && [ \$(wc -l <'$tmp/e') -eq 1 ] && grep -qF -- \"$want\" '$tmp/e'"
}
bad "no --out" "--out FILE" calibrate --model tiny-gpt
bad "bad ranks" "--ranks 0 is not in 1..64" calibrate --ranks 0 --out "$tmp/x.ini"
bad "unknown backend" "tpu" calibrate --backend tpu --out "$tmp/x.ini"
bad "unknown model" "nosuchmodel" calibrate --model nosuchmodel --out "$tmp/x.ini"
bad "tp not dividing the heads" "--tp 3 does not divide" calibrate --model tiny-gpt --tp 3 --out "$tmp/x.ini"
bad "unknown communicator" "--comm 'nccl2' is not one of" calibrate --comm nccl2 --out "$tmp/x.ini"
bad "unknown dtype" "--dtype 'f64' is not f32, bf16 or f16" calibrate --dtype f64 --out "$tmp/x.ini"
echo "1..$n"
exit $fail
