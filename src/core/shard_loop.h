#pragma once
// The thread core shards run on: one loop, shared by the shards placed on it
// (one shard per loop in embedded mode; in cluster mode partitions n,
// n + T, n + 2T, ... on loop n of T = sharding.shards, docs/cluster.md).
//
// The loop also writes its shards' batches, in rounds: a round starts every
// batch scheduled since the last one (in cluster mode its entry goes out to
// its partition's stream), then finishes each as soon as its answer is in
// (each entry retried on its own clock): writes the store, runs the
// after-commit work. So the partitions of one thread wait for about one
// publish per round, not for one after another; and, as with one shard per
// thread, no handler runs on the loop between a batch's start and its
// finish: only the round's other batches (their store writes and
// after-commit work, which touch their own shards and post to others).
//
// A batch written outside a round (GroupCommit::commit: a full batch, or
// one a request must see written first) holds the whole loop, every
// partition on it, for its publish.

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>

namespace im::core {

class GroupCommit;

class ShardLoop {
 public:
  // `batch_scheduling`: the thread under SCHED_BATCH (server.batch_scheduling,
  // common/thread_policy.h).
  explicit ShardLoop(unsigned index, bool batch_scheduling = false)
      : index_(index), batch_scheduling_(batch_scheduling) {}
  // Without stop(): ends the loop after the handler it is running (no last
  // round, no hooks) and joins the thread.
  ~ShardLoop();
  ShardLoop(const ShardLoop&) = delete;
  ShardLoop& operator=(const ShardLoop&) = delete;

  asio::io_context& context() { return context_; }
  // Starts the thread (named "im:shard<index>"); throws std::system_error
  // when that fails.
  void start();
  // Runs after the handlers queued before stop(), on the loop, before it
  // ends: a shard's last work (timers cancelled, figures logged).
  void on_stop(std::function<void()> fn) { on_stop_.push_back(std::move(fn)); }
  // Asks the loop to run what is queued, a last round (the batches
  // scheduled so far) and the on_stop hooks, then to end; returns at once
  // (any thread, any number of times). stop() does that and joins the
  // thread (from the owner's thread). Several loops stop side by side
  // through request_stop() on each, then stop() on each.
  void request_stop();
  void stop();

  // Writes `commit`'s batch in the next round, which runs once the
  // handlers queued so far have run: what arrives while a round is written
  // goes into the next one. On the loop.
  void schedule(GroupCommit& commit);

 private:
  void round();

  const unsigned index_;
  const bool batch_scheduling_;
  asio::io_context context_{1};
  std::vector<GroupCommit*> due_;  // not empty: a round is posted
  std::vector<std::function<void()>> on_stop_;
  std::atomic<bool> stop_requested_{false};
  std::thread thread_;
};

}  // namespace im::core
