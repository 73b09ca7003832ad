#pragma once
// The rules of the group commands (PROTOCOL 5, "Groups"), as pure
// functions from a group's state and a request to a plan of the change, or
// the status that refuses it. The group's shard applies a plan (rows,
// events, cache); nothing here touches RocksDB, so every rule is
// unit-tested on its own (tests/core/group_rules_test.cpp).

#include <cstdint>
#include <string>
#include <vector>

#include "core/group_cache.h"
#include "im/result.h"
#include "proto/im.pb.h"

namespace im::core {

// A GroupEvent lists at most this many uids; a change naming more is
// announced as several events of the same type, in order.
inline constexpr std::size_t kEventMaxUids = 500;
inline constexpr std::uint32_t kMembersDefault = 500;  // GROUP_GET's members_limit
inline constexpr std::uint32_t kMembersMax = 1000;

// One event message of a plan: the uids [from, to) of plan.events[event],
// announced as `type` (a CREATED too long for one message goes on as
// MEMBERS_ADDED).
struct EventSlice {
  std::size_t event = 0;
  std::size_t from = 0, to = 0;
  v1::GroupEventType type = v1::GROUP_EVENT_TYPE_UNSPECIFIED;
};

// Who acts: a member, or the admin API, which has the owner's rights.
struct GroupActor {
  std::string uid;
  bool admin = false;
};

struct GroupEventPlan {
  v1::GroupEventType type = v1::GROUP_EVENT_TYPE_UNSPECIFIED;
  std::vector<std::string> uids;        // the users it names
  std::vector<std::string> recipients;  // whose inboxes get it
  // A large group's event (read_fanout): each of its event messages goes to
  // the inboxes of the uids it names only; `recipients` is empty.
  bool named_only = false;
};

struct GroupPlan {
  v1::Group info;                    // the group row after the change
  std::string actor;                 // whom the events name
  std::vector<std::string> added;    // sorted, distinct, new members
  std::vector<std::string> removed;  // sorted, distinct, former members
  std::vector<GroupEventPlan> events;
  bool dismiss = false;
  // The answer: GroupResp (CREATE, UPDATE) or GroupMembersResp (ADD, REMOVE).
  v1::GroupMembersResp members;
};

// The event messages of `plan`: each lists at most kEventMaxUids uids and
// makes a stored row (with every id at its largest) of at most
// `max_row_bytes`, so that it fits any PUSH, PULL or HISTORY answer; at
// least one uid each, whatever its size (config validation makes one fit).
std::vector<EventSlice> event_slices(const GroupPlan& plan, std::size_t max_row_bytes);
// The message of one slice; msg_id, server_time_ms and conv_seq are the
// shard's to set.
v1::Message event_message(const GroupPlan& plan, const EventSlice& slice);
// The inbox rows the slices cause (limits.fanout_rows_per_second).
std::uint64_t plan_rows(const GroupPlan& plan, const std::vector<EventSlice>& slices);
// The inboxes an event message of the plan goes to.
std::vector<std::string> slice_recipients(const GroupPlan& plan, const EventSlice& slice);

// ---- large groups (PROTOCOL 9)
// A plan for a group on read fan-out: events that add or remove members go
// to the inboxes of the users they name, DISMISSED to every member (it ends
// the group for those offline too), every other event to none (the online
// members get them pushed).
void read_fanout(GroupPlan& plan);
// The inboxes an event message of a plan that switches the group goes to:
// for CREATED and MEMBERS_ADDED the members before the change and the users
// it names (not every member: a 100,000-member create would write 200
// events to each of them), for any other event its recipients.
std::vector<std::string> switching_recipients(const GroupPlan& plan, const EventSlice& slice,
                                              const std::vector<std::string>& before);
// Whether the plan switches the group to read fan-out: it is not yet, and
// it would have more than `threshold` members (a dismissed one never does).
bool switches_to_read_fanout(const GroupState* g, const GroupPlan& plan, std::uint32_t threshold);
// The FANOUT_CHANGED event of `plan.actor` for the group as `info` says
// (large, large_from_seq set); msg_id, server_time_ms and conv_seq are the
// shard's to set.
v1::Message fanout_changed_message(const GroupPlan& plan, const v1::Group& info);
// The largest row a group event with one uid can make (config validation
// checks server.max_frame_bytes against it).
std::size_t largest_event_row();

// NOT_FOUND for a group that does not exist (or was dismissed), FORBIDDEN
// for a non-member (the admin API is never one).
Result<Ok> check_access(const GroupState* g, const GroupActor& actor);

// `existing`: the group with that gid, if any (even dismissed: gids are
// never reused).
Result<GroupPlan> plan_create(const GroupState* existing, const std::string& owner, const v1::GroupCreateReq& req,
                              std::int64_t now_ms, std::uint32_t max_members);
Result<GroupPlan> plan_add(const GroupState& g, const GroupActor& actor, const v1::GroupMembersReq& req,
                           std::uint32_t max_members);
Result<GroupPlan> plan_remove(const GroupState& g, const GroupActor& actor, const v1::GroupMembersReq& req);
Result<GroupPlan> plan_leave(const GroupState& g, const GroupActor& actor);
Result<GroupPlan> plan_update(const GroupState& g, const GroupActor& actor, const v1::GroupUpdateReq& req);
Result<GroupPlan> plan_dismiss(const GroupState& g, const GroupActor& actor);

// GROUP_GET's answer. The admin API gets every member.
v1::GroupResp read_group(const GroupState& g, const GroupActor& actor, const v1::GroupGetReq& req,
                         std::size_t frame_budget);
// Members in uid order after `after`, at most `limit` (0: the default) and
// what fits `frame_budget`, `members_more` when more remain.
void list_members(const GroupState& g, const std::string& after, std::uint32_t limit, std::size_t frame_budget,
                  v1::GroupResp& out);
std::vector<std::string> member_uids(const GroupState& g);

}  // namespace im::core
