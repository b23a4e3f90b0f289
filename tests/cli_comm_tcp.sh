#!/usr/bin/env bash
# The communicator conformance suite (tests/test_comm.c) over the `tcp`
# communicator with one process per rank: `parallax-exec launch -n N` (N = 2,
# 3, 4) of the same binary, which opens its world from the launcher's
# variables, every check asserted on every rank. Then each failure check on 3
# processes (the missing-rank ones with a 2 s deadline), one launch each
# (a failure leaves the world aborted): under tcp every rank survives it and asserts its own error, so
# each launch must exit 0. (test_comm runs the same table with tcp thread-ranks.)
# Usage: cli_comm_tcp.sh PARALLAX_SIM PARALLAX_EXEC, with PX_TEST_COMM the
# test_comm binary (set by tests/CMakeLists.txt).
set -uo pipefail
exe=$2
bin=${PX_TEST_COMM:?PX_TEST_COMM: the test_comm binary}
fail=0

run() { # run NAME N ARGS...: launch N ranks of test_comm --comm tcp ARGS
  local name=$1 n=$2; shift 2
  if out=$(timeout 600 "$exe" launch -n "$n" -- "$bin" --comm tcp "$@" < /dev/null 2>&1); then
    echo "ok tcp $name: $(grep -c '^ok' <<< "$out") checks, $(grep -c '# SKIP' <<< "$out") skipped"
  else
    echo "not ok tcp $name:"
    echo "$out"
    fail=1
  fi
}

for n in 2 3 4; do run "-n $n" "$n"; done
# The abort checks keep the 60 s deadline test_comm's table gives them (an
# abort must reach the waiting ranks, not their deadline): with 2 s, a rank
# that reached its all_reduce 2 s before the aborting rank ran (a loaded
# machine) timed out instead. The missing-rank checks need the short deadline.
for check in abort abort-split; do
  run "failure/$check" 3 --failures -p "/comm/tcp/failure/$check"
done
for check in missing-rank missing-sender missing-rank-queued; do
  run "failure/$check" 3 --failures --timeout 2 -p "/comm/tcp/failure/$check"
done
exit $fail
