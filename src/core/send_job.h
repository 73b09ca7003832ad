#pragma once
// A SEND on its way through the shards: the message (ids filled in as it
// goes) and how to answer it. Shared by the shards it passes through; its
// answer is given once, on the sender's shard.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "im/result.h"
#include "proto/im.pb.h"

namespace im::core {

struct SendJob {
  v1::Message msg;
  std::string conv;              // the conversation id (store/conv_id.h)
  std::string search_text;       // SendReq/EditReq.search_text (PROTOCOL 8.6): kept beside the history row
  std::uint64_t session_id = 0;  // the sending session, left out of the sender's PUSH (0: the admin API)
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::function<void(const Result<v1::SendResp>&)> done;
  bool answered = false;  // sender's shard only
  // RECALL or EDIT (PROTOCOL 8.3, content_type 10003 or 10004): the
  // target's conv_seq; `moderator` for the admin API's recall (any message,
  // no window).
  std::uint64_t target_seq = 0;
  bool moderator = false;
  bool is_change() const { return msg.content_type() == 10003 || msg.content_type() == 10004; }

  // Sender's shard only: answers once (a later call is ignored) and
  // records the send latency.
  void answer(const Result<v1::SendResp>& result);
};

// The SendResp of a stored message whose sender's copy sits at `inbox_seq`.
inline v1::SendResp send_resp(const v1::Message& m, std::uint64_t inbox_seq) {
  v1::SendResp resp;
  resp.set_msg_id(m.msg_id());
  resp.set_conv_seq(m.conv_seq());
  resp.set_server_time_ms(m.server_time_ms());
  resp.set_inbox_seq(inbox_seq);
  return resp;
}

}  // namespace im::core
