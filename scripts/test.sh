#!/usr/bin/env bash
# Installs what is missing, builds with warnings as errors, runs the whole
# test suite; then the same under AddressSanitizer + UBSan (built by clang).
# IM_SKIP_SANITIZE=1 skips the sanitizer pass (for a quick local run).
# Then every libFuzzer harness of fuzz/ for IM_FUZZ_SECONDS (60) each, two at
# a time (scripts/fuzz.sh); IM_SKIP_FUZZ=1 skips that.
# The later stages' builds run behind the first test run at the lowest CPU
# priority, in the CPU the tests leave idle (docs/testing.md, "CI time").
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage prints the seconds since the start, so a slow CI run shows where.
started=$SECONDS
stage() { echo "== $1 (at $((SECONDS - started)) s)"; }

sanitize=$([[ "${IM_SKIP_SANITIZE:-0}" == 1 ]] && echo 0 || echo 1)
fuzz=$([[ "${IM_SKIP_FUZZ:-0}" == 1 ]] && echo 0 || echo 1)

# One build job at a time runs behind the tests, at nice 19 and in the
# idle scheduling class (SCHED_IDLE), its output in a log. Nice 19 alone is
# not low enough: the server's search indexer runs at nice 19 too, and
# shared the cores with the build as an equal, so tests waiting on the
# index timed out (docs/testing.md, "CI time"). In a process group of its
# own (job control on for its start), so that it can be reniced and
# stopped as a whole, but in this session: with the kernel's autogroups
# (sched_autogroup_enabled), a new session (setsid) would be a scheduling
# group of its own, where nice 19 no longer yields to the tests' session
# and the two would share the cores half and half.
behind_pid=
behind_name=
behind_log=
behind() {
  behind_name=$1
  behind_log=$2
  shift 2
  echo "== $behind_name: behind the tests (idle class), log in $behind_log (at $((SECONDS - started)) s)"
  set -m
  # Its stdin is not the script's: with job control on, bash leaves it so.
  nice -n 19 chrt --idle 0 "$@" </dev/null >"$behind_log" 2>&1 &
  behind_pid=$!
  set +m
}
# Shows why the build behind failed, and ends the run.
behind_failed() {
  echo "$behind_name FAILED (exit $1); its first errors and the end of $behind_log:"
  grep -n -m 20 -E 'error:|Error [0-9]|CMake Error' "$behind_log" || true
  tail -n 80 "$behind_log"
  exit "$1"
}
# Waits for it, at nice 0 from now on (as root; it stays in the idle
# class, which is full speed once the tests are done); its failure ends
# the run.
await_behind() {
  [[ -n $behind_pid ]] || return 0
  local status=0
  renice --priority 0 --pgrp "$behind_pid" >/dev/null 2>&1 || true
  stage "$behind_name: the rest"
  wait "$behind_pid" || status=$?
  behind_pid=
  ((status == 0)) || behind_failed "$status"
}
# On exit (a test failed): a build still running is stopped; one that has
# ended is reported if it failed too.
stop_behind() {
  local rc=$?
  [[ -n $behind_pid ]] || return 0
  if jobs -rp | grep -qx "$behind_pid"; then
    kill -- "-$behind_pid" 2>/dev/null || true
    return 0
  fi
  local status=0
  wait "$behind_pid" || status=$?
  behind_pid=
  ((status == 0)) || { echo "the run had failed (exit $rc); the build behind the tests failed too:"; behind_failed "$status"; }
}
trap stop_behind EXIT

bash scripts/setup.sh
jobs=2

# Line tables only (-g1) in this build and the sanitized one (the fuzz
# build has its own flags): stack traces and perf keep file and line, and
# the builds take about a quarter less time (docs/testing.md).
stage "build (warnings as errors)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DIM_WERROR=ON -DIM_BUILD_TESTS=ON >/dev/null
cmake --build build -j"$jobs"

# What the later stages need is built behind the first test run: the
# sanitized build, then the fuzz build, one after the other. The sanitized
# build is clang's, which compiles this code at -O0 with ASan in about 60%
# of g++'s time (docs/testing.md, "CI time"); the first build is g++'s, as
# the README's and the package's are.
asan_build="cmake -S . -B build-asan -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG=-g1 -DIM_SANITIZE=ON -DIM_WERROR=ON -DIM_BUILD_TESTS=ON \
  && cmake --build build-asan -j$jobs"
fuzz_build="bash scripts/fuzz.sh --build-only"
# A tree another compiler configured is made again: CMake, told of a new
# compiler, would drop the cache and with it every other option given here
# (a build without sanitizers, once).
if [[ -f build-asan/CMakeCache.txt ]] && ! grep -q '^CMAKE_CXX_COMPILER:[A-Z]*=.*clang++$' build-asan/CMakeCache.txt; then
  rm -rf build-asan
fi
if ((sanitize && fuzz)); then
  mkdir -p build-asan
  behind "builds (ASan + UBSan, then fuzz)" build-asan/build.log bash -c "$asan_build && $fuzz_build"
elif ((sanitize)); then
  mkdir -p build-asan
  behind "build (ASan + UBSan)" build-asan/build.log bash -c "$asan_build"
elif ((fuzz)); then
  mkdir -p build-fuzz
  behind "fuzz build" build-fuzz/build.log bash -c "$fuzz_build"
fi
stage "tests"
ctest --test-dir build -j"$jobs" --output-on-failure --timeout 600

if ((sanitize)); then
  await_behind
  # Nothing behind the sanitized tests: with the fuzz build behind them, a
  # search retention test failed once (docs/testing.md, "CI time"). So the
  # fuzz build, if the first run's idle CPU did not finish it, ends here.
  stage "tests (ASan + UBSan)"
  # Without the SDK tests and the integration suite's second run in cluster
  # mode (label jetstream; cluster mode's own tests, tests/cluster, do run
  # sanitized): CI time.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir build-asan -j"$jobs" --output-on-failure --timeout 900 --label-exclude 'sdk|jetstream'
fi

if ((fuzz)); then
  await_behind
  stage "fuzz (libFuzzer, ASan + UBSan, ${IM_FUZZ_SECONDS:-60} s per harness)"
  bash scripts/fuzz.sh
fi
stage "done"
