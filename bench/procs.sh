#!/usr/bin/env bash
# Step time of the same layouts with every rank a thread of one process (the
# `local` communicator) and with every rank a process of its own under mpirun
# (the `mpi` communicator), on this machine's CPU backend, fp32. Both share
# the machine's cores among the ranks alike (one OpenMP thread per rank on a
# 2-core machine with 2+ ranks). The figure is the median step time over STEPS
# steps of ROUNDS runs, the first step of every run left out (warm-up);
# threads and processes run back to back so that load from elsewhere falls on
# both alike.
#   bash bench/procs.sh [BUILD_DIR=build] [STEPS=8] [ROUNDS=3]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
[ -d "$build" ] || build=$here/$build
exe=$(cd "$build" && pwd)/exec/parallax-exec
steps=${2:-8}
rounds=${3:-3}
export PARALLAX_DATA_DIR=$here OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
command -v mpirun > /dev/null || { echo "procs.sh: mpirun not found (scripts/install-deps.sh installs Open MPI)"; exit 1; }

# step times in ms, first step left out
times() { awk '!/^#/ && NF == 6 && $1 > 1 {print $3}'; }
median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

layouts=(
  "tiny-gpt|--pp 2 --seq 64 --mbs 2 --gbs 16"
  "tiny-gpt|--dp 2 --seq 64 --mbs 2 --gbs 16"
  "tiny-gpt|--tp 2 --seq 64 --mbs 2 --gbs 16"
  "tiny-gpt|--pp 2 --dp 2 --zero 1 --seq 64 --mbs 2 --gbs 16"
  "gpt2-124m|--pp 2 --seq 64 --mbs 2 --gbs 8"
  "gpt2-124m|--dp 2 --seq 64 --mbs 2 --gbs 8"
  "gpt2-124m|--tp 2 --seq 64 --mbs 2 --gbs 8"
)
printf '# %-10s %-38s %6s %14s %16s %8s\n' model layout ranks "threads (ms)" "processes (ms)" "p/t"
for l in "${layouts[@]}"; do
  model=${l%%|*}
  args=${l#*|}
  world=1
  for axis in dp tp pp; do
    k=$(grep -oE -- "--$axis [0-9]+" <<<"$args" | grep -oE '[0-9]+$' || true)
    world=$((world * ${k:-1}))
  done
  t_all="" p_all=""
  for _ in $(seq "$rounds"); do
    # shellcheck disable=SC2086
    t_all+=$("$exe" run --model "$model" $args --steps "$steps" --comm local | times)$'\n'
    # shellcheck disable=SC2086
    p_all+=$(mpirun -n "$world" "$exe" run --model "$model" $args --steps "$steps" --comm mpi < /dev/null 2> /dev/null | times)$'\n'
  done
  t=$(grep . <<<"$t_all" | median)
  p=$(grep . <<<"$p_all" | median)
  printf '  %-10s %-38s %6d %14.2f %16.2f %8.3f\n' "$model" "$args" "$world" "$t" "$p" "$(awk -v a="$p" -v b="$t" 'BEGIN {print a / b}')"
done
