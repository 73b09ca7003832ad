// TYPING: the per-connection cap and the fields on the loop, then the
// group's shard (GROUP), the typer's shard (the throttle) and the
// recipients' shards (typing.h). Answered only when refused.

#include <asio/post.hpp>

#include "core/commands.h"
#include "core/requests.h"
#include "core/service.h"
#include "core/typing.h"
#include "net/io_loop.h"
#include "store/conv_id.h"

namespace im::core {
namespace {

void on_typing(Service& s, Call& call, v1::TypingReq& req) {
  // Its own bucket: limits.messages_per_second does not count TYPING
  // (Service::on_frame).
  SessionLive& live = call.ctx.live_state();
  if (std::uint32_t wait_ms = live.typing.take(call.conn.loop().now_ms(), kTypingPerSecond, kTypingPerSecond))
    return call.fail(StatusCode::kRateLimited, "over 5 TYPING a second", wait_ms);
  if (auto ok = check_typing(call.ctx.uid, req); !ok) return call.fail(ok.error());
  auto job = std::make_shared<TypingJob>(TypingJob{call.ctx.uid, std::move(req), call.replier(), {}});
  if (job->req.conv_type() == v1::GROUP) {
    Shard& group = s.shard_for(store::group_conv(job->req.peer()));
    asio::post(group.context(), [&group, job = std::move(job)]() mutable { group.group_typing(std::move(job)); });
    return;
  }
  Shard& typer = s.shard_for(job->uid);
  asio::post(typer.context(), [&typer, job = std::move(job)]() mutable { typer.typing(std::move(job)); });
}

}  // namespace

void register_typing_commands(Dispatcher& d, Service& s) {
  d.add<v1::TypingReq>(Cmd::kTyping, [&s](Call& call, v1::TypingReq& req) { on_typing(s, call, req); });
}

}  // namespace im::core
