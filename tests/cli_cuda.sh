#!/usr/bin/env bash
# `parallax-exec run --backend cuda` where there is no CUDA device (or no
# CUDA backend built): one line naming the backend and why, non-zero exit,
# no crash. On a machine with a GPU the run itself must succeed instead.
set -u
exe=$2
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
out=$("$exe" run --model tiny-gpt --seq 16 --mbs 2 --gbs 8 --steps 1 --backend cuda 2>&1); rc=$?
if [ $rc -eq 0 ]; then
  check "a CUDA device is present: the run succeeded" "true"
else
  check "no device: non-zero exit, not a crash (rc $rc)" "[ $rc -ne 0 ] && [ $rc -lt 128 ]"
  check "no device: exactly one line" "[ \$(printf '%s\n' \"\$out\" | wc -l) -eq 1 ]"
  check "no device: the line names the cuda backend" "printf '%s' \"\$out\" | grep -q \"backend 'cuda'\""
fi
echo "1..$n"
exit $fail
