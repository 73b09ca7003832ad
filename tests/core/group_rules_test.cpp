// The group rules of PROTOCOL 5 ("Groups" and its "Details" list), one
// rule a test, on core/group_rules' pure plans: no store, no shard.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "core/group_rules.h"

using im::StatusCode;
using im::core::check_access;
using im::core::GroupActor;
using im::core::GroupPlan;
using im::core::GroupState;
using im::core::kEventMaxUids;
using im::core::list_members;
using im::core::plan_add;
using im::core::plan_create;
using im::core::plan_dismiss;
using im::core::plan_leave;
using im::core::plan_remove;
using im::core::plan_update;
using im::core::read_group;
namespace v1 = im::v1;

namespace {

constexpr std::uint32_t kMaxMembers = 2000;
constexpr std::size_t kFrameBudget = 65536 - 64;
constexpr std::int64_t kNow = 1'700'000'000'000;

const GroupActor kOwner{"owner", false};
const GroupActor kAdmin{"", true};

template <class T>
std::string status_of(const im::Result<T>& r) {
  return r ? "OK" : std::string(im::status_name(r.error().code));
}

// "u0000", "u0001", ...: uid order is number order.
std::vector<std::string> numbered(std::size_t n, const char* prefix = "u") {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%04zu", prefix, i);
    out.emplace_back(buf);
  }
  return out;
}

// A live group "team" owned by "owner" with `others` as members.
GroupState group_of(const std::vector<std::string>& others) {
  GroupState g;
  g.info.set_gid("team");
  g.info.set_name("Team");
  g.info.set_owner("owner");
  g.info.set_announcement("welcome");
  g.info.set_created_ms(kNow);
  g.members.emplace("owner", true);
  for (const auto& uid : others) g.members.emplace(uid, false);
  g.info.set_member_count(static_cast<std::uint32_t>(g.members.size()));
  return g;
}

v1::GroupCreateReq create_req(const std::string& gid, const std::vector<std::string>& members) {
  v1::GroupCreateReq req;
  req.set_gid(gid);
  req.set_name("Team");
  req.set_announcement("welcome");
  for (const auto& uid : members) req.add_members(uid);
  return req;
}

v1::GroupMembersReq members_req(const std::vector<std::string>& uids) {
  v1::GroupMembersReq req;
  req.set_gid("team");
  for (const auto& uid : uids) req.add_uids(uid);
  return req;
}

std::vector<std::string> changed_of(const GroupPlan& p) {
  return {p.members.changed().begin(), p.members.changed().end()};
}

std::vector<std::string> members_of(const v1::GroupResp& resp) {
  return {resp.members().begin(), resp.members().end()};
}

using Uids = std::vector<std::string>;

}  // namespace

// ---------------------------------------------------------------- create

TEST_CASE("create: a gid already taken is CONFLICT") {
  const GroupState existing = group_of({"alice"});
  CHECK(status_of(plan_create(&existing, "bob", create_req("team", {}), kNow, kMaxMembers)) == "CONFLICT");
}

TEST_CASE("create: a dismissed group's gid is never reused (CONFLICT)") {
  GroupState dismissed = group_of({});
  dismissed.dismissed = true;
  dismissed.members.clear();
  CHECK(status_of(plan_create(&dismissed, "bob", create_req("team", {}), kNow, kMaxMembers)) == "CONFLICT");
}

TEST_CASE("create: the creator is the owner and a member, counted once whether or not members lists them") {
  for (const Uids& listed : {Uids{"alice"}, Uids{"alice", "owner"}, Uids{"owner", "alice", "owner"}}) {
    auto p = plan_create(nullptr, "owner", create_req("team", listed), kNow, kMaxMembers);
    REQUIRE(p);
    CHECK(p->added == Uids{"alice", "owner"});
    CHECK(p->info.owner() == "owner");
    CHECK(p->info.member_count() == 2);
  }
}

TEST_CASE("create: the members are sorted and distinct") {
  auto p =
      plan_create(nullptr, "owner", create_req("team", {"carol", "alice", "bob", "alice", "carol"}), kNow, kMaxMembers);
  REQUIRE(p);
  CHECK(p->added == Uids{"alice", "bob", "carol", "owner"});
  CHECK(p->info.member_count() == 4);
}

