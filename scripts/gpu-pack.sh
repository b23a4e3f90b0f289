#!/usr/bin/env bash
# scripts/gpu-pack.sh — build for the GPU machine on a machine without one,
# and pack what scripts/gpu-check.sh runs (parallax-exec, parallax-sim,
# test_cuda_backend, test_comm, bench_attn) with the shared libraries the GPU machine
# lacks (GLib, json-glib, ...; not the CUDA runtime, cuBLAS or NCCL, which it
# has; compressed as PACK/lib.tar.gz, see below) into PACK, to be carried
# there (docs/gpu.md):
#
#   scripts/gpu-pack.sh [BUILD_DIR=build-gpu] [PACK=.gpu]
#
# CUDA_ARCH (default 90: H100/H200) picks -DCMAKE_CUDA_ARCHITECTURES; the mpi
# communicator is left out (-DPX_MPI=OFF: one GPU, no mpirun there, and no
# Open MPI plugins to carry). The packing itself is the shared pack.sh
# (PACK_SH, else ../shared/gpu/pack.sh or shared/gpu/pack.sh from the
# repository root). PACK is added to the repository's git exclude list, so
# that it stays out of commits.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build-gpu}
dest=${2:-$here/.gpu}
packsh=${PACK_SH:-}
for c in "$here/../shared/gpu/pack.sh" "$here/shared/gpu/pack.sh"; do
  [ -z "$packsh" ] && [ -f "$c" ] && packsh=$c
done
[ -n "$packsh" ] || { echo "gpu-pack: no pack.sh (set PACK_SH=/path/to/pack.sh)" >&2; exit 2; }
command -v nvcc > /dev/null || [ -x /usr/local/cuda/bin/nvcc ] || { echo "gpu-pack: no nvcc: the CUDA toolkit is needed to build" >&2; exit 2; }

mkdir -p "$build"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" -DPX_CUDA=ON -DPX_MPI=OFF > "$build/configure.log"
targets=(parallax-exec parallax-sim test_comm)
[ -f "$here/tests/test_cuda_backend.c" ] && targets+=(test_cuda_backend)
[ -f "$here/bench/bench_attn.c" ] && targets+=(bench_attn)
cmake --build "$build" -j2 --target "${targets[@]}"

bins=("$build/exec/parallax-exec" "$build/sim/parallax-sim" "$build/tests/test_comm")
[ -x "$build/tests/test_cuda_backend" ] && bins+=("$build/tests/test_cuda_backend")
[ -x "$build/bench/bench_attn" ] && bins+=("$build/bench/bench_attn")
rm -rf "$dest"
bash "$packsh" "$dest" "${bins[@]}"
# the device tool carries at most 64 MiB with the working tree, and lib/ alone
# is about 45 MiB (OpenBLAS 36): it travels as lib.tar.gz (about 14 MiB),
# which scripts/gpu-unpack.sh (run by gpu-check.sh) unpacks there
tar -C "$dest" -czf "$dest/lib.tar.gz" lib && rm -rf "$dest/lib"
exclude=$(git -C "$here" rev-parse --git-path info/exclude 2> /dev/null || true)
if [ -n "$exclude" ]; then
  case $exclude in /*) ;; *) exclude=$here/$exclude ;; esac
  rel=/${dest#"$here"/}/
  [[ $dest == "$here"/* ]] && ! grep -qxF "$rel" "$exclude" 2> /dev/null && echo "$rel" >> "$exclude"
fi
echo "packed: $(cd "$dest" && ls -d -- * | tr '\n' ' ')($(du -sh "$dest" | cut -f1) to carry)"
echo "on the GPU machine, from the repository root: scripts/gpu-check.sh ${dest#"$here"/}"
