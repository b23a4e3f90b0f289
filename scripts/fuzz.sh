#!/usr/bin/env bash
# Fuzz every configuration parser with libFuzzer under ASan + UBSan:
# model INI, Hugging Face config.json, plan INI, DeepSpeed ds_config.json,
# cluster INI, the token-file header, and a checkpoint's manifest and shard
# files as a resume reads them (harnesses: tests/fuzz/fuzz_*.c).
#
#   bash scripts/fuzz.sh [--runs N] [--out DIR] [--jobs J] [PARSER...]
#
# --runs N   inputs per parser (default 100000); CI runs --runs 3000
# --out DIR  build and work directory (default build-fuzz)
# Seed corpus: the repository's own configs (configs/models, configs/hf,
# tests/data/hf, configs/plans, configs/deepspeed, configs/clusters) plus
# tests/fuzz/seeds/<parser>/. Prints, per parser: inputs run, seconds,
# inputs/s, coverage edges, corpus size; exits 1 on any crash, hang (> 10 s
# for one input), leak or sanitizer report (the reproducer is kept in DIR).
# Exits 77 (the CTest skip code) when clang with libFuzzer is not installed.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
runs=100000 out=build-fuzz
parsers=()
while (($#)); do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) parsers+=("$1"); shift ;;
  esac
done
((${#parsers[@]})) || parsers=(model_ini hf_json plan_ini ds_config cluster_ini token_header ckpt_manifest ckpt_shard)
cc=${CC_FUZZ:-clang}
mkdir -p "$out/obj" "$out/work"
probe="$out/probe.c"
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$probe"
if ! command -v "$cc" >/dev/null || ! "$cc" -fsanitize=fuzzer "$probe" -o "$out/probe" 2>/dev/null; then
  echo "SKIP: fuzzing needs clang with libFuzzer (apt-get install clang); not run"
  exit 77
fi
flags=(-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
       -DPX_DATA_DIR="\"$root\"" -I"$root/common" -I"$root/exec" -I"$root/sim" $(pkg-config --cflags glib-2.0 json-glib-1.0))
libs=($(pkg-config --libs glib-2.0 json-glib-1.0) -lm)
# the parsers' sources, compiled once (again only when newer); the checkpoint
# reader needs the backend's dtype table and the report's plan JSON (no
# backend is made: the harness stands in for the registry)
objs=()
for src in "$root"/common/*.c "$root"/exec/{data,check,checkpoint,backend,stream,reduce}.c "$root/sim/report.c"; do
  obj="$out/obj/$(basename "$(dirname "$src")")_$(basename "$src" .c).o"
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find "$root/common" "$root/exec" "$root/sim" -name '*.h' -newer "$obj" -print -quit)" ]; then
    "$cc" "${flags[@]}" -c "$src" -o "$obj" || exit 1
  fi
  objs+=("$obj")
done
# an archive, so that each harness links only the objects it needs (the
# checkpoint harnesses stand in for the backend registry; the others never
# reach the backend)
lib="$out/libpx_fuzz.a"
rm -f "$lib" && ar rcs "$lib" "${objs[@]}" || exit 1
seeds_of() {
  case $1 in
    model_ini) echo "$root/configs/models" ;;
    hf_json) echo "$root/configs/hf $root/tests/data/hf" ;;
    plan_ini) echo "$root/configs/plans" ;;
    ds_config) echo "$root/configs/deepspeed" ;;
    cluster_ini) echo "$root/configs/clusters" ;;
  esac
  [ -d "$root/tests/fuzz/seeds/$1" ] && echo "$root/tests/fuzz/seeds/$1"
}
# a dictionary from the seeds: JSON strings and INI keys and groups, so
# that mutations keep to the words the parsers know
make_dict() {
  local dirs; dirs=$(seeds_of "$1")
  [ -n "$dirs" ] || return 0
  # shellcheck disable=SC2086
  { grep -ohE '"[A-Za-z0-9_.+-]{1,40}"' $(find $dirs -type f -name '*.json') 2>/dev/null
    grep -ohE '^\[?[A-Za-z0-9_]{1,40}\]?' $(find $dirs -type f -name '*.ini') 2>/dev/null; } |
    sort -u | sed 's/\\/\\\\/g; s/"/\\"/g; s/.*/"&"/' >"$out/$1.dict"
}
fail=0
printf '%-13s %10s %8s %10s %8s %8s  %s\n' parser inputs seconds inputs/s edges corpus result
for p in "${parsers[@]}"; do
  bin="$out/fuzz_$p"
  "$cc" "${flags[@]}" -fsanitize=fuzzer "$root/tests/fuzz/fuzz_$p.c" "$lib" "${libs[@]}" -o "$bin" || exit 1
  corpus="$out/work/$p"
  mkdir -p "$corpus"
  log="$out/$p.log"
  make_dict "$p"
  dict=()
  [ -s "$out/$p.dict" ] && dict=(-dict="$out/$p.dict")
  start=$(date +%s.%N)
  (cd "$out" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     "$bin" -runs="$runs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
     "$corpus" $(seeds_of "$p") >"$log" 2>&1)
  rc=$?
  end=$(date +%s.%N)
  done_runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo 0)
  edges=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  secs=$(echo "$end - $start" | bc)
  rate=$(echo "scale=0; ${done_runs:-0} / ($secs + 0.001)" | bc)
  result=ok
  if [ $rc -ne 0 ] || [ "${done_runs:-0}" -lt "$runs" ]; then
    result="FAILED (see $log)"
    fail=1
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -5
  fi
  printf '%-13s %10s %8.1f %10s %8s %8s  %s\n' "$p" "${done_runs:-0}" "$secs" "$rate" "${edges:-0}" \
    "$(ls "$corpus" | wc -l)" "$result"
done
exit $fail
