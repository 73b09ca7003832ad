#include "core/retention.h"

#include <chrono>

#include "common/clock.h"
#include "core/msg_id_clock.h"
#include "store/keys.h"

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

bool inbox_rows_by_reference(const StorageConfig& config) {
  return config.history_retention_days > config.inbox_retention_days;
}

Retention::Retention(const StorageConfig& config, store::Store& store, ChangedMessages& changes)
    : config_(config), store_(store), changes_(changes) {
  // Record since when references are no longer written. That they are is
  // recorded by each shard, in the batch of its first reference of a run.
  auto recorded = store_.get_meta(store::kInboxRefsKey);
  std::optional<std::uint64_t> record;
  if (!recorded) {
    spdlog::warn("retention: the inbox reference record could not be read: {}", recorded.error().message);
  } else if (!inbox_rows_by_reference(config_) && *recorded == store::kInboxRefsOn) {
    record = static_cast<std::uint64_t>(wall_ms());
    spdlog::warn(
        "storage.history_retention_days no longer exceeds storage.inbox_retention_days by a day: inbox rows are "
        "written as copies from now on, and history rows stay at least {} more days, until no inbox can hold a "
        "reference to one",
        config_.inbox_retention_days + 1);
  }
  if (record) {
    store::Batch batch(store_);
    batch.put_meta(store::kInboxRefsKey, *record);
    if (auto written = store_.write(batch); !written)
      spdlog::warn("retention: the inbox reference record could not be written: {}", written.error().message);
  }
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
  // An inbox's newest row stays, however old: a copy of a changed message
  // kept so is written changed, before its change row goes below.
  std::size_t removed = store_.expire_oldest(
      store::Cf::kInbox, [&](std::string_view row) { return older_than(row, inbox_cutoff); },
      [&](std::string_view row) -> std::optional<std::string> {
        auto changed = changes_.changed_row(row);
        if (!changed || !*changed || **changed == row) return std::nullopt;  // a read error: the next pass
        return std::move(*changed);
      });
  const std::int64_t history_kept = this->history_cutoff(now_ms, inbox_cutoff);
  removed +=
      store_.expire_oldest(store::Cf::kHistory, [&](std::string_view row) { return older_than(row, history_kept); });
  expire_changes(inbox_cutoff - kChangeGraceMs);
  return removed;
}

std::int64_t Retention::history_cutoff(std::int64_t now_ms, std::int64_t inbox_cutoff) {
  const std::int64_t configured = now_ms - std::int64_t{config_.history_retention_days} * kDayMs;
  // Written by reference: history outlives the inboxes by a day at least
  // (whole days), so `configured` keeps every row a reference names. The
  // record is left alone: a shard may be writing it now.
  if (inbox_rows_by_reference(config_)) return configured;
  auto recorded = store_.get_meta(store::kInboxRefsKey);
  if (!recorded) return std::min(configured, inbox_cutoff - kDayMs);  // unknown: as if references were left
  if (!*recorded) return configured;
  // References may be in inboxes until every row written before `until`
  // (and a day's slack for rows written late) has expired from them.
  const std::int64_t until = **recorded == store::kInboxRefsOn ? now_ms : static_cast<std::int64_t>(**recorded);
  if (until >= inbox_cutoff - kDayMs) return std::min(configured, inbox_cutoff - kDayMs);
  store::Batch batch(store_);
  batch.del_meta(store::kInboxRefsKey);
  (void)store_.write(batch);  // best effort: the next pass tries again
  return configured;
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