TEST_CASE("create: the group row holds the request's fields, the owner and the creation time") {
  auto p = plan_create(nullptr, "owner", create_req("team", {"alice"}), kNow, kMaxMembers);
  REQUIRE(p);
  CHECK(p->info.gid() == "team");
  CHECK(p->info.name() == "Team");
  CHECK(p->info.announcement() == "welcome");
  CHECK(p->info.owner() == "owner");
  CHECK(p->info.created_ms() == kNow);
  CHECK_FALSE(p->dismiss);
  CHECK(p->removed.empty());
  CHECK(p->actor == "owner");
}

TEST_CASE("create: up to max_group_members (the owner included) is allowed, one more is TOO_LARGE") {
  CHECK(plan_create(nullptr, "owner", create_req("team", {"a", "b", "c", "d"}), kNow, 5));
  CHECK(plan_create(nullptr, "owner", create_req("team", {"a", "b", "c", "d", "owner"}), kNow, 5));
  CHECK(status_of(plan_create(nullptr, "owner", create_req("team", {"a", "b", "c", "d", "e"}), kNow, 5)) ==
        "TOO_LARGE");
}

TEST_CASE("create: duplicates do not count towards max_group_members") {
  CHECK(plan_create(nullptr, "owner", create_req("team", {"a", "a", "a", "b", "b"}), kNow, 3));
}

TEST_CASE("create: CREATED names the owner first, then the others in uid order, and reaches every member") {
  auto p = plan_create(nullptr, "owner", create_req("team", {"zoe", "alice", "owner"}), kNow, kMaxMembers);
  REQUIRE(p);
  REQUIRE(p->events.size() == 1);
  CHECK(p->events[0].type == v1::CREATED);
  CHECK(p->events[0].uids == Uids{"owner", "alice", "zoe"});
  CHECK(p->events[0].recipients == Uids{"alice", "owner", "zoe"});
}

TEST_CASE("create: exactly 500 members make a single CREATED event") {
  auto p = plan_create(nullptr, "owner", create_req("team", numbered(kEventMaxUids - 1)), kNow, kMaxMembers);
  REQUIRE(p);
  REQUIRE(p->events.size() == 1);
  CHECK(p->events[0].type == v1::CREATED);
  CHECK(p->events[0].uids.size() == kEventMaxUids);
}

TEST_CASE("create: CREATED lists at most 500 uids, owner first, MEMBERS_ADDED events carry the rest in order") {
  const Uids others = numbered(1200);  // 1201 members with the owner
  auto p = plan_create(nullptr, "owner", create_req("team", others), kNow, kMaxMembers);
  REQUIRE(p);
  REQUIRE(p->events.size() == 1);
  CHECK(p->events[0].uids.front() == "owner");
  CHECK(p->events[0].recipients == p->added);  // every member learns of every addition
  // The event messages (event_slices): CREATED with the first 500, then MEMBERS_ADDED.
  const auto slices = event_slices(*p, 1u << 20);
  REQUIRE(slices.size() == 3);
  CHECK(slices[0].type == v1::CREATED);
  CHECK(slices[0].to - slices[0].from == kEventMaxUids);
  Uids rest;
  for (std::size_t i = 1; i < slices.size(); ++i) {
    CHECK(slices[i].type == v1::MEMBERS_ADDED);
    v1::GroupEvent e;
    REQUIRE(e.ParseFromString(event_message(*p, slices[i]).body()));
    CHECK(e.type() == v1::MEMBERS_ADDED);
    rest.insert(rest.end(), e.uids().begin(), e.uids().end());
  }
  CHECK(rest == Uids(others.begin() + 499, others.end()));
  CHECK(p->info.member_count() == 1201);
}

// ---------------------------------------------------------------- check_access

TEST_CASE("access: a group that does not exist is NOT_FOUND") {
  CHECK(status_of(check_access(nullptr, {"alice", false})) == "NOT_FOUND");
  CHECK(status_of(check_access(nullptr, kAdmin)) == "NOT_FOUND");
}

