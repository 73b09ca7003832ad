// The WebSocket side of the network layer: the RFC 6455 frame reader
// (src/net/ws_codec.h) on either side, and the HTTP request-head parser and
// upgrade answer (src/net/ws_handshake.h) a WebSocket listener runs first.
//
// Input: [mode] [limit selector] [chunking seed] [bytes]. Modes:
//   0, 1  WsReader (server side, client side): the bytes fed whole and in
//         chunks must give the same events; messages keep to the limit
//   2     parse_request + answer_upgrade; no prefix of a whole head refused
//   3     parse_answer (the client's check of the server's 101)
// Every mode also checks close_payload on the bytes as a close reason.

#include <array>
#include <string>
#include <vector>

#include "fuzz.h"
#include "net/ws_codec.h"
#include "net/ws_handshake.h"

namespace {

namespace ws = im::ws;

// The limits a connection uses: before LOGIN (16 KiB + header), after (64 KiB + header).
constexpr std::uint64_t kMessageLimits[] = {0, 1, 125, 126, 65535, 65536, 16404, 65556};

struct Event {
  ws::WsEventKind kind;
  std::string payload;
  std::uint16_t close_code;
  bool operator==(const Event&) const = default;
};

// Feeds `stream` to a reader as a connection does: the unconsumed tail is
// kept and the next chunk appended. `raise_at`: after that many messages the
// limit grows to 65556 (a connection's LOGIN).
std::vector<Event> read_all(std::string stream, std::uint64_t limit, ws::Side side, std::size_t chunk_seed,
                            bool whole) {
  std::vector<Event> out;
  ws::WsReader reader(limit, side);
  std::string pending;
  std::size_t pos = 0;
  unsigned step = 0;
  std::size_t messages = 0;
  for (;;) {
    const std::size_t chunk = whole ? stream.size() : 1 + (chunk_seed * 13u + step++ * 7u) % 37u;
    pending.append(stream, pos, chunk);
    pos = std::min(stream.size(), pos + chunk);
    std::size_t used = 0;
    for (;;) {
      const ws::WsEvent e = reader.next(std::span<char>(pending.data() + used, pending.size() - used));
      FUZZ_CHECK(e.consumed <= pending.size() - used);
      used += e.consumed;
      if (e.kind == ws::WsEventKind::kNeedMore) break;
      Event ev{e.kind, std::string(e.payload), e.close_code};
      switch (e.kind) {
        case ws::WsEventKind::kMessage:
          FUZZ_CHECK(e.payload.size() <= limit);
          if (++messages == 1) {
            limit = 65556;
            reader.set_max_message(limit);
          }
          break;
        case ws::WsEventKind::kPing: FUZZ_CHECK(e.payload.size() <= ws::kMaxControlPayload); break;
        case ws::WsEventKind::kPong: break;
        case ws::WsEventKind::kClose:
          FUZZ_CHECK(ws::valid_utf8(e.payload));
          FUZZ_CHECK(e.close_code == ws::kCloseNoStatus || (e.close_code >= 1000 && e.close_code < 5000));
          break;
        case ws::WsEventKind::kError:
          FUZZ_CHECK(e.close_code == ws::kCloseProtocolError || e.close_code == ws::kCloseUnsupportedData ||
                     e.close_code == ws::kCloseInvalidPayload || e.close_code == ws::kCloseTooBig);
          break;
        case ws::WsEventKind::kNeedMore: break;
      }
      out.push_back(std::move(ev));
      if (e.kind == ws::WsEventKind::kError || e.kind == ws::WsEventKind::kClose) return out;
    }
    pending.erase(0, used);
    if (pos == stream.size()) return out;
  }
}

void check_request(std::string_view in, std::size_t max_head) {
  const ws::ParsedRequest p = ws::parse_request(in, max_head);
  if (p.status == ws::HeadParse::kBad) {
    FUZZ_CHECK(p.error_status == 400 || p.error_status == 431);
    return;
  }
  if (p.status == ws::HeadParse::kNeedMore) {
    FUZZ_CHECK(in.size() < max_head);
    return;
  }
  FUZZ_CHECK(p.consumed >= 4 && p.consumed <= in.size() && p.consumed <= max_head + 4);
  FUZZ_CHECK(in.substr(p.consumed - 4, 4) == "\r\n\r\n");
  auto inside = [&](std::string_view v) {
    return v.empty() || (v.data() >= in.data() && v.data() + v.size() <= in.data() + p.consumed);
  };
  const ws::HttpRequest& r = p.request;
  FUZZ_CHECK(inside(r.method) && inside(r.target) && inside(r.version));
  for (const auto& [k, v] : r.headers) FUZZ_CHECK(inside(k) && inside(v) && !k.empty());
  FUZZ_CHECK(r.path().size() <= r.target.size());
  (void)r.has_token("Connection", "upgrade");
  // A head that arrives in pieces is not refused before it is whole.
  for (std::size_t n : {std::size_t{1}, p.consumed / 2, p.consumed - 1}) {
    if (n == 0 || n >= p.consumed) continue;
    const ws::ParsedRequest q = ws::parse_request(in.substr(0, n), max_head);
    FUZZ_CHECK(q.status == ws::HeadParse::kNeedMore);
  }
  for (const std::vector<std::string>& origins : {std::vector<std::string>{}, std::vector<std::string>{"http://a"}}) {
    const ws::UpgradeAnswer a = ws::answer_upgrade(r, origins);
    FUZZ_CHECK(a.status == 101 || a.status == 400 || a.status == 403 || a.status == 405 || a.status == 426);
    FUZZ_CHECK(a.response.rfind("HTTP/1.1 " + std::to_string(a.status) + " ", 0) == 0);
    FUZZ_CHECK(a.response.find("\r\n\r\n") != std::string::npos);
    if (a.status == 101)
      FUZZ_CHECK(a.response.find("Sec-WebSocket-Accept: " + ws::accept_key(r.header("Sec-WebSocket-Key"))) !=
                 std::string::npos);
  }
}

}  // namespace

