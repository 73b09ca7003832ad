#include "core/token_revocations.h"

#include <algorithm>

#include "cluster/partition_log.h"
#include "store/store.h"

namespace im::core {

Result<Ok> TokenRevocations::load(store::Store& store) {
  std::unordered_map<std::string, std::int64_t> loaded;
  auto scanned = store.scan_token_revocations([&](std::string_view uid, std::int64_t revoked_s) {
    loaded.emplace(std::string(uid), revoked_s);
    return true;
  });
  if (!scanned) return scanned;
  std::unique_lock lock(mutex_);
  revoked_s_ = std::move(loaded);
  return Ok{};
}

Result<Ok> TokenRevocations::revoke(store::Store& store, const std::string& uid, std::int64_t now_s,
                                    cluster::PartitionLog* log) {
  // Embedded: one revoke at a time, so the store and memory agree. In
  // cluster mode a uid's revokes all run on its shard's thread, in order,
  // and a write waiting on one partition's log must not hold up the other
  // threads' partitions.
  std::unique_lock write_lock(write_mutex_, std::defer_lock);
  if (!log) write_lock.lock();
  std::int64_t revoked_s = now_s;
  {
    std::shared_lock lock(mutex_);
    if (auto it = revoked_s_.find(uid); it != revoked_s_.end()) revoked_s = std::max(revoked_s, it->second);
  }
  store::Batch batch(store);
  batch.put_token_revocation(uid, revoked_s);
  if (auto written = cluster::durable_write(store, log, batch); !written) return written.error();
  std::unique_lock lock(mutex_);
  revoked_s_[uid] = std::max(revoked_s_[uid], revoked_s);
  return Ok{};
}

bool TokenRevocations::revoked(const std::string& uid, std::int64_t iat_s) const {
  std::shared_lock lock(mutex_);
  auto it = revoked_s_.find(uid);
  return it != revoked_s_.end() && iat_s <= it->second;
}

std::int64_t TokenRevocations::issue_time(const std::string& uid, std::int64_t now_s) const {
  std::shared_lock lock(mutex_);
  auto it = revoked_s_.find(uid);
  return it == revoked_s_.end() ? now_s : std::max(now_s, it->second + 1);
}

std::size_t TokenRevocations::size() const {
  std::shared_lock lock(mutex_);
  return revoked_s_.size();
}

}  // namespace im::core
