#pragma once
// The command families: each registers its handlers in the dispatcher, one
// file per family (sessions, messages, groups, presence, reports, typing). A
// handler runs on the connection's loop thread with its request parsed, and
// posts the work to the shard that owns it.

#include <memory>
#include <string>

#include "core/dispatcher.h"
#include "core/send_job.h"
#include "proto/im.pb.h"

namespace im::core {

class Service;

// HEARTBEAT, LOGIN, LOGOUT (session_commands.cpp).
void register_session_commands(Dispatcher& d, Service& s);
// SEND, ACK, PULL, HISTORY (message_commands.cpp).
void register_message_commands(Dispatcher& d, Service& s);
// GROUP_* (group_commands.cpp).
void register_group_commands(Dispatcher& d, Service& s);
// PRESENCE, PRESENCE_WATCH (presence_commands.cpp).
void register_presence_commands(Dispatcher& d, Service& s);
// REPORT (report_commands.cpp).
void register_report_commands(Dispatcher& d, Service& s);
// CONV_LIST, CONV_READ, CONV_UPDATE, DELETE, RECEIPTS (conv_commands.cpp).
void register_conv_commands(Dispatcher& d, Service& s);
// TYPING (typing_commands.cpp).
void register_typing_commands(Dispatcher& d, Service& s);

// A SendJob for `req` by `from` (the body and search_text are moved out of `req`).
std::shared_ptr<SendJob> make_send_job(const std::string& from, v1::SendReq& req);
// A RECALL (content_type 10003) or EDIT (10004) by `from` as a SendJob: the
// event goes through the send path (dedupe, msg_id, the owner's checks).
// An edit carries its new body and search text.
std::shared_ptr<SendJob> make_change_job(const std::string& from, v1::ConvType type, const std::string& peer,
                                         const std::string& client_msg_id, std::uint32_t content_type,
                                         std::uint64_t target_seq, std::string edit_body = {},
                                         std::string search_text = {});
// A fresh gid for a GROUP_CREATE that leaves it empty.
std::string new_group_id();

}  // namespace im::core
