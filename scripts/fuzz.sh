#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ (build-fuzz: clang, ASan + UBSan)
# and runs each for IM_FUZZ_SECONDS (default 60) over a copy of its seed
# corpus plus its kept regressions, two at a time. Fails on any crash, leak,
# UB report, failed check or timeout, and prints the reproducer's path.
# A slow-unit artifact (libFuzzer's note that one input took over 10 s) is
# replayed alone instead: a host pause stalls every process at once (CI saw
# both harnesses of a pair report the same 26 s), so only a replay that
# fails or takes over 10 s again counts.
# Usage: scripts/fuzz.sh [--build-only] [harness...]   (default: every harness)
# See docs/testing.md for running one locally and keeping a regression.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${IM_FUZZ_SECONDS:-60}
build=${IM_FUZZ_BUILD:-build-fuzz}
all=(frame_decoder decompress ws jwt config dispatcher admin)
build_only=0
if [[ ${1:-} == --build-only ]]; then
  build_only=1
  shift
fi
harnesses=("$@")
((${#harnesses[@]})) || harnesses=("${all[@]}")

# The largest input each harness is given (bytes).
max_len() {
  case "$1" in
    jwt) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

echo "fuzz: building ${build} (clang, ASan + UBSan, libFuzzer)"
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIM_FUZZ=ON -DIM_BUILD_TESTS=OFF \
  -DIM_WERROR=OFF >/dev/null
targets=()
for h in "${harnesses[@]}"; do targets+=(--target "fuzz_$h"); done
cmake --build "$build" -j2 "${targets[@]}"
((build_only == 0)) || exit 0

runs="$build/fuzz-runs"
rm -rf "$runs"
mkdir -p "$runs"

# Runs a harness binary with the sanitizers' options.
sanitized() {
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$@"
}

# Runs one harness in the background; its outcome lands in $runs/<h>/status.
start() {
  local h=$1 dir="$runs/$1"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp fuzz/corpus/"$h"/* "$dir/corpus/"
  local dirs=("$dir/corpus")
  if [[ -d fuzz/regressions/$h ]] && compgen -G "fuzz/regressions/$h/*" >/dev/null; then
    dirs+=("fuzz/regressions/$h")
  fi
  (
    set +e
    sanitized "$build/fuzz/fuzz_$h" -max_total_time="$seconds" -max_len="$(max_len "$h")" -timeout=60 \
      -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "${dirs[@]}" >"$dir/log" 2>&1
    echo $? >"$dir/status"
  ) &
}

# Reports one finished harness; returns non-zero when it found something.
report() {
  local h=$1 dir="$runs/$1" status
  status=$(cat "$dir/status")
  local execs cov
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log" | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$dir/log" | tail -1 || true)
  # A slow unit is replayed alone under libFuzzer's slow-unit threshold
  # (10 s): one that is slow again fails the run; one that is not is moved
  # aside (kept for a look) and does not count.
  local a slow_ok=1
  for a in "$dir"/artifacts/slow-unit-*; do
    [[ -e $a ]] || continue
    if sanitized "$build/fuzz/fuzz_$h" -timeout=10 -rss_limit_mb=4096 "$a" >"$a.replay.log" 2>&1; then
      mkdir -p "$dir/slow-but-fast-alone"
      mv "$a" "$a.replay.log" "$dir/slow-but-fast-alone/"
      echo "fuzz: $h: $(basename "$a") ran in under 10 s alone (a host pause, not the input); kept in $dir/slow-but-fast-alone"
    else
      echo "fuzz: $h: $(basename "$a") was slow again alone (over 10 s, or failed); its replay: $a.replay.log"
      tail -n 20 "$a.replay.log"
      slow_ok=0
    fi
  done
  if [[ $status == 0 && $slow_ok == 1 ]] && ! compgen -G "$dir/artifacts/*" >/dev/null; then
    echo "fuzz: $h passed (${execs:-?} runs in ${seconds} s, ${cov:-no coverage line})"
    return 0
  fi
  echo "fuzz: $h FAILED (exit $status); the end of its log ($dir/log):"
  tail -n 60 "$dir/log"
  for a in "$dir"/artifacts/*; do
    [[ -e $a && $a != *.replay.log ]] || continue
    echo "fuzz: reproducer: $a"
    echo "fuzz:   replay:   $build/fuzz/fuzz_$h $a"
    echo "fuzz:   keep it:  cp $a fuzz/regressions/$h/   (see docs/testing.md)"
  done
  return 1
}

passed=0
failed=0
for ((i = 0; i < ${#harnesses[@]}; i += 2)); do
  pair=("${harnesses[@]:i:2}")
  echo "fuzz: running ${pair[*]} for ${seconds} s"
  for h in "${pair[@]}"; do start "$h"; done
  wait
  for h in "${pair[@]}"; do
    if report "$h"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
done
echo "fuzz: $passed passed, $failed failed"
((failed == 0))
