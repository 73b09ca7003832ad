#include "core/group_commit.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "cluster/partition_log.h"
#include "common/metrics.h"
#include "core/shard_loop.h"

namespace im::core {

GroupCommit::GroupCommit(ShardLoop& loop, store::Store& store, unsigned shard, cluster::PartitionLog* log)
    : loop_(loop), store_(store), shard_(shard), log_(log), batch_(store), flying_batch_(store) {}

void GroupCommit::make_room() {
  if (batch_.count() >= kMaxBatchRows || (log_ && batch_.bytes() >= kMaxLogBatchBytes)) commit();
}

void GroupCommit::after_commit(AfterCommit fn) {
  after_commit_.push_back(std::move(fn));
}

void GroupCommit::schedule() {
  if (queued_) return;  // a batch written early meanwhile leaves it queued: the round finds the rest
  queued_ = true;
  loop_.schedule(*this);
}

void GroupCommit::commit() {
  begin();
  finish();
}

void GroupCommit::begin() {
  // Also called early by a full batch; the round already scheduled then
  // finds an empty one.
  if (flying_) finish();
  std::swap(batch_, flying_batch_);  // flying_batch_ was cleared by the last finish()
  flying_callbacks_ = std::move(after_commit_);
  after_commit_.clear();
  flying_staged_ = staged_;
  staged_ = {};
  flying_since_ = std::chrono::steady_clock::now();
  settled_at_.reset();
  not_sent_.reset();
  flying_ = true;
  if (log_ && !flying_batch_.empty()) {
    if (auto started = log_->start_append(flying_batch_); !started) not_sent_ = started.error();
  }
}

bool GroupCommit::settle(std::chrono::steady_clock::time_point until) {
  if (!flying_ || settled_at_) return true;
  if (log_ && !not_sent_ && !flying_batch_.empty() && !log_->settle(until)) return false;
  settled_at_ = std::chrono::steady_clock::now();
  return true;
}

void GroupCommit::finish() {
  if (!flying_) return;
  flying_ = false;
  auto callbacks = std::move(flying_callbacks_);
  flying_callbacks_.clear();
  const Staged staged = flying_staged_;
  const std::size_t rows = flying_batch_.count();
  auto& m = metrics::get();
  const auto write_start = std::chrono::steady_clock::now();
  Result<Ok> written = Ok{};
  if (not_sent_) {
    written = *not_sent_;
  } else if (!log_) {
    written = store_.write(flying_batch_);
  } else if (!flying_batch_.empty()) {
    if (auto appended = log_->finish_append(flying_batch_); !appended) written = appended.error();
  }
  if (rows > 0) {
    // From begin to durable: the wait for the answer (up to the round's
    // settle, when it had one) and the store write; not the after-commit
    // work of the partitions finished before this one in the round.
    const auto waited = settled_at_.value_or(write_start) - flying_since_;
    m.store_write_latency.observe(
        std::chrono::duration<double>(waited + (std::chrono::steady_clock::now() - write_start)).count());
    m.batch_rows.observe(static_cast<double>(rows));
  }
  flying_batch_.clear();
  ++commits_;
  committed_rows_ += rows;
  largest_batch_ = std::max<std::uint64_t>(largest_batch_, rows);
  const bool ok = written.ok();
  if (ok) {
    m.messages_stored.inc(staged.history);
    m.inbox_rows.inc(staged.inbox);
    m.inbox_refs.inc(staged.inbox_refs);
  } else {
    m.store_write_errors.inc();
    last_error_ = written.error();
    // A full disk fails every retry: one line a second is enough.
    const auto now = std::chrono::steady_clock::now();
    if (now - last_error_log_ >= std::chrono::seconds(1)) {
      spdlog::error("shard {}: write of {} rows failed ({} more failed writes not logged): {}", shard_, rows,
                    unlogged_errors_, written.error().message);
      last_error_log_ = now;
      unlogged_errors_ = 0;
    } else {
      ++unlogged_errors_;
    }
  }
  if (on_written_) on_written_(ok);
  for (auto& fn : callbacks) fn(ok);
  if (on_idle_ && idle()) on_idle_();
}

void GroupCommit::log_stats() const {
  if (commits_ == 0) return;
  spdlog::info("shard {}: {} batches written, {} rows, {:.1f} rows a batch on average, {} at most", shard_, commits_,
               committed_rows_, static_cast<double>(committed_rows_) / static_cast<double>(commits_), largest_batch_);
}

}  // namespace im::core
