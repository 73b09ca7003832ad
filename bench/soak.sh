#!/usr/bin/env bash
# The soak of docs/testing.md: one imserver under mixed load (C2C and group
# SENDs, group changes, PULLs, HISTORY, REPORTs, logins, the admin API) plus
# the hostile probes (tests/stress/probes.h) for a given time, sampling its
# RSS, open files, WAL size and outbox depth every 10 s; prints the table and
# a first/last/max summary (imstress soak does all of it: it starts and
# stops its own two servers, on loopback, by PID).
#
#   bench/soak.sh                     600 s; builds imserver and imstress in build-soak (RelWithDebInfo)
#   bench/soak.sh --duration 60       a shorter run
#   bench/soak.sh --bin-dir DIR       imserver from DIR, imstress from DIR/tests (a build with tests on)
#   bench/soak.sh --record            also appends the table to bench/RESULTS.md ("Soak" section)
#   bench/soak.sh -- --seed N ...     anything after -- goes to `imstress soak` (--seed, --actors,
#                                     --probe-scale, --probe-budget, --probes, --sample)
#
# Changes nothing on the machine: it raises its own soft open-file limit to
# the hard one (10,000 unauthenticated sockets and the floods need it).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=600
bin_dir=""
record=0
extra=()
while (($#)); do
  case "$1" in
    --duration) duration=$2; shift ;;
    --bin-dir) bin_dir=$2; shift ;;
    --record) record=1 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "usage: bench/soak.sh [--duration S] [--bin-dir DIR] [--record] [-- imstress soak options]" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $bin_dir ]]; then
  cmake -S . -B build-soak -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIM_BUILD_TESTS=ON >/dev/null
  cmake --build build-soak -j2 --target imserver imstress >/dev/null
  bin_dir=build-soak
fi
imserver=$(realpath "$bin_dir/imserver")
imstress=$(realpath "$bin_dir/tests/imstress")
ulimit -n "$(ulimit -Hn)"

out=$(mktemp /tmp/imsoak-XXXXXX.md)
trap 'rm -f "$out"' EXIT
rc=0
"$imstress" soak --imserver "$imserver" --duration "$duration" --out "$out" ${extra[@]+"${extra[@]}"} || rc=$?

if ((record)) && [[ -s $out ]]; then
  {
    echo
    echo "## Soak (issue 11, item 10)"
    echo
    echo "\`bench/soak.sh --duration $duration${extra[*]:+ -- ${extra[*]}}\`, $(date -u +%Y-%m-%d), commit" \
         "$(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores" \
         "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), imstress and imserver on the" \
         "same machine over loopback; exit status $rc."
    echo
    cat "$out"
  } >>bench/RESULTS.md
  echo "appended to bench/RESULTS.md"
fi
exit "$rc"