int fuzz_one(const std::uint8_t* data, std::size_t size) {
  im::fuzz::Reader in(data, size);
  const std::uint8_t mode = in.byte() % 4;
  const std::uint8_t limit_sel = in.byte();
  const std::uint8_t seed = in.byte();
  const std::string_view bytes = in.rest();

  // A close reason is cut to fit a control frame, at a character boundary.
  const std::string cp = ws::close_payload(static_cast<std::uint16_t>(1000 + seed), bytes);
  FUZZ_CHECK(cp.size() >= 2 && cp.size() <= ws::kMaxControlPayload);
  if (ws::valid_utf8(bytes)) FUZZ_CHECK(ws::valid_utf8(std::string_view(cp).substr(2)));

  switch (mode) {
    case 0:
    case 1: {
      const auto side = mode == 0 ? ws::Side::kServer : ws::Side::kClient;
      const std::uint64_t limit = kMessageLimits[limit_sel % std::size(kMessageLimits)];
      const auto whole = read_all(std::string(bytes), limit, side, seed, true);
      const auto chunked = read_all(std::string(bytes), limit, side, seed, false);
      FUZZ_CHECK(whole == chunked);
      break;
    }
    case 2: {
      constexpr std::size_t kHeads[] = {ws::kMaxRequestHead, 64, 16};
      check_request(bytes, kHeads[limit_sel % std::size(kHeads)]);
      break;
    }
    case 3: {
      const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";
      const ws::ParsedAnswer a = ws::parse_answer(bytes, key);
      if (a.status == ws::HeadParse::kDone) {
        FUZZ_CHECK(a.http_status == 101 && a.consumed <= bytes.size());
        FUZZ_CHECK(bytes.substr(a.consumed - 4, 4) == "\r\n\r\n");
      }
      break;
    }
  }
  return 0;
}
