// PRESENCE: each shard fills in its own users, the last to finish answers.
// PRESENCE_WATCH: the session's set of watched uids changes on its loop
// (all or nothing against limits.max_presence_watch), the pairs on the
// watched users' shards (presence_watch.h), which fill in the answer; the
// last to finish answers, then unmutes the pairs it added.

#include <atomic>
#include <unordered_set>

#include <fmt/format.h>
#include <asio/post.hpp>

#include "core/commands.h"
#include "core/fanout_plan.h"
#include "core/requests.h"
#include "core/service.h"

namespace im::core {
namespace {

void on_presence(Service& s, Call& call, const v1::PresenceReq& req) {
  if (auto ok = check_presence({req.uids().begin(), req.uids().end()}); !ok) return call.fail(ok.error());
  struct Gather {
    explicit Gather(Replier r) : replier(std::move(r)) {}
    Replier replier;
    v1::PresenceResp resp;
    std::atomic<std::size_t> remaining{0};
  };
  auto gather = std::make_shared<Gather>(call.replier());
  std::vector<std::vector<int>> by_shard(s.shard_count());
  for (int i = 0; i < req.uids_size(); ++i) {
    gather->resp.add_presences()->set_uid(req.uids(i));
    by_shard[shard_of(req.uids(i), s.shard_count())].push_back(i);
  }
  std::size_t busy = 0;
  for (const auto& indices : by_shard) busy += indices.empty() ? 0 : 1;
  if (busy == 0) return call.reply(&gather->resp);
  gather->remaining = busy;
  for (std::size_t i = 0; i < by_shard.size(); ++i) {
    if (by_shard[i].empty()) continue;
    Shard& shard = s.shard(i);
    asio::post(shard.context(), [&shard, gather, indices = std::move(by_shard[i])] {
      for (int k : indices) shard.fill_presence(*gather->resp.mutable_presences(k));  // each shard its own slots
      if (gather->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) gather->replier.ok(&gather->resp);
    });
  }
}

void on_presence_watch(Service& s, Call& call, const v1::PresenceWatchReq& req) {
  if (auto ok = check_presence_watch(req); !ok) return call.fail(ok.error());
  ClientContext& ctx = call.ctx;
  static const std::unordered_set<std::string> kNone;
  const std::unordered_set<std::string>& watched = ctx.live ? ctx.live->watched : kNone;
  // `clear`, then `remove`, then `add`: the uids that leave the list, and
  // those the request adds (each once, in request order; one watched
  // already is answered and stays).
  std::unordered_set<std::string> leaving;
  if (req.clear()) {
    leaving = watched;
  } else {
    for (const std::string& uid : req.remove())
      if (watched.count(uid) > 0) leaving.insert(uid);
  }
  std::vector<std::string> added;
  std::unordered_set<std::string> seen;
  std::size_t fresh = 0;
  for (const std::string& uid : req.add()) {
    if (!seen.insert(uid).second) continue;
    added.push_back(uid);
    if (leaving.erase(uid) == 0 && watched.count(uid) == 0) ++fresh;
  }
  const std::size_t total = watched.size() - leaving.size() + fresh;
  const std::uint32_t max = s.config().limits.max_presence_watch;
  if (total > max)
    return call.fail(StatusCode::kTooLarge,
                     fmt::format("{} uids would be watched, over limits.max_presence_watch ({})", total, max));
  v1::PresenceResp empty;
  if (leaving.empty() && added.empty()) return call.reply(&empty);

  SessionLive& live = ctx.live_state();
  for (const std::string& uid : leaving) live.watched.erase(uid);
  for (const std::string& uid : added) live.watched.insert(uid);
  if (live.watched.empty()) std::unordered_set<std::string>().swap(live.watched);  // holds nothing
  if (++live.watch_requests == 0) ++live.watch_requests;
  const std::uint32_t request = live.watch_requests;

  struct Gather {
    explicit Gather(Replier r) : replier(std::move(r)) {}
    Replier replier;
    v1::PresenceResp resp;
    std::vector<std::vector<std::string>> activate;  // per shard: the pairs to unmute once answered
    std::atomic<std::size_t> remaining{0};
  };
  const std::size_t n = s.shard_count();
  auto gather = std::make_shared<Gather>(call.replier());
  gather->activate.resize(n);
  std::vector<std::vector<int>> slots(n);
  std::vector<std::vector<std::string>> removes(n);
  for (int i = 0; i < static_cast<int>(added.size()); ++i) {
    const std::size_t shard = shard_of(added[i], n);
    gather->resp.add_presences()->set_uid(added[i]);
    slots[shard].push_back(i);
    gather->activate[shard].push_back(added[i]);
  }
  for (const std::string& uid : leaving) removes[shard_of(uid, n)].push_back(uid);
  std::size_t busy = 0;
  for (std::size_t i = 0; i < n; ++i) busy += slots[i].empty() && removes[i].empty() ? 0 : 1;
  gather->remaining = busy;
  const Watcher session{call.conn.shared_from_this(), ctx.session_id};
  for (std::size_t i = 0; i < n; ++i) {
    if (slots[i].empty() && removes[i].empty()) continue;
    Shard& shard = s.shard(i);
    asio::post(shard.context(),
               [&s, &shard, gather, session, request, remove = std::move(removes[i]), mine = std::move(slots[i])] {
                 shard.watch(session, request, remove, gather->resp, mine);
                 if (gather->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
                 gather->replier.ok(&gather->resp);
                 // Posted after the answer: no push to these pairs can overtake it.
                 for (std::size_t k = 0; k < gather->activate.size(); ++k) {
                   if (gather->activate[k].empty()) continue;
                   Shard& owner = s.shard(k);
                   asio::post(owner.context(), [&owner, gather, k, id = session.session_id, request] {
                     owner.activate_watches(id, request, gather->activate[k]);
                   });
                 }
               });
  }
}

}  // namespace

void register_presence_commands(Dispatcher& d, Service& s) {
  d.add<v1::PresenceReq>(Cmd::kPresence, [&s](Call& call, v1::PresenceReq& req) { on_presence(s, call, req); });
  d.add<v1::PresenceWatchReq>(Cmd::kPresenceWatch,
                              [&s](Call& call, v1::PresenceWatchReq& req) { on_presence_watch(s, call, req); });
}

void Service::release_watches(ClientContext& ctx) {
  if (!ctx.live || ctx.live->watched.empty()) return;
  const std::size_t n = shard_count();
  std::vector<std::vector<std::string>> by_shard(n);
  for (const std::string& uid : ctx.live->watched) by_shard[shard_of(uid, n)].push_back(uid);
  std::unordered_set<std::string>().swap(ctx.live->watched);
  for (std::size_t i = 0; i < n; ++i) {
    if (by_shard[i].empty()) continue;
    Shard& owner = shard(i);
    asio::post(owner.context(),
               [&owner, id = ctx.session_id, uids = std::move(by_shard[i])] { owner.unwatch(id, uids); });
  }
}

}  // namespace im::core
