#!/usr/bin/env bash
# Installs what is missing, builds with warnings as errors, runs the whole
# test suite; then the same under AddressSanitizer + UBSan.
# IM_SKIP_SANITIZE=1 skips the sanitizer pass (for a quick local run).
# Then every libFuzzer harness of fuzz/ for IM_FUZZ_SECONDS (60) each, two at
# a time (scripts/fuzz.sh); IM_SKIP_FUZZ=1 skips that.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage prints the seconds since the start, so a slow CI run shows where.
started=$SECONDS
stage() { echo "== $1 (at $((SECONDS - started)) s)"; }

bash scripts/setup.sh
jobs=2

# Line tables only (-g1) in both builds: stack traces and perf keep file and
# line, and the builds take about a quarter less time (docs/testing.md).
stage "build (warnings as errors)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DIM_WERROR=ON -DIM_BUILD_TESTS=ON >/dev/null
cmake --build build -j"$jobs"
stage "tests"
ctest --test-dir build -j"$jobs" --output-on-failure --timeout 600

if [[ "${IM_SKIP_SANITIZE:-0}" != 1 ]]; then
  stage "build (ASan + UBSan)"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1" -DIM_SANITIZE=ON -DIM_WERROR=ON \
    -DIM_BUILD_TESTS=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  stage "tests (ASan + UBSan)"
  # Without the SDK tests and the integration suite's second run in cluster
  # mode (label jetstream; cluster mode's own tests, tests/cluster, do run
  # sanitized): CI time.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir build-asan -j"$jobs" --output-on-failure --timeout 900 --label-exclude 'sdk|jetstream'
fi

if [[ "${IM_SKIP_FUZZ:-0}" != 1 ]]; then
  stage "fuzz (libFuzzer, ASan + UBSan, ${IM_FUZZ_SECONDS:-60} s per harness)"
  bash scripts/fuzz.sh
fi
stage "done"
