#!/usr/bin/env bash
# Runs every scenario of BENCHMARKS.md against a fresh imserver per scenario
# (own data dir, loopback, ports picked by the server), and writes
# bench/RESULTS.md with the numbers, the commit, the machine and the
# commands. Everything it starts it stops, by PID.
#
#   bench/run.sh                  full sizes for a 2-core, 24 GiB machine, writes bench/RESULTS.md
#   bench/run.sh --smoke          tiny sizes, prints only (CI)
#   bench/run.sh --bin-dir DIR    use imserver and imbench from DIR (default: builds build-bench, Release)
#   bench/run.sh --only w2        one scenario (w2-search-text, w2-search-off and search
#                                 are the search ones)
#   IO_THREADS=N SHARDS=M bench/run.sh ...  server.io_threads and
#                                 sharding.shards (default 0: half the cores each)
#   bench/run.sh --cluster        W2 and W3 in cluster mode (docs/cluster.md): each
#                                 server on a fresh three-node NATS JetStream
#                                 cluster on loopback (scripts/nats-cluster.sh),
#                                 PARTITIONS partitions (default 64); prints
#                                 the publish latency histogram from
#                                 /metrics after each run; prints only.
#   bench/run.sh --transports all W1 and W2 over tcp, ws, tls and wss (or a
#                                 list: --transports tcp,wss); prints only.
#                                 With --smoke at smoke sizes. Each server
#                                 has a WebSocket listener; for tls and wss
#                                 also a throwaway certificate for
#                                 127.0.0.1 (openssl CLI), which imbench
#                                 verifies (--ca-file). W1_CONNS sets W1's
#                                 connections (default 10000).
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
transports=""
cluster=0
while (($#)); do
  case "$1" in
    --smoke) smoke=1 ;;
    --bin-dir) bin_dir=$2; shift ;;
    --only) only=$2; shift ;;
    --transports) transports=$2; shift ;;
    --cluster) cluster=1 ;;
    *) echo "usage: bench/run.sh [--smoke] [--bin-dir DIR] [--only wN] [--transports all|tcp,ws,tls,wss] [--cluster]" >&2; exit 2 ;;
  esac
  shift
done
[[ $transports == all ]] && transports=tcp,ws,tls,wss
for t in ${transports//,/ }; do
  case "$t" in
    tcp|ws|tls|wss) ;;
    *) echo "bench/run.sh: unknown transport $t (tcp, ws, tls, wss)" >&2; exit 2 ;;
  esac
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
nats_dir=""  # --cluster: the running NATS cluster's folder
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  [[ -z $nats_dir ]] || bash "$root/scripts/nats-cluster.sh" stop "$nats_dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Writes a config for a fresh data dir. cfg_ws_listen: the WebSocket
# listener ("" for none); cfg_tls=1: both listeners speak TLS with the
# certificate in $work/tls.
cfg_ws_listen=""
cfg_tls=0
cfg_fsync=false  # storage.fsync
cfg_search=true  # search.enabled
cfg_admin_listen=""
write_config() {
  local dir=$1; shift
  mkdir -p "$dir"
  cat >"$dir/im.toml" <<TOML
[server]
listen = "127.0.0.1:0"
ws_listen = "$cfg_ws_listen"
max_connections = 1000000
io_threads = ${IO_THREADS:-0}
[sharding]
shards = ${SHARDS:-0}
[admin]
listen = "$cfg_admin_listen"
[auth]
mode = "jwt"
jwt_secret = "$secret"
[storage]
data_dir = "$dir/data"
fsync = $cfg_fsync
[limits]
messages_per_second = 10000000
burst = 10000000
accept_per_second = 10000000
# W3 and W7 measure fan-out itself: one sender writes far over the per-user
# row limit, which the benchmark does not measure.
fanout_rows_per_second = 100000000
[search]
enabled = $cfg_search
[log]
level = "warn"
TOML
  if [[ -n $nats_dir ]]; then
    # Each stream reserves stream_max_bytes on every NATS node: 64 x 100 MiB
    # fit the script's 8 GB max_file_store. No trimming: a snapshot would
    # land in some runs and not others (bench/cluster_rebuild.sh TRIM=1).
    cat >>"$dir/im.toml" <<TOML
[cluster]
mode = "jetstream"
nats_urls = [$(sed 's/[^,]*/"&"/g; s/,/, /g' "$nats_dir/urls")]
partitions = ${PARTITIONS:-64}
stream_max_bytes = 104857600
trim_at_percent = 0
TOML
  fi
  if ((cfg_tls)); then
    printf '[tls]\ncert_file = "%s"\nkey_file = "%s"\n' "$work/tls/c.pem" "$work/tls/k.pem" >>"$dir/im.toml"
  fi
}

