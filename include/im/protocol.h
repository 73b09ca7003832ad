#pragma once
// Wire-level constants of protocol version 1 (docs/protocol.md): the frame
// header, command ids and status codes. Shared by the server and the client
// library; no dependencies beyond the standard library.

#include <cstdint>
#include <string_view>

namespace im {

inline constexpr std::uint16_t kMagic = 0x494D;  // "IM"
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kHeaderSize = 20;
// Before LOGIN a frame body is at most this, whatever server.max_frame_bytes
// says (PROTOCOL 1): nothing larger is needed to log in.
inline constexpr std::uint32_t kMaxPreLoginBody = 16384;
inline constexpr std::uint8_t kFlagResponse = 0x01;
inline constexpr std::uint8_t kFlagCompressed = 0x02;
// A session that asked for zstd gets the bodies of this size and up
// compressed, when that shrinks them (PROTOCOL 1).
inline constexpr std::size_t kCompressMinBody = 256;

enum class Cmd : std::uint16_t {
  kHeartbeat = 0x0001,
  kLogin = 0x0002,
  kLogout = 0x0003,
  kKickout = 0x0004,
  kSend = 0x0010,
  kPush = 0x0011,
  kAck = 0x0012,
  kPull = 0x0013,
  kHistory = 0x0014,
  kRecall = 0x0015,
  kEdit = 0x0016,
  kDelete = 0x0017,
  kSearch = 0x0018,
  kGroupCreate = 0x0020,
  kGroupGet = 0x0021,
  kGroupList = 0x0022,
  kGroupAddMembers = 0x0023,
  kGroupRemoveMembers = 0x0024,
  kGroupLeave = 0x0025,
  kGroupUpdate = 0x0026,
  kGroupDismiss = 0x0027,
  kPresence = 0x0030,
  kPresenceWatch = 0x0031,
  kPresencePush = 0x0032,
  kReport = 0x0040,
  kServerPush = 0x0041,
  kConvList = 0x0050,
  kConvRead = 0x0051,
  kConvUpdate = 0x0052,
  kReceipts = 0x0053,
  kTyping = 0x0054,
  kTypingPush = 0x0055,
  kError = 0x00FF,
};

enum class StatusCode : std::uint16_t {
  kOk = 0,
  kBadRequest = 1,
  kUnauthenticated = 2,
  kForbidden = 3,
  kNotFound = 4,
  kRateLimited = 5,
  kTooLarge = 6,
  kUnknownCommand = 7,
  kConflict = 8,
  kUnsupportedVersion = 9,
  kBadFrame = 10,
  kFrameTooLarge = 11,
  kUnavailable = 12,
  kInternal = 13,
  kGone = 14,
  kExpired = 15,
  kDisabled = 16,
};

// The names of table 3 of the protocol ("BAD_REQUEST"), "UNKNOWN" otherwise.
std::string_view status_name(StatusCode code);
// The names of table 2 ("LOGIN"), "UNKNOWN" otherwise.
std::string_view cmd_name(Cmd cmd);

struct FrameHeader {
  std::uint8_t version = kVersion;
  std::uint8_t flags = 0;
  Cmd cmd = Cmd::kHeartbeat;
  StatusCode status = StatusCode::kOk;
  std::uint32_t seq = 0;
  std::uint32_t body_len = 0;

  bool is_response() const { return (flags & kFlagResponse) != 0; }
};

}  // namespace im
