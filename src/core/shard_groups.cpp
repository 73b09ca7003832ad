// Shard, part two: groups. The group's shard (that of "g:" + gid) owns the
// group row, its member cache and its conversation; every change is one
// batch (rows + the event's history row + its fan-out record), then the
// event or message is fanned out in slices on the members' shards.

#include <algorithm>
#include <random>

#include <fmt/format.h>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include "common/clock.h"
#include "core/ids.h"
#include "core/shard.h"
#include "store/keys.h"

namespace im::core {
namespace {

using store::Cf;

constexpr std::size_t kSliceRows = 256;         // inbox rows per batch in a fan-out
constexpr std::size_t kEventMaxUids = 500;      // uids one GroupEvent lists
constexpr std::uint32_t kMembersDefault = 500;  // GROUP_GET listing
constexpr std::uint32_t kMembersMax = 1000;
constexpr std::size_t kMaxNameBytes = 256;
constexpr std::size_t kMaxAnnouncementBytes = 4096;
constexpr std::size_t kListSlack = 256;  // frame room for the non-member fields
constexpr std::uint32_t kGroupEventType = 10001;
constexpr auto kSliceRetry = std::chrono::milliseconds(200);
// A replayed group row is looked for among the inbox rows this much older
// than the message, at most.
constexpr std::int64_t kReplayWindowMs = 60000;

std::string member_value(bool owner, std::int64_t joined_ms) {
  std::string v(1, owner ? 'O' : 'M');
  store::append_u64(v, static_cast<std::uint64_t>(joined_ms));
  return v;
}

std::string member_key(std::string_view gid, std::string_view uid) {
  std::string k = store::user_prefix(gid);
  k.append(uid);
  return k;
}

void fail(GroupCommand::Reply& r, StatusCode status, std::string why) {
  r.status = status;
  r.error = std::move(why);
}

std::string random_gid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("g{:016x}", rng());
}

}  // namespace

std::string encode_group_record(const v1::Message& msg, const std::vector<std::string>& recipients) {
  std::string v = "G";
  const std::string m = msg.SerializeAsString();
  store::append_u64(v, m.size());
  v += m;
  for (const auto& uid : recipients) {
    v.push_back(static_cast<char>(uid.size()));
    v += uid;
  }
  return v;
}

bool decode_group_record(std::string_view v, v1::Message& msg, std::vector<std::string>& recipients) {
  if (v.size() < 9 || v[0] != 'G') return false;
  const std::uint64_t len = store::read_u64(v.substr(1, 8));
  if (len > v.size() - 9 || !msg.ParseFromArray(v.data() + 9, static_cast<int>(len))) return false;
  std::size_t pos = 9 + len;
  while (pos < v.size()) {
    const std::size_t n = static_cast<unsigned char>(v[pos]);
    if (pos + 1 + n > v.size()) return false;
    recipients.emplace_back(v.substr(pos + 1, n));
    pos += 1 + n;
  }
  return true;
}

struct Shard::FanoutProgress {
  Shard* home = nullptr;  // the group's shard
  std::string record_key;
  std::size_t chains = 0;  // slice chains still running; touched only on `home`
};

Shard::GroupState& Shard::group(const std::string& gid) {
  GroupState& g = groups_[gid];
  if (g.loaded) return g;
  g.loaded = true;
  auto row = env_.store.get(Cf::kGroups, gid);
  if (!row || !row->has_value() || (*row)->empty()) return g;
  const std::string& v = **row;
  g.exists = g.info.ParseFromArray(v.data() + 1, static_cast<int>(v.size() - 1));
  g.dismissed = v[0] == 'D';
  if (!g.exists || g.dismissed) return g;
  const std::string prefix = store::user_prefix(gid);
  env_.store.scan(Cf::kMembers, prefix, store::prefix_end(prefix), [&](std::string_view key, std::string_view value) {
    g.members.emplace(std::string(key.substr(prefix.size())), !value.empty() && value[0] == 'O');
    return true;
  });
  return g;
}

void Shard::stage_group_row(const GroupState& g) {
  std::string v(1, g.dismissed ? 'D' : 'A');
  g.info.AppendToString(&v);
  batch_.put(Cf::kGroups, g.info.gid(), v);
}