TEST_CASE("access: a dismissed group is NOT_FOUND, for the admin API too") {
  GroupState g = group_of({"alice"});
  g.dismissed = true;
  CHECK(status_of(check_access(&g, {"alice", false})) == "NOT_FOUND");
  CHECK(status_of(check_access(&g, kAdmin)) == "NOT_FOUND");
}

TEST_CASE("access: a non-member is FORBIDDEN") {
  const GroupState g = group_of({"alice"});
  CHECK(status_of(check_access(&g, {"mallory", false})) == "FORBIDDEN");
}

TEST_CASE("access: members and the owner pass") {
  const GroupState g = group_of({"alice"});
  CHECK(check_access(&g, {"alice", false}));
  CHECK(check_access(&g, kOwner));
}

TEST_CASE("access: the admin API is never a non-member") {
  const GroupState g = group_of({"alice"});
  CHECK(check_access(&g, kAdmin));
}

// ---------------------------------------------------------------- add

TEST_CASE("add: any member may add members") {
  const GroupState g = group_of({"alice"});
  auto p = plan_add(g, {"alice", false}, members_req({"bob"}), kMaxMembers);
  REQUIRE(p);
  CHECK(changed_of(*p) == Uids{"bob"});
  CHECK(p->actor == "alice");
}

TEST_CASE("add: changed lists only the new members, sorted and distinct") {
  const GroupState g = group_of({"alice", "bob"});
  auto p = plan_add(g, kOwner, members_req({"dave", "alice", "carol", "owner", "dave"}), kMaxMembers);
  REQUIRE(p);
  CHECK(changed_of(*p) == Uids{"carol", "dave"});
  CHECK(p->added == Uids{"carol", "dave"});
}

TEST_CASE("add: member_count is the count after the change, in the answer and the group row") {
  const GroupState g = group_of({"alice", "bob"});
  auto p = plan_add(g, kOwner, members_req({"alice", "carol", "dave"}), kMaxMembers);
  REQUIRE(p);
  CHECK(p->members.member_count() == 5);
  CHECK(p->info.member_count() == 5);
}

TEST_CASE("add: MEMBERS_ADDED names the added and reaches the old members and the added") {
  const GroupState g = group_of({"alice"});
  auto p = plan_add(g, {"alice", false}, members_req({"carol", "bob"}), kMaxMembers);
  REQUIRE(p);
  REQUIRE(p->events.size() == 1);
  CHECK(p->events[0].type == v1::MEMBERS_ADDED);
  CHECK(p->events[0].uids == Uids{"bob", "carol"});
  CHECK(p->events[0].recipients == Uids{"alice", "bob", "carol", "owner"});
}

TEST_CASE("add: adding only members changes nothing and announces nothing") {
  const GroupState g = group_of({"alice"});
  auto p = plan_add(g, kOwner, members_req({"alice", "owner"}), kMaxMembers);
  REQUIRE(p);
  CHECK(p->members.changed().empty());
  CHECK(p->events.empty());
  CHECK(p->members.member_count() == 2);
}

TEST_CASE("add: growing past max_group_members is TOO_LARGE, already-members do not count") {
  const GroupState g = group_of({"a", "b"});  // 3 members
  CHECK(plan_add(g, kOwner, members_req({"a", "b", "c", "d"}), 5));
  CHECK(status_of(plan_add(g, kOwner, members_req({"c", "d", "e"}), 5)) == "TOO_LARGE");
}

// ---------------------------------------------------------------- remove

TEST_CASE("remove: only the owner may remove members, a member is FORBIDDEN") {
  const GroupState g = group_of({"alice", "bob"});
  CHECK(status_of(plan_remove(g, {"alice", false}, members_req({"bob"}))) == "FORBIDDEN");
  CHECK(plan_remove(g, kOwner, members_req({"bob"})));
}

TEST_CASE("remove: listing the owner is BAD_REQUEST, for the admin API too") {
  const GroupState g = group_of({"alice"});
  CHECK(status_of(plan_remove(g, kOwner, members_req({"alice", "owner"}))) == "BAD_REQUEST");
  CHECK(status_of(plan_remove(g, kAdmin, members_req({"owner"}))) == "BAD_REQUEST");
}

