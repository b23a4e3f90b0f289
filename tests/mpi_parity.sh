#!/usr/bin/env bash
# Every layout of the CI parity subset (tests/parity.h) with every rank a
# process under mpirun (the `mpi` communicator), in f32 and f64, against the
# single rank: the same check test_runtime makes with thread-ranks.
# Usage: mpi_parity.sh MPI_PARITY_BINARY
set -uo pipefail
bin=$1
if ! command -v mpirun > /dev/null; then echo "mpi parity: skipped (mpirun not found)"; exit 0; fi
if [ ! -x "$bin" ]; then echo "mpi parity: skipped (built without the mpi communicator)"; exit 0; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
pass=0 fail=0
while read -r index world; do
  for dt in f32 f64; do
    if out=$(timeout 300 mpirun --oversubscribe -n "$world" "$bin" "$index" "$dt" < /dev/null 2>&1); then
      echo "$out" | grep '^ok'
      pass=$((pass + 1))
    else
      echo "not ok $index $dt: $out"
      fail=$((fail + 1))
    fi
  done
done < <("$bin" --list)
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
