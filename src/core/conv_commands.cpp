// CONV_LIST, CONV_READ, CONV_UPDATE, DELETE (on the user's shard) and
// RECEIPTS (on the group's shard): PROTOCOL 8.1-8.3.

#include <asio/post.hpp>

#include "core/commands.h"
#include "core/requests.h"
#include "core/service.h"
#include "store/conv_id.h"

namespace im::core {
namespace {

void on_conv_list(Service& s, Call& call, const v1::ConvListReq& req) {
  Shard& shard = s.shard_for(call.ctx.uid);
  asio::post(shard.context(), [&shard, replier = call.replier(), uid = call.ctx.uid, req] {
    replier.answer(shard.conv_list(uid, req));
  });
}

void on_conv_read(Service& s, Call& call, const v1::ConvReadReq& req) {
  if (auto ok = check_conv_ref(req.conv_type(), req.peer()); !ok) return call.fail(ok.error());
  Shard& user_shard = s.shard_for(call.ctx.uid);
  auto read = [&user_shard, replier = call.replier(), uid = call.ctx.uid, session = call.ctx.session_id, req] {
    asio::post(user_shard.context(), [&user_shard, replier, uid, session, req] {
      user_shard.conv_read(uid, req, session, [replier](const Result<v1::ConvReadResp>& r) { replier.answer(r); });
    });
  };
  if (req.conv_type() != v1::GROUP) return read();
  // A group's read needs current membership, which its shard knows.
  Shard& group_shard = s.shard_for(store::group_conv(req.peer()));
  asio::post(group_shard.context(), [&group_shard, replier = call.replier(), uid = call.ctx.uid, gid = req.peer(),
                                     read = std::move(read)] {
    if (auto member = group_shard.check_member(uid, gid); !member) return replier.fail(member.error());
    read();
  });
}

void on_conv_update(Service& s, Call& call, const v1::ConvUpdateReq& req) {
  if (auto ok = check_conv_ref(req.conv_type(), req.peer()); !ok) return call.fail(ok.error());
  Shard& shard = s.shard_for(call.ctx.uid);
  asio::post(shard.context(),
             [&shard, replier = call.replier(), uid = call.ctx.uid, session = call.ctx.session_id, req] {
               shard.conv_update(uid, req, session,
                                 [replier](const Result<v1::ConvUpdateResp>& r) { replier.answer(r); });
             });
}

void on_delete(Service& s, Call& call, const v1::DeleteReq& req) {
  if (auto ok = check_delete(req); !ok) return call.fail(ok.error());
  Shard& shard = s.shard_for(call.ctx.uid);
  asio::post(shard.context(),
             [&shard, replier = call.replier(), uid = call.ctx.uid, session = call.ctx.session_id, req] {
               shard.delete_for_me(uid, req, session, [replier](const Result<v1::DeleteResp>& r) { replier.answer(r); });
             });
}

void on_receipts(Service& s, Call& call, const v1::ReceiptsReq& req) {
  if (auto ok = check_receipts(req); !ok) return call.fail(ok.error());
  Shard& shard = s.shard_for(store::group_conv(req.gid()));
  asio::post(shard.context(), [&shard, replier = call.replier(), uid = call.ctx.uid, req] {
    replier.answer(shard.receipts(uid, req));
  });
}

}  // namespace

void register_conv_commands(Dispatcher& d, Service& s) {
  d.add<v1::ConvListReq>(Cmd::kConvList, [&s](Call& call, v1::ConvListReq& req) { on_conv_list(s, call, req); });
  d.add<v1::ConvReadReq>(Cmd::kConvRead, [&s](Call& call, v1::ConvReadReq& req) { on_conv_read(s, call, req); });
  d.add<v1::ConvUpdateReq>(Cmd::kConvUpdate,
                           [&s](Call& call, v1::ConvUpdateReq& req) { on_conv_update(s, call, req); });
  d.add<v1::DeleteReq>(Cmd::kDelete, [&s](Call& call, v1::DeleteReq& req) { on_delete(s, call, req); });
  d.add<v1::ReceiptsReq>(Cmd::kReceipts, [&s](Call& call, v1::ReceiptsReq& req) { on_receipts(s, call, req); });
}

}  // namespace im::core
