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
  GroupState& cached = groups_.put(gid, std::move(g));
  count(cached);
  return &cached;
}

GroupState& GroupCache::create(const std::string& gid) {
  touch(gid);
  if (const GroupState* old = groups_.peek(gid)) members_ -= old->counted;
  return groups_.put(gid, GroupState{});  // counted when its batch is written
}

void GroupCache::count(GroupState& g) {
  members_ = members_ - g.counted + g.members.size();
  g.counted = g.members.size();
}

void GroupCache::drop(const std::string& gid) {
  if (const GroupState* g = groups_.peek(gid)) members_ -= g->counted;
  groups_.erase(gid);
}

std::size_t GroupCache::trim() {
  if (!touched_.empty()) return 0;
  return groups_.trim(
      [this](const std::string&, const GroupState& g) {
        members_ -= g.counted;
        return true;
      },
      [this] { return members_ > member_capacity_; });
}

void GroupCache::on_written(bool ok) {
  for (const auto& gid : touched_) {
    if (!ok) {
      drop(gid);
    } else if (GroupState* g = groups_.peek_mut(gid)) {
      count(*g);
    }
  }
  touched_.clear();
}

}  // namespace im::core
