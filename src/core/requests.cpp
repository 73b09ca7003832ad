#include "core/requests.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/utf8.h"
#include "core/ids.h"
#include "store/conv_id.h"

namespace im::core {
namespace {

Error bad(std::string why) {
  return make_error(StatusCode::kBadRequest, std::move(why));
}

constexpr const char* kIdRule = "1 to 64 bytes of A-Z a-z 0-9 . _ @ -";

// Names the bad entry by its position: echoing its bytes could put invalid
// UTF-8 into the answer's string field.
template <class Uids>
Result<Ok> check_uids(const char* field, const Uids& uids) {
  std::size_t i = 0;
  for (const auto& uid : uids) {
    if (!valid_id(uid)) return bad(fmt::format("{}[{}] is not a valid id ({})", field, i, kIdRule));
    ++i;
  }
  return Ok{};
}

Result<Ok> check_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxGroupNameBytes) return bad("name must be 1 to 256 bytes");
  return Ok{};
}

Result<Ok> check_announcement(const std::string& text) {
  if (text.size() > kMaxAnnouncementBytes) return bad("announcement over 4096 bytes");
  return Ok{};
}

}  // namespace

Result<Ok> check_login(const v1::LoginReq& req) {
  if (!valid_id(req.uid())) return bad(std::string("uid must be ") + kIdRule);
  if (!v1::DeviceType_IsValid(req.device_type())) return bad("unknown device_type");
  if (req.device_id().size() > kMaxDeviceIdBytes || req.client_version().size() > kMaxClientVersionBytes)
    return bad("device_id or client_version too long");
  return Ok{};
}

Result<Ok> check_send(const std::string& from, const v1::SendReq& req, const LimitsConfig& limits) {
  if (!valid_id(from)) return bad("from must be a valid uid");
  if (!valid_client_id(req.client_msg_id())) return bad("client_msg_id must be 1 to 64 bytes of printable ASCII");
  if (req.conv_type() != v1::C2C && req.conv_type() != v1::GROUP) return bad("conv_type must be C2C or GROUP");
  if (!valid_id(req.to())) return bad("to must be a valid uid or gid");
  if (req.content_type() >= 10000) return bad("content_type 10000 and above are the server's");
  if (req.body().size() > limits.max_message_bytes)
    return make_error(StatusCode::kTooLarge,
                      fmt::format("body over limits.max_message_bytes ({})", limits.max_message_bytes));
  return check_search_text(req.search_text());
}

Result<Ok> check_group(const GroupCommand& cmd, const LimitsConfig& limits) {
  if (!valid_id(cmd.gid)) return bad(std::string("gid must be ") + kIdRule);
  switch (cmd.cmd) {
    case Cmd::kGroupCreate: {
      if (!valid_id(cmd.actor.uid)) return bad("owner must be a valid uid");
      if (auto r = check_name(cmd.create.name()); !r) return r;
      if (auto r = check_announcement(cmd.create.announcement()); !r) return r;
      if (auto r = check_uids("members", cmd.create.members()); !r) return r;
      if (static_cast<std::size_t>(cmd.create.members_size()) > limits.max_group_members + 1u)
        return make_error(StatusCode::kTooLarge, "more members than limits.max_group_members");
      return Ok{};
    }
    case Cmd::kGroupAddMembers:
    case Cmd::kGroupRemoveMembers:
      if (cmd.members.uids_size() == 0) return bad("uids must not be empty");
      if (auto r = check_uids("uids", cmd.members.uids()); !r) return r;
      if (static_cast<std::size_t>(cmd.members.uids_size()) > limits.max_group_members)
        return make_error(StatusCode::kTooLarge, "more uids than limits.max_group_members");
      return Ok{};
    case Cmd::kGroupUpdate:
      if (cmd.update.has_name())
        if (auto r = check_name(cmd.update.name()); !r) return r;
      if (cmd.update.has_announcement())
        if (auto r = check_announcement(cmd.update.announcement()); !r) return r;
      return Ok{};
    default: return Ok{};
  }
}

Result<Ok> check_presence(const std::vector<std::string>& uids) {
  if (uids.size() > kMaxPresenceUids) return bad("at most 500 uids per PRESENCE");
  return check_uids("uids", uids);
}

Result<Ok> check_presence_watch(const v1::PresenceWatchReq& req) {
  if (static_cast<std::size_t>(req.add_size()) > kMaxPresenceUids) return bad("at most 500 uids in add");
  if (static_cast<std::size_t>(req.remove_size()) > kMaxPresenceUids) return bad("at most 500 uids in remove");
  if (auto r = check_uids("add", req.add()); !r) return r;
  return check_uids("remove", req.remove());
}

Result<Ok> check_typing(const std::string& uid, const v1::TypingReq& req) {
  switch (req.conv_type()) {
    case v1::C2C:
      if (!valid_id(req.peer())) return bad("peer must be a valid uid");
      if (req.peer() == uid) return bad("typing to oneself");
      break;
    case v1::GROUP:
      if (!valid_id(req.peer())) return bad("peer must be a valid gid");
      break;
    default: return bad("conv_type must be C2C or GROUP");
  }
  if (req.state() != v1::TYPING && req.state() != v1::RECORDING && req.state() != v1::STOPPED)
    return bad("state must be TYPING, RECORDING or STOPPED");
  return Ok{};
}

