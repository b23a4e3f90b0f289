#!/usr/bin/env bash
# parallax-exec run on mixture-of-experts models, ranks as processes: the
# tiny MoE (configs/models/tiny-moe.ini) with ep 2 · pp 2 and cp 2 · dp 2 · ep 2
# as 4 processes under `parallax-exec launch` (tcp), and ep 4 under mpirun (mpi, when built and
# found), give the losses of the single rank (to the 6 printed digits; the
# load-balancing loss in the gradients, the experts' all-to-all between
# processes), and so do ep 2 · etp 2 threads; a checkpoint of ep 2 · pp 2
# resumes under ep 4 and under one rank with the losses of the straight run;
# a Hugging Face mixtral config.json runs with --ep; ZeRO-1 and ZeRO-3 with
# expert groups of their own give the single rank's losses; a capacity factor
# runs (ep 2 as one rank); what the executor does not run is refused in one
# line with a non-zero exit.
set -u
exe=$2
fail=0; n=0
check() { n=$((n+1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
data=${PARALLAX_DATA_DIR:-.}
losses() { grep -E '^ +[1-3] +[0-9]+\.[0-9]+ ' | awk '{print $1, $2, $6}'; }
common=(--model tiny-moe --gbs 8 --mbs 1 --steps 3)
want=$("$exe" run "${common[@]}" --comm local | losses)
check "the single rank trains 3 steps" "[ \$(wc -l <<<\"\$want\") -eq 3 ]"

got=$("$exe" launch -n 4 -- run "${common[@]}" --dp 2 --pp 2 --ep 2 --comm tcp 2>"$tmp/err" | losses)
check "ep 2 · pp 2, 4 processes (tcp): the single rank's losses and gradient norms" "[ \"\$got\" = \"\$want\" ]"

got=$("$exe" launch -n 4 -- run "${common[@]}" --cp 2 --dp 2 --ep 2 --comm tcp 2>"$tmp/err" | losses)
check "cp 2 · dp 2 · ep 2, 4 processes (tcp): the single rank's losses and gradient norms" "[ \"\$got\" = \"\$want\" ]"

if command -v mpirun > /dev/null && "$exe" run --help 2>&1 | grep -q "mpi (one process"; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  got=$(timeout 300 mpirun --oversubscribe -n 4 "$exe" run "${common[@]}" --dp 4 --ep 4 --comm mpi 2>"$tmp/err" < /dev/null | losses)
  if grep -q "not built in" "$tmp/err"; then echo "# mpi: skipped (built without the mpi communicator)"
  else check "ep 4, 4 processes (mpi): the single rank's losses" "[ \"\$got\" = \"\$want\" ]"; fi
else
  echo "# mpi: skipped (mpirun not found)"
fi

hf="$data/tests/data/hf/tiny-mixtral.json"
one=$("$exe" run --model "$hf" --gbs 4 --mbs 1 --seq 16 --steps 2 | losses)
two=$("$exe" run --model "$hf" --gbs 4 --mbs 1 --seq 16 --steps 2 --dp 2 --ep 2 | losses)
check "a Hugging Face mixtral config runs with --ep 2 as on one rank" "[ \$(wc -l <<<\"\$one\") -eq 2 ] && [ \"\$one\" = \"\$two\" ]"

got=$("$exe" run "${common[@]}" --dp 2 --ep 2 --zero 1 | losses)
check "ep 2 · dp 2 ZeRO-1 (expert shards over EDP): the single rank's losses" "[ \"\$got\" = \"\$want\" ]"
got=$("$exe" run "${common[@]}" --dp 4 --ep 2 --zero 3 | losses)
check "ep 2 · dp 4 ZeRO-3 (expert shards over edp 2): the single rank's losses" "[ \"\$got\" = \"\$want\" ]"
err=$("$exe" run --model "$data/configs/hf/qwen1.5-moe-a2.7b.json" --gbs 1 --mbs 1 --seq 16 --steps 1 2>&1); rc=$?
check "Qwen2-MoE's shared-expert gate is refused in one line" \
  "[ $rc -ne 0 ] && [ \$(wc -l <<<\"\$err\") -eq 1 ] && grep -q 'shared-expert gate' <<<\"\$err\""
got=$("$exe" run "${common[@]}" --dp 2 --tp 2 --sp --ep 2 --etp 2 | losses)
check "ep 2 · etp 2 (tp 2, sp): the single rank's losses" "[ \"\$got\" = \"\$want\" ]"
four=(run --model tiny-moe --gbs 8 --mbs 1 --steps 4)
straight=$("$exe" "${four[@]}" --dp 2 --pp 2 --ep 2 --save "$tmp/ck" --save-every 2 | grep -E '^ +[34] +[0-9]+\.[0-9]+ ')
rm -rf "$tmp/ck/step-00000004"; echo step-00000002 > "$tmp/ck/latest"
r4=$("$exe" "${four[@]}" --dp 4 --ep 4 --resume "$tmp/ck" | grep -E '^ +[34] +[0-9]+\.[0-9]+ ' | awk '{print $1, $2, $6}')
r1=$("$exe" "${four[@]}" --resume "$tmp/ck" | grep -E '^ +[34] +[0-9]+\.[0-9]+ ' | awk '{print $1, $2, $6}')
want4=$(awk '{print $1, $2, $6}' <<<"$straight")
check "an ep 2 · pp 2 checkpoint resumes under ep 4 and one rank as the straight run" \
  "[ \$(wc -l <<<\"\$want4\") -eq 2 ] && [ \"\$r4\" = \"\$want4\" ] && [ \"\$r1\" = \"\$want4\" ]"
# a capacity factor (0.75 of tiny-moe's balanced 8 copies per expert and
# sequence: capacity 6, some copies dropped): announced, and ep 2 gives the
# single rank's losses (each rank caps its own micro-batch), which are not
# the dropless ones
sed 's/^name = tiny-moe/name = tiny-moe-capped/; $a capacity_factor = 0.75' "$data/configs/models/tiny-moe.ini" > "$tmp/capped.ini"
capped=(--model "$tmp/capped.ini" --gbs 8 --mbs 1 --steps 3)
c1=$("$exe" run "${capped[@]}" 2>&1)
c2=$("$exe" run "${capped[@]}" --dp 2 --ep 2 | losses)
check "a capacity factor is announced and ep 2 gives the single rank's losses, not the dropless ones" \
  "grep -q 'capacity factor 0.75' <<<\"\$c1\" && [ \"\$(losses <<<\"\$c1\")\" = \"\$c2\" ] && [ \"\$c2\" != \"\$want\" ] && [ \$(wc -l <<<\"\$c2\") -eq 3 ]"
exit $fail
