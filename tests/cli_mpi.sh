#!/usr/bin/env bash
# `parallax-exec run` with one process per rank under mpirun (the `mpi`
# communicator), as CI runs it (root, more ranks than cores):
#  - the README's example trains, with the losses of the same plan as threads;
#  - kill -9 of one rank mid-run: mpirun stops every other rank within the
#    deadline, naming the dead rank, and exits non-zero; resuming from the last
#    checkpoint (under threads) reproduces the uninterrupted losses;
#  - a rank that hangs (SIGSTOP): its peers fail after --timeout with one line
#    naming the operation and the silent peer, and the job exits non-zero.
# Skipped, with one line, without mpirun or the mpi communicator.
set -u
exe=$2
if ! command -v mpirun > /dev/null; then echo "mpi: skipped (mpirun not found)"; exit 0; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=$((fail+1)); fi; }
tmp=$(mktemp -d); trap 'kill -CONT $(jobs -p) 2> /dev/null; kill $(jobs -p) 2> /dev/null; rm -rf "$tmp"' EXIT
# rank R's process among the children of this script's mpirun (pid $1)
rank_pid() {
  for p in $(pgrep -P "$1"); do
    if tr '\0' '\n' < /proc/$p/environ 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then echo "$p"; return; fi
  done
}
base=(run --model tiny-gpt --seq 16 --mbs 2 --gbs 8 --pp 2 --dp 2 --zero 1 --decay-steps 1000)
losses() { awk '!/^#/ && NF == 6 {print $1, $2}'; }
same() { # same LOSSES_A LOSSES_B: equal steps, losses within 1e-5 relative
  join <(echo "$1") <(echo "$2") | awk 'BEGIN {k = 0} {k++; d = $2 - $3; if (d < 0) d = -d; if (d > 1e-5 * $3) bad = 1}
    END {exit (bad || k == 0)}'
}

if ! "$exe" run --comm mpi --help > /dev/null 2>&1 || ! mpirun -n 1 "$exe" run --comm mpi --model tiny-gpt --steps 1 --seq 16 --gbs 2 --mbs 2 > /dev/null 2>&1 < /dev/null; then
  echo "mpi: skipped (built without the mpi communicator)"; exit 0
fi

threads=$("$exe" "${base[@]}" --steps 3 | losses)
procs=$(mpirun -n 4 "$exe" "${base[@]}" --comm mpi --steps 3 < /dev/null 2> "$tmp/err" | losses)
check "4 processes train 3 steps" "[ \$(wc -l <<<\"\$procs\") -eq 3 ]"
check "processes give the threads' losses" "same \"\$threads\" \"\$procs\""
mem=$(mpirun -n 4 "$exe" "${base[@]}" --steps 1 < /dev/null 2>&1)
check "without --comm, mpirun means mpi" "grep -q 'one process each, mpi' <<<\"\$mem\""
check "every rank's memory row, from rank 0" "[ \$(grep -Ec '^ +[0-3] +[01] +[01] +0 ' <<<\"\$mem\") -eq 4 ]"

# kill -9 of rank 1 after the checkpoint of step 2
ck="$tmp/ck"
mpirun -n 4 "$exe" "${base[@]}" --comm mpi --steps 100000 --save "$ck" --save-every 2 --keep 0 --timeout 20 \
    < /dev/null > "$tmp/kill.out" 2> "$tmp/kill.err" &
mp=$!
for _ in $(seq 600); do [ -f "$ck/latest" ] && break; sleep 0.1; done
victim=$(rank_pid $mp 1)
check "found rank 1's process" "[ -n \"$victim\" ]"
t0=$(date +%s)
kill -9 "$victim" 2> /dev/null
wait $mp; echo $? > "$tmp/kill.rc"
t1=$(date +%s)
check "the job ends within the 20 s deadline" "[ -f \"$tmp/kill.rc\" ] && [ \$((t1 - t0)) -le 20 ]"
check "and exits non-zero" "[ \"\$(cat $tmp/kill.rc 2> /dev/null)\" != 0 ]"
check "naming the dead rank" "grep -Eiq 'rank 1\b' \"$tmp/kill.err\""
step=$(sed -E 's/.*step-0*([0-9]+).*/\1/' "$ck/latest")
check "a checkpoint survived" "[ -n \"$step\" ] && [ \"$step\" -ge 2 ]"
to=$((step + 2))
straight=$("$exe" "${base[@]}" --steps "$to" | losses | awk -v s="$step" '$1 > s')
resumed=$("$exe" "${base[@]}" --steps "$to" --resume "$ck" | losses)
check "resuming reproduces the uninterrupted losses" "same \"\$straight\" \"\$resumed\""

# a rank that hangs: SIGSTOP rank 3 (stage 1); its peers time out after 10 s
mpirun -n 4 "$exe" "${base[@]}" --comm mpi --steps 100000 --timeout 10 < /dev/null > "$tmp/hang.out" 2> "$tmp/hang.err" &
mp=$!
for _ in $(seq 600); do grep -Eq '^ +2 ' "$tmp/hang.out" 2> /dev/null && break; sleep 0.1; done
victim=$(rank_pid $mp 3)
t0=$(date +%s)
kill -STOP "$victim" 2> /dev/null
wait $mp; echo $? > "$tmp/hang.rc"
t1=$(date +%s)
kill -KILL "$victim" 2> /dev/null
check "a hung rank: the job ends within twice the deadline" "[ -f \"$tmp/hang.rc\" ] && [ \$((t1 - t0)) -le 25 ]"
check "non-zero" "[ \"\$(cat $tmp/hang.rc 2> /dev/null)\" != 0 ]"
check "one line naming the operation that timed out" "grep -Eq 'parallax-exec: rank [0-9]+ \(stage [01]\) .*(not complete|never (sent|received)) after 10 s' \"$tmp/hang.err\""
cat "$tmp/hang.err" | head -3 | sed 's/^/# /'

echo "# $((n - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
