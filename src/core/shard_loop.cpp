#include "core/shard_loop.h"

#include <pthread.h>

#include <string>

#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>

#include "core/group_commit.h"

namespace im::core {

ShardLoop::~ShardLoop() {
  stop();
}

void ShardLoop::start() {
  thread_ = std::thread([this] {
    // At most 15 characters: "im:shard" and three digits fit.
    pthread_setname_np(pthread_self(), ("im:shard" + std::to_string(index_)).c_str());
    auto guard = asio::make_work_guard(context_);
    context_.run();
  });
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
  due_.push_back(&commit);
  if (posted_) return;
  posted_ = true;
  asio::post(context_, [this] { round(); });
}

void ShardLoop::round() {
  posted_ = false;
  auto due = std::move(due_);
  due_.clear();
  // Every entry goes out before the first answer is awaited.
  for (GroupCommit* c : due) c->begin();
  for (GroupCommit* c : due) c->finish();
}

}  // namespace im::core
