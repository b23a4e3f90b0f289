#!/usr/bin/env bash
# run.sh SRC_DIR BUILD_DIR — tests/flash_emu: exec/cuda/flash_attn.cu's kernels
# compiled for the host (emu.h stands in for CUDA) and run against a float64
# reference (flash_emu.cc). Needs a C++20 compiler with <barrier> and
# _Float16 (g++ 12 on x86-64); without one: one line and exit 77 (skipped).
# FLASH_EMU_TSAN=1: built with -fsanitize=thread, so a barrier the kernels
# lack shows as a data race (a few minutes; clean on the commit that added it).
set -u
src=$1 out=$2
cxx=${CXX:-c++}
opt=(-O2)
[ "${FLASH_EMU_TSAN:-0}" = 1 ] && opt=(-O1 -g -fsanitize=thread)
mkdir -p "$out"
if ! command -v "$cxx" > /dev/null; then echo "flash_emu: no C++ compiler ($cxx): skipped"; exit 77; fi
if ! "$cxx" -std=c++20 "${opt[@]}" -pthread -fno-strict-aliasing -DPX_FLASH_EMULATE -x c++ \
    -I"$src/tests/flash_emu/shim" -I"$src/exec/cuda" "$src/tests/flash_emu/flash_emu.cc" -o "$out/flash_emu" \
    2> "$out/build.log"; then
  if grep -Eq "barrier|_Float16|c\+\+20" "$out/build.log"; then
    echo "flash_emu: $cxx lacks C++20 <barrier> or _Float16: skipped"; head -n 3 "$out/build.log"; exit 77
  fi
  cat "$out/build.log"; exit 1
fi
exec "$out/flash_emu"