TEST_CASE("remove: changed lists only the members removed, sorted and distinct, non-members are left out") {
  const GroupState g = group_of({"alice", "bob", "carol"});
  auto p = plan_remove(g, kOwner, members_req({"carol", "stranger", "alice", "carol"}));
  REQUIRE(p);
  CHECK(changed_of(*p) == Uids{"alice", "carol"});
  CHECK(p->removed == Uids{"alice", "carol"});
  CHECK(p->members.member_count() == 2);
  CHECK(p->info.member_count() == 2);
}

TEST_CASE("remove: the removed members receive the event that removes them, as do the others") {
  const GroupState g = group_of({"alice", "bob", "carol"});
  auto p = plan_remove(g, kOwner, members_req({"bob"}));
  REQUIRE(p);
  REQUIRE(p->events.size() == 1);
  CHECK(p->events[0].type == v1::MEMBERS_REMOVED);
  CHECK(p->events[0].uids == Uids{"bob"});
  CHECK(p->events[0].recipients == Uids{"alice", "bob", "carol", "owner"});
}

TEST_CASE("remove: removing only non-members changes nothing and announces nothing") {
  const GroupState g = group_of({"alice"});
  auto p = plan_remove(g, kOwner, members_req({"stranger"}));
  REQUIRE(p);
  CHECK(p->members.changed().empty());
  CHECK(p->events.empty());
  CHECK(p->members.member_count() == 2);
}

// ---------------------------------------------------------------- leave

TEST_CASE("leave: the owner's GROUP_LEAVE is FORBIDDEN") {
  const GroupState g = group_of({"alice"});
  CHECK(status_of(plan_leave(g, kOwner)) == "FORBIDDEN");
}

TEST_CASE("leave: the leaver is removed and receives MEMBER_LEFT with every other member") {
  const GroupState g = group_of({"alice", "bob"});
  auto p = plan_leave(g, {"alice", false});
  REQUIRE(p);
  CHECK(p->removed == Uids{"alice"});
  CHECK(p->info.member_count() == 2);
  REQUIRE(p->events.size() == 1);
  CHECK(p->events[0].type == v1::MEMBER_LEFT);
  CHECK(p->events[0].uids == Uids{"alice"});
  CHECK(p->events[0].recipients == Uids{"alice", "bob", "owner"});
  CHECK(p->actor == "alice");
}

// ---------------------------------------------------------------- update

TEST_CASE("update: only the owner may update, a member is FORBIDDEN") {
  const GroupState g = group_of({"alice"});
  v1::GroupUpdateReq req;
  req.set_name("New");
  CHECK(status_of(plan_update(g, {"alice", false}, req)) == "FORBIDDEN");
  CHECK(plan_update(g, kOwner, req));
}

TEST_CASE("update: an absent field is left as it is") {
  const GroupState g = group_of({"alice"});
  SECTION("name only") {
    v1::GroupUpdateReq req;
    req.set_name("New");
    auto p = plan_update(g, kOwner, req);
    REQUIRE(p);
    CHECK(p->info.name() == "New");
    CHECK(p->info.announcement() == "welcome");
  }
  SECTION("announcement only") {
    v1::GroupUpdateReq req;
    req.set_announcement("");
    auto p = plan_update(g, kOwner, req);
    REQUIRE(p);
    CHECK(p->info.name() == "Team");
    CHECK(p->info.announcement().empty());
  }
  SECTION("neither") {
    auto p = plan_update(g, kOwner, v1::GroupUpdateReq{});
    REQUIRE(p);
    CHECK(p->info.name() == "Team");
    CHECK(p->info.announcement() == "welcome");
  }
}

