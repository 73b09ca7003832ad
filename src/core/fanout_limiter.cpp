#include "core/fanout_limiter.h"

#include <algorithm>
#include <cmath>
#include <functional>

namespace im::core {

std::uint32_t FanoutLimiter::take(std::string_view uid, std::uint64_t rows, std::chrono::steady_clock::time_point now) {
  if (rows == 0) return 0;
  const double rate = rate_.load(std::memory_order_relaxed);
  const double burst = 2 * rate;
  auto refill = [&](const Bucket& b) {
    const double seconds = std::chrono::duration<double>(now - b.last).count();
    return std::min(burst, b.tokens + std::max(0.0, seconds) * rate);
  };
  Stripe& s = stripes_[std::hash<std::string_view>{}(uid) % kStripes];
  std::lock_guard lock(s.mu);
  auto it = s.buckets.find(std::string(uid));
  const double tokens = it == s.buckets.end() ? burst : refill(it->second);
  // A request larger than the burst needs a full bucket, and leaves a debt.
  const double need = std::min(static_cast<double>(rows), burst);
  // The wait is capped at an hour (a huge debt under a tiny rate).
  if (tokens < need) return static_cast<std::uint32_t>(std::clamp(std::ceil((need - tokens) * 1000.0 / rate), 1.0, 3.6e6));
  if (it == s.buckets.end()) {
    if (s.buckets.size() >= s.prune_at) {
      // Buckets that have filled up again carry nothing.
      std::erase_if(s.buckets, [&](const auto& entry) { return refill(entry.second) >= burst; });
      s.prune_at = std::max<std::size_t>(1024, 2 * s.buckets.size());
    }
    it = s.buckets.emplace(std::string(uid), Bucket{}).first;
  }
  it->second.tokens = tokens - static_cast<double>(rows);
  it->second.last = now;
  return 0;
}

std::size_t FanoutLimiter::tracked() const {
  std::size_t n = 0;
  for (const Stripe& s : stripes_) {
    std::lock_guard lock(s.mu);
    n += s.buckets.size();
  }
  return n;
}

}  // namespace im::core