# A self-signed certificate for 127.0.0.1 and localhost, valid two days; it
# is its own CA for imbench --ca-file.
make_cert() {
  [[ -f $work/tls/c.pem ]] && return 0
  mkdir -p "$work/tls"
  if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
       -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$work/tls/k.pem" -out "$work/tls/c.pem" \
       >"$work/tls/openssl.log" 2>&1; then
    echo "openssl could not make a test certificate:"; cat "$work/tls/openssl.log"; exit 1
  fi
}

start_server() {
  local dir=$1
  # The files exist before the server starts: the background child opens
  # its redirections only when it runs, and awk below must not race it.
  : >"$dir/stdout"
  : >"$dir/stderr"
  "$imserver" --config "$dir/im.toml" >"$dir/stdout" 2>"$dir/stderr" &
  server_pid=$!
  for _ in $(seq 1 500); do
    port=$(awk '/listening tcp/ {n=split($4, a, ":"); print a[n]}' "$dir/stdout")
    ws_port=$(awk '/listening ws/ {n=split($4, a, ":"); print a[n]}' "$dir/stdout")
    admin_port=$(awk '/listening admin/ {n=split($4, a, ":"); print a[n]}' "$dir/stdout")
    [[ -n $port && ( -z $cfg_ws_listen || -n $ws_port ) && ( -z $cfg_admin_listen || -n $admin_port ) ]] && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
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
record() {  # record COMMAND OUTPUT (the JSON line says storage_fsync when it was on, search_enabled when off)
  echo "$2"
  local extra=""
  [[ $cfg_fsync == true ]] && extra='"storage_fsync":true,'
  [[ $cfg_search == false ]] && extra+='"search_enabled":false,'
  grep '^JSON ' <<<"$2" | sed "s/^JSON {/{$extra/" >>"$work/results.jsonl"
  echo "$1" >>"$work/commands.txt"
}

run() {  # run NAME imbench-args... (--data-dir: the search scenario measures its index there)
  local name=$1; shift
  [[ -n $only && $only != "$name" ]] && return 0
  local dir="$work/$name"
  write_config "$dir"
  start_server "$dir"
  echo "== $name (server pid $server_pid, port $port)"
  record "imbench --port PORT --server-pid PID --secret SECRET --data-dir DATA $*" \
         "$("$imbench" --port "$port" --server-pid "$server_pid" --secret "$secret" --data-dir "$dir/data" "$@")"
  [[ -z $nats_dir ]] || publish_histogram
  stop_server
}

# Cluster mode: the server's histogram of publishes to the streams, from
# its start (markers included), with the quantiles it bounds.
publish_histogram() {
  curl -fsS "http://127.0.0.1:$admin_port/metrics" | python3 -c '
import re, sys
buckets = []
count = 0
for line in sys.stdin:
    m = re.match(r"imserver_cluster_publish_seconds_bucket\{le=\"([^\"]+)\"\} (\S+)", line)
    if m:
        buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
    m = re.match(r"imserver_cluster_publish_seconds_count (\S+)", line)
    if m:
        count = float(m.group(1))
if not count:
    sys.exit("no imserver_cluster_publish_seconds in /metrics")
def upto(q):
    return next(f"<= {le * 1000:g} ms" for le, n in buckets if n >= q * count)
print(f"cluster publishes: {count:,.0f}; p50 {upto(0.5)}, p99 {upto(0.99)}, p99.9 {upto(0.999)}")
print("  le_ms cumulative: " + ", ".join(f"{le * 1000:g}:{n:,.0f}" for le, n in buckets if le != float("inf")))
'
}

run_transport() {  # run_transport TRANSPORT NAME imbench-args...: a server with a ws listener (and TLS)
  local transport=$1 name=$2; shift 2
  [[ -n $only && $only != "$name" ]] && return 0
  local dir="$work/$transport-$name" p tls_args=()
  cfg_ws_listen="127.0.0.1:0"
  cfg_tls=0
  if [[ $transport == tls || $transport == wss ]]; then
    make_cert
    cfg_tls=1
    tls_args=(--ca-file "$work/tls/c.pem")
  fi
  write_config "$dir"
  start_server "$dir"
  p=$port
  [[ $transport == ws || $transport == wss ]] && p=$ws_port
  echo "== $name over $transport (server pid $server_pid, port $p)"
  record "imbench --transport $transport --port PORT --server-pid PID --secret SECRET ${tls_args[*]:+--ca-file CERT} $*" \
         "$("$imbench" --transport "$transport" --port "$p" --server-pid "$server_pid" --secret "$secret" \
            ${tls_args[@]+"${tls_args[@]}"} "$@")"
  stop_server
  cfg_ws_listen=""
  cfg_tls=0
}

# One line per transport from the JSON lines of run_transport.
transport_summary() {
  python3 - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def f(r, k, d=0):
    v = r.get(k)
    return "n/a" if v is None else f"{v:,.{d}f}"
print(f"{'transport':<10}{'W1 logged in':>13}{'server B/conn':>14}{'client B/conn':>14}{'W2 msg/s':>11}"
      f"{'p50 ms':>8}{'p99 ms':>8}{'server cores':>14}{'gen cores':>11}")
for t in dict.fromkeys(r.get("transport", "tcp") for r in rows):
    w1 = next((r for r in rows if r.get("transport") == t and r["scenario"] == "w1"), {})
    w2 = next((r for r in rows if r.get("transport") == t and r["scenario"] == "w2"), {})
    print(f"{t:<10}{f(w1, 'logged_in'):>13}{f(w1, 'server_bytes_per_conn'):>14}"
          f"{f(w1, 'generator_bytes_per_conn'):>14}{f(w2, 'delivered_per_s'):>11}"
          f"{f(w2, 'latency_p50_ms', 2):>8}{f(w2, 'latency_p99_ms', 2):>8}{f(w2, 'server_cores', 2):>14}"
          f"{f(w2, 'generator_cores', 2):>11}")
PY
}

if [[ -n $transports ]]; then
  for t in ${transports//,/ }; do
    if ((smoke)); then
      run_transport "$t" w1 --scenario w1 --conns 50 --duration 1
      run_transport "$t" w2 --scenario w2 --pairs 2 --window 10 --duration 1
    else
      run_transport "$t" w1 --scenario w1 --conns "${W1_CONNS:-10000}" --duration 5
      run_transport "$t" w2 --scenario w2 --pairs 100 --window 100 --duration 10
    fi
  done
  echo
  transport_summary
  n=$(wc -l <"$work/results.jsonl")
  echo "transports: $n runs"
  # Every run must have produced its JSON line (a failed imbench already stopped the script).
  [[ -n $only || $n == $((2 * $(wc -w <<<"${transports//,/ }"))) ]]
  exit $?
fi

if ((cluster)); then
  cfg_admin_listen="127.0.0.1:0"
  run_cluster() {  # run_cluster NAME imbench-args...: on a NATS cluster of its own
    [[ -n $only && $only != "$1" ]] && return 0
    nats_dir="$work/nats-$1-$RANDOM"
    rm -rf "${work:?}/$1"  # an earlier run's data dir belongs to an earlier cluster's streams
    echo "== NATS: $(bash "$root/scripts/nats-cluster.sh" start "$nats_dir" 3)"
    run "$@"
    bash "$root/scripts/nats-cluster.sh" stop "$nats_dir" >/dev/null
    rm -rf "$nats_dir"
    nats_dir=""
  }
  if ((smoke)); then
    run_cluster w2 --scenario w2 --pairs 2 --window 10 --duration 1
    run_cluster w3 --scenario w3 --members 20 --window 10 --duration 1
  else
    run_cluster w2 --scenario w2 --pairs 100 --window 100 --duration 10
    run_cluster w2 --scenario w2 --pairs 100 --window 100 --duration 10 --rate "${W2_HALF_RATE:-20000}"
    run_cluster w3 --scenario w3 --members 500 --senders 1 --window 100 --duration 10
    run_cluster w3 --scenario w3 --members 500 --senders 1 --window 100 --duration 10 --rate "${W3_PACED_RATE:-350}"
  fi
  n=$(wc -l <"$work/results.jsonl")
  echo "cluster: $n runs"
  [[ -n $only ]] || ((smoke ? n == 2 : n == 4))
  exit $?
fi

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
  run w8 --scenario w8 --messages 50 --link-delay-ms 5 --link-down-bytes-per-s 1000000
  run w7 --scenario w7 --members 2100 --online 20 --window 10 --duration 1
  run w5 --scenario w5 --conns 200
  run_w6 20000
  run conv --scenario conv --conversations 20 --window 10 --duration 1
  run search --scenario search --messages 500 --conversations 5 --duration 1
  n=$(wc -l <"$work/results.jsonl")
  echo "smoke: $n scenarios ran"
  [[ -n $only || $n == 10 ]]
  exit $?
fi

run w1 --scenario w1 --conns 19000 --duration 5
run w2 --scenario w2 --pairs 1 --window 100 --duration 10
run w2 --scenario w2 --pairs 100 --window 100 --duration 10
# The tail goal is at half the peak: the rate of the unpaced run just above,
# measured on this machine in this hour (W2_HALF_RATE overrides it).
half_rate=${W2_HALF_RATE:-$(python3 -c 'import json,sys
r=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
w=[x for x in r if x.get("scenario")=="w2" and x.get("pairs")==100 and x.get("delivered_per_s",0)>=2]
print(int(w[-1]["delivered_per_s"]/2) if w else 38000)' "$work/results.jsonl")}
run w2 --scenario w2 --pairs 100 --window 100 --duration 10 --rate "$half_rate"
cfg_fsync=true  # every batch fsynced: what group commit makes of it
run w2-fsync --scenario w2 --pairs 100 --window 100 --duration 10
cfg_fsync=false
run w3 --scenario w3 --members 500 --senders 1 --window 100 --duration 10
run w3 --scenario w3 --members 500 --senders 1 --window 100 --duration 10 --rate "${W3_PACED_RATE:-350}"
run w4 --scenario w4 --messages 100000
run w8 --scenario w8 --messages 1000 --body-bytes 100
run w7 --scenario w7 --members 100000 --online 2000 --window 100 --duration 10 --rate 0 --threads 2
run w7 --scenario w7 --members 100000 --online 2000 --window 100 --duration 10 --rate "${W7_PACED_RATE:-500}" --threads 2
run w5 --scenario w5 --conns 19000 --inflight 1000
run_w6 "${W6_MESSAGES:-10000000}"
run conv --scenario conv --conversations 1000 --window 100 --duration 5
# PROTOCOL 8.6: W2 with a search_text on every message, and with search off
# (the default config has it on); SEARCH over 100,000 indexed messages.
run w2-search-text --scenario w2 --pairs 100 --window 100 --duration 10 --search-text
cfg_search=false
run w2-search-off --scenario w2 --pairs 100 --window 100 --duration 10
cfg_search=true
run search --scenario search --messages 100000 --conversations 200 --duration 10
[[ -n $only ]] && exit 0
python3 "$root/bench/report.py" "$work/results.jsonl" "$work/commands.txt" >"$root/bench/RESULTS.md"
echo "wrote bench/RESULTS.md"
