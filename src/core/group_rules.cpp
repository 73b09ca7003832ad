#include "core/group_rules.h"

#include "core/requests.h"

#include <algorithm>

#include <fmt/format.h>

namespace im::core {
namespace {

constexpr std::size_t kListSlack = 256;  // frame room for the non-member fields

Error too_many(std::uint32_t max_members) {
  return make_error(StatusCode::kTooLarge, fmt::format("over limits.max_group_members ({})", max_members));
}

void sort_unique(std::vector<std::string>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

bool acts_as_owner(const GroupState& g, const GroupActor& a) {
  return a.admin || g.info.owner() == a.uid;
}

// A plan that starts from the group as it is; events name the actor (the
// owner when the admin API acts).
GroupPlan plan_for(const GroupState& g, const GroupActor& a) {
  GroupPlan p;
  p.info = g.info;
  p.actor = a.admin && a.uid.empty() ? g.info.owner() : a.uid;
  return p;
}

// Whose inboxes an event goes to by write fan-out: every member, or none
// in a large group, where read_fanout names them (PROTOCOL 9) and a copy
// of up to 100,000 uids for each ADD, LEAVE or UPDATE would be thrown away.
std::vector<std::string> write_fanout_recipients(const GroupState& g) {
  return g.info.large() ? std::vector<std::string>() : member_uids(g);
}

}  // namespace

Result<Ok> check_access(const GroupState* g, const GroupActor& actor) {
  if (!g || g->dismissed) return make_error(StatusCode::kNotFound, "no such group");
  if (!actor.admin && !g->is_member(actor.uid)) return make_error(StatusCode::kForbidden, "not a member of the group");
  return Ok{};
}

std::vector<std::string> member_uids(const GroupState& g) {
  std::vector<std::string> out;
  out.reserve(g.members.size());
  for (const auto& [uid, owner] : g.members) out.push_back(uid);
  return out;
}

Result<GroupPlan> plan_create(const GroupState* existing, const std::string& owner, const v1::GroupCreateReq& req,
                              std::int64_t now_ms, std::uint32_t max_members) {
  if (existing) return make_error(StatusCode::kConflict, "group id already taken");
  GroupPlan p;
  p.actor = owner;
  p.added.assign(req.members().begin(), req.members().end());
  p.added.push_back(owner);
  sort_unique(p.added);
  if (p.added.size() > max_members) return too_many(max_members);
  p.info.set_gid(req.gid());
  p.info.set_name(req.name());
  p.info.set_owner(owner);
  p.info.set_announcement(req.announcement());
  p.info.set_created_ms(now_ms);
  p.info.set_member_count(static_cast<std::uint32_t>(p.added.size()));
  // The owner is named first; CREATED lists the first ones, MEMBERS_ADDED
  // events the rest (event_slices).
  std::vector<std::string> named{owner};
  for (const auto& uid : p.added)
    if (uid != owner) named.push_back(uid);
  p.events.push_back({v1::CREATED, std::move(named), p.added});
  return p;
}

Result<GroupPlan> plan_add(const GroupState& g, const GroupActor& actor, const v1::GroupMembersReq& req,
                           std::uint32_t max_members) {
  GroupPlan p = plan_for(g, actor);
  for (const auto& uid : req.uids())
    if (!g.is_member(uid)) p.added.push_back(uid);
  sort_unique(p.added);
  if (g.members.size() + p.added.size() > max_members) return too_many(max_members);
  p.info.set_member_count(static_cast<std::uint32_t>(g.members.size() + p.added.size()));
  if (!p.added.empty()) {
    std::vector<std::string> after = write_fanout_recipients(g);
    if (!g.info.large()) {  // the added learn it too
      after.insert(after.end(), p.added.begin(), p.added.end());
      sort_unique(after);
    }
    p.events.push_back({v1::MEMBERS_ADDED, p.added, std::move(after)});
  }
  p.members.mutable_changed()->Assign(p.added.begin(), p.added.end());
  p.members.set_member_count(p.info.member_count());
  return p;
}

Result<GroupPlan> plan_remove(const GroupState& g, const GroupActor& actor, const v1::GroupMembersReq& req) {
  if (!acts_as_owner(g, actor)) return make_error(StatusCode::kForbidden, "only the owner may remove members");
  GroupPlan p = plan_for(g, actor);
  for (const auto& uid : req.uids()) {
    if (uid == g.info.owner()) return make_error(StatusCode::kBadRequest, "the owner cannot be removed");
    if (g.is_member(uid)) p.removed.push_back(uid);
  }
  sort_unique(p.removed);
  p.info.set_member_count(static_cast<std::uint32_t>(g.members.size() - p.removed.size()));
  // The removed receive the event that removes them, last.
  if (!p.removed.empty()) p.events.push_back({v1::MEMBERS_REMOVED, p.removed, write_fanout_recipients(g)});
  p.members.mutable_changed()->Assign(p.removed.begin(), p.removed.end());
  p.members.set_member_count(p.info.member_count());
  return p;
}

Result<GroupPlan> plan_leave(const GroupState& g, const GroupActor& actor) {
  if (actor.uid == g.info.owner())
    return make_error(StatusCode::kForbidden, "the owner cannot leave; dismiss the group instead");
  GroupPlan p = plan_for(g, actor);
  p.removed.push_back(actor.uid);
  p.info.set_member_count(static_cast<std::uint32_t>(g.members.size() - 1));
  p.events.push_back({v1::MEMBER_LEFT, {actor.uid}, write_fanout_recipients(g)});
  return p;
}

Result<GroupPlan> plan_update(const GroupState& g, const GroupActor& actor, const v1::GroupUpdateReq& req) {
  if (!acts_as_owner(g, actor)) return make_error(StatusCode::kForbidden, "only the owner may update the group");
  GroupPlan p = plan_for(g, actor);
  if (req.has_name()) p.info.set_name(req.name());
  if (req.has_announcement()) p.info.set_announcement(req.announcement());
  p.events.push_back({v1::UPDATED, {}, write_fanout_recipients(g)});
  return p;
}

Result<GroupPlan> plan_dismiss(const GroupState& g, const GroupActor& actor) {
  if (!acts_as_owner(g, actor)) return make_error(StatusCode::kForbidden, "only the owner may dismiss the group");
  GroupPlan p = plan_for(g, actor);
  p.dismiss = true;
  p.removed = member_uids(g);
  p.info.set_member_count(0);
  p.events.push_back({v1::DISMISSED, {}, p.removed});
  return p;
}

void list_members(const GroupState& g, const std::string& after, std::uint32_t limit, std::size_t frame_budget,
                  v1::GroupResp& out) {
  limit = std::min(limit == 0 ? kMembersDefault : limit, kMembersMax);
  std::size_t size = g.info.ByteSizeLong() + kListSlack;
  for (auto it = g.members.upper_bound(after); it != g.members.end(); ++it) {
    const std::size_t cost = it->first.size() + 2;
    if (static_cast<std::uint32_t>(out.members_size()) == limit || size + cost > frame_budget) {
      out.set_members_more(true);
      break;
    }
    size += cost;
    out.add_members(it->first);
  }
}

v1::GroupResp read_group(const GroupState& g, const GroupActor& actor, const v1::GroupGetReq& req,
                         std::size_t frame_budget) {
  v1::GroupResp out;
  *out.mutable_group() = g.info;
  if (actor.admin) {  // the admin API answers JSON of any size: every member
    for (const auto& [uid, owner] : g.members) out.add_members(uid);
  } else if (req.with_members()) {
    list_members(g, req.members_after(), req.members_limit(), frame_budget, out);
  }
  return out;
}

// ---------------------------------------------------------------- event messages

namespace {

constexpr std::uint32_t kGroupEventType = 10001;

std::size_t varint_size(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// What one more uid adds to an event's row: its field in the GroupEvent.
std::size_t uid_cost(const std::string& uid) {
  return 1 + varint_size(uid.size()) + uid.size();
}

// A slice's message with every number at its largest and no uids: the
// fixed part of its row's size.
std::size_t fixed_row_bytes(const GroupPlan& plan, v1::GroupEventType type) {
  EventSlice none{0, 0, 0, type};
  v1::Message m = event_message(plan, none);
  m.set_msg_id(UINT64_MAX);
  m.set_server_time_ms(INT64_MAX);
  m.set_conv_seq(UINT64_MAX);
  m.set_inbox_seq(UINT64_MAX);
  // + room for the body's length prefix to grow with the uids.
  return m.ByteSizeLong() + 4;
}

}  // namespace

std::vector<EventSlice> event_slices(const GroupPlan& plan, std::size_t max_row_bytes) {
  std::vector<EventSlice> out;
  for (std::size_t e = 0; e < plan.events.size(); ++e) {
    const GroupEventPlan& event = plan.events[e];
    if (event.uids.empty()) {
      out.push_back({e, 0, 0, event.type});
      continue;
    }
    std::size_t from = 0;
    while (from < event.uids.size()) {
      const v1::GroupEventType type = event.type == v1::CREATED && from > 0 ? v1::MEMBERS_ADDED : event.type;
      std::size_t size = fixed_row_bytes(plan, type);
      std::size_t to = from;
      while (to < event.uids.size() && to - from < kEventMaxUids) {
        const std::size_t cost = uid_cost(event.uids[to]);
        if (to > from && size + cost > max_row_bytes) break;
        size += cost;
        ++to;
      }
      out.push_back({e, from, to, type});
      from = to;
    }
  }
  return out;
}

v1::Message event_message(const GroupPlan& plan, const EventSlice& slice) {
  const GroupEventPlan& e = plan.events.at(slice.event);
  v1::GroupEvent event;
  event.set_type(slice.type);
  event.set_gid(plan.info.gid());
  event.set_actor(plan.actor);
  for (std::size_t i = slice.from; i < slice.to; ++i) event.add_uids(e.uids[i]);
  *event.mutable_group() = plan.info;
  v1::Message m;
  m.set_conv_type(v1::GROUP);
  m.set_from(plan.actor);
  m.set_to(plan.info.gid());
  m.set_content_type(kGroupEventType);
  m.set_body(event.SerializeAsString());
  return m;
}

std::uint64_t plan_rows(const GroupPlan& plan, const std::vector<EventSlice>& slices) {
  std::uint64_t rows = 0;
  for (const EventSlice& s : slices)
    rows += plan.events[s.event].named_only ? s.to - s.from : plan.events[s.event].recipients.size();
  return rows;
}

std::vector<std::string> slice_recipients(const GroupPlan& plan, const EventSlice& slice) {
  const GroupEventPlan& e = plan.events.at(slice.event);
  if (!e.named_only) return e.recipients;
  return {e.uids.begin() + static_cast<std::ptrdiff_t>(slice.from),
          e.uids.begin() + static_cast<std::ptrdiff_t>(slice.to)};
}

std::vector<std::string> switching_recipients(const GroupPlan& plan, const EventSlice& slice,
                                              const std::vector<std::string>& before) {
  const GroupEventPlan& e = plan.events.at(slice.event);
  if (e.type != v1::CREATED && e.type != v1::MEMBERS_ADDED) return slice_recipients(plan, slice);
  std::vector<std::string> out = before;
  out.insert(out.end(), e.uids.begin() + static_cast<std::ptrdiff_t>(slice.from),
             e.uids.begin() + static_cast<std::ptrdiff_t>(slice.to));
  sort_unique(out);
  return out;
}

void read_fanout(GroupPlan& plan) {
  for (GroupEventPlan& e : plan.events) {
    if (e.type == v1::DISMISSED) continue;
    e.recipients.clear();
    e.named_only = e.type == v1::MEMBERS_ADDED || e.type == v1::MEMBERS_REMOVED || e.type == v1::MEMBER_LEFT;
  }
}

bool switches_to_read_fanout(const GroupState* g, const GroupPlan& plan, std::uint32_t threshold) {
  if ((g && g->info.large()) || plan.dismiss) return false;
  return plan.info.member_count() > threshold;
}

v1::Message fanout_changed_message(const GroupPlan& plan, const v1::Group& info) {
  GroupPlan changed;
  changed.info = info;
  changed.actor = plan.actor;
  changed.events.push_back({v1::FANOUT_CHANGED, {}, {}});
  return event_message(changed, EventSlice{0, 0, 0, v1::FANOUT_CHANGED});
}

std::size_t largest_event_row() {
  // The longest ids (64 bytes), name and announcement, one uid.
  const std::string id(64, 'x');
  GroupPlan plan;
  plan.actor = id;
  plan.info.set_gid(id);
  plan.info.set_name(std::string(kMaxGroupNameBytes, 'n'));
  plan.info.set_owner(id);
  plan.info.set_announcement(std::string(kMaxAnnouncementBytes, 'a'));
  plan.info.set_created_ms(INT64_MAX);
  plan.info.set_member_count(UINT32_MAX);
  plan.info.set_large(true);
  plan.info.set_large_from_seq(UINT64_MAX);
  plan.events.push_back({v1::MEMBERS_REMOVED, {id}, {}});
  return fixed_row_bytes(plan, v1::MEMBERS_REMOVED) + uid_cost(id);
}

}  // namespace im::core
