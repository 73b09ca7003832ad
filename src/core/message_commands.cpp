// SEND, ACK, PULL, HISTORY, RECALL, EDIT, SEARCH.

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
  job->search_text = std::move(*req.mutable_search_text());
  return job;
}

std::shared_ptr<SendJob> make_change_job(const std::string& from, v1::ConvType type, const std::string& peer,
                                         const std::string& client_msg_id, std::uint32_t content_type,
                                         std::uint64_t target_seq, std::string edit_body, std::string search_text) {
  auto job = std::make_shared<SendJob>();
  job->conv = type == v1::GROUP ? store::group_conv(peer) : store::c2c_conv(from, peer);
  job->target_seq = target_seq;
  job->search_text = std::move(search_text);
  v1::Message& m = job->msg;
  m.set_conv_type(type);
  m.set_from(from);
  m.set_to(peer);
  m.set_client_msg_id(client_msg_id);
  m.set_content_type(content_type);
  // The body (MessageRecall or MessageEdit) is completed on the owner, which
  // knows the target; an edit's new body rides in it until then.
  if (content_type == 10004) {
    v1::MessageEdit edit;
    edit.set_target_conv_seq(target_seq);
    edit.set_body(std::move(edit_body));
    m.set_body(edit.SerializeAsString());
  }
  return job;
}

namespace {

// RECALL and EDIT go the way of a SEND: dedupe by client_msg_id, a msg_id,
// then the conversation's owner, which checks the target (check_change).
void post_change(Service& s, Call& call, std::shared_ptr<SendJob> job) {
  job->session_id = call.ctx.session_id;
  job->done = [replier = call.replier()](const Result<v1::SendResp>& r) { replier.answer(r); };
  Shard& shard = s.shard_for(call.ctx.uid);
  asio::post(shard.context(), [&shard, job = std::move(job)]() mutable { shard.send(std::move(job)); });
}

void on_recall(Service& s, Call& call, const v1::RecallReq& req) {
  if (auto ok = check_change(req.client_msg_id(), req.conv_type(), req.peer(), req.conv_seq()); !ok)
    return call.fail(ok.error());
  post_change(s, call,
              make_change_job(call.ctx.uid, req.conv_type(), req.peer(), req.client_msg_id(), 10003, req.conv_seq(), {}));
}

void on_edit(Service& s, Call& call, v1::EditReq& req) {
  if (auto ok = check_edit(req, s.config().limits); !ok) return call.fail(ok.error());
  post_change(s, call,
              make_change_job(call.ctx.uid, req.conv_type(), req.peer(), req.client_msg_id(), 10004, req.conv_seq(),
                              std::move(*req.mutable_body()), std::move(*req.mutable_search_text())));
}

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
  asio::post(shard.context(), [&shard, replier = call.replier(), uid = call.ctx.uid, session = call.ctx.session_id,
                               seq = req.inbox_seq()] {
    if (auto acked = shard.ack(uid, session, seq); !acked) replier.fail(acked.error());
  });
}

void on_pull(Service& s, Call& call, const v1::PullReq& req) {
  Shard& shard = s.shard_for(call.ctx.uid);
  asio::post(shard.context(),
             [&shard, replier = call.replier(), uid = call.ctx.uid, session = call.ctx.session_id, req] {
               auto body = shard.pull(uid, session, req);
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

void on_search(Service& s, Call& call, v1::SearchReq& req) {
  s.search(call.ctx.uid, std::move(req), true,
           [replier = call.replier()](const Result<v1::SearchResp>& r) { replier.answer(r); });
}

}  // namespace

void register_message_commands(Dispatcher& d, Service& s) {
  d.add<v1::SendReq>(Cmd::kSend, [&s](Call& call, v1::SendReq& req) { on_send(s, call, req); });
  d.add<v1::AckReq>(Cmd::kAck, [&s](Call& call, v1::AckReq& req) { on_ack(s, call, req); });
  d.add<v1::PullReq>(Cmd::kPull, [&s](Call& call, v1::PullReq& req) { on_pull(s, call, req); });
  d.add<v1::HistoryReq>(Cmd::kHistory, [&s](Call& call, v1::HistoryReq& req) { on_history(s, call, req); });
  d.add<v1::RecallReq>(Cmd::kRecall, [&s](Call& call, v1::RecallReq& req) { on_recall(s, call, req); });
  d.add<v1::EditReq>(Cmd::kEdit, [&s](Call& call, v1::EditReq& req) { on_edit(s, call, req); });
  d.add<v1::SearchReq>(Cmd::kSearch, [&s](Call& call, v1::SearchReq& req) { on_search(s, call, req); });
}

}  // namespace im::core
