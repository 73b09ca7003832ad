#!/usr/bin/env bash
# Runs every scenario of BENCHMARKS.md against a fresh imserver per scenario
# (own data dir, loopback, ports picked by the server), and writes
# bench/RESULTS.md with the numbers, the commit, the machine and the
# commands. Everything it starts it stops, by PID.
#
#   bench/run.sh                  full sizes for a 2-core, 24 GiB machine, writes bench/RESULTS.md
#   bench/run.sh --smoke          tiny sizes, prints only (CI)
#   bench/run.sh --bin-dir DIR    use imserver and imbench from DIR (default: builds build-bench, Release)
#   bench/run.sh --only w2        one scenario
#
# Changes nothing on the machine: it raises its own soft open-file limit to
# the hard one (W1 and W5 go up to 19,000 connections; the hard limit here is
# 20,000 per process). Loopback only: imbench connects from 127.0.0.2 ..
# 127.0.0.9 (on Linux all of 127/8 is local already) with source ports it
# picks from 10000 up, below the kernel's ephemeral range: with 19,000
# connections the kernel's own port search took 78% of imbench's CPU
# (perf: __inet_check_established), which capped W5 at 3,000 logins/s.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
smoke=0
bin_dir=""
only=""
while (($#)); do
  case "$1" in
    --smoke) smoke=1 ;;
    --bin-dir) bin_dir=$2; shift ;;
    --only) only=$2; shift ;;
    *) echo "usage: bench/run.sh [--smoke] [--bin-dir DIR] [--only wN]" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $bin_dir ]]; then
  cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DIM_BUILD_TESTS=OFF >/dev/null
  cmake --build build-bench -j2 --target imserver imbench >/dev/null
  bin_dir=build-bench
fi
imserver=$(realpath "$bin_dir/imserver")
imbench=$(realpath "$bin_dir/imbench")
ulimit -n "$(ulimit -Hn)"

secret=bench-secret-0123456789abcdef0123456789
work=$(mktemp -d /tmp/imbench-XXXXXX)
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Writes a config for a fresh data dir; extra "key = value" lines per section
# come as arguments "section.key=value".
write_config() {
  local dir=$1; shift
  mkdir -p "$dir"
  cat >"$dir/im.toml" <<TOML
[server]
listen = "127.0.0.1:0"
ws_listen = ""
max_connections = 1000000
[admin]
listen = ""
[auth]
mode = "jwt"
jwt_secret = "$secret"
[storage]
data_dir = "$dir/data"
[limits]
messages_per_second = 10000000
burst = 10000000
accept_per_second = 10000000
[log]
level = "warn"
TOML
}

start_server() {
  local dir=$1
  "$imserver" --config "$dir/im.toml" >"$dir/stdout" 2>"$dir/stderr" &
  server_pid=$!
  for _ in $(seq 1 500); do
    port=$(awk '/listening tcp/ {n=split($4, a, ":"); print a[n]}' "$dir/stdout")
    [[ -n $port ]] && return 0
    sleep 0.02
  done
  echo "imserver did not start:"; cat "$dir/stderr"; exit 1
}

stop_server() {
  kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""
}

# Every scenario's JSON line and command, for the report.
: >"$work/results.jsonl"
: >"$work/commands.txt"
record() {  # record COMMAND OUTPUT
  echo "$2"
  grep '^JSON ' <<<"$2" | sed 's/^JSON //' >>"$work/results.jsonl"
  echo "$1" >>"$work/commands.txt"
}

run() {  # run NAME imbench-args...
  local name=$1; shift
  [[ -n $only && $only != "$name" ]] && return 0
  local dir="$work/$name"
  write_config "$dir"
  start_server "$dir"
  echo "== $name (server pid $server_pid, port $port)"
  record "imbench --port PORT --server-pid PID --secret SECRET $*" \
         "$("$imbench" --port "$port" --server-pid "$server_pid" --secret "$secret" "$@")"
  stop_server
}

run_w6() {  # run_w6 MESSAGES: imbench fills the store, starts, kills -9 and restarts imserver itself
  [[ -n $only && $only != w6 ]] && return 0
  local dir="$work/w6" w6_port
  write_config "$dir"
  w6_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  sed -i "s/127.0.0.1:0/127.0.0.1:$w6_port/" "$dir/im.toml"
  echo "== w6 ($1 stored messages)"
  record "imbench --scenario w6 --port PORT --secret SECRET --messages $1 --imserver imserver --config im.toml --data-dir DATA" \
         "$("$imbench" --scenario w6 --port "$w6_port" --secret "$secret" --messages "$1" \
            --imserver "$imserver" --config "$dir/im.toml" --data-dir "$dir/data")"
}

if ((smoke)); then
  run w1 --scenario w1 --conns 50 --duration 1
  run w2 --scenario w2 --pairs 2 --window 10 --duration 1
  run w3 --scenario w3 --members 20 --window 10 --duration 1
  run w4 --scenario w4 --messages 2000
  run w5 --scenario w5 --conns 200
  run_w6 20000
  n=$(wc -l <"$work/results.jsonl")
  echo "smoke: $n scenarios ran"
  [[ -n $only || $n == 6 ]]
  exit $?
fi

run w1 --scenario w1 --conns 19000 --duration 5
run w2 --scenario w2 --pairs 1 --window 100 --duration 10
run w2 --scenario w2 --pairs 100 --window 100 --duration 10
run w2 --scenario w2 --pairs 100 --window 100 --duration 10 --rate "${W2_HALF_RATE:-38000}"
run w3 --scenario w3 --members 500 --senders 1 --window 100 --duration 10
run w3 --scenario w3 --members 500 --senders 1 --window 100 --duration 10 --rate "${W3_PACED_RATE:-350}"
run w4 --scenario w4 --messages 100000
run w5 --scenario w5 --conns 19000 --inflight 1000
run_w6 "${W6_MESSAGES:-10000000}"
[[ -n $only ]] && exit 0
python3 "$root/bench/report.py" "$work/results.jsonl" "$work/commands.txt" >"$root/bench/RESULTS.md"
echo "wrote bench/RESULTS.md"
