#include "core/shard_loop.h"

#include <chrono>
#include <string>

#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>

#include "common/thread_policy.h"
#include "core/group_commit.h"

namespace im::core {

ShardLoop::~ShardLoop() {
  // The owner stops the loop (its last round, the shards' hooks) before the
  // shards go; a loop never stopped ends here after the handler it is
  // running, if any, without the rest.
  if (!thread_.joinable()) return;
  context_.stop();
  thread_.join();
}

void ShardLoop::start() {
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(context_);
    context_.run();
  });
  // At most 15 characters: "im:shard" and three digits fit.
  set_up_busy_thread(thread_, "im:shard" + std::to_string(index_), batch_scheduling_);
}

void ShardLoop::request_stop() {
  if (!thread_.joinable() || stop_requested_.exchange(true)) return;
  asio::post(context_, [this] {
    round();
    for (auto& fn : on_stop_) fn();
    context_.stop();
  });
}

void ShardLoop::stop() {
  request_stop();
  if (thread_.joinable()) thread_.join();
}

void ShardLoop::schedule(GroupCommit& commit) {
  const bool posted = !due_.empty();
  due_.push_back(&commit);
  if (!posted) asio::post(context_, [this] { round(); });
}

void ShardLoop::round() {
  auto due = std::move(due_);
  due_.clear();
  // Every entry goes out before the first answer is awaited.
  for (GroupCommit* c : due) {
    c->queued_ = false;
    c->begin();
  }
  // Then each batch is finished as soon as its answer is in (each entry
  // retried on its own clock, PartitionLog::settle: bounded by
  // cluster.unanswered_stop_ms from its first attempt): a slow stream does
  // not hold back the answers of the others. The entries of a round are
  // independent, so the order they finish in does not matter.
  while (!due.empty()) {
    const auto slice = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
    std::erase_if(due, [slice](GroupCommit* c) {
      if (!c->settle(slice)) return false;
      c->finish();
      return true;
    });
  }
}

}  // namespace im::core
