#pragma once
// Wall-clock time as the protocol carries it: milliseconds since the epoch.

#include <chrono>
#include <cstdint>

namespace im {

inline std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace im