TEST_CASE("update: UPDATED reaches every member and keeps the membership") {
  const GroupState g = group_of({"alice", "bob"});
  v1::GroupUpdateReq req;
  req.set_announcement("news");
  auto p = plan_update(g, kOwner, req);
  REQUIRE(p);
  REQUIRE(p->events.size() == 1);
  CHECK(p->events[0].type == v1::UPDATED);
  CHECK(p->events[0].recipients == Uids{"alice", "bob", "owner"});
  CHECK(p->added.empty());
  CHECK(p->removed.empty());
  CHECK(p->info.member_count() == 3);
}

// ---------------------------------------------------------------- dismiss

TEST_CASE("dismiss: only the owner may dismiss, a member is FORBIDDEN") {
  const GroupState g = group_of({"alice"});
  CHECK(status_of(plan_dismiss(g, {"alice", false})) == "FORBIDDEN");
}

TEST_CASE("dismiss: every member receives DISMISSED, is removed, and member_count drops to 0") {
  const GroupState g = group_of({"alice", "bob"});
  auto p = plan_dismiss(g, kOwner);
  REQUIRE(p);
  CHECK(p->dismiss);
  CHECK(p->info.member_count() == 0);
  CHECK(p->removed == Uids{"alice", "bob", "owner"});
  REQUIRE(p->events.size() == 1);
  CHECK(p->events[0].type == v1::DISMISSED);
  CHECK(p->events[0].recipients == Uids{"alice", "bob", "owner"});
}

// ---------------------------------------------------------------- the admin API

TEST_CASE("admin: the admin API has the owner's rights, and its events name the owner") {
  const GroupState g = group_of({"alice", "bob"});
  v1::GroupUpdateReq update;
  update.set_name("Renamed");
  auto added = plan_add(g, kAdmin, members_req({"carol"}), kMaxMembers);
  auto removed = plan_remove(g, kAdmin, members_req({"bob"}));
  auto updated = plan_update(g, kAdmin, update);
  auto dismissed = plan_dismiss(g, kAdmin);
  REQUIRE(added);
  REQUIRE(removed);
  REQUIRE(updated);
  REQUIRE(dismissed);
  CHECK(added->actor == "owner");
  CHECK(removed->actor == "owner");
  CHECK(updated->actor == "owner");
  CHECK(dismissed->actor == "owner");
}

// ---------------------------------------------------------------- list_members / read_group

TEST_CASE("members: listed in uid order after members_after") {
  const GroupState g = group_of({"dave", "alice", "carol", "bob"});
  v1::GroupResp out;
  list_members(g, "bob", 0, kFrameBudget, out);
  CHECK(members_of(out) == Uids{"carol", "dave", "owner"});
  CHECK_FALSE(out.members_more());
}

TEST_CASE("members: members_after past the last uid lists nothing, with nothing more") {
  const GroupState g = group_of({"alice"});
  v1::GroupResp out;
  list_members(g, "zzz", 0, kFrameBudget, out);
  CHECK(out.members().empty());
  CHECK_FALSE(out.members_more());
}

TEST_CASE("members: the limit defaults to 500, with members_more when more remain") {
  const GroupState g = group_of(numbered(600));
  v1::GroupResp out;
  list_members(g, "", 0, kFrameBudget, out);
  CHECK(out.members_size() == 500);
  CHECK(out.members_more());
  CHECK(out.members(0) == "owner");  // "o" sorts before "u"
}

TEST_CASE("members: a limit over 1000 is clamped to 1000, not refused") {
  const GroupState g = group_of(numbered(1200));
  v1::GroupResp out;
  list_members(g, "", 5000, kFrameBudget, out);
  CHECK(out.members_size() == 1000);
  CHECK(out.members_more());
}

TEST_CASE("members: a limit that reaches the last member sets no members_more") {
  const GroupState g = group_of({"alice", "bob"});  // 3 members
  v1::GroupResp exact;
  list_members(g, "", 3, kFrameBudget, exact);
  CHECK(exact.members_size() == 3);
  CHECK_FALSE(exact.members_more());
  v1::GroupResp short_of;
  list_members(g, "", 2, kFrameBudget, short_of);
  CHECK(members_of(short_of) == Uids{"alice", "bob"});
  CHECK(short_of.members_more());
}

