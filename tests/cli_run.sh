#!/usr/bin/env bash
# CLI checks of `parallax-exec run`: the step and memory tables, the JSON
# keys, the measured timeline files, checkpoint save / resume giving the same
# losses as a straight run, and one clear error line with a non-zero exit for
# bad input (a plan that does not divide the model, corrupt or truncated token
# files, a checkpoint of another run, a corrupt or missing shard, a --save
# directory that cannot be created, a non-finite loss, an unknown backend).
# Checkpoints also resume under another layout, and --keep prunes. Context
# parallelism (--cp 2) gives the single rank's losses. Communicator calls
# staged through host copies (PX_COMM_STAGE=1), and the local communicator's
# collectives, sends, receives and groups on its device path
# (PX_COMM_LOCAL_DEVICE=1), give the queued calls' losses (fp32: the staged
# losses and gradient norms bit for bit).
set -u
exe=$2
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
base=(run --model tiny-gpt --seq 16 --mbs 2 --gbs 8)

out=$("$exe" "${base[@]}" --pp 2 --dp 2 --zero 1 --steps 2 --trace "$tmp/t.json" --csv "$tmp/t.csv")
check "two step lines" "[ \$(grep -Ec '^ +[12] +[0-9]+\.[0-9]+ ' <<<\"\$out\") -eq 2 ]"
check "first loss near log(256) = 5.545" "grep -Eq '^ +1 +5\.5[0-9]+ ' <<<\"\$out\""
check "memory units stated" "grep -q 'in GB (1e9 bytes)' <<<\"\$out\""
check "four rank rows" "[ \$(grep -Ec '^ +[0-3] +[01] +[01] +0 ' <<<\"\$out\") -eq 4 ]"
check "trace written" "grep -q '\"traceEvents\"' \"$tmp/t.json\""
check "csv header" "head -1 \"$tmp/t.csv\" | grep -q '^rank,.*kind,mb,chunk,start_s,end_s'"
check "csv has the forwards" "[ \$(grep -c ',FORWARD,' \"$tmp/t.csv\") -ge 8 ]"

gout=$("$exe" "${base[@]}" --pp 2 --steps 1 --gantt)
check "gantt has both stages" "grep -q '^stage   0 |' <<<\"\$gout\" && grep -q '^stage   1 |' <<<\"\$gout\""

json=$("$exe" "${base[@]}" --tp 2 --steps 2 --json)
for key in '"steps"' '"step" : 1' '"loss"' '"time_s"' '"tokens_per_s"' '"memory"' '"measured"' '"predicted"' \
           '"weights"' '"gradients"' '"optimizer"' '"activations"' '"buffers"' '"units" : "bytes"'; do
  check "json has $key" "grep -qF -- '$key' <<<\"\$json\""
done

# --offload optimizer (ZeRO-Offload): the same losses, no optimizer bytes on the
# device, the host's measured beside predicted; the JSON under memory[].host
oout=$("$exe" "${base[@]}" --dp 2 --zero 2 --steps 2 --offload optimizer)
check "offload: the losses of the run without it" "[ \"\$(grep -E '^ +[12] ' <<<\"\$oout\" | awk '{print \$2}')\" = \"\$(\"$exe\" \"\${base[@]}\" --dp 2 --zero 2 --steps 2 | grep -E '^ +[12] ' | awk '{print \$2}')\" ]"
check "offload: host memory line per rank" "[ \$(grep -c 'offload: host memory .* measured .* GB | predicted .* GB' <<<\"\$oout\") -eq 2 ]"
ojson=$("$exe" "${base[@]}" --dp 2 --zero 2 --steps 1 --offload optimizer --json)
check "offload: json memory host" "grep -q '\"host\"' <<<\"\$ojson\""
# --offload optimizer+params (ZeRO-3 only): the losses of the run without it,
# the host line naming the parameter shard; ZeRO-2 refused in one line by both
# the executor and the planner (the plan's validation, one rule)
pout=$("$exe" "${base[@]}" --dp 2 --zero 3 --steps 2 --offload optimizer+params)
check "parameter offload: the losses of the run without it" "[ \"\$(grep -E '^ +[12] ' <<<\"\$pout\" | awk '{print \$2}')\" = \"\$(\"$exe\" \"\${base[@]}\" --dp 2 --zero 3 --steps 2 | grep -E '^ +[12] ' | awk '{print \$2}')\" ]"
check "parameter offload: host memory line per rank" "[ \$(grep -c 'offload: host memory (.*parameter shard) measured .* GB | predicted .* GB' <<<\"\$pout\") -eq 2 ]"
pout=$("$exe" "${base[@]}" --dp 2 --zero 2 --steps 1 --offload optimizer+params 2>&1); prc=$?
check "parameter offload under ZeRO-2 refused in one line (exec)" "[ $prc -ne 0 ] && [ \$(wc -l <<<\"\$pout\") -eq 1 ] && grep -q 'offloading parameters needs ZeRO stage 3 (stage is 2)' <<<\"\$pout\""
sout=$("$1" plan --model tiny-gpt --seq 16 --mbs 2 --gbs 8 --dp 2 --zero 2 --offload optimizer+params 2>&1); src=$?
check "parameter offload under ZeRO-2 refused in one line (sim)" "[ $src -ne 0 ] && [ \$(wc -l <<<\"\$sout\") -eq 1 ] && grep -q 'offloading parameters needs ZeRO stage 3 (stage is 2)' <<<\"\$sout\""

