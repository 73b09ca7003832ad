// Shard, the live part: TYPING (typing.h) and PRESENCE_WATCH
// (presence_watch.h). Nothing here is stored; every method runs on the
// shard's thread.

#include <fmt/format.h>
#include <asio/post.hpp>

#include "common/clock.h"
#include "core/fanout_plan.h"
#include "core/group_rules.h"
#include "core/shard.h"
#include "net/frames.h"

namespace im::core {

// ---------------------------------------------------------------- typing

void Shard::group_typing(std::shared_ptr<TypingJob> job) {
  const std::string& gid = job->req.peer();
  // Never rest an answer on a membership change still in this batch.
  if (groups_.changed_in_batch(gid)) commit_.commit();
  auto g = groups_.find(gid);
  if (!g) return job->replier.fail(g.error());
  schedule_trim();
  if (auto access = check_access(*g, GroupActor{job->uid, false}); !access) return job->replier.fail(access.error());
  const std::uint32_t max = env_.config.limits.typing_max_members;
  if ((*g)->members.size() > max)
    return job->replier.fail(
        make_error(StatusCode::kDisabled, fmt::format("typing is off in groups of more than {} members", max)));
  job->members.reserve((*g)->members.size() - 1);
  for (const auto& [uid, owner] : (*g)->members)
    if (uid != job->uid) job->members.push_back(uid);
  Shard& typer = env_.shard_for(job->uid);
  if (&typer == this) return typing(std::move(job));
  asio::post(typer.context(), [&typer, job = std::move(job)]() mutable { typer.typing(std::move(job)); });
}

void Shard::typing(std::shared_ptr<TypingJob> job) {
  const v1::TypingReq& req = job->req;
  if (!typing_.admit(job->uid, req.conv_type(), req.peer(), req.state(), steady_ms())) return;
  const bool c2c = req.conv_type() == v1::C2C;
  v1::TypingPush push;
  push.set_conv_type(req.conv_type());
  push.set_peer(c2c ? job->uid : req.peer());  // from the receiver's side
  push.set_from(job->uid);
  push.set_state(req.state());
  push.set_expires_ms(kTypingExpiresMs);
  FrameHeader h;
  h.cmd = Cmd::kTypingPush;
  h.seq = env_.next_push_seq();
  net::SharedFrame frame = net::make_frame(h, &push);
  std::vector<std::string> recipients = c2c ? std::vector<std::string>{req.peer()} : std::move(job->members);
  // One list per shard, each posted once: no shard walks users it does not own.
  const std::size_t n = env_.shards.size();
  std::vector<std::vector<std::string>> by_shard(n);
  for (std::string& uid : recipients) by_shard[shard_of(uid, n)].push_back(std::move(uid));
  for (std::size_t i = 0; i < n; ++i) {
    if (by_shard[i].empty()) continue;
    Shard& to = *env_.shards[i];
    if (&to == this) {
      deliver_typing(by_shard[i], frame);
      continue;
    }
    asio::post(to.context(), [&to, uids = std::move(by_shard[i]), frame] { to.deliver_typing(uids, frame); });
  }
}

void Shard::deliver_typing(const std::vector<std::string>& uids, const net::SharedFrame& frame) {
  for (const std::string& uid : uids) {
    const UserState* u = users_.peek(uid);  // a user with a session is always cached
    if (!u) continue;
    for (const SessionRef& s : u->sessions)
      if (auto conn = s.conn.lock()) net::send_from_any_thread(conn, frame);
  }
}

// ---------------------------------------------------------------- presence watch

void Shard::watch(const Watcher& session, std::uint32_t request, const std::vector<std::string>& remove,
                  v1::PresenceResp& resp, const std::vector<int>& slots) {
  for (const std::string& uid : remove) watches_.unwatch(uid, session.session_id);
  for (int k : slots) {
    v1::Presence& p = *resp.mutable_presences(k);
    fill_presence(p);
    watches_.watch(p.uid(), session.session_id, session.conn, request, presence_mask(p));
  }
}

void Shard::activate_watches(std::uint64_t session_id, std::uint32_t request, const std::vector<std::string>& uids) {
  for (const std::string& uid : uids) {
    v1::Presence p;
    p.set_uid(uid);
    fill_presence(p);
    watches_.activate(uid, session_id, request, presence_mask(p));
  }
}

void Shard::unwatch(std::uint64_t session_id, const std::vector<std::string>& uids) {
  for (const std::string& uid : uids) watches_.unwatch(uid, session_id);
}

void Shard::presence_changed(const std::string& uid) {
  watches_.changed(uid, steady_ms());
}

void Shard::push_presence(const std::string& uid, const std::vector<const Watcher*>& to) {
  v1::PresencePush push;
  v1::Presence& p = *push.add_presences();
  p.set_uid(uid);
  fill_presence(p);
  FrameHeader h;
  h.cmd = Cmd::kPresencePush;
  h.seq = env_.next_push_seq();
  net::SharedFrame frame = net::make_frame(h, &push);  // encoded once for every watcher
  for (const Watcher* w : to)
    if (auto conn = w->conn.lock()) net::send_from_any_thread(conn, frame);
}

}  // namespace im::core
