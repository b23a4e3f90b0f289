#!/usr/bin/env bash
# scripts/gpu-unpack.sh PACK — unpack PACK/lib.tar.gz (what scripts/gpu-pack.sh
# ships in place of PACK/lib/, so that the carried tree stays under the device
# tool's 64 MiB) into PACK/lib/, when lib/ is missing or older than the
# archive; nothing to do for a pack that has lib/ already. Run by
# scripts/gpu-check.sh and bench/gpu_bench.sh; by hand before
#   LD_LIBRARY_PATH=PACK/lib PACK/parallax-exec ...
# Exits 2 with one line when the archive cannot be unpacked.
set -uo pipefail
pack=${1:?usage: gpu-unpack.sh PACK}
archive=$pack/lib.tar.gz
[ -f "$archive" ] || exit 0
[ -d "$pack/lib" ] && ! [ "$archive" -nt "$pack/lib" ] && exit 0
rm -rf "$pack/lib"
tar -C "$pack" -xzf "$archive" && [ -d "$pack/lib" ] ||
  { echo "gpu-unpack: cannot unpack $archive into $pack/lib" >&2; exit 2; }
touch "$pack/lib" # newer than the archive: unpacked once