# the same plan from a plan file
printf '[plan]\npp = 2\ndp = 2\nzero = 1\nmbs = 2\ngbs = 8\nseq = 16\n' > "$tmp/plan.ini"
out2=$("$exe" run --model tiny-gpt --plan "$tmp/plan.ini" --steps 2)
check "--plan FILE gives the flags' losses" "[ \"\$(grep -E '^ +[12] ' <<<\"\$out\" | awk '{print \$2}')\" = \"\$(grep -E '^ +[12] ' <<<\"\$out2\" | awk '{print \$2}')\" ]"

# --gpus without a cluster is the world: dp = gpus / (tp·pp)
gout2=$("$exe" run --model tiny-gpt --gpus 4 --tp 2 --steps 1 2>&1)
check "--gpus 4 --tp 2 runs dp 2" "grep -q 'dp 2 x tp 2 x pp 1' <<<\"\$gout2\""
# checkpoints: 6 straight = 3 + resume 3
losses() { awk '!/^#/ && NF == 6 {print $1, $2}'; }
# (one learning-rate schedule for both: its cosine ends at step 6)
straight=$("$exe" "${base[@]}" --pp 2 --steps 6 | losses | tail -3)
"$exe" "${base[@]}" --pp 2 --steps 3 --decay-steps 6 --save "$tmp/ck" >/dev/null
resumed=$("$exe" "${base[@]}" --pp 2 --steps 6 --resume "$tmp/ck" | losses)
check "resume continues at step 4" "[ \"\$(head -1 <<<\"\$resumed\" | awk '{print \$1}')\" = 4 ]"
check "resumed losses equal the straight run" "[ \"\$straight\" = \"\$resumed\" ]"
check "latest names step 3" "[ \"\$(cat \"$tmp/ck/latest\")\" = step-00000003 ]"

# another layout resumes the same checkpoint (re-sliced by tensor name) and
# continues with the straight run's losses to 1e-5 relative
cross=$("$exe" "${base[@]}" --dp 2 --tp 2 --zero 3 --steps 6 --resume "$tmp/ck" | losses)
check "resume under dp2 tp2 ZeRO-3 continues at step 4" "[ \"\$(head -1 <<<\"\$cross\" | awk '{print \$1}')\" = 4 ]"
check "resume under another layout: the straight run's losses to 1e-5" \
  "paste <(echo \"\$straight\") <(echo \"\$cross\") | awk '{d = \$2 - \$4; if (d < 0) d = -d; if (NF != 4 || d > 1e-5 * \$2) bad = 1} END {exit bad}'"
# and under the V schedules, whose ranks hold parts s and 2p-1-s (dualpipev needs m = 4 >= 2 pp: it has it)
for sched in zb-v dualpipev; do
  v=$("$exe" "${base[@]}" --pp 2 --schedule "$sched" --steps 6 --resume "$tmp/ck" | losses)
  check "resume under pp2 $sched: the straight run's losses to 1e-5" \
    "paste <(echo \"\$straight\") <(echo \"\$v\") | awk '{d = \$2 - \$4; if (d < 0) d = -d; if (NF != 4 || d > 1e-5 * \$2) bad = 1} END {exit bad}'"
done
check "the step directory holds a manifest and one shard per rank" \
  "[ -f \"$tmp/ck/step-00000003/manifest.json\" ] && [ \$(ls \"$tmp/ck/step-00000003\" | grep -c '^rank-.*\\.ckpt\$') -eq 2 ]"

