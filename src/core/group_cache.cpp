#include "core/group_cache.h"

namespace im::core {

Result<GroupState*> GroupCache::find(const std::string& gid) {
  if (auto it = groups_.find(gid); it != groups_.end()) return &it->second;
  auto row = store_.get_group(gid);
  if (!row) return row.error();
  if (!*row) return static_cast<GroupState*>(nullptr);
  GroupState g;
  g.info = std::move((*row)->info);
  g.dismissed = (*row)->dismissed;
  if (!g.dismissed) {
    auto scanned = store_.scan_members(gid, [&](std::string_view uid, const store::MemberRecord& m) {
      g.members.emplace(std::string(uid), m.owner);
      return true;
    });
    if (!scanned) return scanned.error();
  }
  return &(groups_[gid] = std::move(g));
}

GroupState& GroupCache::create(const std::string& gid) {
  touch(gid);
  GroupState& g = groups_[gid];
  g = GroupState{};
  return g;
}

void GroupCache::on_written(bool ok) {
  if (!ok)
    for (const auto& gid : touched_) groups_.erase(gid);
  touched_.clear();
}

}  // namespace im::core
