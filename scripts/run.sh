#!/usr/bin/env bash
# Installs what is missing, builds, and starts imserver on config/im.toml
# (or on the config given as the first argument).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIM_BUILD_TESTS=OFF >/dev/null
cmake --build build -j2 --target imserver
exec ./build/imserver --config "${1:-config/im.toml}"