Result<Ok> check_report(const v1::ReportReq& req, const LimitsConfig& limits) {
  if (!valid_client_id(req.report_id())) return bad("report_id must be 1 to 64 bytes of printable ASCII");
  if (req.topic().size() > kMaxTopicBytes) return bad("topic over 256 bytes");
  if (req.payload().size() > limits.max_message_bytes)
    return make_error(StatusCode::kTooLarge, "payload over limits.max_message_bytes");
  return Ok{};
}

Result<Ok> check_push(const std::string& to, const std::string& topic, const std::string& payload,
                      const LimitsConfig& limits) {
  if (!valid_id(to)) return bad("to must be a valid uid");
  if (topic.size() > kMaxTopicBytes) return bad("topic over 256 bytes");
  if (payload.size() > limits.max_message_bytes)
    return make_error(StatusCode::kTooLarge, "payload over limits.max_message_bytes");
  return Ok{};
}

Result<std::string> history_conv(const std::string& uid, const v1::HistoryReq& req) {
  if (req.before_seq() > 0 && req.after_seq() > 0) return bad("before_seq and after_seq may not both be set");
  switch (req.conv_type()) {
    case v1::C2C:
      if (!valid_id(req.peer())) return bad("peer must be a valid uid");
      return store::c2c_conv(uid, req.peer());
    case v1::GROUP:
      if (!valid_id(req.peer())) return bad("peer must be a valid gid");
      return store::group_conv(req.peer());
    case v1::SYSTEM: return store::system_conv(uid);
    default: return bad("conv_type must be C2C, GROUP or SYSTEM");
  }
}


Result<Ok> check_conv_ref(v1::ConvType type, const std::string& peer, bool system_allowed) {
  switch (type) {
    case v1::C2C:
      if (!valid_id(peer)) return bad("peer must be a valid uid");
      return Ok{};
    case v1::GROUP:
      if (!valid_id(peer)) return bad("peer must be a valid gid");
      return Ok{};
    case v1::SYSTEM:
      if (!system_allowed) return bad("conv_type must be C2C or GROUP");
      if (!peer.empty()) return bad("peer must be empty for the SYSTEM conversation");
      return Ok{};
    default: return bad(system_allowed ? "conv_type must be C2C, GROUP or SYSTEM" : "conv_type must be C2C or GROUP");
  }
}

Result<Ok> check_delete(const v1::DeleteReq& req) {
  if (auto ok = check_conv_ref(req.conv_type(), req.peer()); !ok) return ok;
  if (req.conv_seqs_size() > 100) return bad("at most 100 conv_seqs per DELETE");
  for (std::uint64_t seq : req.conv_seqs())
    if (seq == 0) return bad("conv_seq 0 names no message");
  if (req.conv_seqs_size() == 0 && req.up_to_seq() == 0) return bad("nothing to delete: conv_seqs or up_to_seq");
  return Ok{};
}

Result<Ok> check_receipts(const v1::ReceiptsReq& req) {
  if (!valid_id(req.gid())) return bad("gid must be a valid gid");
  if (req.conv_seqs_size() > 100) return bad("at most 100 conv_seqs per RECEIPTS");
  if (!req.readers_after().empty() && !valid_id(req.readers_after())) return bad("readers_after must be a valid uid");
  return Ok{};
}


Result<Ok> check_change(const std::string& client_msg_id, v1::ConvType type, const std::string& peer,
                        std::uint64_t conv_seq) {
  if (!valid_client_id(client_msg_id)) return bad("client_msg_id must be 1 to 64 bytes of printable ASCII");
  if (auto ok = check_conv_ref(type, peer, false); !ok) return ok;
  if (conv_seq == 0) return bad("conv_seq must name a message");
  return Ok{};
}

Result<Ok> check_edit(const v1::EditReq& req, const LimitsConfig& limits) {
  if (auto ok = check_change(req.client_msg_id(), req.conv_type(), req.peer(), req.conv_seq()); !ok) return ok;
  if (req.body().size() > limits.max_message_bytes)
    return make_error(StatusCode::kTooLarge,
                      fmt::format("body over limits.max_message_bytes ({})", limits.max_message_bytes));
  return check_search_text(req.search_text());
}

Result<Ok> check_search(const v1::SearchReq& req) {
  if (req.query().empty() || req.query().size() > kMaxSearchQueryBytes)
    return bad(fmt::format("query must be 1 to {} bytes", kMaxSearchQueryBytes));
  if (!valid_utf8(req.query())) return bad("query must be UTF-8");
  if (std::count(req.query().begin(), req.query().end(), '*') > static_cast<std::ptrdiff_t>(kMaxSearchPrefixes))
    return bad(fmt::format("at most {} prefixes (word*) in a query", kMaxSearchPrefixes));
  // Every conversation of the caller, or the one conv_type and peer name.
  if (req.conv_type() == v1::CONV_TYPE_UNSPECIFIED && req.peer().empty()) return Ok{};
  return check_conv_ref(req.conv_type(), req.peer(), false);
}

Result<Ok> check_search_text(std::string_view text) {
  if (text.size() > kMaxSearchTextBytes) return bad(fmt::format("search_text over {} bytes", kMaxSearchTextBytes));
  if (!valid_utf8(text)) return bad("search_text must be UTF-8");
  return Ok{};
}

}  // namespace im::core
