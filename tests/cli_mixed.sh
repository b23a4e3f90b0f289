#!/usr/bin/env bash
# CLI checks of `parallax-exec run --dtype bf16|f16` (mixed precision): the
# header names it, the memory table holds 2 + 2 + 12 bytes per parameter of
# tiny-gpt (220,544 parameters: 441,088 B weights and gradients, 2,646,528 B
# optimizer) beside the same prediction, an fp16 overflow forced by a huge
# loss scale is reported as a skipped step with the scale it ran at, the JSON
# carries the scale, and bad values are one line with a non-zero exit.
set -u
exe=$2
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
base=(run --model tiny-gpt --seq 16 --mbs 2 --gbs 8 --units GB)

out=$("$exe" "${base[@]}" --dtype bf16 --steps 2)
check "header names bf16 mixed precision" "grep -q 'bf16 mixed precision (bf16 activations, fp32 statistics and master)' <<<\"\$out\""
check "two step lines" "[ \$(grep -Ec '^ +[12] +[0-9]+\.[0-9]+ ' <<<\"\$out\") -eq 2 ]"
# rank 0: weights 0.000441 grads 0.000441 optimizer 0.002647 (GB), measured | predicted
check "memory 2 + 2 + 12 B/param, measured and predicted" \
  "grep -Eq '^ +0 +0 +0 +0 +0\.000441 +0\.000441 +0\.002647 .*\| +0\.000441 +0\.000441 +0\.002647 ' <<<\"\$out\""

out=$("$exe" "${base[@]}" --dtype f16 --loss-scale 1e12 --steps 1)
check "fp16 overflow: the step is skipped at the scale it ran with" \
  "grep -q 'loss scale 1e+12: gradients overflowed, step skipped, scale halved' <<<\"\$out\""
json=$("$exe" "${base[@]}" --dtype f16 --steps 1 --json)
check "json has the loss scale" "grep -qF '\"loss_scale\" : 65536' <<<\"\$json\""
check "json says not skipped" "grep -qF '\"skipped\" : false' <<<\"\$json\""

err=$("$exe" "${base[@]}" --dtype f8 --steps 1 2>&1 >/dev/null); rc=$?
check "unknown dtype: one line, non-zero" "[ $rc -ne 0 ] && [ \$(wc -l <<<\"\$err\") -eq 1 ] && grep -q 'f32, f64, bf16 or f16' <<<\"\$err\""
err=$("$exe" "${base[@]}" --dtype f16 --loss-scale 0.5 --steps 1 2>&1 >/dev/null); rc=$?
check "loss scale below 1: one line, non-zero" "[ $rc -ne 0 ] && [ \$(wc -l <<<\"\$err\") -eq 1 ] && grep -q 'loss-scale' <<<\"\$err\""
exit $fail