void Shard::fill_group_resp(const GroupState& g, const std::string& after, std::uint32_t limit, v1::GroupResp& out) {
  *out.mutable_group() = g.info;
  if (limit == 0) limit = kMembersDefault;
  limit = std::min(limit, kMembersMax);
  std::size_t size = g.info.ByteSizeLong() + kListSlack;
  const std::size_t budget = env_.config.server.max_frame_bytes;
  for (auto it = g.members.upper_bound(after); it != g.members.end(); ++it) {
    if (static_cast<std::uint32_t>(out.members_size()) == limit || size + it->first.size() + 2 > budget) {
      out.set_members_more(true);
      break;
    }
    size += it->first.size() + 2;
    out.add_members(it->first);
  }
}

void Shard::group_command(std::shared_ptr<GroupCommand> cmd) {
  GroupCommand::Reply r;
  GroupCommand& c = *cmd;
  if (c.cmd == Cmd::kGroupCreate) {
    group_create(c, r);
  } else {
    GroupState& g = group(c.gid);
    if (!g.exists || g.dismissed) {
      fail(r, StatusCode::kNotFound, "no such group");
    } else {
      group_change(c, g, r);
    }
  }
  if (r.status != StatusCode::kOk) {
    c.done(r);
    return;
  }
  if (c.cmd == Cmd::kGroupGet) {  // a read: nothing to write
    c.done(r);
    return;
  }
  // Answer once the change is durable (its events are then durably queued).
  after_commit([cmd, r](bool ok) mutable {
    if (!ok) fail(r, StatusCode::kInternal, "the change could not be stored");
    cmd->done(r);
  });
  schedule_commit();
}

void Shard::group_create(GroupCommand& c, GroupCommand::Reply& r) {
  const v1::GroupCreateReq& req = c.create;
  GroupState& g = group(req.gid());
  if (g.exists) {
    fail(r, StatusCode::kConflict, "group id already taken");
    return;
  }
  std::vector<std::string> members{c.actor};
  for (const auto& uid : req.members())
    if (uid != c.actor) members.push_back(uid);
  std::sort(members.begin() + 1, members.end());
  members.erase(std::unique(members.begin() + 1, members.end()), members.end());
  if (members.size() > env_.config.limits.max_group_members) {
    fail(r, StatusCode::kTooLarge,
         fmt::format("over limits.max_group_members ({})", env_.config.limits.max_group_members));
    return;
  }
  if (batch_.count() >= kMaxBatchRows) commit();
  const std::int64_t now = wall_ms();
  g.exists = true;
  g.dismissed = false;
  g.info.set_gid(req.gid());
  g.info.set_name(req.name());
  g.info.set_owner(c.actor);
  g.info.set_announcement(req.announcement());
  g.info.set_created_ms(now);
  g.info.set_member_count(static_cast<std::uint32_t>(members.size()));
  for (const auto& uid : members) {
    const bool owner = uid == c.actor;
    g.members.emplace(uid, owner);
    batch_.put(Cf::kMembers, member_key(req.gid(), uid), member_value(owner, now));
    batch_.put(Cf::kUserGroups, member_key(uid, req.gid()), "");
  }
  stage_group_row(g);
  // CREATED lists the first 500 members; MEMBERS_ADDED events the rest.
  std::vector<std::string> first(members.begin(), members.begin() + std::min(members.size(), kEventMaxUids));
  stage_group_event(g, v1::CREATED, c.actor, first, members);
  if (members.size() > kEventMaxUids)
    stage_group_event(g, v1::MEMBERS_ADDED, c.actor, {members.begin() + kEventMaxUids, members.end()}, members);
  fill_group_resp(g, "", 0, r.group);
}

