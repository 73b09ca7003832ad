#include "core/group_cache.h"

namespace im::core {

Result<GroupState*> GroupCache::find(const std::string& gid) {
  if (GroupState* g = groups_.find(gid)) return g;
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
  return &groups_.put(gid, std::move(g));
}

GroupState& GroupCache::create(const std::string& gid) {
  touch(gid);
  return groups_.put(gid, GroupState{});
}

std::size_t GroupCache::trim() {
  if (!touched_.empty()) return 0;
  return groups_.trim([](const std::string&, const GroupState&) { return true; });
}

void GroupCache::on_written(bool ok) {
  if (!ok)
    for (const auto& gid : touched_) groups_.erase(gid);
  touched_.clear();
}

}  // namespace im::core
