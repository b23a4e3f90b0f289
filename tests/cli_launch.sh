#!/usr/bin/env bash
# CLI checks of `parallax-exec launch`: N local ranks of a program that opens
# the tcp communicator from the variables launch sets (tests/tcp_probe.c, path
# in $PX_TCP_PROBE) and all-reduces rank + 1 (sum 1 + ... + N); the
# variables each rank gets (/usr/bin/env as the command); a rank killed
# with SIGKILL mid-way makes every other rank fail on its own, naming it, and
# launch names it; SIGTERM is forwarded; killing launch with SIGKILL leaves
# no rank behind; a subcommand of parallax-exec runs as the ranks' command;
# bad usage is one line and exit 2; a rank given other run options than rank 0
# is refused before any step, naming it.
set -u
exe=$2
probe=${PX_TCP_PROBE:?PX_TCP_PROBE: path of the tcp_probe test program}
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# a process that exists and is not a zombie
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
# wait (at most 60 s) until the files exist
wait_files() { for _ in $(seq 600); do local all=1; for f in "$@"; do [ -s "$f" ] || all=0; done; [ $all = 1 ] && return 0; sleep 0.1; done; return 1; }

out=$("$exe" launch -n 3 -- "$probe" 2>"$tmp/err"); rc=$?
check "three ranks exit 0" "[ $rc -eq 0 ]"
check "every rank sums 1+2+3 = 6, twice" "[ \$(grep -c '^rank [0-2] of 3: sum 6$' <<<\"\$out\") -eq 6 ]"
check "nothing on stderr" "[ ! -s \"$tmp/err\" ]"

out=$(env -u OMP_NUM_THREADS OMPI_COMM_WORLD_RANK=5 OMPI_COMM_WORLD_SIZE=8 "$exe" launch -n 2 --master-port 29777 -- /usr/bin/env)
for r in 0 1; do
  check "rank $r's variables" "grep -qx 'RANK=$r' <<<\"\$out\" && grep -qx 'LOCAL_RANK=$r' <<<\"\$out\""
done
check "world, master and threads set once per rank" \
  "[ \$(grep -cxE 'WORLD_SIZE=2|LOCAL_WORLD_SIZE=2|MASTER_ADDR=127\.0\.0\.1|MASTER_PORT=29777' <<<\"\$out\") -eq 8 ] && [ \$(grep -cxE 'OMP_NUM_THREADS=[1-9][0-9]*' <<<\"\$out\") -eq 2 ]"
check "Open MPI's rank variables removed" "! grep -q '^OMPI_COMM_WORLD' <<<\"\$out\""
out=$(OMP_NUM_THREADS=3 "$exe" launch -n 2 -- /usr/bin/env)
check "a user's OMP_NUM_THREADS is kept" "[ \$(grep -cx 'OMP_NUM_THREADS=3' <<<\"\$out\") -eq 2 ]"

out=$("$exe" launch -n 4 -- "$probe" --die-rank 1 2>"$tmp/err"); rc=$?
check "a killed rank fails launch" "[ $rc -eq 1 ]"
check "launch names rank 1 and its signal" \
  "grep -qx 'parallax-exec launch: rank 1 of 4 was killed by signal 9 (Killed); ranks 0, 2, 3 then failed' \"$tmp/err\""
for r in 0 2 3; do
  check "rank $r fails on its own, naming rank 1 (not its 30 s deadline)" \
    "grep -q '^rank $r: all_reduce on world\[0,1,2,3\] on rank $r: communicator aborted: rank 1 disconnected: its process exited or died$' \"$tmp/err\""
done
check "rank 1 summed once before it died" "grep -qx 'rank 1 of 4: sum 10' <<<\"\$out\""

out=$("$exe" launch -n 2 -- run --no-such-option 2>"$tmp/err"); rc=$?
check "a subcommand runs as the ranks' command" "grep -q 'parallax-exec run: Unknown option --no-such-option' \"$tmp/err\""
check "its failure is named" "[ $rc -eq 1 ] && grep -Eq '^parallax-exec launch: rank [01] of 2 exited with status 2; rank [01] then failed$' \"$tmp/err\""

"$exe" launch -n 2 -- "$probe" --hang "$tmp" >/dev/null 2>&1 & lpid=$!
if wait_files "$tmp/pid.0" "$tmp/pid.1"; then
  kill -TERM $lpid; wait $lpid; rc=$?
  check "SIGTERM stops launch with 128+15" "[ $rc -eq 143 ]"
  check "and the ranks with it" "! alive \$(cat $tmp/pid.0) && ! alive \$(cat $tmp/pid.1)"
else
  check "hanging ranks started" "false"; kill -KILL $lpid
fi
rm -f "$tmp"/pid.*

# a stopped rank (SIGSTOP) held the forwarded SIGTERM pending: launch waited for it for ever
"$exe" launch -n 2 -- "$probe" --hang "$tmp" >/dev/null 2>&1 & lpid=$!
if wait_files "$tmp/pid.0" "$tmp/pid.1"; then
  p1=$(cat "$tmp/pid.1"); kill -STOP $p1
  # stopped for certain before the SIGTERM (a SIGTERM pending beside the SIGSTOP is taken first)
  for _ in $(seq 100); do grep -q '^State:[[:space:]]*T' "/proc/$p1/status" && break; sleep 0.1; done
  kill -TERM $lpid
  for _ in $(seq 300); do kill -0 $lpid 2>/dev/null || break; sleep 0.1; done
  if kill -0 $lpid 2>/dev/null; then
    check "SIGTERM with a stopped rank ends launch (hung 30 s)" "false"; kill -CONT $p1; kill -KILL $lpid; wait $lpid
  else
    wait $lpid; rc=$?
    check "SIGTERM with a stopped rank: launch exits 128+15, the rank gone" "[ $rc -eq 143 ] && ! alive $p1"
  fi
