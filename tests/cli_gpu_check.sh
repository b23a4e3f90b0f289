#!/usr/bin/env bash
# cli_gpu_check.sh SIM EXEC — scripts/gpu-check.sh without a GPU, so that the
# script (and the `run --json` fields it reads) cannot rot between the rare
# sessions that have a GPU: the dry run (GPU_CHECK_BACKEND=cpu) passes its
# train, layout and memory steps with a pack that holds this build's
# parallax-exec; GPU_CHECK_BUDGET too small skips every step and fails; a
# pack's lib.tar.gz (gpu-pack.sh's) is unpacked first, a damaged one is one
# line and exit 2; with
# the cuda backend and no GPU the script exits 77 with one line.
set -u
EXE=$2
here=$(cd "$(dirname "$0")/.." && pwd)
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/pack/lib"
ln -s "$(cd "$(dirname "$EXE")" && pwd)/$(basename "$EXE")" "$tmp/pack/parallax-exec"
# the layout step runs T 128: tiny-gpt with 128 positions
sed 's/^max_seq = .*/max_seq = 128/; s/^name = .*/name = tiny-gpt-128/' "$here/configs/models/tiny-gpt.ini" > "$tmp/tiny-gpt-128.ini"

out=$(OUT=$tmp/dry GPU_CHECK_BACKEND=cpu GPU_CHECK_MODEL=$tmp/tiny-gpt-128.ini bash "$here/scripts/gpu-check.sh" "$tmp/pack" 2>/dev/null)
rc=$?
echo "$out"
[ $rc -eq 0 ] || fail "dry run exit $rc"
for s in train layout memory; do grep -Eq "^$s +PASS" <<<"$out" || fail "dry run: step $s did not pass"; done
for s in ops flash nccl bench; do grep -Eq "^$s +SKIP .*dry run: needs CUDA" <<<"$out" || fail "dry run: step $s not skipped"; done
[ -s "$tmp/dry/gpu-check/summary.txt" ] || fail "no summary.txt under \$OUT/gpu-check"
grep -q "weights, gradients, optimizer exact" <<<"$out" || fail "memory step: categories not exact"

out=$(OUT=$tmp/budget GPU_CHECK_BUDGET=10 GPU_CHECK_BACKEND=cpu GPU_CHECK_MODEL=$tmp/tiny-gpt-128.ini \
  bash "$here/scripts/gpu-check.sh" "$tmp/pack" 2>/dev/null)
rc=$?
[ $rc -eq 1 ] || fail "budget 10 s: exit $rc, want 1"
[ "$(grep -c 'out of the 10 s budget' <<<"$out")" -eq 3 ] || fail "budget 10 s: train, layout, memory not skipped: $out"

# a pack as gpu-pack.sh makes it: lib.tar.gz in place of lib/, unpacked before
# the first step (the budget of 10 s skips the steps: only the unpacking runs)
mkdir -p "$tmp/zpack/lib" && echo marker > "$tmp/zpack/lib/marker"
ln -s "$(cd "$(dirname "$EXE")" && pwd)/$(basename "$EXE")" "$tmp/zpack/parallax-exec"
tar -C "$tmp/zpack" -czf "$tmp/zpack/lib.tar.gz" lib && rm -rf "$tmp/zpack/lib"
OUT=$tmp/zip GPU_CHECK_BUDGET=10 GPU_CHECK_BACKEND=cpu GPU_CHECK_MODEL=$tmp/tiny-gpt-128.ini \
  bash "$here/scripts/gpu-check.sh" "$tmp/zpack" > /dev/null 2>&1
[ "$(cat "$tmp/zpack/lib/marker" 2>/dev/null)" = marker ] || fail "lib.tar.gz was not unpacked into lib/"
# a damaged archive: exit 2, one line, no step run
rm -rf "$tmp/zpack/lib" && echo "not gzip" > "$tmp/zpack/lib.tar.gz"
out=$(OUT=$tmp/zip2 GPU_CHECK_BACKEND=cpu bash "$here/scripts/gpu-check.sh" "$tmp/zpack" 2>&1 >/dev/null)
rc=$?
[ $rc -eq 2 ] && [ "$(grep -c 'gpu-unpack: cannot unpack' <<<"$out")" -eq 1 ] && [ ! -e "$tmp/zip2/gpu-check" ] ||
  fail "damaged lib.tar.gz: exit $rc, '$out'"

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  out=$(OUT=$tmp/nogpu bash "$here/scripts/gpu-check.sh" "$tmp/pack" 2>&1)
  rc=$?
  [ $rc -eq 77 ] && [ "$out" = "no CUDA device: skipped (gpu-check needs a GPU)" ] || fail "no GPU: exit $rc, '$out'"
fi
[ $fails -eq 0 ] && echo "cli_gpu_check: all passed"
exit $((fails > 0))
