#pragma once
// A bounded wait for state that another process or thread settles (the
// server, a webhook receiver), after Redis's `wait_for_condition`
// (tests/support/util.tcl): poll the condition every few milliseconds until
// it holds or the time is up, instead of sleeping a fixed time and hoping.
// A test that waits on what it can observe is as fast as the server allows
// and only fails when the condition never holds.

#include <algorithm>
#include <chrono>
#include <thread>

namespace im::test {

inline constexpr std::chrono::milliseconds kWaitTimeout{5000};
// For work the server does at a low priority (the search indexer runs at
// nice 19): on a loaded host (ctest -j2, a build beside the tests) it gets
// only what is left, and CI saw it take over 5 s. A passing wait returns as
// soon as its condition holds, so the longer bound costs nothing there.
inline constexpr std::chrono::milliseconds kBackgroundWait{120000};
inline constexpr std::chrono::milliseconds kPollInterval{10};

// Calls `holds` every `every` until it returns true or `timeout` has passed;
// whether it held. `holds` is always called once more at the deadline, so a
// slow poll never costs the last chance. It runs on the calling thread and
// may use Catch2 assertions.
template <class Predicate>
[[nodiscard]] bool wait_until(Predicate holds, std::chrono::milliseconds timeout = kWaitTimeout,
                              std::chrono::milliseconds every = kPollInterval) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (holds()) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(every, deadline - now));
  }
}

}  // namespace im::test
