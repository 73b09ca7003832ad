#!/usr/bin/env bash
# Cluster mode (docs/cluster.md): how long a node takes to rebuild itself
# from the streams alone. Starts a three-node NATS cluster on loopback
# (scripts/nats-cluster.sh) and imserver in jetstream mode, runs W2 P=100
# for 10 s, stops imserver, wipes its data dir, starts it again and prints
# the time to its listener and imserver's own "applied at start" line.
# With TRIM=1 the node stores a snapshot after the run (cluster.trim_at_percent
# 1, looked at every second) and the streams are trimmed below it, so the
# rebuild restores the snapshot instead of reading every entry; the
# snapshot's own line is printed too.
# Stops what it started, by PID; prints only.
#
#   bench/cluster_rebuild.sh [--bin-dir DIR]   (default build-bench; PARTITIONS=64, TRIM=0)
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=build-bench
[[ ${1:-} == --bin-dir ]] && bin_dir=$2
imserver=$(realpath "$bin_dir/imserver")
imbench=$(realpath "$bin_dir/imbench")
work=$(mktemp -d /tmp/imrebuild-XXXXXX)
secret=bench-secret-0123456789abcdef0123456789
pid=""
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  bash scripts/nats-cluster.sh stop "$work/nats" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
urls=$(bash scripts/nats-cluster.sh start "$work/nats" 3)
cat >"$work/im.toml" <<TOML
[server]
listen = "127.0.0.1:0"
ws_listen = ""
[admin]
listen = ""
[auth]
mode = "jwt"
jwt_secret = "$secret"
[storage]
data_dir = "$work/data"
[limits]
messages_per_second = 10000000
burst = 10000000
[cluster]
mode = "jetstream"
nats_urls = [$(sed 's/[^,]*/"&"/g; s/,/, /g' <<<"$urls")]
partitions = ${PARTITIONS:-64}
stream_max_bytes = 104857600
trim_at_percent = $([[ ${TRIM:-0} == 1 ]] && echo 1 || echo 0)
trim_check_s = 1
snapshot_max_bytes = 1073741824
[log]
level = "info"
TOML
start() {
  : >"$work/out"
  "$imserver" --config "$work/im.toml" >"$work/out" 2>>"$work/err" &
  pid=$!
  for _ in $(seq 1 1200); do
    port=$(awk '/listening tcp/ {n=split($4, a, ":"); print a[n]}' "$work/out")
    [[ -n $port ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "imserver did not start:"; tail -5 "$work/err"; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=""; }

start
"$imbench" --port "$port" --server-pid "$pid" --secret "$secret" --scenario w2 --pairs 100 --window 100 --duration 10 |
  grep -E '^  (delivered|delivered_per_s|latency_p99_ms) '
if [[ ${TRIM:-0} == 1 ]]; then
  # The run's last entries are in the streams; one snapshot taken after them.
  before=$(grep -c 'snapshot .* stored' "$work/err" || true)
  for _ in $(seq 1 1200); do
    (($(grep -c 'snapshot .* stored' "$work/err" || true) > before)) && break
    sleep 0.1
  done
  grep 'snapshot .* stored' "$work/err" | tail -1
fi
stop
echo "data dir $(du -sh "$work/data" | cut -f1), JetStream store per NATS node $(du -sh "$work/nats/n1/js" | cut -f1)"
rm -rf "$work/data"
t0=$(date +%s%N)
start
t1=$(date +%s%N)
echo "rebuilt from the streams: listening after $(((t1 - t0) / 1000000)) ms"
grep -E 'snapshot restored|applied at start' "$work/err" | tail -2
stop
