#include "core/retention.h"

#include <chrono>

#include "common/clock.h"
#include "core/msg_id_clock.h"

#include <spdlog/spdlog.h>

#include "proto/im.pb.h"

namespace im::core {
namespace {

constexpr auto kFirstRun = std::chrono::minutes(1);
constexpr auto kInterval = std::chrono::hours(1);
constexpr std::int64_t kDayMs = 86400000;
// Change rows outlive the inbox retention by this much: a copy written late
// (a fan-out retried after an outage) is still answered changed.
constexpr std::int64_t kChangeGraceMs = kDayMs;

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
  // An inbox's newest row stays, however old: a copy of a changed message
  // kept so is written changed, before its change row goes below.
  std::size_t removed = store_.expire_oldest(
      store::Cf::kInbox, [&](std::string_view row) { return older_than(row, inbox_cutoff); },
      [&](std::string_view row) -> std::optional<std::string> {
        auto changed = changes_.changed_row(row);
        if (!changed || !*changed || **changed == row) return std::nullopt;  // a read error: the next pass
        return std::move(*changed);
      });
  removed +=
      store_.expire_oldest(store::Cf::kHistory, [&](std::string_view row) { return older_than(row, history_cutoff); });
  expire_changes(inbox_cutoff - kChangeGraceMs);
  return removed;
}

void Retention::expire_changes(std::int64_t cutoff_ms) {
  // Only inbox copies need a change row (history rows are rewritten), and
  // msg_ids grow with time: the rows of messages older than the inbox
  // retention (and a grace for copies written late) go in one range delete.
  const std::uint64_t below = MsgIdClock::first_id_at(cutoff_ms);
  if (below == 0) return;
  if (auto deleted = store_.del_changes_below(below); !deleted) {
    spdlog::warn("retention: the changed messages could not be expired: {}", deleted.error().message);
    return;
  }
  if (auto rebuilt = changes_.rebuild(); !rebuilt)
    spdlog::warn("retention: the changed messages' filter could not be rebuilt: {}", rebuilt.error().message);
}

}  // namespace im::core
