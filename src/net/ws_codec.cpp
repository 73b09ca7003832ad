#include "net/ws_codec.h"

#include <algorithm>
#include <cstring>

namespace im::ws {
namespace {

bool is_control(Opcode op) {
  return (static_cast<std::uint8_t>(op) & 0x8) != 0;
}

bool known_opcode(std::uint8_t op) {
  return op <= 0x2 || (op >= 0x8 && op <= 0xA);
}

FrameHead bad(std::uint16_t code) {
  FrameHead h;
  h.status = HeadStatus::kBad;
  h.error = code;
  return h;
}

// Codes a peer may send in a close frame (RFC 6455, 7.4).
bool valid_close_code(std::uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

WsEvent error_event(std::uint16_t code) {
  WsEvent e;
  e.kind = WsEventKind::kError;
  e.close_code = code;
  return e;
}

}  // namespace

FrameHead parse_head(std::string_view in, std::uint64_t max_payload, Side side) {
  FrameHead h;
  if (in.size() < 2) return h;
  const auto b0 = static_cast<std::uint8_t>(in[0]);
  const auto b1 = static_cast<std::uint8_t>(in[1]);
  if ((b0 & 0x70) != 0) return bad(kCloseProtocolError);  // RSV1-3: no extension was negotiated
  if (!known_opcode(b0 & 0x0F)) return bad(kCloseProtocolError);
  h.fin = (b0 & 0x80) != 0;
  h.opcode = static_cast<Opcode>(b0 & 0x0F);
  h.masked = (b1 & 0x80) != 0;
  if (h.masked != (side == Side::kServer)) return bad(kCloseProtocolError);
  std::uint64_t len = b1 & 0x7F;
  std::size_t pos = 2;
  if (is_control(h.opcode) && (!h.fin || len > kMaxControlPayload)) return bad(kCloseProtocolError);
  if (len == 126) {
    if (in.size() < pos + 2) return h;
    len = (static_cast<std::uint64_t>(static_cast<std::uint8_t>(in[2])) << 8) | static_cast<std::uint8_t>(in[3]);
    pos += 2;
  } else if (len == 127) {
    if (in.size() < pos + 8) return h;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<std::uint8_t>(in[pos + i]);
    pos += 8;
    if (len >> 63) return bad(kCloseProtocolError);
  }
  if (!is_control(h.opcode) && len > max_payload) return bad(kCloseTooBig);
  if (h.masked) {
    if (in.size() < pos + 4) return h;
    std::memcpy(h.mask.data(), in.data() + pos, 4);
    pos += 4;
  }
  h.status = HeadStatus::kHead;
  h.head_len = pos;
  h.payload_len = len;
  return h;
}

void apply_mask(std::span<char> data, const std::array<std::uint8_t, 4>& mask, std::uint64_t offset) {
  for (std::size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>(static_cast<std::uint8_t>(data[i]) ^ mask[(offset + i) & 3]);
}

std::size_t encode_head(Opcode opcode, std::uint64_t payload_len, std::span<char, kMaxHeadSize> out,
                        const std::array<std::uint8_t, 4>* mask) {
  out[0] = static_cast<char>(0x80 | static_cast<std::uint8_t>(opcode));
  const std::uint8_t mask_bit = mask ? 0x80 : 0;
  std::size_t pos = 2;
  if (payload_len < 126) {
    out[1] = static_cast<char>(mask_bit | payload_len);
  } else if (payload_len <= 0xFFFF) {
    out[1] = static_cast<char>(mask_bit | 126);
    out[2] = static_cast<char>(payload_len >> 8);
    out[3] = static_cast<char>(payload_len);
    pos = 4;
  } else {
    out[1] = static_cast<char>(mask_bit | 127);
    for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<char>(payload_len >> (56 - 8 * i));
    pos = 10;
  }
  if (mask) {
    std::memcpy(out.data() + pos, mask->data(), 4);
    pos += 4;
  }
  return pos;
}

std::string encode_frame(Opcode opcode, std::string_view payload) {
  std::array<char, kMaxHeadSize> head;
  const std::size_t n = encode_head(opcode, payload.size(), head);
  std::string out;
  out.reserve(n + payload.size());
  out.append(head.data(), n);
  out.append(payload);
  return out;
}

std::string close_payload(std::uint16_t code, std::string_view reason) {
  std::string out;
  out.push_back(static_cast<char>(code >> 8));
  out.push_back(static_cast<char>(code & 0xFF));
  // Cut at a character boundary: the peer fails a close whose reason is not UTF-8.
  std::size_t n = std::min(reason.size(), kMaxControlPayload - 2);
  if (n < reason.size())
    while (n > 0 && (static_cast<std::uint8_t>(reason[n]) & 0xC0) == 0x80) --n;
  out.append(reason.substr(0, n));
  return out;
}

WsEvent WsReader::next(std::span<char> in) {
  if (deliver_reset_) {
    deliver_reset_ = false;
    std::string().swap(message_);  // an idle connection keeps no buffer
  }
  std::size_t used = 0;
  for (;;) {
    const std::string_view rest(in.data() + used, in.size() - used);
    // A continuation may add only what is left of the message's budget.
    const std::uint64_t budget = max_message_ - message_.size();
    const FrameHead h = parse_head(rest, budget, side_);
    WsEvent need_more;
    need_more.consumed = used;
    if (h.status == HeadStatus::kNeedMore) return need_more;
    if (h.status == HeadStatus::kBad) return error_event(h.error);
    if (rest.size() - h.head_len < h.payload_len) return need_more;
    const std::size_t frame_len = h.head_len + static_cast<std::size_t>(h.payload_len);
    std::span<char> payload = in.subspan(used + h.head_len, static_cast<std::size_t>(h.payload_len));
    if (h.masked) apply_mask(payload, h.mask);
    if (is_control(h.opcode)) return control(h, payload, used + frame_len);
    if (h.opcode == Opcode::kText) return error_event(in_message_ ? kCloseProtocolError : kCloseUnsupportedData);
    if (h.opcode == Opcode::kBinary && in_message_) return error_event(kCloseProtocolError);
    if (h.opcode == Opcode::kContinuation && !in_message_) return error_event(kCloseProtocolError);
    used += frame_len;
    if (h.fin && !in_message_) {  // the common case: one whole message in one frame, never copied
      WsEvent e;
      e.kind = WsEventKind::kMessage;
      e.consumed = used;
      e.payload = std::string_view(payload.data(), payload.size());
      return e;
    }
    // Grow by doubling but never past the limit: a message buffer holds at
    // most max_message_ bytes, whatever the fragments' sizes.
    const std::size_t need = message_.size() + payload.size();
    if (need > message_.capacity())
      message_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(max_message_, std::max(need, 2 * message_.capacity()))));
    message_.append(payload.data(), payload.size());
    in_message_ = !h.fin;
    if (h.fin) {
      WsEvent e;
      e.kind = WsEventKind::kMessage;
      e.consumed = used;
      e.payload = message_;
      deliver_reset_ = true;
      return e;
    }
  }
}

WsEvent WsReader::control(const FrameHead& h, std::span<char> payload, std::size_t consumed) {
  WsEvent e;
  e.consumed = consumed;
  const std::string_view p(payload.data(), payload.size());
  switch (h.opcode) {
    case Opcode::kPing:
      e.kind = WsEventKind::kPing;
      e.payload = p;
      return e;
    case Opcode::kPong: e.kind = WsEventKind::kPong; return e;
    default: break;
  }
  e.kind = WsEventKind::kClose;
  if (p.empty()) {
    e.close_code = kCloseNoStatus;
    return e;
  }
  if (p.size() == 1) return error_event(kCloseProtocolError);
  e.close_code = static_cast<std::uint16_t>((static_cast<std::uint8_t>(p[0]) << 8) | static_cast<std::uint8_t>(p[1]));
  if (!valid_close_code(e.close_code)) return error_event(kCloseProtocolError);
  e.payload = p.substr(2);
  if (!valid_utf8(e.payload)) return error_event(kCloseInvalidPayload);
  return e;
}

void WsReader::release() {
  in_message_ = false;
  deliver_reset_ = false;
  std::string().swap(message_);
}

}  // namespace im::ws
