#!/usr/bin/env bash
# run.sh SRC_DIR BUILD_DIR REF_LIB "REF_LDFLAGS" — tests/kernels_emu:
# exec/cuda/kernels.cu compiled for the host (kemu.h stands in for CUDA, its
# launches rewritten to emu_launch) and checked against the cpu backend's
# kernels in double (ref.c, the library REF_LIB, linked with REF_LDFLAGS).
# Needs a C++17 compiler with _Float16 and <ucontext.h> (g++ 12 on x86-64);
# without one: one line and exit 77 (skipped).
set -u
src=$1 out=$2 ref=$3 ldflags=$4
cxx=${CXX:-c++}
mkdir -p "$out"
if ! command -v "$cxx" > /dev/null; then echo "kernels_emu: no C++ compiler ($cxx): skipped"; exit 77; fi
# k<<<grid, block, smem, st>>>(args) -> emu_launch(emu_cfg(grid, block, smem, st), k, args)
sed -E 's/(k_[A-Za-z0-9_]*(<[^<>]*>)?)<<<([^>]*)>>>\(/emu_launch(emu_cfg(\3), \1, /g' \
  "$src/exec/cuda/kernels.cu" > "$out/kernels_host.cc"
if grep -q '<<<' "$out/kernels_host.cc"; then echo "kernels_emu: a launch run.sh does not rewrite:"; grep -n '<<<' "$out/kernels_host.cc"; exit 1; fi
# shellcheck disable=SC2086
if ! "$cxx" -std=c++17 -O1 -g -ffp-contract=off -fno-strict-aliasing -x c++ \
    -I"$src/tests/kernels_emu/shim" -I"$src/tests/kernels_emu" -I"$src/exec/cuda" \
    "$out/kernels_host.cc" "$src/tests/kernels_emu/kemu.cc" "$src/tests/kernels_emu/kernels_emu.cc" \
    -x none "$ref" $ldflags -lm -o "$out/kernels_emu" 2> "$out/build.log"; then
  if grep -Eq "_Float16|ucontext" "$out/build.log"; then
    echo "kernels_emu: $cxx lacks _Float16 or <ucontext.h>: skipped"; head -n 3 "$out/build.log"; exit 77
  fi
  cat "$out/build.log"; exit 1
fi
exec "$out/kernels_emu"
