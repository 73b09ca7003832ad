#include "ws_raw.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <cerrno>
#include <random>

#include "im/frame_codec.h"
#include "server_process.h"

namespace im::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

std::string base64(const unsigned char* data, std::size_t n) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < n; i += 3) {
    std::uint32_t v = static_cast<std::uint32_t>(data[i]) << 16;
    if (i + 1 < n) v |= static_cast<std::uint32_t>(data[i + 1]) << 8;
    if (i + 2 < n) v |= data[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? kAlphabet[v & 63] : '=');
  }
  return out;
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

}  // namespace

std::string ws_accept_for(std::string_view key) {
  const std::string input = std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  return base64(digest, sizeof digest);
}

std::string HttpAnswer::header(std::string_view name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string() : it->second;
}

std::uint16_t WsFrame::close_code() const {
  if (payload.size() < 2) return 1005;
  return static_cast<std::uint16_t>((static_cast<std::uint8_t>(payload[0]) << 8) |
                                    static_cast<std::uint8_t>(payload[1]));
}

std::string ws_client_frame(std::uint8_t opcode, std::string_view payload, bool fin,
                            const std::array<std::uint8_t, 4>* mask, std::uint8_t rsv) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | (rsv & 0x70) | (opcode & 0x0F)));
  const std::uint8_t mbit = mask ? 0x80 : 0;
  const std::uint64_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(mbit | n));
  } else if (n <= 0xFFFF) {
    f.push_back(static_cast<char>(mbit | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xFF));
  } else {
    f.push_back(static_cast<char>(mbit | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  }
  if (!mask) return f.append(payload);
  for (auto b : *mask) f.push_back(static_cast<char>(b));
  for (std::size_t i = 0; i < payload.size(); ++i)
    f.push_back(static_cast<char>(static_cast<std::uint8_t>(payload[i]) ^ (*mask)[i % 4]));
  return f;
}

WsRaw::WsRaw(std::uint16_t port, int rcvbuf) : port_(port) {
  fd_ = connect_raw(port, rcvbuf);
  if (fd_ >= 0) {
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  mask_state_ ^= std::random_device{}();
}

WsRaw::~WsRaw() {
  if (fd_ >= 0) ::close(fd_);
}

std::array<std::uint8_t, 4> WsRaw::next_mask() {
  // xorshift32: masks that differ from frame to frame, as a browser's do
  mask_state_ ^= mask_state_ << 13;
  mask_state_ ^= mask_state_ >> 17;
  mask_state_ ^= mask_state_ << 5;
  return {static_cast<std::uint8_t>(mask_state_), static_cast<std::uint8_t>(mask_state_ >> 8),
          static_cast<std::uint8_t>(mask_state_ >> 16), static_cast<std::uint8_t>(mask_state_ >> 24)};
}

void WsRaw::send_raw(std::string_view bytes) {
  // A peer that closed makes send fail: the test then sees it on reading.
  for (int tries = 0; !bytes.empty() && tries < 100000; ++tries) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

bool WsRaw::fill(Clock::time_point deadline) {
  if (eof_ || fd_ < 0) return false;
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, remaining_ms(deadline));
    if (ready <= 0) return false;
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      in_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
    if (n < 0 && errno == EINTR) continue;
    eof_ = true;  // EOF, or a reset
    return false;
  }
}

HttpAnswer WsRaw::read_answer(bool head_request, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  HttpAnswer a;
  std::size_t end = std::string::npos;
  while ((end = in_.find("\r\n\r\n")) == std::string::npos)
    if (!fill(deadline)) return a;
  a.head = in_.substr(0, end);
  in_.erase(0, end + 4);
  const std::size_t eol = a.head.find("\r\n");
  const std::string status_line = a.head.substr(0, eol);
  if (status_line.rfind("HTTP/1.1 ", 0) != 0 || status_line.size() < 12) return a;
  a.status = std::atoi(status_line.substr(9, 3).c_str());
  std::size_t pos = eol == std::string::npos ? a.head.size() : eol + 2;
  while (pos < a.head.size()) {
    std::size_t next = a.head.find("\r\n", pos);
    if (next == std::string::npos) next = a.head.size();
    const std::string line = a.head.substr(pos, next - pos);
    pos = next + 2;
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    a.headers.emplace(lower(line.substr(0, colon)), trim(line.substr(colon + 1)));
  }
  if (head_request || a.status == 101) return a;
  const std::string length = a.header("Content-Length");
  const std::size_t want = length.empty() ? 0 : std::stoul(length);
  while (in_.size() < want)
    if (!fill(deadline)) break;
  a.body = in_.substr(0, want);
  in_.erase(0, std::min(want, in_.size()));
  return a;
}

HttpAnswer WsRaw::http(std::string_view method, std::string_view target, const std::vector<std::string>& extra,
                       std::chrono::milliseconds timeout) {
  std::string req = std::string(method) + " " + std::string(target) +
                    " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port_) + "\r\n";
  for (const auto& h : extra) req += h + "\r\n";
  req += "\r\n";
  send_raw(req);
  return read_answer(method == "HEAD", timeout);
}

HttpAnswer WsRaw::upgrade(const std::vector<std::string>& extra, std::string_view path, std::string_view key) {
  std::vector<std::string> headers{"Upgrade: websocket", "Connection: Upgrade",
                                   "Sec-WebSocket-Key: " + std::string(key), "Sec-WebSocket-Version: 13"};
  headers.insert(headers.end(), extra.begin(), extra.end());
  HttpAnswer a = http("GET", path, headers);
  if (a.status == 101 && a.header("Sec-WebSocket-Accept") != ws_accept_for(key)) a.status = -101;
  return a;
}

void WsRaw::send_frame(std::uint8_t opcode, std::string_view payload, bool fin, bool masked, std::uint8_t rsv) {
  const auto mask = next_mask();
  send_raw(ws_client_frame(opcode, payload, fin, masked ? &mask : nullptr, rsv));
}

void WsRaw::send_head_claim(std::uint8_t opcode, std::uint64_t payload_len, bool fin, bool masked) {
  // The shortest length form, as a well-behaved client writes it.
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | (opcode & 0x0F)));
  const std::uint8_t mbit = masked ? 0x80 : 0;
  if (payload_len < 126) {
    f.push_back(static_cast<char>(mbit | payload_len));
  } else if (payload_len <= 0xFFFF) {
    f.push_back(static_cast<char>(mbit | 126));
    f.push_back(static_cast<char>(payload_len >> 8));
    f.push_back(static_cast<char>(payload_len & 0xFF));
  } else {
    f.push_back(static_cast<char>(mbit | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((payload_len >> (8 * i)) & 0xFF));
  }
  if (masked)
    for (auto b : next_mask()) f.push_back(static_cast<char>(b));
  send_raw(f);
}