TEST_CASE("members: the answer fits the frame budget, with members_more when it stopped early") {
  Uids long_uids;
  for (const auto& uid : numbered(1000)) long_uids.push_back(uid + std::string(59, 'x'));  // 64 bytes each
  const GroupState g = group_of(long_uids);
  constexpr std::size_t kSmallBudget = 8192;
  v1::GroupGetReq req;
  req.set_with_members(true);
  req.set_members_limit(1000);
  const v1::GroupResp out = read_group(g, {"u0000", false}, req, kSmallBudget);
  CHECK(out.ByteSizeLong() <= kSmallBudget);
  CHECK(out.members_size() > 0);
  CHECK(out.members_size() < 1000);
  CHECK(out.members_more());
  CHECK(out.members(0) == "owner");
  CHECK(out.members(1) == long_uids[0]);
}

TEST_CASE("read_group: the group row, and members only when asked for") {
  const GroupState g = group_of({"alice", "bob"});
  v1::GroupGetReq req;
  req.set_gid("team");
  const v1::GroupResp without = read_group(g, {"alice", false}, req, kFrameBudget);
  CHECK(without.group().gid() == "team");
  CHECK(without.group().owner() == "owner");
  CHECK(without.group().member_count() == 3);
  CHECK(without.members().empty());
  CHECK_FALSE(without.members_more());

  req.set_with_members(true);
  req.set_members_after("alice");
  req.set_members_limit(1);
  const v1::GroupResp with = read_group(g, {"alice", false}, req, kFrameBudget);
  CHECK(members_of(with) == Uids{"bob"});
  CHECK(with.members_more());
}

TEST_CASE("read_group: the admin API gets every member, past the limit and the frame budget") {
  const GroupState g = group_of(numbered(1500));
  v1::GroupGetReq req;
  req.set_with_members(true);
  const v1::GroupResp out = read_group(g, kAdmin, req, 1024);
  REQUIRE(out.members_size() == 1501);
  CHECK_FALSE(out.members_more());
  CHECK(members_of(out) == im::core::member_uids(g));
}

// ---------------------------------------------------------------- large groups (PROTOCOL 9)

TEST_CASE("large: a plan switches when the group would pass the threshold, once, and never when dismissed") {
  using im::core::switches_to_read_fanout;
  GroupState g = group_of({"alice", "bob"});  // 3 members
  auto add = plan_add(g, kOwner, members_req({"carol"}), kMaxMembers);
  REQUIRE(add);
  CHECK(switches_to_read_fanout(&g, *add, 3));
  CHECK_FALSE(switches_to_read_fanout(&g, *add, 4));
  auto create = plan_create(nullptr, "owner", create_req("team", {"a", "b", "c"}), kNow, kMaxMembers);
  REQUIRE(create);
  CHECK(switches_to_read_fanout(nullptr, *create, 3));
  g.info.set_large(true);
  CHECK_FALSE(switches_to_read_fanout(&g, *add, 3));  // one way: large already
  g.info.set_large(false);
  auto dismiss = plan_dismiss(group_of(numbered(10)), kOwner);
  REQUIRE(dismiss);
  CHECK_FALSE(switches_to_read_fanout(nullptr, *dismiss, 3));
}

TEST_CASE("large: membership events go to the users each event message names, the others to no inbox") {
  using im::core::event_slices;
  using im::core::plan_rows;
  using im::core::read_fanout;
  using im::core::slice_recipients;
  const GroupState g = group_of(numbered(10));
  auto add = plan_add(g, kOwner, members_req(numbered(700, "n")), kMaxMembers);
  REQUIRE(add);
  read_fanout(*add);
  const auto slices = event_slices(*add, kFrameBudget);
  REQUIRE(slices.size() == 2);  // 500 + 200
  CHECK(slice_recipients(*add, slices[0]) == Uids(add->events[0].uids.begin(), add->events[0].uids.begin() + 500));
  CHECK(slice_recipients(*add, slices[1]).size() == 200);
  CHECK(plan_rows(*add, slices) == 700);

  auto remove = plan_remove(g, kOwner, members_req({"u0001", "u0002"}));
  REQUIRE(remove);
  read_fanout(*remove);
  CHECK(slice_recipients(*remove, event_slices(*remove, kFrameBudget)[0]) == Uids{"u0001", "u0002"});

  auto leave = plan_leave(g, {"u0003", false});
  REQUIRE(leave);
  read_fanout(*leave);
  CHECK(slice_recipients(*leave, event_slices(*leave, kFrameBudget)[0]) == Uids{"u0003"});

  auto update = plan_update(g, kOwner, v1::GroupUpdateReq());
  REQUIRE(update);
  read_fanout(*update);
  const auto update_slices = event_slices(*update, kFrameBudget);
  CHECK(slice_recipients(*update, update_slices[0]).empty());
  CHECK(plan_rows(*update, update_slices) == 0);
}

