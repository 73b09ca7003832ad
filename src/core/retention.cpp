#include "core/retention.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "common/clock.h"

#include <spdlog/spdlog.h>

#include "proto/im.pb.h"

namespace im::core {
namespace {

constexpr auto kFirstRun = std::chrono::minutes(1);
constexpr auto kInterval = std::chrono::hours(1);
constexpr std::int64_t kDayMs = 86400000;

// A stored Message older than `cutoff_ms` (rows that do not parse are kept).
bool older_than(std::string_view row, std::int64_t cutoff_ms) {
  v1::Message m;
  return m.ParseFromArray(row.data(), static_cast<int>(row.size())) && m.server_time_ms() < cutoff_ms;
}

}  // namespace

Retention::Retention(const StorageConfig& config, store::Store& store, ChangedMessages& changes)
    : config_(config), store_(store), changes_(changes) {
  thread_ = std::thread([this] {
    std::unique_lock lock(mutex_);
    auto next = std::chrono::steady_clock::now() + kFirstRun;
    while (!wake_.wait_until(lock, next, [this] { return stopping_; })) {
      lock.unlock();
      const std::size_t removed = run_once(wall_ms());
      if (removed > 0) spdlog::info("retention: {} expired rows deleted", removed);
      lock.lock();
      next = std::chrono::steady_clock::now() + kInterval;
    }
  });
}

Retention::~Retention() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::size_t Retention::run_once(std::int64_t now_ms) {
  const std::int64_t inbox_cutoff = now_ms - std::int64_t{config_.inbox_retention_days} * kDayMs;
  const std::int64_t history_cutoff = now_ms - std::int64_t{config_.history_retention_days} * kDayMs;
  std::size_t removed =
      store_.expire_oldest(store::Cf::kInbox, [&](std::string_view row) { return older_than(row, inbox_cutoff); });
  removed +=
      store_.expire_oldest(store::Cf::kHistory, [&](std::string_view row) { return older_than(row, history_cutoff); });
  return removed + expire_changes(std::min(inbox_cutoff, history_cutoff));
}

std::size_t Retention::expire_changes(std::int64_t cutoff_ms) {
  // Few rows (one per recall or edit): all read, the old ones deleted.
  std::vector<std::uint64_t> old;
  auto scanned = store_.scan_changes([&](std::uint64_t msg_id, std::string_view row) {
    if (older_than(row, cutoff_ms)) old.push_back(msg_id);
    return true;
  });
  if (!scanned) {
    spdlog::warn("retention: the changed messages could not be read: {}", scanned.error().message);
    return 0;
  }
  if (old.empty()) return 0;
  store::Batch batch(store_);
  for (std::uint64_t id : old) batch.del_change(id);
  if (auto written = store_.write(batch); !written) {
    spdlog::warn("retention: the changed messages could not be expired: {}", written.error().message);
    return 0;
  }
  for (std::uint64_t id : old) changes_.remove(id);
  return old.size();
}

}  // namespace im::core
