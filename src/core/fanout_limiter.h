#pragma once
// limits.fanout_rows_per_second (PROTOCOL 5, "Details"): each user's
// requests may cause at most that many inbox rows a second, with a burst of
// twice that. A request is charged its rows before anything is written;
// one that costs more than the burst goes through when the user's bucket is
// full and leaves it in debt. Only users who spent rows in the last
// seconds take memory: a full bucket carries nothing and is dropped.
//
// Thread safe (striped locks): the cost is known on whichever shard plans
// the write (the sender's for C2C, the group's for a group).

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace im::core {

class FanoutLimiter {
 public:
  explicit FanoutLimiter(std::uint32_t rows_per_second) { set_rate(rows_per_second); }

  void set_rate(std::uint32_t rows_per_second) { rate_.store(rows_per_second, std::memory_order_relaxed); }
  // Charges `rows` to `uid` at `now`: 0 when granted, otherwise the
  // milliseconds until they would be (nothing charged then).
  std::uint32_t take(std::string_view uid, std::uint64_t rows,
                     std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());
  // Users with a bucket in memory (tests, metrics).
  std::size_t tracked() const;

 private:
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point last;
  };
  struct Stripe {
    mutable std::mutex mu;
    std::unordered_map<std::string, Bucket> buckets;
    std::size_t prune_at = 1024;
  };
  static constexpr std::size_t kStripes = 16;

  std::atomic<std::uint32_t> rate_{0};
  std::array<Stripe, kStripes> stripes_;
};

}  // namespace im::core