void Shard::group_change(GroupCommand& c, GroupState& g, GroupCommand::Reply& r) {
  if (c.admin && c.actor.empty()) c.actor = g.info.owner();  // events name the owner
  const bool member = g.members.count(c.actor) > 0;
  const bool owner = c.admin || g.info.owner() == c.actor;
  const std::string& gid = g.info.gid();
  if (!member && !c.admin) {
    fail(r, StatusCode::kForbidden, "not a member of the group");
    return;
  }
  if (batch_.count() >= kMaxBatchRows) commit();
  const std::int64_t now = wall_ms();
  std::vector<std::string> before;
  for (const auto& [uid, is_owner] : g.members) before.push_back(uid);

  switch (c.cmd) {
    case Cmd::kGroupGet:
      if (c.admin) {  // the admin API answers JSON of any size: every member
        *r.group.mutable_group() = g.info;
        for (const auto& [uid, is_owner] : g.members) r.group.add_members(uid);
        return;
      }
      fill_group_resp(g, c.get.with_members() ? c.get.members_after() : "", c.get.members_limit(), r.group);
      if (!c.get.with_members()) {
        r.group.clear_members();
        r.group.clear_members_more();
      }
      return;
    case Cmd::kGroupAddMembers: {
      std::vector<std::string> added;
      for (const auto& uid : c.members.uids())
        if (!g.members.count(uid)) added.push_back(uid);
      std::sort(added.begin(), added.end());
      added.erase(std::unique(added.begin(), added.end()), added.end());
      if (g.members.size() + added.size() > env_.config.limits.max_group_members) {
        fail(r, StatusCode::kTooLarge,
             fmt::format("over limits.max_group_members ({})", env_.config.limits.max_group_members));
        return;
      }
      for (const auto& uid : added) {
        g.members.emplace(uid, false);
        batch_.put(Cf::kMembers, member_key(gid, uid), member_value(false, now));
        batch_.put(Cf::kUserGroups, member_key(uid, gid), "");
      }
      g.info.set_member_count(static_cast<std::uint32_t>(g.members.size()));
      if (!added.empty()) {
        stage_group_row(g);
        std::vector<std::string> after;
        for (const auto& [uid, is_owner] : g.members) after.push_back(uid);
        stage_group_event(g, v1::MEMBERS_ADDED, c.actor, added, after);  // the added learn it too
      }
      for (const auto& uid : added) r.members.add_changed(uid);
      r.members.set_member_count(g.info.member_count());
      return;
    }
    case Cmd::kGroupRemoveMembers: {
      if (!owner) {
        fail(r, StatusCode::kForbidden, "only the owner may remove members");
        return;
      }
      std::vector<std::string> removed;
      for (const auto& uid : c.members.uids()) {
        if (uid == g.info.owner()) {
          fail(r, StatusCode::kBadRequest, "the owner cannot be removed");
          return;
        }
        if (g.members.count(uid)) removed.push_back(uid);
      }
      std::sort(removed.begin(), removed.end());
      removed.erase(std::unique(removed.begin(), removed.end()), removed.end());
      for (const auto& uid : removed) {
        g.members.erase(uid);
        batch_.del(Cf::kMembers, member_key(gid, uid));
        batch_.del(Cf::kUserGroups, member_key(uid, gid));
      }
      g.info.set_member_count(static_cast<std::uint32_t>(g.members.size()));
      if (!removed.empty()) {
        stage_group_row(g);
        stage_group_event(g, v1::MEMBERS_REMOVED, c.actor, removed, before);  // the removed learn it, last
      }
      for (const auto& uid : removed) r.members.add_changed(uid);
      r.members.set_member_count(g.info.member_count());
      return;
    }
    case Cmd::kGroupLeave:
      if (c.actor == g.info.owner()) {
        fail(r, StatusCode::kForbidden, "the owner cannot leave; dismiss the group instead");
        return;
      }
      g.members.erase(c.actor);
      batch_.del(Cf::kMembers, member_key(gid, c.actor));
      batch_.del(Cf::kUserGroups, member_key(c.actor, gid));
      g.info.set_member_count(static_cast<std::uint32_t>(g.members.size()));
      stage_group_row(g);
      stage_group_event(g, v1::MEMBER_LEFT, c.actor, {c.actor}, before);
      return;
    case Cmd::kGroupUpdate:
      if (!owner) {
        fail(r, StatusCode::kForbidden, "only the owner may update the group");
        return;
      }
      if (c.update.has_name()) g.info.set_name(c.update.name());
      if (c.update.has_announcement()) g.info.set_announcement(c.update.announcement());
      stage_group_row(g);
      stage_group_event(g, v1::UPDATED, c.actor, {}, before);
      *r.group.mutable_group() = g.info;
      return;
    case Cmd::kGroupDismiss:
      if (!owner) {
        fail(r, StatusCode::kForbidden, "only the owner may dismiss the group");
        return;
      }
      stage_group_event(g, v1::DISMISSED, c.actor, {}, before);
      for (const auto& uid : before) {
        batch_.del(Cf::kMembers, member_key(gid, uid));
        batch_.del(Cf::kUserGroups, member_key(uid, gid));
      }
      g.members.clear();
      g.dismissed = true;  // the gid is never reused
      g.info.set_member_count(0);
      stage_group_row(g);
      return;
    default: fail(r, StatusCode::kUnknownCommand, "not a group command");
  }
}