# --keep: older checkpoints deleted after each commit, 'latest' kept
"$exe" "${base[@]}" --steps 7 --save "$tmp/keep" --save-every 1 --keep 3 >/dev/null
check "--keep 3 leaves steps 5-7" "[ \"\$(ls \"$tmp/keep\" | grep '^step-' | tr '\\n' ' ')\" = 'step-00000005 step-00000006 step-00000007 ' ]"
"$exe" "${base[@]}" --steps 3 --save "$tmp/keep0" --save-every 1 --keep 0 >/dev/null
check "--keep 0 keeps every checkpoint" "[ \$(ls \"$tmp/keep0\" | grep -c '^step-') -eq 3 ]"

# a kill at any moment leaves one of the states the save protocol allows
# (write into a temporary directory, rename it, then rename a new 'latest'
# over the old): built here deterministically instead of racing a kill.
# (1) killed inside a save of step 4: a partial temporary directory and a
# half-written 'latest' replacement beside the committed step 3
cp -r "$tmp/ck" "$tmp/kill"
mkdir -p "$tmp/kill/.tmp-step-00000004"
printf 'partial' > "$tmp/kill/.tmp-step-00000004/rank-0.bin"
printf 'step-000' > "$tmp/kill/latest.tmp"
killed=$("$exe" "${base[@]}" --pp 2 --steps 6 --resume "$tmp/kill" 2>"$tmp/err" | losses); rc=$?
check "killed inside a save: resumes from the committed step 3" "[ $rc -eq 0 ] && [ \"\$(head -1 <<<\"\$killed\" | awk '{print \$1}')\" = 4 ]"
check "killed inside a save: the same losses as the straight run" "[ \"\$straight\" = \"\$killed\" ]"
# (2) killed inside the first save: no 'latest' at all — a clear error, not a crash
mkdir -p "$tmp/kill0/.tmp-step-00000001"
"$exe" "${base[@]}" --pp 2 --steps 2 --resume "$tmp/kill0" >/dev/null 2>"$tmp/err"; rc=$?
check "killed inside the first save: one clear error" "[ $rc -ne 0 ] && [ \$(wc -l <\"$tmp/err\") -eq 1 ] && grep -q 'no checkpoint' \"$tmp/err\""

