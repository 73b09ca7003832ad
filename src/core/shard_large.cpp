// Shard, part six: large groups (PROTOCOL 9). A message of a group on read
// fan-out is one history row; its PUSH (inbox_seq 0) reaches the online
// members through a per-shard index of them by group, so no message walks
// the member list. The index: each shard keeps, for the users it owns that
// have a session, which of their groups are large. It is filled when a
// user's first session starts (the user's groups against env.large),
// emptied when the last one ends, and kept current by the groups' shards,
// which post the members a large group gains or loses once that change is
// durable (and all of them at the switch).

#include <algorithm>

#include <spdlog/spdlog.h>
#include <asio/post.hpp>

#include "common/metrics.h"
#include "core/fanout_plan.h"
#include "core/shard.h"
#include "core/wire.h"
#include "store/conv_id.h"

namespace im::core {
namespace {

// The newest history rows a large group's unread count is taken from
// (docs/protocol.md, "Large groups": exact up to about this many).
constexpr std::uint64_t kLargeUnreadScan = 10'000;
constexpr std::uint32_t kRecallEvent = 10003;
// Up to this many large groups, a first session looks each up instead of
// scanning all of the user's groups.
constexpr std::size_t kLargePointReads = 64;

}  // namespace

// One message of a large group, encoded once for every shard.
struct Shard::LargePush {
  std::string gid;
  std::vector<net::SharedFrame> frames;
  std::uint64_t except_session = 0;  // the sending session: answered by its SendResp
  std::vector<std::string> named;    // sorted: they get the message in their inbox
};

// ---------------------------------------------------------------- the group's shard

Result<std::uint64_t> Shard::stage_large_message(v1::Message msg, std::vector<std::string> named,
                                                 std::shared_ptr<SendJob> job, std::size_t members) {
  auto staged = stage_group_history(msg, job.get(), members);
  if (!staged) return staged.error();
  const std::uint64_t conv_seq = msg.conv_seq();
  // The sender has no inbox row to carry its dedupe row: it gets its own.
  if (job && !msg.client_msg_id().empty())
    commit_.batch().put_dedupe(msg.from(), msg.client_msg_id(), {msg.msg_id(), conv_seq, 0, msg.server_time_ms()});
  auto shared = std::make_shared<const v1::Message>(std::move(msg));
  if (!named.empty()) {
    // The users an event names get it in their inboxes, through a fan-out
    // record as any group event (at most kEventMaxUids of them).
    store::FanoutKey key{store::group_conv(shared->to()), conv_seq, ""};
    commit_.batch().put_group_fanout(key, {*shared, named, static_cast<std::uint32_t>(env_.shards.size())});
    commit_.after_commit([this, key, shared, named](bool ok) {
      if (ok) start_group_fanout(key, shared, named, nullptr);
    });
  }
  commit_.after_commit([this, shared, job, named = std::move(named)](bool ok) mutable {
    if (!ok) {
      if (job) answer_on_sender(job, not_written("the message could not be stored"));
      return;
    }
    if (job) answer_on_sender(job, send_resp(*shared, 0));
    push_large(*shared, job ? job->session_id : 0, std::move(named));
  });
  return conv_seq;
}

void Shard::push_large(const v1::Message& msg, std::uint64_t except_session, std::vector<std::string> named) {
  auto push = std::make_shared<LargePush>();
  push->gid = msg.to();
  const std::string row = msg.SerializeAsString();
  push->frames = wire::push_frames({row}, frame_budget(), [this] { return env_.next_push_seq(); });
  push->except_session = except_session;
  std::sort(named.begin(), named.end());
  push->named = std::move(named);
  for (auto& shard : env_.shards) asio::post(shard->context(), [s = shard.get(), push] { s->deliver_large(*push); });
}

void Shard::index_large_members(const std::string& gid, std::vector<std::string> uids, bool joined) {
  std::vector<std::vector<std::string>> per_shard(env_.shards.size());
  for (auto& uid : uids) per_shard[shard_of(uid, per_shard.size())].push_back(std::move(uid));
  for (std::size_t i = 0; i < per_shard.size(); ++i) {
    if (per_shard[i].empty()) continue;
    Shard& s = *env_.shards[i];
    asio::post(s.context(),
               [&s, gid, uids = std::move(per_shard[i]), joined] { s.large_members_changed(gid, uids, joined); });
  }
}

// ---------------------------------------------------------------- every shard

void Shard::deliver_large(const LargePush& push) {
  auto online = large_online_.find(push.gid);
  if (online == large_online_.end()) return;
  std::vector<std::shared_ptr<net::Connection>> conns;
  conns.reserve(online->second.size());
  for (const auto& [uid, u] : online->second) {
    if (std::binary_search(push.named.begin(), push.named.end(), uid)) continue;
    for (const SessionRef& s : u->sessions) {
      if (s.session_id == push.except_session) continue;
      if (auto conn = s.conn.lock()) conns.push_back(std::move(conn));
    }
  }
  metrics::get().pushes.inc(conns.size() * push.frames.size());
  net::send_to_all_from_any_thread(std::move(conns), push.frames);
}

void Shard::large_members_changed(const std::string& gid, const std::vector<std::string>& uids, bool joined) {
  for (const std::string& uid : uids) {
    if (!joined) {
      unindex_large(uid, gid);
      continue;
    }
    UserState* u = users_.peek_mut(uid);
    if (!u || u->sessions.empty()) continue;
    if (large_online_[gid].emplace(uid, u).second) large_of_[uid].push_back(gid);
  }
}

void Shard::large_group_dropped(const std::string& gid) {
  auto online = large_online_.find(gid);
  if (online == large_online_.end()) return;
  const auto uids = std::move(online->second);
  large_online_.erase(online);
  for (const auto& [uid, u] : uids) {
    auto of = large_of_.find(uid);
    if (of == large_of_.end()) continue;
    std::erase(of->second, gid);
    if (of->second.empty()) large_of_.erase(of);
  }
}

void Shard::index_large_groups(const std::string& uid) {
  if (env_.large.empty()) return;
  std::vector<std::string> gids;
  Result<Ok> scanned = Ok{};
  if (env_.large.size() <= kLargePointReads) {
    // Few large groups: a point read each, whatever the number of groups
    // the user is in (which another member can raise by adding it).
    for (auto& gid : env_.large.gids()) {
      auto member = env_.store.in_group(uid, gid);
      if (!member) {
        scanned = member.error();
        break;
      }
      if (*member) gids.push_back(std::move(gid));
    }
  } else {
    scanned = env_.store.scan_user_groups(uid, [&](std::string_view gid) {
      if (env_.large.from_seq(gid)) gids.emplace_back(gid);
      return true;
    });
  }
  // Without the index the user's sessions miss the pushes of their large
  // groups, not the messages: CONV_LIST shows them behind, HISTORY has them.
  if (!scanned)
    spdlog::warn("shard {}: the groups of {} could not be read ({}); no large-group pushes until the next login",
                 index_, uid, scanned.error().message);
  UserState* u = users_.peek_mut(uid);
  if (!u) return;
  for (const auto& gid : gids)
    if (large_online_[gid].emplace(uid, u).second) large_of_[uid].push_back(gid);
}

void Shard::unindex_large_groups(const std::string& uid) {
  auto of = large_of_.find(uid);
  if (of == large_of_.end()) return;
  for (const std::string& gid : of->second) {
    auto online = large_online_.find(gid);
    if (online == large_online_.end()) continue;
    online->second.erase(uid);
    if (online->second.empty()) large_online_.erase(online);
  }
  large_of_.erase(of);
}

void Shard::unindex_large(const std::string& uid, const std::string& gid) {
  auto online = large_online_.find(gid);
  if (online == large_online_.end() || online->second.erase(uid) == 0) return;
  if (online->second.empty()) large_online_.erase(online);
  auto of = large_of_.find(uid);
  if (of == large_of_.end()) return;
  std::erase(of->second, gid);
  if (of->second.empty()) large_of_.erase(of);
}

// ---------------------------------------------------------------- the user's shard: CONV_LIST

Result<std::optional<store::ConvRecord>> Shard::large_view(UserState& u, const std::string& uid,
                                                           const std::string& conv, const store::ConvRecord& r,
                                                           std::uint64_t* budget) {
  if (conv_type_of_id(conv) != v1::GROUP) return std::optional<store::ConvRecord>();
  const std::string_view gid = std::string_view(conv).substr(2);
  const auto from = env_.large.from_seq(gid);
  if (!from) return std::optional<store::ConvRecord>();
  auto top = env_.store.last_history_seq(conv);
  if (!top) return top.error();
  // A former member sees nothing after the event that removed it (the
  // book's last row): HISTORY refuses it the rest too.
  auto member = env_.store.in_group(uid, gid);
  if (!member) return member.error();
  // Every caller lists from the book (the state `r` is its entry).
  ConvBook::LargeSeen& seen = u.book->large_seen()[conv];
  // What was read while a member stays (the removal's own row may still be
  // on its way to the inbox).
  if (!*member) *top = std::min(*top, std::max(r.last_conv_seq, seen.valid ? seen.top : 0));
  // The rows read lie above the read position and the rows that came by
  // write fan-out (below large_from_seq: the book has them); the user's own
  // messages among them move its read position (sending counts as
  // reading), and only the others' above its latest join (recorded with
  // the membership; for an older row, the book's first) are unread.
  const std::uint64_t joined = *member && **member > 0 ? **member : r.first_conv_seq;
  const std::uint64_t read_floor = std::max({r.read_seq, r.cleared_seq, *from - 1});
  const std::uint64_t floor = std::max(read_floor, joined > 0 ? joined - 1 : 0);
  const std::uint64_t window_start = std::max(read_floor, *top > kLargeUnreadScan ? *top - kLargeUnreadScan : 0);
  if (!seen.valid || seen.floor != floor || seen.seen_inbox_seq != r.seen_inbox_seq || seen.top > *top ||
      seen.top < window_start) {
    // From the book's state, the rows above the floor: its messages are not
    // in the book (events naming the user are, but they count for nothing).
    // Only the newest kLargeUnreadScan of them are read, also when more
    // than that came since the last listing.
    seen = ConvBook::LargeSeen{r, window_start, floor, r.seen_inbox_seq, true};
  }
  store::ConvRecord& v = seen.view;
  if (*top > v.last_conv_seq) {
    // The listing's last message: the newest row, whatever the scan reads.
    auto row = env_.store.get_history(conv, *top);
    if (!row) return row.error();
    v1::Message newest;
    v.last_conv_seq = *top;
    v.last_inbox_seq = 0;  // no inbox row
    if (*row && newest.ParseFromString(**row)) v.activity_ms = newest.server_time_ms();
  }
  if (*top <= seen.top || (budget && *budget == 0)) return std::optional<store::ConvRecord>(v);
  std::vector<std::uint64_t> deleted;  // ascending
  if (r.has_deletes) {
    auto scanned = env_.store.scan_deleted(uid, conv, seen.top + 1, *top + 1, false, [&](std::uint64_t seq) {
      deleted.push_back(seq);
      return true;
    });
    if (!scanned) return scanned.error();
  }
  auto next_deleted = deleted.begin();
  v1::Message m;
  std::uint64_t reached = seen.top;
  bool stopped = false;
  auto scanned = env_.store.scan_history(conv, seen.top + 1, *top + 1, [&](std::uint64_t seq, std::string_view row) {
    if (budget) {
      if (*budget == 0) {
        stopped = true;  // the next listing goes on from `reached`
        return false;
      }
      --*budget;
    }
    reached = seq;
    if (!m.ParseFromArray(row.data(), static_cast<int>(row.size()))) return true;
    if (m.content_type() == kRecallEvent) {
      v1::MessageRecall recall;
      if (recall.ParseFromString(m.body())) ConvBook::drop_unread(v, recall.target_conv_seq());
      return true;
    }
    if (m.content_type() >= 10000) return true;
    if (m.from() == uid) {
      // Sending counts as reading: nothing older is unread.
      v.read_seq = std::max(v.read_seq, seq);
      ConvBook::drop_unread_upto(v, seq);
      return true;
    }
    if (seq <= seen.floor) return true;  // before the user's join
    while (next_deleted != deleted.end() && *next_deleted < seq) ++next_deleted;
    if (next_deleted != deleted.end() && *next_deleted == seq) return true;
    ConvBook::add_unread(v, seq);
    return true;
  });
  if (!scanned) return scanned.error();
  seen.top = stopped ? reached : *top;
  return std::optional<store::ConvRecord>(v);
}

}  // namespace im::core
