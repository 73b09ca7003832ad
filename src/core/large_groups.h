#pragma once
// The groups that switched to read fan-out (PROTOCOL 9), with the conv_seq
// each reads from: what a user's shard asks when a session starts (which of
// the user's groups to index for pushes) and when it lists conversations.
// Loaded from the store's `large_group:` rows at start-up; a group's shard
// adds one once its switch is durable. A group stays large for good.
//
// Thread safe: read by every shard, written by the groups' shards.

#include <atomic>
#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "im/result.h"
#include "store/store.h"

namespace im::core {

class LargeGroups {
 public:
  // Reads every marker row (start-up, before any request).
  Result<Ok> load(store::Store& store);
  void add(const std::string& gid, std::uint64_t from_seq);
  // The conv_seq from which the group's messages have no inbox rows; none
  // when it is not a large group.
  std::optional<std::uint64_t> from_seq(std::string_view gid) const;
  // Every large gid (a copy).
  std::vector<std::string> gids() const;
  // No large group at all: the common case, answered without a lock.
  bool empty() const { return count_.load(std::memory_order_acquire) == 0; }
  std::size_t size() const { return count_.load(std::memory_order_acquire); }

 private:
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, std::uint64_t> groups_;
  std::atomic<std::size_t> count_{0};
};

}  // namespace im::core