void Shard::stage_group_event(GroupState& g, int type, const std::string& actor, const std::vector<std::string>& uids,
                              const std::vector<std::string>& recipients) {
  // A change touching more than 500 uids is announced as several events.
  for (std::size_t from = 0; from < std::max<std::size_t>(uids.size(), 1); from += kEventMaxUids) {
    v1::GroupEvent event;
    event.set_type(static_cast<v1::GroupEventType>(type));
    event.set_gid(g.info.gid());
    event.set_actor(actor);
    for (std::size_t i = from; i < std::min(uids.size(), from + kEventMaxUids); ++i) event.add_uids(uids[i]);
    *event.mutable_group() = g.info;
    v1::Message m;
    m.set_msg_id(next_msg_id());
    m.set_conv_type(v1::GROUP);
    m.set_from(actor);
    m.set_to(g.info.gid());
    m.set_content_type(kGroupEventType);
    m.set_body(event.SerializeAsString());
    m.set_server_time_ms(wall_ms());
    stage_group_message(std::move(m), recipients, nullptr);
  }
}

void Shard::stage_group_message(v1::Message msg, std::vector<std::string> recipients, std::shared_ptr<SendJob> job) {
  const std::string conv = store::group_conv(msg.to());
  ConvState& c = conversation(conv);
  msg.set_conv_seq(++c.next);
  touched_convs_.push_back(&c);
  batch_.put(Cf::kHistory, store::history_key(conv, msg.conv_seq()), msg.SerializeAsString());
  ++staged_history_rows_;
  std::string record_key = store::history_key(conv, msg.conv_seq());
  batch_.put(Cf::kFanout, record_key, encode_group_record(msg, recipients));
  auto shared = std::make_shared<const v1::Message>(std::move(msg));
  after_commit([this, record_key, shared, recipients = std::move(recipients), job](bool ok) {
    if (ok) {
      start_group_fanout(record_key, shared, recipients, job);
    } else if (job) {
      Shard& sender = env_.shard_for(shared->from());
      asio::post(sender.context(), [&sender, job] { sender.finish_send(job, StatusCode::kInternal, {}); });
    }
  });
}

void Shard::start_group_fanout(std::string record_key, std::shared_ptr<const v1::Message> msg,
                               const std::vector<std::string>& recipients, std::shared_ptr<SendJob> job) {
  // One chain of slices per member shard; the sender's copy first, so its
  // SendResp does not wait behind the whole group.
  std::vector<std::vector<std::string>> by_shard(env_.shards.size());
  for (const auto& uid : recipients) {
    auto& list = by_shard[shard_of(uid, env_.shards.size())];
    if (job && uid == msg->from()) {
      list.insert(list.begin(), uid);
    } else {
      list.push_back(uid);
    }
  }
  auto progress = std::make_shared<FanoutProgress>();
  progress->home = this;
  progress->record_key = std::move(record_key);
  for (const auto& list : by_shard) progress->chains += list.empty() ? 0 : 1;
  if (progress->chains == 0) {
    group_fanout_done(progress);
    return;
  }
  for (std::size_t s = 0; s < by_shard.size(); ++s) {
    if (by_shard[s].empty()) continue;
    Shard& target = *env_.shards[s];
    auto uids = std::make_shared<const std::vector<std::string>>(std::move(by_shard[s]));
    const bool has_sender = job && uids->front() == msg->from();
    asio::post(target.context(), [&target, msg, uids, progress, job = has_sender ? job : nullptr] {
      target.append_group_slice(msg, uids, 0, progress, job);
    });
  }
}

