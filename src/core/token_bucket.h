#pragma once
// A token bucket in 8 bytes, for the per-connection request rate
// (limits.messages_per_second, limits.burst). Not thread safe: one owner.

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace im::core {

class TokenBucket {
 public:
  explicit TokenBucket(float burst = 0) : tokens_(burst) {}

  // Takes one token at `now_ms` (a loop clock). 0: taken. Otherwise the
  // milliseconds until one will be there.
  std::uint32_t take(std::uint32_t now_ms, std::uint32_t rate_per_s, std::uint32_t burst) {
    const std::uint32_t elapsed = now_ms - last_ms_;
    last_ms_ = now_ms;
    tokens_ = std::min(static_cast<float>(burst), tokens_ + static_cast<float>(elapsed) * rate_per_s / 1000.0f);
    if (tokens_ >= 1.0f) {
      tokens_ -= 1.0f;
      return 0;
    }
    return std::max<std::uint32_t>(1, static_cast<std::uint32_t>(std::ceil((1.0f - tokens_) * 1000.0f / rate_per_s)));
  }

 private:
  float tokens_;
  std::uint32_t last_ms_ = 0;
};

}  // namespace im::core
