#include "core/large_groups.h"

#include <mutex>

namespace im::core {

Result<Ok> LargeGroups::load(store::Store& store) {
  std::unordered_map<std::string, std::uint64_t> loaded;
  auto scanned = store.scan_large_groups([&](std::string_view gid, std::uint64_t from_seq) {
    loaded.emplace(gid, from_seq);
    return true;
  });
  if (!scanned) return scanned;
  std::unique_lock lock(mutex_);
  groups_ = std::move(loaded);
  count_.store(groups_.size(), std::memory_order_release);
  return Ok{};
}

void LargeGroups::add(const std::string& gid, std::uint64_t from_seq) {
  std::unique_lock lock(mutex_);
  groups_[gid] = from_seq;
  count_.store(groups_.size(), std::memory_order_release);
}

std::vector<std::string> LargeGroups::gids() const {
  std::shared_lock lock(mutex_);
  std::vector<std::string> out;
  out.reserve(groups_.size());
  for (const auto& [gid, from] : groups_) out.push_back(gid);
  return out;
}

std::optional<std::uint64_t> LargeGroups::from_seq(std::string_view gid) const {
  if (empty()) return std::nullopt;
  std::shared_lock lock(mutex_);
  auto it = groups_.find(std::string(gid));
  if (it == groups_.end()) return std::nullopt;
  return it->second;
}

}  // namespace im::core