# bad input: one line on stderr, non-zero exit
bad() {  # name expected-substring args...
  local name=$1 want=$2; shift 2
  "$exe" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  check "$name: exit non-zero" "[ $rc -ne 0 ]"
  check "$name: one error line" "[ \$(wc -l <\"$tmp/err\") -eq 1 ] && grep -qF -- \"$want\" \"$tmp/err\""
}
bad "plan does not divide the model" "exceeds 4 layers" "${base[@]}" --pp 8
bad "tp does not divide heads" "does not divide" "${base[@]}" --tp 3
printf 'this is not a token file at all, not even close to the header size' > "$tmp/junk.bin"
bad "corrupt token file" "token file" "${base[@]}" --data "$tmp/junk.bin"
"$exe" data --synthetic --tokens 5000 --vocab 64 --out "$tmp/good.bin" >/dev/null
head -c 3000 "$tmp/good.bin" > "$tmp/trunc.bin"
bad "truncated token file" "token file" "${base[@]}" --data "$tmp/trunc.bin"
bad "checkpoint of another run" "'seed 1337' there, 'seed 5' here" "${base[@]}" --seed 5 --steps 4 --resume "$tmp/ck"
bad "checkpoint of another data source" "'data synthetic' there, 'data good.bin' here" "${base[@]}" --data "$tmp/good.bin" --steps 4 --resume "$tmp/ck"
# the data file is known by its size and first 64 KiB, not its name alone:
# another file of the same name is refused, the same file moved resumes, and a
# checkpoint saved before the fingerprint carried them is compared on its items
mkdir -p "$tmp/d1" "$tmp/d2" "$tmp/d3"
"$exe" data --synthetic --tokens 5000 --vocab 64 --seed 1 --out "$tmp/d1/tok.bin" >/dev/null
"$exe" data --synthetic --tokens 5000 --vocab 64 --seed 2 --out "$tmp/d2/tok.bin" >/dev/null
cp "$tmp/d1/tok.bin" "$tmp/d3/tok.bin"
"$exe" "${base[@]}" --data "$tmp/d1/tok.bin" --steps 2 --save "$tmp/ckd" >/dev/null 2>&1
bad "checkpoint of another file of the same name" "data sha256 of the first" "${base[@]}" --data "$tmp/d2/tok.bin" --steps 3 --resume "$tmp/ckd"
"$exe" "${base[@]}" --data "$tmp/d3/tok.bin" --steps 3 --resume "$tmp/ckd" >/dev/null 2>"$tmp/err"; rc=$?
check "the same data file moved: resumes" "[ $rc -eq 0 ]"
man=$(ls -d "$tmp"/ckd/step-*/ | head -1)manifest.json
python3 - "$man" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m['run'] = '; '.join(i for i in m['run'].split('; ') if not i.startswith(('data bytes ', 'data sha256 ')))
json.dump(m, open(sys.argv[1], 'w'))
PY
"$exe" "${base[@]}" --data "$tmp/d2/tok.bin" --steps 3 --resume "$tmp/ckd" >/dev/null 2>"$tmp/err"; rc=$?
check "a checkpoint without the data's size and head: compared by name" "[ $rc -eq 0 ]"
cp -r "$tmp/ck" "$tmp/flip"
printf '\x55' | dd of="$tmp/flip/step-00000003/rank-00001.ckpt" bs=1 seek=3000 conv=notrunc 2>/dev/null
bad "a flipped byte in a shard" "rank-00001.ckpt: SHA-256" "${base[@]}" --steps 4 --resume "$tmp/flip"
rm "$tmp/flip/step-00000003/rank-00001.ckpt"
bad "a missing shard" "rank-00001.ckpt: missing" "${base[@]}" --steps 4 --resume "$tmp/flip"
touch "$tmp/afile"
bad "--save under a file, before step 1" "checkpoint directory $tmp/afile/ck cannot be created" "${base[@]}" --steps 2 --save "$tmp/afile/ck"
check "--save checked before step 1" "! grep -Eq '^ +1 ' \"$tmp/out\""
bad "a non-finite loss stops the run" "not finite" "${base[@]}" --steps 5 --lr 1e30
check "no step after the non-finite one" "[ \$(grep -Ec '^ +[0-9]+ ' \"$tmp/out\") -lt 5 ]"
bad "no checkpoint" "no checkpoint" "${base[@]}" --steps 4 --resume "$tmp/none"
bad "unknown backend" "unknown backend" "${base[@]}" --backend tpu
bad "sequence parallelism over odd tokens" "sequence parallelism" "${base[@]}" --tp 2 --sp --seq 15 --mbs 1
# optimiser hyperparameters and data sizes are checked, naming the flag
bad "lr nan" "--lr must be a finite number > 0" "${base[@]}" --lr nan
bad "lr negative" "--lr must be a finite number > 0" "${base[@]}" --lr -0.1
bad "min-lr above lr" "--min-lr must be in [0, --lr]" "${base[@]}" --min-lr 0.5
bad "warmup past decay" "--warmup must be 0..the decay steps" "${base[@]}" --steps 4 --warmup 10
bad "clip inf" "--clip must be a finite number" "${base[@]}" --clip inf
bad "weight decay 2" "--weight-decay must be in [0, 1]" "${base[@]}" --weight-decay 2
bad "data tokens 0" "--tokens 0 must be 1..1073741824" data --synthetic --tokens 0 --out "$tmp/x.bin"
bad "data tokens huge" "--tokens 99999999999 must be 1..1073741824" data --synthetic --tokens 99999999999 --out "$tmp/x.bin"
bad "token file is a directory" "not a regular file" "${base[@]}" --data "$tmp"
# context parallelism: the single rank's losses; a sequence 2·cp does not divide is refused
cp1=$("$exe" "${base[@]}" --steps 2 | losses)
cp2out=$("$exe" "${base[@]}" --cp 2 --gpus 2 --steps 2)
check "cp 2 runs ring attention" "grep -q 'x cp 2 (ring attention)' <<<\"\$cp2out\""
check "cp 2 gives the single rank's losses" "[ \"\$cp1\" = \"\$(losses <<<\"\$cp2out\")\" ]"
cp6=$("$exe" "${base[@]}" --steps 6 | losses | tail -3)
"$exe" "${base[@]}" --cp 2 --gpus 4 --dp 2 --zero 1 --steps 3 --decay-steps 6 --save "$tmp/ckcp" >/dev/null
cpres=$("$exe" "${base[@]}" --steps 6 --resume "$tmp/ckcp" | losses)
check "a cp 2 · dp 2 ZeRO-1 checkpoint resumes on one rank" "[ \"\$cp6\" = \"\$cpres\" ]"
bad "cp over an indivisible sequence" "not divisible by 6" "${base[@]}" --cp 3 --gpus 3 --seq 16
"$exe" "${base[@]}" --data "$tmp/good.bin" --steps 1 >/dev/null 2>"$tmp/err"
check "a good token file trains" "[ $? -eq 0 ]"
# Staged communicator calls (comm.c: a call on a device stream of a host-memory
# communicator runs on the calling thread through host copies, as the cuda
# backend's multi-rank runs on one GPU do). PX_COMM_STAGE=1 stages the calls
# of the cpu's streams too: the same losses, bit for bit, and no deadlock
losses() { grep -E '^ +[0-9]+ +[0-9]+\.[0-9]+ ' | awk '{print $2}'; }
for layout in "--pp 2 --tp 2 --dp 2 --zero 1" "--dp 2 --zero 3" "--pp 2 --vpp 2 --schedule interleaved" \
              "--pp 2 --schedule zb-h1" "--cp 2 --gpus 2" "--tp 2 --sp --dtype bf16"; do
  # shellcheck disable=SC2086
  plain=$("$exe" "${base[@]}" $layout --steps 2 | losses)
  # shellcheck disable=SC2086
  staged=$(PX_COMM_STAGE=1 timeout 300 "$exe" "${base[@]}" $layout --steps 2 | losses)
  check "staged calls ($layout): the losses of the queued ones" "[ -n \"\$plain\" ] && [ \"\$plain\" = \"\$staged\" ]"
  # the local communicator's device path (comm_local.c: collectives as stream
  # copies, px_stream_reduce and events across the ranks' streams, as on cuda)
  # shellcheck disable=SC2086
  device=$(PX_COMM_LOCAL_DEVICE=1 timeout 300 "$exe" "${base[@]}" $layout --steps 2 | losses)
  check "device-path collectives ($layout): the losses of the host path" "[ -n \"\$plain\" ] && [ \"\$plain\" = \"\$device\" ]"
