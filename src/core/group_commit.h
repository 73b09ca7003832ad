#pragma once
// A shard's group commit: the rows staged during one turn of the shard's
// loop go into one WriteBatch, written once; only then do the answers,
// pushes and other after-commit work run, in the order they were staged.
//
// Runs on its shard's thread only.

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include <asio/io_context.hpp>

#include "store/store.h"

namespace im::cluster {
class PartitionLog;
}

namespace im::core {

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
  };

  // `log`: the partition's log in jetstream mode (each batch is stored
  // there first, docs/cluster.md); null in embedded mode.
  GroupCommit(asio::io_context& loop, store::Store& store, unsigned shard, cluster::PartitionLog* log = nullptr);

  store::Batch& batch() { return batch_; }
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
  bool idle() const { return batch_.empty() && after_commit_.empty(); }
  // Writes the batch once the handlers already queued have run.
  void schedule();
  void commit();
  // Why the last write failed (its error; UNAVAILABLE from a partition log).
  const Error& last_error() const { return last_error_; }
  // Figures for the log when the shard stops.
  void log_stats() const;

 private:
  asio::io_context& loop_;
  store::Store& store_;
  const unsigned shard_;
  cluster::PartitionLog* const log_;
  store::Batch batch_;
  Staged staged_;
  std::vector<AfterCommit> after_commit_;
  AfterCommit on_written_;
  std::function<void()> on_idle_;
  bool posted_ = false;
  std::chrono::steady_clock::time_point last_error_log_{};
  std::uint64_t unlogged_errors_ = 0;
  Error last_error_;
  std::uint64_t commits_ = 0;
  std::uint64_t committed_rows_ = 0;
  std::uint64_t largest_batch_ = 0;
};

}  // namespace im::core
