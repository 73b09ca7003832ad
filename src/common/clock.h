#pragma once
// Wall-clock time as the protocol carries it: milliseconds since the epoch;
// and a monotonic millisecond clock for intervals measured in memory.

#include <chrono>
#include <cstdint>

namespace im {

inline std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// std::chrono::steady_clock in milliseconds (never goes back; its epoch is
// arbitrary, so only differences mean anything).
inline std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace im
