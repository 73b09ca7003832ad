#pragma once
// The rules a request's fields must keep (PROTOCOL 4 and 5), defined once
// and used by the wire handlers and the admin API alike. Each check answers
// Ok or the status and text that refuse the request. Pure functions.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/group_command.h"
#include "im/config.h"
#include "im/result.h"
#include "proto/im.pb.h"

namespace im::core {

inline constexpr std::size_t kMaxPresenceUids = 500;  // PRESENCE; PRESENCE_WATCH's add, and its remove
inline constexpr std::size_t kMaxTopicBytes = 256;
inline constexpr std::size_t kMaxGroupNameBytes = 256;
inline constexpr std::size_t kMaxAnnouncementBytes = 4096;
inline constexpr std::size_t kMaxDeviceIdBytes = 64;
inline constexpr std::size_t kMaxClientVersionBytes = 128;

Result<Ok> check_login(const v1::LoginReq& req);
// A SEND by `from` (the admin API names it; a session is it).
Result<Ok> check_send(const std::string& from, const v1::SendReq& req, const LimitsConfig& limits);
Result<Ok> check_group(const GroupCommand& cmd, const LimitsConfig& limits);
Result<Ok> check_presence(const std::vector<std::string>& uids);
// PRESENCE_WATCH: at most 500 valid uids in `add`, and in `remove`.
Result<Ok> check_presence_watch(const v1::PresenceWatchReq& req);
// TYPING by `uid`: C2C to a valid uid other than `uid`, or GROUP to a valid
// gid; TYPING, RECORDING or STOPPED.
Result<Ok> check_typing(const std::string& uid, const v1::TypingReq& req);
Result<Ok> check_report(const v1::ReportReq& req, const LimitsConfig& limits);
// A SERVER_PUSH through the admin API.
Result<Ok> check_push(const std::string& to, const std::string& topic, const std::string& payload,
                      const LimitsConfig& limits);
// HISTORY's conversation id, from the asking user's side.
Result<std::string> history_conv(const std::string& uid, const v1::HistoryReq& req);
// PROTOCOL 8: a conversation named from the asker's side: C2C with a
// valid peer uid, GROUP with a valid gid, SYSTEM with no peer.
Result<Ok> check_conv_ref(v1::ConvType type, const std::string& peer, bool system_allowed = true);
// RECALL and EDIT: a client_msg_id, C2C or GROUP with a valid peer, a
// conv_seq; EDIT's body within limits.max_message_bytes (TOO_LARGE).
Result<Ok> check_change(const std::string& client_msg_id, v1::ConvType type, const std::string& peer,
                        std::uint64_t conv_seq);
Result<Ok> check_edit(const v1::EditReq& req, const LimitsConfig& limits);
// PROTOCOL 8.6: SendReq/EditReq.search_text, and SEARCH's query and scope.
inline constexpr std::size_t kMaxSearchTextBytes = 4096;
inline constexpr std::size_t kMaxSearchQueryBytes = 256;
inline constexpr std::size_t kMaxSearchPrefixes = 3;  // word* in one query: each expands over the whole index
inline constexpr std::uint32_t kSearchDefault = 20;
inline constexpr std::uint32_t kSearchMax = 100;
Result<Ok> check_search_text(std::string_view text);
Result<Ok> check_search(const v1::SearchReq& req);
// DELETE: at most 100 conv_seqs, none 0, and something to delete.
Result<Ok> check_delete(const v1::DeleteReq& req);
// RECEIPTS: a valid gid and at most 100 conv_seqs.
Result<Ok> check_receipts(const v1::ReceiptsReq& req);

}  // namespace im::core