else
  check "hanging ranks started" "false"; kill -KILL $lpid
fi
rm -f "$tmp"/pid.*

"$exe" launch -n 2 -- "$probe" --hang "$tmp" >/dev/null 2>&1 & lpid=$!
if wait_files "$tmp/pid.0" "$tmp/pid.1"; then
  kill -KILL $lpid; wait $lpid 2>/dev/null
  p0=$(cat "$tmp/pid.0"); p1=$(cat "$tmp/pid.1")
  for _ in $(seq 100); do alive $p0 || alive $p1 || break; sleep 0.1; done
  check "launch killed with SIGKILL leaves no rank (PR_SET_PDEATHSIG)" "! alive $p0 && ! alive $p1"
else
  check "hanging ranks started" "false"; kill -KILL $lpid
fi

# run --comm tcp under launch trains as the threads do (checked once run knows tcp)
base=(run --model tiny-gpt --dp 2 --pp 2 --zero 1 --gbs 8 --seq 16 --mbs 2 --steps 3)
if ! "$exe" run --comm tcp --model tiny-gpt --gbs 8 --mbs 2 --seq 16 --steps 1 2>&1 | grep -q "is not local"; then
  losses() { grep -E '^ +[1-3] +[0-9]+\.[0-9]+ ' | awk '{print $1, $2}'; }
  got=$("$exe" launch -n 4 -- "${base[@]}" --comm tcp 2>"$tmp/err" | losses)
  want=$("$exe" "${base[@]}" --comm local | losses)
  check "run --comm tcp, 4 processes: the losses of 4 threads" "[ \$(wc -l <<<\"\$got\") -eq 3 ] && [ \"\$got\" = \"\$want\" ]"
else
  echo "# run does not know --comm tcp yet: its check is skipped"
fi

# one process given other options than its peers: refused before any step on every rank (rank 0
# prints the sentence), naming the rank and the first item that differs. Another --seed trained
# the DP replicas apart and exited 0; another layout failed at the deadline naming an all-reduce.
# PX_ODD holds rank 1's extra options (sh -c's $0 is the binary).
odd() { PX_ODD="$1" "$exe" launch -n 2 -- /bin/sh -c 'if [ "$RANK" = 1 ]; then exec "$0" "$@" $PX_ODD; else exec "$0" "$@"; fi' \
          "$exe" run --comm tcp --model tiny-gpt --dp 2 --gbs 8 --seq 16 --mbs 2 --steps 2 --timeout 30 >/dev/null 2>"$tmp/err"; }
odd "--seed 5"; rc=$?
check "rank 1 with another --seed: exit 1, launch's line and one line from run" \
  "[ $rc -eq 1 ] && [ \$(grep -c . \"$tmp/err\") -eq 2 ] && [ \$(grep -c '^parallax-exec run: ' \"$tmp/err\") -eq 1 ]"
check "it names rank 1 and the seeds" \
  "grep -qxF \"parallax-exec run: rank 1 was given another run than rank 0: 'seed 5' on rank 1, 'seed 1337' on rank 0 (every process must get the same options)\" \"$tmp/err\""
odd "--dp 1 --tp 2"; rc=$?
check "rank 1 with another layout: named before any step (not at the deadline)" \
  "[ $rc -eq 1 ] && grep -qF \"rank 1 was given another run than rank 0: 'dp 1' on rank 1, 'dp 2' on rank 0\" \"$tmp/err\""
odd "--save $tmp/ck"; rc=$?
check "rank 1 with --save: refused, nothing saved" \
  "[ $rc -eq 1 ] && grep -qF \"'save $tmp/ck' on rank 1, 'save (none)' on rank 0\" \"$tmp/err\" && [ ! -e \"$tmp/ck\" ]"

# MASTER_PORT held by another program that accepts and never answers: rank 1's line said "rank 0
# sent rank 1 no table (timed out)", blaming a rank 0 that was never there
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)' >"$tmp/port" & spid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
err=$(RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$(cat "$tmp/port") timeout 30 "$exe" run --comm tcp --model tiny-gpt \
        --dp 2 --gbs 8 --seq 16 --mbs 2 --steps 1 --timeout 1 2>&1); rc=$?
kill $spid; wait $spid 2>/dev/null
check "MASTER_PORT held by another program: one line naming it, exit 1" \
  "[ $rc -eq 1 ] && [ \$(grep -c . <<<\"\$err\") -eq 1 ] && grep -q 'rank 1 registered but nothing answered in .* s: another program listens at this port, or rank 0 is stopped or hung' <<<\"\$err\""

err=$("$exe" launch -- "$probe" 2>&1); rc=$?
check "no -n: one line, exit 2" "[ $rc -eq 2 ] && [ \$(wc -l <<<\"\$err\") -eq 1 ] && grep -q 'give the number of ranks' <<<\"\$err\""
err=$("$exe" launch -n 2 2>&1); rc=$?
check "no command: one line, exit 2" "[ $rc -eq 2 ] && [ \$(wc -l <<<\"\$err\") -eq 1 ] && grep -q 'after --' <<<\"\$err\""
err=$("$exe" launch -n 2 --master-port 70000 -- "$probe" 2>&1); rc=$?
check "bad port: one line, exit 2" "[ $rc -eq 2 ] && grep -q 'not in 1..65535' <<<\"\$err\""
err=$("$exe" launch -n 2 -- /nonexistent/program 2>&1); rc=$?
check "a program that does not exist: one line, exit 1" "[ $rc -eq 1 ] && [ \$(wc -l <<<\"\$err\") -eq 1 ] && grep -q 'cannot start rank 0' <<<\"\$err\""

echo "1..$n"
exit $fail
