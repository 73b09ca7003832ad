// SEND, ACK, PULL, HISTORY.

#include <asio/post.hpp>

#include "core/commands.h"
#include "core/requests.h"
#include "core/service.h"
#include "net/frames.h"
#include "store/conv_id.h"

namespace im::core {

std::shared_ptr<SendJob> make_send_job(const std::string& from, v1::SendReq& req) {
  auto job = std::make_shared<SendJob>();
  job->conv = req.conv_type() == v1::GROUP ? store::group_conv(req.to()) : store::c2c_conv(from, req.to());
  v1::Message& m = job->msg;
  m.set_conv_type(req.conv_type());
  m.set_from(from);
  m.set_to(req.to());
  m.set_client_msg_id(req.client_msg_id());
  m.set_content_type(req.content_type());
  m.set_body(std::move(*req.mutable_body()));
  return job;
}

namespace {

void on_send(Service& s, Call& call, v1::SendReq& req) {
  if (auto ok = check_send(call.ctx.uid, req, s.config().limits); !ok) return call.fail(ok.error());
  auto job = make_send_job(call.ctx.uid, req);
  job->session_id = call.ctx.session_id;
  job->done = [replier = call.replier()](const Result<v1::SendResp>& r) { replier.answer(r); };
  Shard& shard = s.shard_for(call.ctx.uid);
  asio::post(shard.context(), [&shard, job = std::move(job)]() mutable { shard.send(std::move(job)); });
}

void on_ack(Service& s, Call& call, const v1::AckReq& req) {
  // ACK has no answer when it succeeds.
  Shard& shard = s.shard_for(call.ctx.uid);
  asio::post(shard.context(), [&shard, replier = call.replier(), uid = call.ctx.uid, dt = call.ctx.device_type,
                               device = call.ctx.device_id, seq = req.inbox_seq()] {
    if (auto acked = shard.ack(uid, dt, device, seq); !acked) replier.fail(acked.error());
  });
}

void on_pull(Service& s, Call& call, const v1::PullReq& req) {
  Shard& shard = s.shard_for(call.ctx.uid);
  asio::post(shard.context(), [&shard, replier = call.replier(), uid = call.ctx.uid, dt = call.ctx.device_type,
                               device = call.ctx.device_id, req] {
    auto body = shard.pull(uid, dt, device, req);
    if (!body) return replier.fail(body.error());
    replier.ok_raw(std::move(*body));
  });
}

void on_history(Service& s, Call& call, const v1::HistoryReq& req) {
  auto conv = history_conv(call.ctx.uid, req);
  if (!conv) return call.fail(conv.error());
  const bool group = req.conv_type() == v1::GROUP;
  Shard& owner = group ? s.shard_for(*conv)
                       : conversation_owner(s.env(), req.conv_type(), call.ctx.uid,
                                            req.conv_type() == v1::C2C ? req.peer() : call.ctx.uid);
  asio::post(owner.context(),
             [&owner, replier = call.replier(), uid = call.ctx.uid, conv = std::move(*conv), group, req] {
               auto body = group ? owner.group_history(uid, req.peer(), req) : owner.history(uid, conv, req);
               if (!body) return replier.fail(body.error());
               replier.ok_raw(std::move(*body));
             });
}

}  // namespace

void register_message_commands(Dispatcher& d, Service& s) {
  d.add<v1::SendReq>(Cmd::kSend, [&s](Call& call, v1::SendReq& req) { on_send(s, call, req); });
  d.add<v1::AckReq>(Cmd::kAck, [&s](Call& call, v1::AckReq& req) { on_ack(s, call, req); });
  d.add<v1::PullReq>(Cmd::kPull, [&s](Call& call, v1::PullReq& req) { on_pull(s, call, req); });
  d.add<v1::HistoryReq>(Cmd::kHistory, [&s](Call& call, v1::HistoryReq& req) { on_history(s, call, req); });
}

}  // namespace im::core
