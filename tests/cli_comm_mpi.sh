#!/usr/bin/env bash
# The communicator conformance suite (tests/test_comm.c) over the `mpi`
# communicator: the same binary under mpirun -n 2, 3 and 4, one process per
# rank, every check asserted on every rank. Then the failure checks, which
# under mpi end the job (MPI_Abort once the reason is printed), one mpirun
# each, asserting mpirun's exit code (1: MPI_Abort's; an assertion that fails
# would give 134) and the line the failing rank prints.
# Usage: cli_comm_mpi.sh PARALLAX_SIM PARALLAX_EXEC, with PX_TEST_COMM the
# test_comm binary (set by tests/CMakeLists.txt).
set -uo pipefail
bin=${PX_TEST_COMM:?PX_TEST_COMM: the test_comm binary}
if ! command -v mpirun > /dev/null; then echo "mpi: skipped (mpirun not found)"; exit 0; fi
if ! "$bin" --available mpi; then echo "mpi: skipped (built without the mpi communicator)"; exit 0; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
fail=0

for n in 2 3 4; do
  if out=$(timeout 600 mpirun --oversubscribe -n "$n" "$bin" --comm mpi < /dev/null 2>&1); then
    echo "ok mpi -n $n: $(grep -c '^ok' <<< "$out") checks, $(grep -c '# SKIP' <<< "$out") skipped"
  else
    echo "not ok mpi -n $n:"
    echo "$out"
    fail=1
  fi
done

# failure CHECK LINE [NOT]: run one failure check on 3 ranks with a 2 s
# deadline; the job must end by MPI_Abort with LINE (a regex of the whole
# line) printed, and without any line matching NOT.
failure() {
  local check=$1 line=$2 not=${3:-}
  out=$(timeout 120 mpirun --oversubscribe -n 3 "$bin" --comm mpi --failures --timeout 2 \
        -p "/comm/mpi/failure/$check" < /dev/null 2>&1)
  local rc=$?
  if [ "$rc" -ne 1 ]; then
    echo "not ok mpi failure/$check: mpirun exited with $rc, expected 1 (MPI_Abort):"
    echo "$out"
    fail=1
  elif ! grep -Eq "^$line\$" <<< "$out"; then
    echo "not ok mpi failure/$check: no line matching '$line' in:"
    echo "$out"
    fail=1
  elif [ -n "$not" ] && grep -Eq "$not" <<< "$out"; then
    echo "not ok mpi failure/$check: a line matches '$not':"
    echo "$out"
    fail=1
  else
    echo "ok mpi failure/$check: $(grep -E "^$line\$" <<< "$out" | head -1)"
  fi
}

# rank 2 aborts with its reason while ranks 0 and 1 wait in an all_reduce
failure abort 'parallax-exec: rank 2: out of memory' 'second reason'
# rank 0 aborts its tp communicator: the job ends with its reason
failure abort-split 'parallax-exec: rank 0: kernel failed'
# rank 2 never joins the all_reduce: a waiting rank times out and aborts with
# the op and the communicator (mpi cannot tell which member is missing)
failure missing-rank 'parallax-exec: rank [01]: all_reduce on world\[0,1,2\]: .*after 2 s.*' 'parallax-exec: rank 2:'
# the same with the all_reduce queued on a stream
failure missing-rank-queued 'parallax-exec: rank [01]: all_reduce on world\[0,1,2\]: .*after 2 s.*' 'parallax-exec: rank 2:'
# rank 1 never sends what rank 0 waits for: rank 0 names it
failure missing-sender 'parallax-exec: rank 0: recv on rank 0 from rank 1 on world\[0,1,2\]: rank 1 never sent after 2 s'

exit $fail