done
# The device path's point-to-point and groups (comm_local.c: the pipeline's
# sends and receives, the cp ring, on the sub-communicators) against the
# staged calls, bit for bit in fp32: every step's loss and gradient norm as
# `--json` prints them (17 significant digits)
exact() { grep -oE '"(loss|grad_norm)" *: *[-0-9.eE+]+' | tr -d ' '; }
for layout in "--pp 2 --tp 2 --dp 2 --zero 1" "--pp 4 --mbs 1" "--pp 2 --vpp 2 --schedule interleaved" \
              "--pp 2 --schedule zb-h1 --dp 2" "--cp 2 --gpus 2"; do
  # shellcheck disable=SC2086
  staged=$(PX_COMM_STAGE=1 timeout 300 "$exe" "${base[@]}" $layout --dtype f32 --steps 2 --json | exact)
  # shellcheck disable=SC2086
  device=$(PX_COMM_LOCAL_DEVICE=1 timeout 300 "$exe" "${base[@]}" $layout --dtype f32 --steps 2 --json | exact)
  check "device-path p2p ($layout): the staged losses and norms, bit for bit" \
    "[ \$(grep -c loss <<<\"\$staged\") -eq 2 ] && [ \"\$staged\" = \"\$device\" ]"
done

# the token file truncated on disk while the run trains: it was mapped, and the next step's read
# of the vanished pages (a step reads 16 x 64 tokens, 2 KB, from the next page on) killed the run
# with SIGBUS; it is read whole at open now. The run is waited
# for at its first step line (run flushes stdout after each step line; stdbuf's LD_PRELOAD stopped
# the sanitizer build at start); one that ends first passes unchallenged.
"$exe" data --synthetic --tokens 20000 --out "$tmp/shrink.bin" >/dev/null 2>&1
"$exe" run --model tiny-gpt --seq 64 --gbs 16 --mbs 4 --steps 5 --data "$tmp/shrink.bin" >"$tmp/shrink.out" 2>"$tmp/shrink.err" & rpid=$!
for _ in $(seq 300); do grep -Eq '^ +1 +[0-9]' "$tmp/shrink.out" && break; kill -0 $rpid 2>/dev/null || break; sleep 0.1; done
: >"$tmp/shrink.bin"
wait $rpid; rc=$?
check "token file truncated mid-run: no SIGBUS, all 5 steps (rc $rc)" \
  "[ $rc -eq 0 ] && [ \$(grep -Ec '^ +[1-5] +[0-9]+\.[0-9]+ ' \"$tmp/shrink.out\") -eq 5 ]"
echo "1..$n"
exit $fail