TEST_CASE("large: FANOUT_CHANGED names the actor and carries the group as switched") {
  auto create = plan_create(nullptr, "owner", create_req("team", {"a", "b", "c"}), kNow, kMaxMembers);
  REQUIRE(create);
  v1::Group info = create->info;
  info.set_large(true);
  info.set_large_from_seq(4);
  auto m = im::core::fanout_changed_message(*create, info);
  CHECK(m.conv_type() == v1::GROUP);
  CHECK(m.to() == "team");
  CHECK(m.from() == "owner");
  CHECK(m.content_type() == 10001);
  v1::GroupEvent e;
  REQUIRE(e.ParseFromString(m.body()));
  CHECK(e.type() == v1::FANOUT_CHANGED);
  CHECK(e.actor() == "owner");
  CHECK(e.uids_size() == 0);
  CHECK(e.group().large());
  CHECK(e.group().large_from_seq() == 4);
}

TEST_CASE("large: a switching add goes to the members before it and the users each message names") {
  using im::core::event_slices;
  using im::core::member_uids;
  using im::core::switching_recipients;
  const GroupState g = group_of({"alice", "bob"});
  auto add = plan_add(g, kOwner, members_req(numbered(600, "n")), kMaxMembers);
  REQUIRE(add);
  const auto slices = event_slices(*add, kFrameBudget);
  REQUIRE(slices.size() == 2);
  const auto before = member_uids(g);
  auto first = switching_recipients(*add, slices[0], before);
  CHECK(first.size() == 3 + 500);
  CHECK(std::count(first.begin(), first.end(), "n0000") == 1);
  CHECK(std::count(first.begin(), first.end(), "n0599") == 0);
  auto second = switching_recipients(*add, slices[1], before);
  CHECK(second.size() == 3 + 100);
  CHECK(std::count(second.begin(), second.end(), "alice") == 1);
  // A dismissal of a large group still reaches every member's inbox.
  auto dismiss = plan_dismiss(g, kOwner);
  REQUIRE(dismiss);
  im::core::read_fanout(*dismiss);
  CHECK(im::core::slice_recipients(*dismiss, event_slices(*dismiss, kFrameBudget)[0]) == Uids{"alice", "bob", "owner"});
}

TEST_CASE("large: plans for a large group copy no member list (read_fanout names the inboxes)") {
  GroupState g = group_of(numbered(3000));
  g.info.set_large(true);
  auto add = plan_add(g, kOwner, members_req({"n0001"}), 5000);
  REQUIRE(add);
  REQUIRE(add->events.size() == 1);
  CHECK(add->events[0].uids == Uids{"n0001"});
  CHECK(add->events[0].recipients.empty());
  auto remove = plan_remove(g, kOwner, members_req({"u0001"}));
  REQUIRE(remove);
  CHECK(remove->events.at(0).recipients.empty());
  auto leave = plan_leave(g, {"u0002", false});
  REQUIRE(leave);
  CHECK(leave->events.at(0).recipients.empty());
  auto update = plan_update(g, kOwner, v1::GroupUpdateReq());
  REQUIRE(update);
  CHECK(update->events.at(0).recipients.empty());
  // DISMISSED still reaches every member (it ends the group for those offline).
  auto dismiss = plan_dismiss(g, kOwner);
  REQUIRE(dismiss);
  CHECK(dismiss->events.at(0).recipients.size() == 3001);
}
