#include "core/group_commit.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>
#include <asio/post.hpp>

#include "cluster/partition_log.h"
#include "common/metrics.h"

namespace im::core {

GroupCommit::GroupCommit(asio::io_context& loop, store::Store& store, unsigned shard, cluster::PartitionLog* log)
    : loop_(loop), store_(store), shard_(shard), log_(log), batch_(store) {}

void GroupCommit::make_room() {
  if (batch_.count() >= kMaxBatchRows || (log_ && batch_.bytes() >= kMaxLogBatchBytes)) commit();
}

void GroupCommit::after_commit(AfterCommit fn) {
  after_commit_.push_back(std::move(fn));
}

void GroupCommit::schedule() {
  if (posted_) return;
  posted_ = true;
  // Runs after every handler queued so far: what arrived while the previous
  // batch was being written all goes into this one.
  asio::post(loop_, [this] { commit(); });
}

void GroupCommit::commit() {
  // Also called early by a full batch; the commit already posted then finds
  // an empty one.
  posted_ = false;
  auto callbacks = std::move(after_commit_);
  after_commit_.clear();
  const Staged staged = staged_;
  staged_ = {};
  const std::size_t rows = batch_.count();
  auto& m = metrics::get();
  const auto start = std::chrono::steady_clock::now();
  auto written = cluster::durable_write(store_, log_, batch_);
  if (rows > 0) {
    m.store_write_latency.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    m.batch_rows.observe(static_cast<double>(rows));
  }
  batch_.clear();
  ++commits_;
  committed_rows_ += rows;
  largest_batch_ = std::max<std::uint64_t>(largest_batch_, rows);
  const bool ok = written.ok();
  if (ok) {
    m.messages_stored.inc(staged.history);
    m.inbox_rows.inc(staged.inbox);
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
