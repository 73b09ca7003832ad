#pragma once
// A shard's group commit: the rows staged during one turn of the shard's
// loop go into one WriteBatch, written once; only then do the answers,
// pushes and other after-commit work run, in the order they were staged.
// The shard's loop writes the batch (ShardLoop::round), in two halves:
// begin() takes the batch (in cluster mode its entry goes out), finish()
// waits for it to be durable and runs what waits for it.
//
// Runs on its shard's loop only.

#include <cassert>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "store/store.h"

namespace im::cluster {
class PartitionLog;
}

namespace im::core {

class ShardLoop;

class GroupCommit {
 public:
  // A batch is written early once it holds this many rows, at a message
  // boundary: past a few hundred messages a batch gains no throughput
  // (BENCHMARKS.md) and only delays the first answers.
  static constexpr std::size_t kMaxBatchRows = 2048;
  // In cluster mode a batch is one NATS message, at most the servers'
  // max_payload (1 MiB by default): it is written early past this size.
  static constexpr std::size_t kMaxLogBatchBytes = 256 * 1024;

  using AfterCommit = std::function<void(bool ok)>;
  // Rows staged in the current batch, for the metrics once it is written.
  struct Staged {
    std::uint64_t history = 0;
    std::uint64_t inbox = 0;
    std::uint64_t inbox_refs = 0;  // of `inbox`, the references to a history row
  };

  // `log`: the partition's log in jetstream mode (each batch is stored
  // there first, docs/cluster.md); null in embedded mode.
  GroupCommit(ShardLoop& loop, store::Store& store, unsigned shard, cluster::PartitionLog* log = nullptr);

  store::Batch& batch() {
    assert(!flying_);  // nothing stages while the round that began a batch finishes it
    return batch_;
  }
  Staged& staged() { return staged_; }
  // Before staging the rows of one message or change: writes the batch now
  // when it is full, so that a batch always ends at such a boundary.
  void make_room();
  // Runs after the batch that holds what was staged so far is written (or
  // failed), in the order registered.
  void after_commit(AfterCommit fn);
  // Runs first after every write, before the after_commit callbacks (the
  // shard publishes its counters and delivers its pushes there).
  void on_written(AfterCommit fn) { on_written_ = std::move(fn); }
  // Runs after a write's callbacks when they left nothing staged.
  void on_idle(std::function<void()> fn) { on_idle_ = std::move(fn); }
  // Nothing staged and no callback waiting.
  bool idle() const { return batch_.empty() && after_commit_.empty() && !flying_; }
  // Writes the batch once the handlers already queued have run (in the
  // loop's next round).
  void schedule();
  // Writes the batch now: begin() then finish().
  void commit();
  // The first half of a write: the batch and its callbacks are taken (what
  // is staged from now on goes into the next batch); in cluster mode its
  // entry is sent. A write begun and not finished is finished first.
  void begin();
  // Waits until `until` for the answer to the batch begun (cluster mode;
  // PartitionLog::settle); whether it is in (true in embedded mode, or when
  // nothing was begun).
  bool settle(std::chrono::steady_clock::time_point until);
  // The second half: waits until the batch begun is durable (or failed),
  // then runs the callbacks. Nothing when no write was begun.
  void finish();
  // Why the last write failed (its error; UNAVAILABLE from a partition log).
  const Error& last_error() const { return last_error_; }
  // Figures for the log when the shard stops.
  void log_stats() const;

 private:
  ShardLoop& loop_;
  store::Store& store_;
  const unsigned shard_;
  cluster::PartitionLog* const log_;
  store::Batch batch_;
  Staged staged_;
  std::vector<AfterCommit> after_commit_;
  // The write begun and not finished: its batch, callbacks and figures,
  // and the error that kept its entry from going out.
  bool flying_ = false;
  store::Batch flying_batch_;
  std::vector<AfterCommit> flying_callbacks_;
  Staged flying_staged_;
  std::chrono::steady_clock::time_point flying_since_{};
  std::optional<std::chrono::steady_clock::time_point> settled_at_;
  std::optional<Error> not_sent_;
  AfterCommit on_written_;
  std::function<void()> on_idle_;
  friend class ShardLoop;
  bool queued_ = false;  // in the loop's next round (ShardLoop::schedule)
  std::chrono::steady_clock::time_point last_error_log_{};
  std::uint64_t unlogged_errors_ = 0;
  Error last_error_;
  std::uint64_t commits_ = 0;
  std::uint64_t committed_rows_ = 0;
  std::uint64_t largest_batch_ = 0;
};

}  // namespace im::core
