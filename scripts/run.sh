#!/usr/bin/env bash
# Installs what is missing, builds imserver and the web page, and starts
# imserver on config/im.toml (or on the config given as the first argument).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIM_BUILD_TESTS=OFF >/dev/null
cmake --build build -j2 --target imserver
# The web page's script (web/public/app.js), bundled from the TypeScript SDK
# with the npm packages of the committed lockfiles (docs/web.md).
for dir in clients/js web; do
  [[ -d $dir/node_modules ]] || (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
done
(cd web && npm run --silent build)
echo "imserver: the web page is at http://127.0.0.1:9701/ (server.ws_listen of config/im.toml)"
exec ./build/imserver --config "${1:-config/im.toml}"
