#!/usr/bin/env bash
# The Debian package, end to end, on a fresh Debian 12 as root (it installs
# and purges a system package: run it in a throw-away machine or chroot):
#   ../shared/tools/fresh-debian 'bash scripts/package-test.sh'
# Builds imserver_<version>_amd64.deb with CPack, installs it with apt, checks
# the user, the secrets and the files, starts imserver as its systemd unit
# would (User=imserver, EnvironmentFile=/etc/imserver/env; a chroot has no
# systemd), logs in and sends a message with imcli, then purges the package
# and checks that the user, the secrets and the data are gone. IM_DEB=FILE
# tests a package built already.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [[ -n ${IM_DEB:-} ]]; then
  deb=$IM_DEB  # a package built already
else
  # The web page's script, for /usr/share/imserver/web.
  for dir in clients/js web; do (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error); done
  (cd web && npm run --silent build)
  cmake -S . -B build-pkg -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIM_BUILD_TESTS=OFF >/dev/null
  cmake --build build-pkg -j2 --target imserver imcli
  (cd build-pkg && cpack >/dev/null)
  deb=$(ls build-pkg/imserver_*_amd64.deb)
fi
echo "package-test: built $deb ($(du -h "$deb" | cut -f1))"

fail() { echo "package-test: FAILED: $*" >&2; exit 1; }
apt-get install -y -qq "./$deb" >/dev/null
getent passwd imserver >/dev/null || fail "no imserver user"
[[ $(stat -c '%U:%G %a' /etc/imserver/env) == "root:imserver 640" ]] || fail "/etc/imserver/env: $(stat -c '%U:%G %a' /etc/imserver/env)"
grep -q '^IMSERVER_AUTH__JWT_SECRET=[0-9a-f]\{64\}$' /etc/imserver/env || fail "no generated JWT secret"
grep -q '^IMSERVER_ADMIN__API_KEY=[0-9a-f]\{64\}$' /etc/imserver/env || fail "no generated admin key"
dpkg-query -W -f='${Conffiles}\n' imserver | grep -q /etc/imserver/im.toml || fail "im.toml is not a conffile"
grep -q LimitNOFILE /lib/systemd/system/imserver.service || fail "no systemd unit"
[[ -f /usr/share/imserver/web/app.js ]] || fail "no web page"
/usr/bin/imserver --check-config --config /etc/imserver/im.toml >/dev/null 2>&1 && fail "the config passed without its secrets"
set -a; . /etc/imserver/env; set +a
/usr/bin/imserver --check-config --config /etc/imserver/im.toml || fail "the installed config with its secrets"

# As the unit runs it.
install -d -o imserver -g imserver -m 0750 /var/lib/imserver
(cd /var/lib/imserver && exec runuser -u imserver -- /usr/bin/imserver --config /etc/imserver/im.toml) >/tmp/imserver.out 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:9702/healthz >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:9702/healthz >/dev/null || { cat /tmp/imserver.out; fail "the server did not start"; }
grep -q "malloc: jemalloc " /tmp/imserver.out || { cat /tmp/imserver.out; fail "the packaged server does not run on jemalloc"; }
token() { curl -sf -H "Authorization: Bearer $IMSERVER_ADMIN__API_KEY" -d "{\"uid\":\"$1\"}" http://127.0.0.1:9702/v1/tokens | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }
imcli --uid alice --token "$(token alice)" send bob "hello from the package" >/dev/null || fail "imcli send"
imcli --uid bob --token "$(token bob)" pull --json | grep -q '"body":"hello from the package"' || fail "bob did not get it"
imcli --uid bob --token "not-a-token" send alice x 2>/dev/null && fail "a bad token was taken"
curl -sf http://127.0.0.1:9701/ | grep -q '<title>imserver chat</title>' || fail "the web page is not served"
[[ $(stat -c %U /var/lib/imserver/CURRENT) == imserver ]] || fail "the data is not the service user's"
kill "$pid"; wait "$pid" || true
trap - EXIT

apt-get purge -y -qq imserver >/dev/null
getent passwd imserver >/dev/null && fail "the user is still there"
[[ -e /etc/imserver ]] && fail "/etc/imserver is still there"
[[ -e /var/lib/imserver ]] && fail "/var/lib/imserver is still there"
[[ -e /usr/bin/imserver ]] && fail "the binary is still there"
echo "package-test: PASSED"
