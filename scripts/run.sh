#!/usr/bin/env bash
# Installs what is missing, builds imserver and the web page, and starts
# imserver on config/im.toml (or on the config given as the first argument).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIM_BUILD_TESTS=OFF >/dev/null
cmake --build build -j2 --target imserver imcli
# The web page's script (web/public/app.js), bundled from the TypeScript SDK
# with the npm packages of the committed lockfiles (docs/web.md).
# npm ci again when the lockfile changed since the last install.
for dir in clients/js web; do
  if [[ ! -f $dir/node_modules/.package-lock.json || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
(cd web && npm run --silent build)
config=${1:-config/im.toml}
ws=$(sed -n 's/^[[:space:]]*ws_listen[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$config" | head -n 1)
if [[ -n $ws ]]; then
  echo "imserver: the web page is at http://${ws}/ (server.ws_listen of $config; https with TLS)"
fi
exec ./build/imserver --config "$config"
