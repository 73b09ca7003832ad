#pragma once
// The groups a shard owns (those whose "g:" + gid hashes here): each one's
// row and member list, loaded from RocksDB on first use. A change is made
// to the cached state as it is staged (so the next command in the same
// batch sees it); if that batch then fails, every group it touched is
// dropped from the cache and reloaded from what is durable, so a failed
// write leaves no trace in memory. At most `capacity` groups, holding at
// most `member_capacity` members together, are kept past a trim (the least
// recently used go and are loaded again on their next use); a miss caches
// nothing.
//
// Runs on its shard's thread only.

#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "core/lru_map.h"
#include "im/result.h"
#include "proto/im.pb.h"
#include "store/store.h"

namespace im::core {

struct GroupState {
  v1::Group info;
  bool dismissed = false;
  std::map<std::string, bool> members;  // uid -> is owner; uid order for listings
  std::size_t counted = 0;               // members counted in the cache's total (GroupCache)

  bool is_member(const std::string& uid) const { return members.count(uid) > 0; }
};

class GroupCache {
 public:
  GroupCache(store::Store& store, std::size_t capacity, std::size_t member_capacity)
      : store_(store), groups_(capacity), member_capacity_(member_capacity) {}

  // The group, loaded on first use; nullptr when it never existed (a miss
  // caches nothing). A read error is returned and nothing is cached.
  Result<GroupState*> find(const std::string& gid);
  // A new group, staged in the current batch.
  GroupState& create(const std::string& gid);
  // `gid` is changed in the current batch.
  void touch(const std::string& gid) { touched_.insert(gid); }
  // Whether the current batch changes `gid`: an answer about it must then
  // wait for that batch (commit it first), or it could rest on a change
  // that is never written.
  bool changed_in_batch(const std::string& gid) const { return touched_.count(gid) > 0; }
  void on_written(bool ok);
  // Drops the least recently used groups beyond the capacity; only between
  // batches (nothing staged).
  std::size_t trim();
  bool over() const { return groups_.over() || members_ > member_capacity_; }
  // Members of the cached groups, as of the last written batch.
  std::size_t members() const { return members_; }

 private:
  void count(GroupState& g);
  void drop(const std::string& gid);

  store::Store& store_;
  LruMap<GroupState> groups_;
  const std::size_t member_capacity_;
  std::size_t members_ = 0;
  std::unordered_set<std::string> touched_;
};

}  // namespace im::core