void WsRaw::send_close(std::uint16_t code, std::string_view reason) {
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xFF));
  payload.append(reason);
  send_frame(ws_op::kClose, payload);
}

std::optional<WsFrame> WsRaw::take_frame() {
  if (in_.size() < 2) return std::nullopt;
  const auto b0 = static_cast<std::uint8_t>(in_[0]);
  const auto b1 = static_cast<std::uint8_t>(in_[1]);
  std::uint64_t len = b1 & 0x7F;
  std::size_t pos = 2;
  if (len == 126) {
    if (in_.size() < 4) return std::nullopt;
    len = (static_cast<std::uint64_t>(static_cast<std::uint8_t>(in_[2])) << 8) | static_cast<std::uint8_t>(in_[3]);
    pos = 4;
  } else if (len == 127) {
    if (in_.size() < 10) return std::nullopt;
    len = 0;
    for (std::size_t i = 2; i < 10; ++i) len = (len << 8) | static_cast<std::uint8_t>(in_[i]);
    pos = 10;
  }
  WsFrame f;
  f.fin = (b0 & 0x80) != 0;
  f.rsv = b0 & 0x70;
  f.opcode = b0 & 0x0F;
  f.masked = (b1 & 0x80) != 0;
  std::array<std::uint8_t, 4> mask{};
  if (f.masked) {
    if (in_.size() < pos + 4) return std::nullopt;
    for (std::size_t i = 0; i < 4; ++i) mask[i] = static_cast<std::uint8_t>(in_[pos + i]);
    pos += 4;
  }
  if (in_.size() - pos < len) return std::nullopt;
  f.payload = in_.substr(pos, static_cast<std::size_t>(len));
  if (f.masked)
    for (std::size_t i = 0; i < f.payload.size(); ++i)
      f.payload[i] = static_cast<char>(static_cast<std::uint8_t>(f.payload[i]) ^ mask[i % 4]);
  in_.erase(0, pos + static_cast<std::size_t>(len));
  return f;
}

