#!/usr/bin/env bash
# Starts and stops a NATS JetStream cluster of N nodes (default 3) on free
# loopback ports, for cluster mode's tests, benchmarks and docs
# (docs/cluster.md). Everything lives in DIR: one folder per node with its
# config, JetStream store, log and PID; DIR/urls holds the client URLs,
# comma-separated, for `cluster.nats_urls`.
#
#   scripts/nats-cluster.sh start DIR [N]   start N nodes, wait until JetStream has a leader
#   scripts/nats-cluster.sh stop DIR        stop the nodes started in DIR (by their PIDs)
#   scripts/nats-cluster.sh kill DIR I      kill -9 node I (1..N)
#   scripts/nats-cluster.sh restart DIR I   start node I again on its ports and store
#   scripts/nats-cluster.sh restart DIR all start every node that is not running
#
# Loopback only; it stops only the processes it started, by the PIDs it wrote.
set -euo pipefail

die() { echo "nats-cluster: $*" >&2; exit 1; }
command -v nats-server >/dev/null || die "nats-server is not installed (scripts/setup.sh installs it)"

# Free loopback ports, as many as asked: bound to port 0, then released.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

node_up() {  # DIR I: start node I from its config, record its PID
  local dir=$1 i=$2
  nats-server -c "$dir/n$i/nats.conf" >>"$dir/n$i/stdout" 2>&1 &
  echo $! >"$dir/n$i/pid"
}

# JetStream is usable once the meta group has a leader and every node answers
# its health check.
wait_ready() {
  local dir=$1 n=$2 deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    local ok=1
    for ((i = 1; i <= n; i++)); do
      local m
      m=$(cat "$dir/n$i/http_port")
      running "$(cat "$dir/n$i/pid")" "$dir/n$i/nats.conf" || die "node $i exited: $(tail -3 "$dir/n$i/log" 2>/dev/null)"
      curl -fsS "http://127.0.0.1:$m/healthz" >/dev/null 2>&1 || { ok=0; break; }
      ((n == 1)) || curl -fsS "http://127.0.0.1:$m/jsz" 2>/dev/null | grep -q '"leader"' || { ok=0; break; }
    done
    ((ok)) && return 0
    sleep 0.2
  done
  die "JetStream not ready within 30 s (logs in $dir/n*/log)"
}

start() {
  local dir=$1 n=${2:-3}
  [[ $n =~ ^[1-9]$ ]] || die "N must be 1..9"
  mkdir -p "$dir"
  dir=$(realpath "$dir")
  [[ -e $dir/urls || -e $dir/nodes ]] && die "$dir already holds a cluster (stop it first)"
  local ports
  read -r -a ports <<<"$(free_ports $((3 * n)))"
  local routes="" urls=""
  for ((i = 1; i <= n; i++)); do
    routes+="nats-route://127.0.0.1:${ports[$((3 * (i - 1) + 1))]},"
    urls+="nats://127.0.0.1:${ports[$((3 * (i - 1)))]},"
  done
  for ((i = 1; i <= n; i++)); do
    local p=${ports[$((3 * (i - 1)))]} c=${ports[$((3 * (i - 1) + 1))]} m=${ports[$((3 * (i - 1) + 2))]}
    mkdir -p "$dir/n$i/js"
    echo "$p" >"$dir/n$i/port"
    echo "$m" >"$dir/n$i/http_port"
    cat >"$dir/n$i/nats.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$p
# One imserver batch is one message: a group fan-out slice of full copies
# needs several MB (docs/cluster.md).
max_payload: 16MB
http: 127.0.0.1:$m
log_file: "$dir/n$i/log"
jetstream {
  store_dir: "$dir/n$i/js"
  max_memory_store: 64MB
  max_file_store: 8GB
}
cluster {
  name: im
  listen: 127.0.0.1:$c
  routes: [${routes%,}]
}
CONF
    [[ $n == 1 ]] && sed -i '/^cluster {/,/^}/d' "$dir/n$i/nats.conf"
    node_up "$dir" "$i"
  done
  echo "$n" >"$dir/nodes"
  # A start that fails stops the nodes it started.
  trap 'stop "$dir" >/dev/null 2>&1' EXIT
  wait_ready "$dir" "$n"
  trap - EXIT
  echo "${urls%,}" >"$dir/urls"
  echo "${urls%,}"
}

stop() {
  local dir=$1
  [[ -f $dir/nodes ]] || die "$dir holds no cluster"
  local n pids=()
  n=$(cat "$dir/nodes")
  for ((i = 1; i <= n; i++)); do
    [[ -f $dir/n$i/pid ]] || continue
    local pid
    pid=$(cat "$dir/n$i/pid")
    running "$pid" "$dir/n$i/nats.conf" && kill -TERM "$pid" 2>/dev/null && pids+=("$pid:$dir/n$i/nats.conf")
  done
  # Each checked by its command line again before the KILL: a pid that
  # ended meanwhile may be another process's now.
  local deadline=$((SECONDS + 10)) entry
  for entry in "${pids[@]}"; do
    local pid=${entry%%:*} conf=${entry#*:}
    while running "$pid" "$conf" && ((SECONDS < deadline)); do sleep 0.1; done
    if running "$pid" "$conf"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -f "$dir/urls" "$dir/nodes"
}

# Whether PID runs (a zombie, killed and not yet reaped, does not), and is
# the nats-server of CONF when given (a PID file outlives its process, and
# the PID may have been reused since).
running() {
  [[ -r /proc/$1/stat ]] || return 1
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ $state != Z && -n $state ]] || return 1
  [[ -z ${2:-} ]] || tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

kill_node() {
  local dir=$1 i=$2 pid
  [[ -f $dir/n$i/pid ]] || die "no node $i in $dir"
  pid=$(cat "$dir/n$i/pid")
  running "$pid" "$dir/n$i/nats.conf" || return 0
  kill -KILL "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while running "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
  running "$pid" && die "node $i (PID $pid) still runs after SIGKILL"
  return 0
}

# Node I, or with I = all every node that is not running (after a kill of
# all of them: one alone would wait for the others).
restart_node() {
  local dir=$1 i=$2 n
  n=$(cat "$dir/nodes")
  if [[ $i == all ]]; then
    for ((i = 1; i <= n; i++)); do
      running "$(cat "$dir/n$i/pid")" "$dir/n$i/nats.conf" || node_up "$dir" "$i"
    done
  else
    [[ -f $dir/n$i/nats.conf ]] || die "no node $i in $dir"
    running "$(cat "$dir/n$i/pid")" "$dir/n$i/nats.conf" && die "node $i is running"
    node_up "$dir" "$i"
  fi
  wait_ready "$dir" "$n"
}

case "${1:-}" in
  start) (($# >= 2)) || die "usage: start DIR [N]"; start "$2" "${3:-3}" ;;
  stop) (($# == 2)) || die "usage: stop DIR"; stop "$2" ;;
  kill) (($# == 3)) || die "usage: kill DIR I"; kill_node "$2" "$3" ;;
  restart) (($# == 3)) || die "usage: restart DIR I|all"; restart_node "$2" "$3" ;;
  *) die "usage: $0 start DIR [N] | stop DIR | kill DIR I | restart DIR I|all" ;;
esac
