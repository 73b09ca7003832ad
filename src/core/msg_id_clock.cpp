#include "core/msg_id_clock.h"

#include <algorithm>
#include <string>

#include "cluster/partition_log.h"
#include "common/clock.h"
#include "store/keys.h"

namespace im::core {
namespace {

constexpr std::uint64_t kEpochMs = 1704067200000ull;  // 2024-01-01T00:00:00Z
constexpr std::uint64_t kReserveMs = 60000;
constexpr std::uint64_t kCounterLimit = 1u << 14;

std::string meta_name(unsigned shard) {
  return std::string(store::kIdReservationPrefix) + std::to_string(shard);
}

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(wall_ms()) - kEpochMs;
}

}  // namespace

std::uint64_t MsgIdClock::first_id_at(std::int64_t ms) {
  if (ms <= static_cast<std::int64_t>(kEpochMs)) return 0;
  return (static_cast<std::uint64_t>(ms) - kEpochMs) << 22;
}

MsgIdClock::MsgIdClock(unsigned shard, store::Store& store, cluster::PartitionLog* log, std::uint64_t reserved_ms)
    : shard_(shard), store_(&store), log_(log), last_ms_(reserved_ms), reserved_ms_(reserved_ms) {}

Result<std::int64_t> MsgIdClock::earlier_runs_below_ms(store::Store& store) {
  std::uint64_t highest = 0;
  auto scanned = store.scan_id_reservations([&](std::uint64_t reserved_ms) {
    highest = std::max(highest, reserved_ms);
    return true;
  });
  if (!scanned) return scanned.error();
  return std::max<std::int64_t>(wall_ms(), static_cast<std::int64_t>(highest + kEpochMs));
}

Result<MsgIdClock> MsgIdClock::open(unsigned shard, store::Store& store, cluster::PartitionLog* log) {
  auto reserved = store.get_meta(meta_name(shard));
  if (!reserved) return reserved.error();
  MsgIdClock clock(shard, store, log, reserved->value_or(0));
  // Every id an earlier run handed out lies below its reservation.
  if (auto r = clock.reserve(std::max(clock.last_ms_, now_ms())); !r) return r.error();
  return clock;
}

Result<Ok> MsgIdClock::reserve(std::uint64_t from_ms) {
  store::Batch b(*store_);
  b.put_meta(meta_name(shard_), from_ms + kReserveMs);
  if (auto written = cluster::durable_write(*store_, log_, b); !written) return written.error();
  reserved_ms_ = from_ms + kReserveMs;
  return Ok{};
}

Result<std::uint64_t> MsgIdClock::next() {
  std::uint64_t ms = now_ms();
  std::uint64_t counter = 0;
  if (ms <= last_ms_) {
    ms = last_ms_;
    counter = counter_ + 1;
    if (counter >= kCounterLimit) {
      ++ms;
      counter = 0;
    }
  }
  // Renewed half-way; an id at or past a reservation that could not be
  // renewed is refused.
  if (ms + kReserveMs / 2 > reserved_ms_) {
    if (auto r = reserve(ms); !r && ms >= reserved_ms_) return r.error();
  }
  last_ms_ = ms;
  counter_ = counter;
  return (ms << 22) | (static_cast<std::uint64_t>(shard_ & 0xFF) << 14) | counter;
}

}  // namespace im::core