void Shard::append_group_slice(std::shared_ptr<const v1::Message> msg,
                               std::shared_ptr<const std::vector<std::string>> uids, std::size_t offset,
                               std::shared_ptr<FanoutProgress> progress, std::shared_ptr<SendJob> job) {
  if (batch_.count() >= kMaxBatchRows) commit();
  const std::size_t end = std::min(uids->size(), offset + kSliceRows);
  for (std::size_t i = offset; i < end; ++i) {
    const bool is_sender = job && i == 0;
    stage_inbox((*uids)[i], *msg, "", is_sender, is_sender ? job : nullptr, true);
  }
  after_commit([this, msg, uids, offset, end, progress, job](bool ok) {
    if (!ok) {  // retry this slice; the fan-out record keeps it safe meanwhile
      auto retry = std::make_shared<asio::steady_timer>(context_, kSliceRetry);
      retry->async_wait([this, retry, msg, uids, offset, progress, job](const asio::error_code& ec) {
        if (!ec) append_group_slice(msg, uids, offset, progress, job);
      });
      return;
    }
    if (end < uids->size()) {
      // The next slice goes to the back of this shard's queue: other users'
      // traffic runs in between.
      asio::post(context_, [this, msg, uids, end, progress] { append_group_slice(msg, uids, end, progress, nullptr); });
      return;
    }
    Shard& home = *progress->home;
    asio::post(home.context(), [&home, progress] { home.group_fanout_done(progress); });
  });
  schedule_commit();
}

void Shard::group_fanout_done(const std::shared_ptr<FanoutProgress>& progress) {
  if (progress->chains > 0 && --progress->chains > 0) return;
  batch_.del(Cf::kFanout, progress->record_key);
  schedule_commit();
}

void Shard::replay_group_row(const std::string& uid, const v1::Message& msg) {
  UserState& u = user(uid);
  bool present = false;
  env_.store.scan(
      Cf::kInbox, store::user_prefix(uid), store::inbox_key(uid, u.inbox_committed + 1),
      [&](std::string_view, std::string_view row) {
        v1::Message m;
        if (!m.ParseFromArray(row.data(), static_cast<int>(row.size()))) return true;
        if (m.msg_id() == msg.msg_id()) {
          present = true;
          return false;
        }
        return m.server_time_ms() >= msg.server_time_ms() - kReplayWindowMs;
      },
      true);
  if (present) return;
  if (batch_.count() >= kMaxBatchRows) commit();
  stage_inbox(uid, msg, "", uid == msg.from(), nullptr, true);
  schedule_commit();
}

void Shard::group_history(const std::string& uid, const std::string& gid, const v1::HistoryReq& req, Requester who) {
  GroupState& g = group(gid);
  StatusCode status = StatusCode::kOk;
  std::string why;
  if (!g.exists || g.dismissed) {
    status = StatusCode::kNotFound;
    why = "no such group";
  } else if (!g.members.count(uid)) {
    status = StatusCode::kForbidden;
    why = "not a member of the group";
  }
  if (status != StatusCode::kOk) {
    net::send_from_any_thread(who.conn, net::make_error_response(who.request, status, why));
    return;
  }
  history(store::group_conv(gid), req, who);
}

v1::GroupListResp Shard::groups_of(const std::string& uid) {
  v1::GroupListResp out;
  const std::string prefix = store::user_prefix(uid);
  std::size_t size = kListSlack;
  env_.store.scan(Cf::kUserGroups, prefix, store::prefix_end(prefix), [&](std::string_view key, std::string_view) {
    auto row = env_.store.get(Cf::kGroups, key.substr(prefix.size()));
    if (!row || !row->has_value() || (*row)->size() < 1 || (**row)[0] != 'A') return true;
    v1::Group g;
    if (!g.ParseFromArray((*row)->data() + 1, static_cast<int>((*row)->size() - 1))) return true;
    const std::size_t n = g.ByteSizeLong() + 4;
    if (size + n > env_.config.server.max_frame_bytes) return false;
    size += n;
    *out.add_groups() = std::move(g);
    return true;
  });
  return out;
}

std::string new_group_id() {
  return random_gid();
}

}  // namespace im::core
