#include "im/frame_codec.h"

#include <cstring>
#include <memory>

#include <zstd.h>

namespace im {
namespace {

std::uint16_t load16(const unsigned char* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

std::uint32_t load32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

void store16(std::byte* p, std::uint16_t v) {
  p[0] = std::byte(v >> 8);
  p[1] = std::byte(v);
}

void store32(std::byte* p, std::uint32_t v) {
  p[0] = std::byte(v >> 24);
  p[1] = std::byte(v >> 16);
  p[2] = std::byte(v >> 8);
  p[3] = std::byte(v);
}

}  // namespace

Decoded decode_frame(std::string_view in, std::uint32_t max_body_bytes) {
  Decoded d;
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  // Judge the header field by field as bytes arrive: a client that sends a
  // wrong magic is told at once, not after 20 bytes.
  if (in.size() >= 2 && load16(p) != kMagic) {
    d.status = DecodeStatus::kBad;
    d.error = StatusCode::kBadFrame;
    return d;
  }
  if (in.size() >= 3 && p[2] != kVersion) {
    d.status = DecodeStatus::kBad;
    d.error = StatusCode::kUnsupportedVersion;
    return d;
  }
  if (in.size() < kHeaderSize) return d;
  const std::uint32_t body_len = load32(p + 12);
  if (body_len > max_body_bytes) {
    d.status = DecodeStatus::kBad;
    d.error = StatusCode::kFrameTooLarge;
    return d;
  }
  if (in.size() - kHeaderSize < body_len) return d;
  d.header.version = p[2];
  d.header.flags = p[3];
  d.header.cmd = static_cast<Cmd>(load16(p + 4));
  d.header.status = static_cast<StatusCode>(load16(p + 6));
  d.header.seq = load32(p + 8);
  d.header.body_len = body_len;
  d.body = in.substr(kHeaderSize, body_len);
  d.consumed = kHeaderSize + body_len;
  d.status = DecodeStatus::kFrame;
  return d;
}

void encode_header(const FrameHeader& header, std::span<std::byte, kHeaderSize> out) {
  std::byte* p = out.data();
  store16(p, kMagic);
  p[2] = std::byte(header.version);
  p[3] = std::byte(header.flags);
  store16(p + 4, static_cast<std::uint16_t>(header.cmd));
  store16(p + 6, static_cast<std::uint16_t>(header.status));
  store32(p + 8, header.seq);
  store32(p + 12, header.body_len);
  store32(p + 16, 0);
}

std::string encode_frame(FrameHeader header, std::string_view body) {
  header.body_len = static_cast<std::uint32_t>(body.size());
  std::string out(kHeaderSize + body.size(), '\0');
  encode_header(header, std::span<std::byte, kHeaderSize>(reinterpret_cast<std::byte*>(out.data()), kHeaderSize));
  if (!body.empty()) std::memcpy(out.data() + kHeaderSize, body.data(), body.size());
  return out;
}

std::optional<std::string> decompress_body(std::string_view body, std::uint32_t max_body_bytes) {
  // A zstd frame proper (a skippable frame would "decompress" to nothing).
  const auto* p = reinterpret_cast<const unsigned char*>(body.data());
  if (body.size() < 4 || (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
                          std::uint32_t{p[3]} << 24) != ZSTD_MAGICNUMBER)
    return std::nullopt;
  const unsigned long long size = ZSTD_getFrameContentSize(body.data(), body.size());
  if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR || size > max_body_bytes) return std::nullopt;
  // One whole frame and nothing after it.
  if (ZSTD_findFrameCompressedSize(body.data(), body.size()) != body.size()) return std::nullopt;
  struct FreeDctx {
    void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
  };
  thread_local std::unique_ptr<ZSTD_DCtx, FreeDctx> dctx(ZSTD_createDCtx());
  if (!dctx) return std::nullopt;
  std::string out(static_cast<std::size_t>(size), '\0');
  const std::size_t n = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), body.data(), body.size());
  if (ZSTD_isError(n) || n != out.size()) return std::nullopt;
  return out;
}

std::string_view status_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kBadRequest: return "BAD_REQUEST";
    case StatusCode::kUnauthenticated: return "UNAUTHENTICATED";
    case StatusCode::kForbidden: return "FORBIDDEN";
    case StatusCode::kNotFound: return "NOT_FOUND";
    case StatusCode::kRateLimited: return "RATE_LIMITED";
    case StatusCode::kTooLarge: return "TOO_LARGE";
    case StatusCode::kUnknownCommand: return "UNKNOWN_COMMAND";
    case StatusCode::kConflict: return "CONFLICT";
    case StatusCode::kUnsupportedVersion: return "UNSUPPORTED_VERSION";
    case StatusCode::kBadFrame: return "BAD_FRAME";
    case StatusCode::kFrameTooLarge: return "FRAME_TOO_LARGE";
    case StatusCode::kUnavailable: return "UNAVAILABLE";
    case StatusCode::kInternal: return "INTERNAL";
    case StatusCode::kGone: return "GONE";
    case StatusCode::kExpired: return "EXPIRED";
    case StatusCode::kDisabled: return "DISABLED";
  }
  return "UNKNOWN";
}

std::string_view cmd_name(Cmd cmd) {
  switch (cmd) {
    case Cmd::kHeartbeat: return "HEARTBEAT";
    case Cmd::kLogin: return "LOGIN";
    case Cmd::kLogout: return "LOGOUT";
    case Cmd::kKickout: return "KICKOUT";
    case Cmd::kSend: return "SEND";
    case Cmd::kPush: return "PUSH";
    case Cmd::kAck: return "ACK";
    case Cmd::kPull: return "PULL";
    case Cmd::kHistory: return "HISTORY";
    case Cmd::kRecall: return "RECALL";
    case Cmd::kEdit: return "EDIT";
    case Cmd::kDelete: return "DELETE";
    case Cmd::kSearch: return "SEARCH";
    case Cmd::kGroupCreate: return "GROUP_CREATE";
    case Cmd::kGroupGet: return "GROUP_GET";
    case Cmd::kGroupList: return "GROUP_LIST";
    case Cmd::kGroupAddMembers: return "GROUP_ADD_MEMBERS";
    case Cmd::kGroupRemoveMembers: return "GROUP_REMOVE_MEMBERS";
    case Cmd::kGroupLeave: return "GROUP_LEAVE";
    case Cmd::kGroupUpdate: return "GROUP_UPDATE";
    case Cmd::kGroupDismiss: return "GROUP_DISMISS";
    case Cmd::kPresence: return "PRESENCE";
    case Cmd::kPresenceWatch: return "PRESENCE_WATCH";
    case Cmd::kPresencePush: return "PRESENCE_PUSH";
    case Cmd::kReport: return "REPORT";
    case Cmd::kServerPush: return "SERVER_PUSH";
    case Cmd::kConvList: return "CONV_LIST";
    case Cmd::kConvRead: return "CONV_READ";
    case Cmd::kConvUpdate: return "CONV_UPDATE";
    case Cmd::kReceipts: return "RECEIPTS";
    case Cmd::kTyping: return "TYPING";
    case Cmd::kTypingPush: return "TYPING_PUSH";
    case Cmd::kError: return "ERROR";
  }
  return "UNKNOWN";
}

}  // namespace im
