#!/usr/bin/env bash
# Proves the README on this machine: the test command (.ci/run), the run
# command (until imserver listens on config/im.toml's 127.0.0.1:9700, then
# stopped by its PID), and bench/run.sh --smoke from this clone. Meant for a
# fresh Debian 12 (../shared/tools/fresh-debian 'bash scripts/prove-readme.sh').
set -u
cd "$(dirname "$0")/.."
echo "== README test command: bash .ci/run"
bash .ci/run >/tmp/prove-ci.out 2>&1
ci=$?
tail -3 /tmp/prove-ci.out
echo "exit $ci"

echo "== README run command: bash scripts/run.sh (until it listens)"
bash scripts/run.sh >/tmp/prove-run.out 2>&1 &
pid=$!
listening=1
for _ in $(seq 900); do
  if grep -q "listening tcp 127.0.0.1:9700" /tmp/prove-run.out; then listening=0; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 1
done
tail -4 /tmp/prove-run.out
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
echo "listening: $([[ $listening == 0 ]] && echo yes || echo NO)"

echo "== bench/run.sh --smoke (builds its own Release tree)"
bash bench/run.sh --smoke >/tmp/prove-bench.out 2>&1
bench=$?
tail -1 /tmp/prove-bench.out
echo "exit $bench"

[[ $ci == 0 && $listening == 0 && $bench == 0 ]]
