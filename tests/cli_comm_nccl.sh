#!/usr/bin/env bash
# CLI checks of `parallax-exec run --comm nccl` that hold on any machine: one
# stderr line and a non-zero exit for each refusal (another backend than
# cuda; a build without NCCL or a machine without a GPU), and the rule that
# picks the communicator when --comm is not given (docs/launch.md): under a
# torchrun-style launcher, nccl only for --backend cuda with NCCL built in,
# tcp otherwise. On a machine with a GPU the no-device case is skipped,
# saying so.
set -u
exe=$2
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
base=(run --model tiny-gpt --seq 16 --mbs 2 --gbs 2 --steps 1)
gpu=0
nvidia-smi -L 2> /dev/null | grep -q '^GPU ' && gpu=1

"$exe" "${base[@]}" --comm nccl --backend cuda > /dev/null 2> "$tmp/err.cuda"; rc_cuda=$?
have_nccl=1
grep -q 'this build has no NCCL' "$tmp/err.cuda" && have_nccl=0

"$exe" "${base[@]}" --comm nccl --backend cpu > /dev/null 2> "$tmp/err"; rc=$?
want="comm nccl moves GPU memory: it needs --backend cuda (not cpu)"
[ $have_nccl -eq 0 ] && want="comm nccl: this build has no NCCL"
check "cpu backend refused" "[ $rc -ne 0 ] && [ \$(wc -l < '$tmp/err') -eq 1 ] && grep -q '$want' '$tmp/err'"

rc=$rc_cuda; cp "$tmp/err.cuda" "$tmp/err"
if [ $gpu -eq 0 ]; then
  check "no NCCL in the build, or no device: one line" \
    "[ $rc -ne 0 ] && [ \$(wc -l < '$tmp/err') -eq 1 ] && grep -Eq 'comm nccl: (this build has no NCCL|no CUDA device)' '$tmp/err'"
else
  echo "ok $((n += 1)) - no NCCL / no device # SKIP this machine has a GPU"
fi

"$exe" "${base[@]}" --comm nccl2 > /dev/null 2> "$tmp/err"; rc=$?
check "unknown communicator named" "[ $rc -ne 0 ] && grep -q \"comm 'nccl2' is not local, mpi, tcp or nccl\" '$tmp/err'"

# the rule: a launcher's variables with --backend cpu pick tcp (a world of one rank runs)
out=$(env -u OMPI_COMM_WORLD_SIZE RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 \
      "$exe" "${base[@]}" --backend cpu 2> "$tmp/err"); rc=$?
check "launcher + cpu backend: tcp" "[ $rc -eq 0 ] && grep -q 'one process each, tcp' <<<\"\$out\""
# ... and with --backend cuda, nccl when it is built in (no device here: its refusal), else tcp (then no cuda backend)
if [ $gpu -eq 0 ]; then
  env -u OMPI_COMM_WORLD_SIZE RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 \
    "$exe" "${base[@]}" --backend cuda > /dev/null 2> "$tmp/err"; rc=$?
  want="backend 'cuda'"                       # tcp picked: the backend then says it is not built / has no device
  [ $have_nccl -eq 1 ] && want="comm nccl: no CUDA device"   # nccl picked
  check "launcher + cuda backend: nccl when built in" \
    "[ $rc -ne 0 ] && [ \$(wc -l < '$tmp/err') -eq 1 ] && grep -q \"\$want\" '$tmp/err'"
fi
echo "1..$n"
exit $fail
