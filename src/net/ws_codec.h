#pragma once
// WebSocket framing (RFC 6455, section 5), shared by the server's connections
// and the client library. Like the frame codec it never touches a socket,
// never throws, checks every length against the limit before anything is
// buffered, and reports the bytes it consumed.
//
// WsReader turns a byte stream into messages: it consumes whole WebSocket
// frames only (a caller holds an incomplete one until more bytes arrive, as
// with frame_codec), unmasks payloads in place, reassembles fragmented
// messages and hands control frames out between fragments.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/utf8.h"

namespace im::ws {

enum class Opcode : std::uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close codes (RFC 6455, 7.4.1) that imserver sends.
inline constexpr std::uint16_t kCloseNormal = 1000;
inline constexpr std::uint16_t kCloseGoingAway = 1001;
inline constexpr std::uint16_t kCloseProtocolError = 1002;
inline constexpr std::uint16_t kCloseUnsupportedData = 1003;
inline constexpr std::uint16_t kCloseNoStatus = 1005;  // received only: a close frame without a code
inline constexpr std::uint16_t kCloseInvalidPayload = 1007;
inline constexpr std::uint16_t kClosePolicy = 1008;
inline constexpr std::uint16_t kCloseTooBig = 1009;

inline constexpr std::size_t kMaxHeadSize = 14;         // 2 + 8 (length) + 4 (mask)
inline constexpr std::size_t kMaxControlPayload = 125;  // RFC 6455, 5.5

enum class Side : std::uint8_t {
  kServer,  // reads client frames: each must be masked
  kClient,  // reads server frames: none may be masked
};

enum class HeadStatus { kHead, kNeedMore, kBad };

struct FrameHead {
  HeadStatus status = HeadStatus::kNeedMore;
  bool fin = false;
  Opcode opcode = Opcode::kContinuation;
  bool masked = false;
  std::array<std::uint8_t, 4> mask{};
  std::size_t head_len = 0;      // bytes of header (length and mask included)
  std::uint64_t payload_len = 0;
  std::uint16_t error = 0;  // the close code, when kBad
};

// Parses the header at the start of `in`. A data frame longer than
// `max_payload` is kBad with 1009 as soon as its length field is there;
// RSV bits, an unknown opcode, a fragmented or long control frame, a 64-bit
// length with the top bit set, or the wrong masking for `side` is kBad with
// 1002.
FrameHead parse_head(std::string_view in, std::uint64_t max_payload, Side side);

// XORs `data` with `mask`, `data[0]` being payload byte `offset`.
void apply_mask(std::span<char> data, const std::array<std::uint8_t, 4>& mask, std::uint64_t offset = 0);

// Writes the header of a frame (FIN set) to `out`; returns its length. A
// client passes a mask (and masks the payload with apply_mask); a server
// passes none.
std::size_t encode_head(Opcode opcode, std::uint64_t payload_len, std::span<char, kMaxHeadSize> out,
                        const std::array<std::uint8_t, 4>* mask = nullptr);

// A whole unmasked frame (server to client): header + payload.
std::string encode_frame(Opcode opcode, std::string_view payload);
// The payload of a close frame: the code, big-endian, then the reason.
std::string close_payload(std::uint16_t code, std::string_view reason = {});

using im::valid_utf8;  // close reasons must be UTF-8

enum class WsEventKind {
  kNeedMore,  // no whole frame at the front of the input; nothing consumed
  kMessage,   // a whole binary message: `payload`
  kPing,      // `payload` to echo in a pong
  kPong,
  kClose,     // the peer's close: `close_code` (1005 when it gave none) and `payload` (the reason)
  kError,     // a violation: close with `close_code`; the stream is dead
};

struct WsEvent {
  WsEventKind kind = WsEventKind::kNeedMore;
  std::size_t consumed = 0;  // bytes of the input used (a fragment is consumed silently: see next())
  std::string_view payload;  // points into the input, or into the reader's message buffer
  std::uint16_t close_code = 0;
};

class WsReader {
 public:
  // `max_message`: the largest message accepted, fragments added up.
  WsReader(std::uint64_t max_message, Side side) : max_message_(max_message), side_(side) {}

  // The next event from the front of `in` (a mutable buffer: payloads are
  // unmasked in place). A non-final fragment of a message is consumed and
  // copied into the message buffer; next() then goes on to the next frame,
  // so kNeedMore may come with consumed > 0. A kMessage payload stays valid
  // until the next call.
  WsEvent next(std::span<char> in);
  // Changes the limit for the messages that follow (a session's limit grows
  // at LOGIN).
  void set_max_message(std::uint64_t max_message) { max_message_ = max_message; }
  // True while a fragmented message is half received (its bytes buffered).
  bool in_message() const { return in_message_; }
  // Frees the message buffer (an idle connection keeps none).
  void release();

 private:
  WsEvent control(const FrameHead& h, std::span<char> payload, std::size_t consumed);

  std::uint64_t max_message_;
  Side side_;
  bool in_message_ = false;
  bool deliver_reset_ = false;  // the buffer holds a delivered message: clear it on the next call
  std::string message_;
};

}  // namespace im::ws
