// REPORT: a client's event for the business webhook, queued durably
// (DISABLED without webhook.url; UNAVAILABLE at webhook.max_queued, from
// Shard::queue_report).

#include <asio/post.hpp>

#include "core/commands.h"
#include "core/requests.h"
#include "core/service.h"

namespace im::core {

void register_report_commands(Dispatcher& d, Service& s) {
  d.add<v1::ReportReq>(Cmd::kReport, [&s](Call& call, v1::ReportReq& req) {
    // Nothing would deliver it: nothing is stored.
    if (s.config().webhook.url.empty()) return call.fail(StatusCode::kDisabled, "REPORT needs webhook.url");
    if (auto ok = check_report(req, s.config().limits); !ok) return call.fail(ok.error());
    Shard& shard = s.shard_for(call.ctx.uid);
    asio::post(shard.context(),
               [&shard, replier = call.replier(), uid = call.ctx.uid, dt = call.ctx.device_type, req = std::move(req)] {
                 shard.queue_report(uid, dt, req, [replier](const Result<Ok>& r) { replier.answer(r); });
               });
  });
}

}  // namespace im::core