std::optional<WsFrame> WsRaw::read_frame(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (auto f = take_frame()) return f;
    if (!fill(deadline)) return std::nullopt;
  }
}

std::optional<std::string> WsRaw::read_message(Clock::time_point deadline) {
  std::string message;
  for (;;) {
    auto f = read_frame(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    if (!f) return std::nullopt;
    switch (f->opcode) {
      case ws_op::kPing: send_frame(ws_op::kPong, f->payload); continue;
      case ws_op::kPong: continue;
      case ws_op::kClose:
        // The server is closing: put the frame back for read_close().
        in_.insert(0, ws_client_frame(ws_op::kClose, f->payload));
        return std::nullopt;
      default: break;
    }
    message += f->payload;
    if (f->fin) return message;
  }
}

std::optional<std::uint16_t> WsRaw::read_close(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string message;
  for (;;) {
    auto f = read_frame(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    if (!f) return std::nullopt;
    if (f->opcode == ws_op::kClose) return f->close_code();
    if (f->opcode == ws_op::kPing) send_frame(ws_op::kPong, f->payload);
    if (f->opcode == ws_op::kBinary || f->opcode == ws_op::kContinuation) {
      message += f->payload;
      if (f->fin) {
        if (auto im = parse_im(message)) started_.push_back(std::move(*im));
        message.clear();
      }
    }
  }
}

bool WsRaw::wait_eof(std::chrono::milliseconds timeout) {
  read_to_eof(timeout);
  return eof_;
}

std::string WsRaw::read_to_eof(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string out;
  for (int rounds = 0; rounds < 1000000; ++rounds) {
    out += in_;
    in_.clear();
    if (out.size() > (64u << 20)) break;  // a server that never stops sending: the caller sees no EOF
    if (!fill(deadline)) break;
  }
  out += in_;
  in_.clear();
  return out;
}

std::optional<Frame> WsRaw::parse_im(const std::string& message) {
  const Decoded d = decode_frame(message, 16u << 20);
  if (d.status != DecodeStatus::kFrame || d.consumed != message.size()) return std::nullopt;
  return Frame{d.header, std::string(d.body)};
}

void WsRaw::send_im(Cmd cmd, std::uint32_t seq, std::string_view body) {
  FrameHeader h;
  h.cmd = cmd;
  h.seq = seq;
  send_frame(ws_op::kBinary, encode_frame(h, body));
}

std::optional<Frame> WsRaw::call(Cmd cmd, std::string_view body, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::uint32_t seq = ++seq_;
  send_im(cmd, seq, body);
  for (int guard = 0; guard < 100000; ++guard) {
    auto message = read_message(deadline);
    if (!message) return std::nullopt;
    auto f = parse_im(*message);
    if (!f) return std::nullopt;
    if (f->header.is_response() && f->header.seq == seq) return f;
    started_.push_back(std::move(*f));
  }
  return std::nullopt;
}

std::optional<Frame> WsRaw::call(Cmd cmd, const google::protobuf::MessageLite& body,
                                 std::chrono::milliseconds timeout) {
  return call(cmd, body.SerializeAsString(), timeout);
}

std::optional<Frame> WsRaw::next_im(std::chrono::milliseconds timeout) {
  if (!started_.empty()) {
    Frame f = std::move(started_.front());
    started_.pop_front();
    return f;
  }
  auto message = read_message(Clock::now() + timeout);
  if (!message) return std::nullopt;
  return parse_im(*message);
}

void WsRaw::login(const std::string& uid, int device_type, const std::string& device_id, Frame* resp) {
  REQUIRE(connected());
  const HttpAnswer a = upgrade();
  REQUIRE(a.status == 101);
  auto r = call(Cmd::kLogin, login_body(uid, token_for(uid), device_type, device_id));
  REQUIRE(r);
  INFO(r->error_message());
  REQUIRE(r->ok());
  if (resp) *resp = *r;
}

}  // namespace im::test
