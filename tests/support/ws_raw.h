#pragma once
// A tiny WebSocket client over a plain blocking socket, for integration tests
// that need to send what a well-behaved client never would: its own HTTP
// requests, frames masked or not, with any opcode, RSV bits, length claims
// and fragmentation; it reads the server's frames and close codes as they
// come. Its framing is written here by hand (RFC 6455, section 5), apart from
// src/net/ws_codec, so that a bug there cannot hide in both ends.
//
// Every read waits at most the timeout given; nothing here sleeps.

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "im/client.h"
#include "im/protocol.h"

namespace im::test {

inline constexpr std::chrono::milliseconds kWsTimeout{5000};

namespace ws_op {
inline constexpr std::uint8_t kContinuation = 0x0;
inline constexpr std::uint8_t kText = 0x1;
inline constexpr std::uint8_t kBinary = 0x2;
inline constexpr std::uint8_t kClose = 0x8;
inline constexpr std::uint8_t kPing = 0x9;
inline constexpr std::uint8_t kPong = 0xA;
}  // namespace ws_op

// An HTTP answer as read off the socket.
struct HttpAnswer {
  int status = 0;                              // 0: none came (closed or timed out)
  std::string head;                            // status line and header lines
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  // The value of a header ("" when none); `name` in any case.
  std::string header(std::string_view name) const;
};

// A frame from the server.
struct WsFrame {
  bool fin = false;
  std::uint8_t rsv = 0;  // the three RSV bits, in place (0x70 mask)
  std::uint8_t opcode = 0;
  bool masked = false;
  std::string payload;
  // For a close frame: its code (1005 when it has none).
  std::uint16_t close_code() const;
};

class WsRaw {
 public:
  // Connects to 127.0.0.1:`port`; connected() says whether it worked.
  // `rcvbuf` > 0 sets SO_RCVBUF before connecting (a reader that falls behind).
  explicit WsRaw(std::uint16_t port, int rcvbuf = 0);
  ~WsRaw();
  WsRaw(const WsRaw&) = delete;
  WsRaw& operator=(const WsRaw&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  std::uint16_t port() const { return port_; }

  // ---- HTTP ----
  // Sends `bytes` as they are.
  void send_raw(std::string_view bytes);
  // Reads one HTTP answer: the head, then Content-Length bytes of body
  // (none when `head_request`).
  HttpAnswer read_answer(bool head_request = false, std::chrono::milliseconds timeout = kWsTimeout);
  // A GET (or another method) of `target`, with `extra` header lines
  // ("Name: value"), and its answer.
  HttpAnswer http(std::string_view method, std::string_view target, const std::vector<std::string>& extra = {},
                  std::chrono::milliseconds timeout = kWsTimeout);
  // The version 13 upgrade of `path` with `key` and `extra` header lines;
  // the answer. A 101 whose Sec-WebSocket-Accept is wrong is reported with
  // status -101.
  HttpAnswer upgrade(const std::vector<std::string>& extra = {}, std::string_view path = "/ws",
                     std::string_view key = "dGhlIHNhbXBsZSBub25jZQ==");

  // ---- WebSocket frames ----
  // One frame: FIN as given, `rsv` OR'ed into the first byte (0x40, 0x20,
  // 0x10), masked with a random key unless `masked` is false.
  void send_frame(std::uint8_t opcode, std::string_view payload, bool fin = true, bool masked = true,
                  std::uint8_t rsv = 0);
  // Only a header (in the shortest length form), claiming `payload_len`
  // bytes, none of which are sent.
  void send_head_claim(std::uint8_t opcode, std::uint64_t payload_len, bool fin = true, bool masked = true);
  void send_close(std::uint16_t code, std::string_view reason = {});
  // The next frame from the server, nullopt when none came in time or the
  // connection ended (eof() then says which).
  std::optional<WsFrame> read_frame(std::chrono::milliseconds timeout = kWsTimeout);
  // Reads frames until a close; its code, nullopt when none came. Binary
  // messages met on the way are kept for next_im().
  std::optional<std::uint16_t> read_close(std::chrono::milliseconds timeout = kWsTimeout);
  // True when the server ended the TCP connection (EOF or reset) within
  // `timeout`; whatever it sent before is dropped.
  bool wait_eof(std::chrono::milliseconds timeout = kWsTimeout);
  // Every byte the server sends until it ends the connection (or `timeout`
  // passes: eof() then says which), the bytes already read included.
  std::string read_to_eof(std::chrono::milliseconds timeout = kWsTimeout);
  bool eof() const { return eof_; }

  // ---- IM frames, one per binary message ----
  void send_im(Cmd cmd, std::uint32_t seq, std::string_view body);
  // A request and the response with its seq; frames the server starts
  // meanwhile are kept for next_im(). Pings are answered.
  std::optional<Frame> call(Cmd cmd, std::string_view body, std::chrono::milliseconds timeout = kWsTimeout);
  std::optional<Frame> call(Cmd cmd, const google::protobuf::MessageLite& body,
                            std::chrono::milliseconds timeout = kWsTimeout);
  // The next frame the server started (PUSH, KICKOUT, ERROR, ...).
  std::optional<Frame> next_im(std::chrono::milliseconds timeout = kWsTimeout);
  // Upgrades and logs in as `uid` with a valid token; fails the test when
  // anything fails. The LoginResp frame goes to `resp` when given.
  void login(const std::string& uid, int device_type = 3, const std::string& device_id = "", Frame* resp = nullptr);

 private:
  // Reads more bytes into in_ until `deadline`; false on timeout or EOF.
  bool fill(std::chrono::steady_clock::time_point deadline);
  // A whole frame from the front of in_, if there is one.
  std::optional<WsFrame> take_frame();
  // Reads frames until a binary message (pings answered, fragments joined).
  std::optional<std::string> read_message(std::chrono::steady_clock::time_point deadline);
  std::optional<Frame> parse_im(const std::string& message);

  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::string in_;
  bool eof_ = false;
  std::uint32_t seq_ = 0;
  std::deque<Frame> started_;  // server-started frames not yet taken
  std::array<std::uint8_t, 4> next_mask();
  std::uint32_t mask_state_ = 0x9E3779B9u;
};

// Sec-WebSocket-Accept for `key` (RFC 6455, 4.2.2), computed here.
std::string ws_accept_for(std::string_view key);

// Encodes a whole client frame by hand (for tests that write their own
// streams): FIN, RSV, opcode, the shortest length form, masked with `mask`
// when given.
std::string ws_client_frame(std::uint8_t opcode, std::string_view payload, bool fin = true,
                            const std::array<std::uint8_t, 4>* mask = nullptr, std::uint8_t rsv = 0);

}  // namespace im::test
