#!/usr/bin/env bash
# Installs, non-interactively, every Debian 12 package that imserver's build,
# tests and benchmarks need, and only those that are missing. Run as root.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake make pkg-config python3 git ca-certificates
  # libraries (see docs/architecture.md, "Dependencies")
  libasio-dev libssl-dev libprotobuf-dev protobuf-compiler librocksdb-dev
  libfmt-dev libspdlog-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev
  libcpp-httplib-dev libcurl4-openssl-dev libzstd-dev libjemalloc-dev libxapian-dev
  # the I/O loops' batched reads and writes (src/net/socket_ring.h)
  liburing-dev
  # cluster mode (docs/cluster.md): the NATS C client, and nats-server for its tests
  libnats-dev nats-server
  # tmux drives imcli's interactive mode in the tests
  tmux
  # the Debian package (cpack: dpkg-shlibdeps needs file)
  dpkg-dev file
  # tests (promtool, from prometheus, checks the /metrics exposition)
  catch2 curl prometheus
  # third-party WebSocket and TLS clients (tests/python, tests/js): Python's
  # websockets and protobuf, the openssl CLI, headless Chromium, Node and npm
  python3-websockets python3-protobuf openssl chromium nodejs npm
  # the sanitized test build and fuzzing (scripts/test.sh, scripts/fuzz.sh):
  # clang, libFuzzer and the sanitizer runtimes (libclang-rt-14-dev),
  # llvm-symbolizer for readable reports (llvm)
  clang libclang-rt-14-dev llvm
)

# Node and npm may come from elsewhere than Debian (a newer Node ships its own
# npm, which Debian's npm package would conflict with): a working command is
# enough for them.
provided_by_command() {
  case "$1" in
    nodejs) command -v node >/dev/null ;;
    npm) command -v npm >/dev/null ;;
    *) return 1 ;;
  esac
}

missing=()
for p in "${packages[@]}"; do
  provided_by_command "$p" && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [[ $(id -u) != 0 ]]; then
    echo "setup: missing packages and not root; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: every package is installed"
fi
