// PRESENCE: each shard fills in its own users, the last to finish answers.

#include <atomic>

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

}  // namespace

void register_presence_commands(Dispatcher& d, Service& s) {
  d.add<v1::PresenceReq>(Cmd::kPresence, [&s](Call& call, v1::PresenceReq& req) { on_presence(s, call, req); });
}

}  // namespace im::core
