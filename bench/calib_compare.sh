#!/usr/bin/env bash
# The agreement check of docs/cost.md section 9 on this machine's CPU backend:
# `parallax-exec calibrate` writes a cluster profile, then `parallax-exec run
# --compare --cluster` sets each layout's measured step beside the engine's
# prediction for it. One OpenMP thread per rank (OMP_NUM_THREADS=1), fp32
# (DTYPE bf16 or f16: calibrate --dtype and run --dtype of it, docs/cost.md 8).
# The 1-rank run is calibrated by one process; the 2-process layouts (pp 2,
# dp 2, tp 2 under mpirun, `mpi` communicator) by calibrate under mpirun
# with 2 processes, so that the op rates and the collectives are measured as
# the runs meet them (two processes sharing the cores). Calibrate and each
# run go back to back; ROUNDS repeats the whole.
# Prints per layout: predicted and measured step (ms), measured/predicted, and
# the ratio of each instruction kind (rank 0; the worst rank's with --all).
#   bash bench/calib_compare.sh [BUILD_DIR=build] [STEPS=20] [ROUNDS=2] [MODEL=tiny-gpt] [GBS=8] [DTYPE=f32]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
read -r build steps rounds model gbs dtype <<<"${1:-build} ${2:-20} ${3:-2} ${4:-tiny-gpt} ${5:-8} ${6:-f32}"
exe=$(cd "$build" 2> /dev/null || cd "$root/$build" && pwd)/exec/parallax-exec
export PARALLAX_DATA_DIR=$root OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  OMPI_MCA_rmaps_base_oversubscribe=1
command -v mpirun > /dev/null || { echo "calib_compare.sh: mpirun not found (scripts/install-deps.sh installs Open MPI)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

report() { # label json
  python3 - "$1" "$2" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
c = json.load(open(path))['compare']
st = c['step_time_s']
kinds = {}
for r in c['per_rank']:
    for k, t in r['op_time_s'].items():
        if k == 'LOAD' or t['predicted'] <= 0: continue
        kinds.setdefault(k, []).append(t['measured'] / t['predicted'])
ks = ' '.join(f"{k} {min(v):.2f}-{max(v):.2f}" if len(v) > 1 and max(v) - min(v) >= 0.005 else f"{k} {v[0]:.2f}"
              for k, v in kinds.items())
print(f"{label:<8} {st['predicted']*1e3:10.2f} {st['measured']*1e3:10.2f} {st['measured']/st['predicted']:7.3f}   {ks}")
PY
}

flags=(--model "$model" --gbs "$gbs" --precision fp32 --dtype "$dtype" --steps "$steps" --compare --json)
printf '# %s, gbs %s, %s, %s steps, 1 OpenMP thread per rank; load %s\n' "$model" "$gbs" "$dtype" "$steps" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '# %-6s %10s %10s %7s   %s\n' layout "pred (ms)" "meas (ms)" "m/p" "measured/predicted per instruction kind (range over ranks)"
for round in $(seq "$rounds"); do
  "$exe" calibrate --model "$model" --dtype "$dtype" --ranks 1 --out "$tmp/one.ini" > /dev/null
  "$exe" run "${flags[@]}" --cluster "$tmp/one.ini" --gpus 1 > "$tmp/run.json" 2> /dev/null
  report "1 rank" "$tmp/run.json"
  for layout in "--pp 2" "--dp 2" "--tp 2"; do
    tp=1
    [ "$layout" = "--tp 2" ] && tp=2 # a TP rank's shapes
    mpirun -n 2 "$exe" calibrate --model "$model" --dtype "$dtype" --tp $tp --out "$tmp/two.ini" < /dev/null > /dev/null
    # shellcheck disable=SC2086
    mpirun -n 2 "$exe" run --comm mpi "${flags[@]}" --cluster "$tmp/two.ini" $layout < /dev/null > "$tmp/run.json" 2> /dev/null
    report "${layout#--}" "$tmp/run.json"
  done
done
