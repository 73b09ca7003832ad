// WebSocket framing (src/net/ws_codec): every path of parse_head and
// WsReader, with streams fed whole, one byte at a time and cut at random
// (seeded) points, as a connection's reads cut them.

#include <array>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "net/ws_codec.h"

using namespace im::ws;

// ---- an allocation probe: how much the codec allocates while it is armed ----
// Under AddressSanitizer, its allocator's count of live bytes (ASan itself
// aborts on a huge allocation). Otherwise the global operator new of this test
// binary is replaced: it forwards to malloc and records the largest single
// allocation made while a Probe lives on the calling thread. GCC says ASan
// with __SANITIZE_ADDRESS__, clang 14 only through __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define IM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IM_TEST_ASAN 1
#endif
#endif
#if defined(IM_TEST_ASAN)
// From libasan (sanitizer/allocator_interface.h, which GCC does not install).
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();

namespace {
class Probe {
 public:
  std::size_t largest() const {
    const std::size_t now = __sanitizer_get_current_allocated_bytes();
    return now > start_ ? now - start_ : 0;
  }

 private:
  std::size_t start_ = __sanitizer_get_current_allocated_bytes();
};
}  // namespace
#else
namespace {
thread_local bool probe_armed = false;
thread_local std::size_t probe_largest = 0;
}  // namespace

void* operator new(std::size_t n) {
  if (probe_armed && n > probe_largest) probe_largest = n;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// GCC sees malloc'ed memory from `new` reach free() through these once they
// are inlined, and warns; the pair is consistent, which is what counts.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop

namespace {
class Probe {
 public:
  Probe() {
    probe_largest = 0;
    probe_armed = true;
  }
  ~Probe() { probe_armed = false; }
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;
  std::size_t largest() const { return probe_largest; }
};
}  // namespace
#endif

namespace {

constexpr std::array<std::uint8_t, 4> kMask{0x37, 0xFA, 0x21, 0x3D};
constexpr std::uint8_t kFin = 0x80;
constexpr std::uint8_t kCont = 0x0, kText = 0x1, kBin = 0x2, kClose = 0x8, kPing = 0x9, kPong = 0xA;

// A frame built by hand (independently of encode_head): first byte `b0`
// (FIN, RSV and opcode as given), the shortest length form unless
// `force_len_bytes` is 2 or 8, the payload masked with `mask` when `masked`.
std::string raw_frame(std::uint8_t b0, std::string_view payload, bool masked = true,
                      std::array<std::uint8_t, 4> mask = kMask, int force_len_bytes = 0) {
  std::string f;
  f.push_back(static_cast<char>(b0));
  const std::uint8_t mbit = masked ? 0x80 : 0;
  const std::uint64_t n = payload.size();
  if ((n < 126 && force_len_bytes == 0)) {
    f.push_back(static_cast<char>(mbit | n));
  } else if ((n <= 0xFFFF && force_len_bytes == 0) || force_len_bytes == 2) {
    f.push_back(static_cast<char>(mbit | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xFF));
  } else {
    f.push_back(static_cast<char>(mbit | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  }
  if (masked) {
    for (auto b : mask) f.push_back(static_cast<char>(b));
    for (std::size_t i = 0; i < payload.size(); ++i)
      f.push_back(static_cast<char>(static_cast<std::uint8_t>(payload[i]) ^ mask[i % 4]));
  } else {
    f.append(payload);
  }
  return f;
}

// Only a header: `b0`, the mask bit, and a 64-bit length claim.
std::string head_claim(std::uint8_t b0, std::uint64_t len, bool masked = true) {
  std::string f;
  f.push_back(static_cast<char>(b0));
  f.push_back(static_cast<char>((masked ? 0x80 : 0) | 127));
  for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((len >> (8 * i)) & 0xFF));
  return f;
}

std::string close_body(std::uint16_t code, std::string_view reason = {}) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xFF));
  p.append(reason);
  return p;
}

struct Ev {
  WsEventKind kind;
  std::string payload;
  std::uint16_t code = 0;
  bool operator==(const Ev&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Ev& e) {
  return os << "{kind " << static_cast<int>(e.kind) << ", " << e.payload.size() << " bytes, code " << e.code << "}";
}

Ev message(std::string p) {
  return {WsEventKind::kMessage, std::move(p), 0};
}
Ev ping(std::string p) {
  return {WsEventKind::kPing, std::move(p), 0};
}
Ev pong() {
  return {WsEventKind::kPong, "", 0};
}
Ev close_ev(std::uint16_t code, std::string reason = {}) {
  return {WsEventKind::kClose, std::move(reason), code};
}
Ev error_ev(std::uint16_t code) {
  return {WsEventKind::kError, "", code};
}

// Feeds `stream` to a fresh reader in chunks of the sizes in `cuts` (the
// rest at the end), keeping unconsumed bytes as a connection does; returns
// the events, stopping at the first error.
std::vector<Ev> feed(const std::string& stream, const std::vector<std::size_t>& cuts, std::uint64_t max_message,
                     Side side = Side::kServer) {
  WsReader reader(max_message, side);
  std::vector<Ev> out;
  std::string pending;
  std::size_t pos = 0;
  auto drain = [&] {
    for (int guard = 0; guard < 100000; ++guard) {
      WsEvent e = reader.next(pending);
      REQUIRE(e.consumed <= pending.size());
      if (e.kind == WsEventKind::kNeedMore) {
        pending.erase(0, e.consumed);
        return true;
      }
      if (e.kind == WsEventKind::kError) {
        out.push_back(error_ev(e.close_code));
        return false;
      }
      REQUIRE(e.consumed > 0);
      out.push_back({e.kind, std::string(e.payload), e.close_code});
      pending.erase(0, e.consumed);
    }
    FAIL("the reader never asked for more");
    return false;
  };
  std::vector<std::size_t> sizes = cuts;
  if (pos < stream.size()) sizes.push_back(stream.size());
  for (std::size_t cut : sizes) {
    if (pos >= stream.size()) break;
    const std::size_t n = std::min(cut, stream.size() - pos);
    pending.append(stream, pos, n);
    pos += n;
    if (!drain()) return out;
  }
  CHECK(pending.empty());
  return out;
}

std::vector<Ev> feed_whole(const std::string& stream, std::uint64_t max_message = 1 << 20) {
  return feed(stream, {stream.size()}, max_message);
}

std::vector<Ev> feed_bytewise(const std::string& stream, std::uint64_t max_message = 1 << 20) {
  return feed(stream, std::vector<std::size_t>(stream.size(), 1), max_message);
}

std::vector<std::size_t> random_cuts(std::mt19937& rng, std::size_t total) {
  std::vector<std::size_t> cuts;
  std::uniform_int_distribution<std::size_t> small(1, 7), large(1, 300);
  std::size_t sum = 0;
  while (sum < total) {
    const std::size_t c = (rng() % 3 == 0) ? large(rng) : small(rng);
    cuts.push_back(c);
    sum += c;
  }
  return cuts;
}

// The same events whole, one byte at a time and at 50 random cuts.
void expect_events(const std::string& stream, const std::vector<Ev>& expected, std::uint64_t max_message = 1 << 20) {
  CHECK(feed_whole(stream, max_message) == expected);
  CHECK(feed_bytewise(stream, max_message) == expected);
  std::mt19937 rng(20240601);
  for (int i = 0; i < 50; ++i) CHECK(feed(stream, random_cuts(rng, stream.size()), max_message) == expected);
}

}  // namespace

// ---------------------------------------------------------------- parse_head

TEST_CASE("parse_head: every length form, masked, reads length and mask") {
  for (std::size_t n : {0u, 1u, 125u, 126u, 127u, 65535u, 65536u, 70000u}) {
    const std::string payload(n, 'p');
    const std::string f = raw_frame(kFin | kBin, payload);
    const FrameHead h = parse_head(f, 1 << 20, Side::kServer);
    INFO("payload " << n);
    REQUIRE(h.status == HeadStatus::kHead);
    CHECK(h.fin);
    CHECK(h.opcode == Opcode::kBinary);
    CHECK(h.masked);
    CHECK(h.mask == kMask);
    CHECK(h.payload_len == n);
    CHECK(h.head_len == (n < 126 ? 2u : n <= 0xFFFF ? 4u : 10u) + 4u);
    CHECK(h.head_len + n == f.size());
    // every proper prefix of the header asks for more
    for (std::size_t k = 0; k < h.head_len; ++k)
      CHECK(parse_head(std::string_view(f).substr(0, k), 1 << 20, Side::kServer).status == HeadStatus::kNeedMore);
  }
}

TEST_CASE("parse_head: a non-minimal length form is read for what it says") {
  const FrameHead h2 = parse_head(raw_frame(kFin | kBin, "abc", true, kMask, 2), 100, Side::kServer);
  REQUIRE(h2.status == HeadStatus::kHead);
  CHECK(h2.payload_len == 3);
  CHECK(h2.head_len == 8);
  const FrameHead h8 = parse_head(raw_frame(kFin | kBin, "abc", true, kMask, 8), 100, Side::kServer);
  REQUIRE(h8.status == HeadStatus::kHead);
  CHECK(h8.payload_len == 3);
  CHECK(h8.head_len == 14);
}

TEST_CASE("parse_head: FIN clear on a data frame is a fragment, not an error") {
  const FrameHead h = parse_head(raw_frame(kBin, "x"), 100, Side::kServer);
  REQUIRE(h.status == HeadStatus::kHead);
  CHECK_FALSE(h.fin);
  const FrameHead c = parse_head(raw_frame(kCont, "x"), 100, Side::kServer);
  REQUIRE(c.status == HeadStatus::kHead);
  CHECK(c.opcode == Opcode::kContinuation);
}

TEST_CASE("parse_head: RSV bits, unknown opcodes and wrong masking are 1002 from the first two bytes") {
  for (std::uint8_t rsv : {0x40, 0x20, 0x10, 0x70}) {
    INFO("rsv " << int(rsv));
    const FrameHead h = parse_head(raw_frame(kFin | rsv | kBin, "x").substr(0, 2), 100, Side::kServer);
    CHECK(h.status == HeadStatus::kBad);
    CHECK(h.error == kCloseProtocolError);
  }
  for (std::uint8_t op : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    INFO("opcode " << int(op));
    const FrameHead h = parse_head(raw_frame(kFin | op, "x").substr(0, 2), 100, Side::kServer);
    CHECK(h.status == HeadStatus::kBad);
    CHECK(h.error == kCloseProtocolError);
  }
  // a server reads only masked frames, a client only unmasked ones
  CHECK(parse_head(raw_frame(kFin | kBin, "x", false), 100, Side::kServer).error == kCloseProtocolError);
  CHECK(parse_head(raw_frame(kFin | kBin, "x", true), 100, Side::kClient).error == kCloseProtocolError);
  CHECK(parse_head(raw_frame(kFin | kBin, "x", false), 100, Side::kClient).status == HeadStatus::kHead);
  CHECK(parse_head(raw_frame(kFin | kBin, "x", false).substr(0, 1), 100, Side::kServer).status ==
        HeadStatus::kNeedMore);
}

TEST_CASE("parse_head: control frames are final and at most 125 bytes") {
  for (std::uint8_t op : {kClose, kPing, kPong}) {
    INFO("opcode " << int(op));
    CHECK(parse_head(raw_frame(kFin | op, std::string(125, 'c')), 10, Side::kServer).status == HeadStatus::kHead);
    // the data limit does not apply to control frames
    CHECK(parse_head(raw_frame(kFin | op, std::string(125, 'c')), 0, Side::kServer).status == HeadStatus::kHead);
    const FrameHead big = parse_head(raw_frame(kFin | op, std::string(126, 'c')).substr(0, 2), 1 << 20, Side::kServer);
    CHECK(big.status == HeadStatus::kBad);
    CHECK(big.error == kCloseProtocolError);
    const FrameHead frag = parse_head(raw_frame(op, "").substr(0, 2), 1 << 20, Side::kServer);
    CHECK(frag.status == HeadStatus::kBad);
    CHECK(frag.error == kCloseProtocolError);
  }
}

TEST_CASE("parse_head: a data frame over the limit is 1009 as soon as its length is there") {
  // 7-bit length: two bytes are enough
  const FrameHead h7 = parse_head(raw_frame(kFin | kBin, std::string(101, 'x')).substr(0, 2), 100, Side::kServer);
  CHECK(h7.status == HeadStatus::kBad);
  CHECK(h7.error == kCloseTooBig);
  CHECK(parse_head(raw_frame(kFin | kBin, std::string(100, 'x')), 100, Side::kServer).status == HeadStatus::kHead);
  // 16-bit length: four bytes; three ask for more
  const std::string f16 = raw_frame(kFin | kBin, std::string(1000, 'x'));
  CHECK(parse_head(f16.substr(0, 3), 999, Side::kServer).status == HeadStatus::kNeedMore);
  CHECK(parse_head(f16.substr(0, 4), 999, Side::kServer).error == kCloseTooBig);
  CHECK(parse_head(f16.substr(0, 8), 1000, Side::kServer).status == HeadStatus::kHead);
  // 64-bit length: ten bytes, before the mask
  const std::string tib = head_claim(kFin | kBin, 1ull << 40);
  CHECK(parse_head(tib.substr(0, 9), 65556, Side::kServer).status == HeadStatus::kNeedMore);
  const FrameHead h64 = parse_head(tib, 65556, Side::kServer);
  CHECK(h64.status == HeadStatus::kBad);
  CHECK(h64.error == kCloseTooBig);
  // a fragment and a continuation are data frames too
  CHECK(parse_head(head_claim(kBin, 1ull << 40), 65556, Side::kServer).error == kCloseTooBig);
  CHECK(parse_head(head_claim(kCont, 1ull << 40), 65556, Side::kServer).error == kCloseTooBig);
}

TEST_CASE("parse_head: a 64-bit length with the top bit set is 1002") {
  const FrameHead h = parse_head(head_claim(kFin | kBin, 0x8000000000000000ull), ~0ull, Side::kServer);
  CHECK(h.status == HeadStatus::kBad);
  CHECK(h.error == kCloseProtocolError);
  const FrameHead max = parse_head(head_claim(kFin | kBin, 0x7FFFFFFFFFFFFFFFull) + "abcd", ~0ull, Side::kServer);
  CHECK(max.status == HeadStatus::kHead);
  CHECK(max.payload_len == 0x7FFFFFFFFFFFFFFFull);
}

// ------------------------------------------------------ encode and apply_mask

TEST_CASE("encode_head writes the shortest length form, FIN set, masked or not") {
  std::array<char, kMaxHeadSize> out{};
  CHECK(encode_head(Opcode::kBinary, 0, out) == 2);
  CHECK(std::string(out.data(), 2) == std::string("\x82\x00", 2));
  CHECK(encode_head(Opcode::kBinary, 125, out) == 2);
  CHECK(std::string(out.data(), 2) == "\x82\x7D");
  CHECK(encode_head(Opcode::kBinary, 126, out) == 4);
  CHECK(std::string(out.data(), 4) == std::string("\x82\x7E\x00\x7E", 4));
  CHECK(encode_head(Opcode::kBinary, 65535, out) == 4);
  CHECK(std::string(out.data(), 4) == "\x82\x7E\xFF\xFF");
  CHECK(encode_head(Opcode::kBinary, 65536, out) == 10);
  CHECK(std::string(out.data(), 10) == std::string("\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10));
  CHECK(encode_head(Opcode::kClose, 2, out) == 2);
  CHECK(std::string(out.data(), 2) == "\x88\x02");
  CHECK(encode_head(Opcode::kPong, 3, out, &kMask) == 6);
  CHECK(std::string(out.data(), 6) == "\x8A\x83\x37\xFA\x21\x3D");
  CHECK(encode_head(Opcode::kBinary, 70000, out, &kMask) == 14);
  // what a masked encode_head + apply_mask makes is what a server reads
  for (std::size_t n : {0u, 5u, 125u, 126u, 65535u, 65536u, 100000u}) {
    std::string payload(n, '\0');
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>(i * 7 + 3);
    const std::size_t hl = encode_head(Opcode::kBinary, n, out, &kMask);
    std::string masked = payload;
    apply_mask(masked, kMask);
    CHECK(std::string(out.data(), hl) + masked == raw_frame(kFin | kBin, payload));
    CHECK(feed_whole(std::string(out.data(), hl) + masked) == std::vector<Ev>{message(payload)});
  }
}

TEST_CASE("apply_mask in pieces, with offsets, equals masking the whole, twice is identity") {
  std::string data(1001, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i);
  std::string whole = data;
  apply_mask(whole, kMask);
  for (std::size_t i = 0; i < data.size(); ++i)
    REQUIRE(static_cast<std::uint8_t>(whole[i]) == (static_cast<std::uint8_t>(data[i]) ^ kMask[i % 4]));
  for (std::size_t split : {1u, 2u, 3u, 4u, 5u, 500u, 1000u}) {
    std::string pieces = data;
    std::span<char> all(pieces);
    apply_mask(all.subspan(0, split), kMask, 0);
    apply_mask(all.subspan(split), kMask, split);
    CHECK(pieces == whole);
  }
  apply_mask(whole, kMask);
  CHECK(whole == data);
}

TEST_CASE("encode_frame makes an unmasked frame a client reader takes") {
  const std::string p(300, 'q');
  const std::string f = encode_frame(Opcode::kBinary, p);
  CHECK(f == raw_frame(kFin | kBin, p, false));
  CHECK(feed(f, {1, 1, 1, 5, 100}, 1000, Side::kClient) == std::vector<Ev>{message(p)});
  CHECK(feed(encode_frame(Opcode::kPing, "hi"), {100}, 1000, Side::kClient) == std::vector<Ev>{ping("hi")});
  CHECK(feed(encode_frame(Opcode::kClose, close_payload(1000, "bye")), {100}, 1000, Side::kClient) ==
        std::vector<Ev>{close_ev(1000, "bye")});
  // a server's reader refuses it: not masked
  CHECK(feed_whole(f) == std::vector<Ev>{error_ev(kCloseProtocolError)});
}

TEST_CASE("close_payload: the code big-endian, then the reason, at most 125 bytes in all") {
  CHECK(close_payload(1000) == std::string("\x03\xE8", 2));
  CHECK(close_payload(1009, "too big") == std::string("\x03\xF1too big", 9));
  const std::string longer = close_payload(1002, std::string(300, 'r'));
  CHECK(longer.size() == kMaxControlPayload);
  CHECK(longer.substr(2) == std::string(123, 'r'));
  // cut at a character boundary: the peer checks the reason is UTF-8
  std::string accents;
  for (int i = 0; i < 100; ++i) accents += "\xC3\xA9";  // U+00E9, two bytes
  const std::string cut = close_payload(1000, accents);
  CHECK(cut.size() <= kMaxControlPayload);
  CHECK(cut.size() >= kMaxControlPayload - 1);
  CHECK(valid_utf8(cut.substr(2)));
  std::string euros;
  for (int i = 0; i < 60; ++i) euros += "\xE2\x82\xAC";  // U+20AC, three bytes
  CHECK(valid_utf8(close_payload(1000, euros).substr(2)));
  CHECK(close_payload(1000, euros).size() == 2 + 123);  // 41 whole characters
  // and what it makes is a close a reader takes
  CHECK(feed_whole(raw_frame(kFin | kClose, close_payload(1000, accents))) ==
        std::vector<Ev>{close_ev(1000, cut.substr(2))});
}

// ------------------------------------------------------------- valid_utf8

TEST_CASE("valid_utf8 accepts well-formed UTF-8 and refuses the rest") {
  CHECK(valid_utf8(""));
  CHECK(valid_utf8("plain ascii"));
  CHECK(valid_utf8(std::string("nul\0inside", 10)));
  CHECK(valid_utf8("\xC2\x80"));                                      // U+0080, smallest two-byte
  CHECK(valid_utf8("\xDF\xBF"));                                      // U+07FF
  CHECK(valid_utf8("\xE0\xA0\x80"));                                  // U+0800
  CHECK(valid_utf8("\xED\x9F\xBF"));                                  // U+D7FF, below the surrogates
  CHECK(valid_utf8("\xEE\x80\x80"));                                  // U+E000, above them
  CHECK(valid_utf8("\xEF\xBF\xBF"));                                  // U+FFFF
  CHECK(valid_utf8("\xF0\x90\x80\x80"));                              // U+10000
  CHECK(valid_utf8("\xF4\x8F\xBF\xBF"));                              // U+10FFFF, the last
  CHECK(valid_utf8("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"));  // "κόσμε"
  CHECK(valid_utf8("\xE4\xBD\xA0\xE5\xA5\xBD\xF0\x9F\x98\x80"));      // CJK and an emoji

  CHECK_FALSE(valid_utf8("\x80"));  // a lone continuation byte
  CHECK_FALSE(valid_utf8("\xBF"));
  CHECK_FALSE(valid_utf8("\xC2"));  // truncated
  CHECK_FALSE(valid_utf8("\xE0\xA0"));
  CHECK_FALSE(valid_utf8("\xF0\x90\x80"));
  CHECK_FALSE(valid_utf8("a\xC2"));
  CHECK_FALSE(valid_utf8("\xC2\x41"));  // a non-continuation after a lead byte
  CHECK_FALSE(valid_utf8("\xE0\xA0\xC0"));
  CHECK_FALSE(valid_utf8("\xC0\x80"));          // overlong NUL
  CHECK_FALSE(valid_utf8("\xC1\xBF"));          // overlong U+007F
  CHECK_FALSE(valid_utf8("\xE0\x80\x80"));      // overlong
  CHECK_FALSE(valid_utf8("\xE0\x9F\xBF"));      // overlong U+07FF
  CHECK_FALSE(valid_utf8("\xF0\x80\x80\x80"));  // overlong
  CHECK_FALSE(valid_utf8("\xF0\x8F\xBF\xBF"));  // overlong U+FFFF
  CHECK_FALSE(valid_utf8("\xED\xA0\x80"));      // U+D800, a surrogate
  CHECK_FALSE(valid_utf8("\xED\xBF\xBF"));      // U+DFFF
  CHECK_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // U+110000
  CHECK_FALSE(valid_utf8("\xF5\x80\x80\x80"));
  CHECK_FALSE(valid_utf8("\xF8\x88\x80\x80\x80"));  // five-byte forms are gone
  CHECK_FALSE(valid_utf8("\xFE"));
  CHECK_FALSE(valid_utf8("\xFF"));
}

// ---------------------------------------------------------------- WsReader

TEST_CASE("WsReader: one masked binary frame is one message, unmasked") {
  const std::string payload("\x49\x4D\x01\x00 binary\0bytes", 17);
  expect_events(raw_frame(kFin | kBin, payload), {message(payload)});
  expect_events(raw_frame(kFin | kBin, ""), {message("")});
  // another mask, every byte value
  std::string all(256, '\0');
  for (int i = 0; i < 256; ++i) all[static_cast<std::size_t>(i)] = static_cast<char>(i);
  expect_events(raw_frame(kFin | kBin, all, true, {0xFF, 0x00, 0xA5, 0x5A}), {message(all)});
}

TEST_CASE("WsReader: a whole message in one frame points into the input, nothing is consumed until it is whole") {
  WsReader reader(1000, Side::kServer);
  std::string in = raw_frame(kFin | kBin, "hello");
  for (std::size_t k = 0; k < in.size(); ++k) {
    std::string part = in.substr(0, k);
    const WsEvent e = reader.next(part);
    CHECK(e.kind == WsEventKind::kNeedMore);
    CHECK(e.consumed == 0);
    CHECK(part == in.substr(0, k));  // an incomplete frame is not unmasked
  }
  const WsEvent e = reader.next(in);
  REQUIRE(e.kind == WsEventKind::kMessage);
  CHECK(e.consumed == in.size());
  CHECK(e.payload == "hello");
  CHECK(e.payload.data() >= in.data());
  CHECK(e.payload.data() < in.data() + in.size());
  CHECK_FALSE(reader.in_message());
}

TEST_CASE("WsReader: several frames in one buffer come out one per call") {
  std::string stream = raw_frame(kFin | kBin, "one") + raw_frame(kFin | kPing, "p") + raw_frame(kFin | kBin, "two") +
                       raw_frame(kFin | kPong, "q") + raw_frame(kFin | kClose, close_body(1000, "done"));
  expect_events(stream, {message("one"), ping("p"), message("two"), pong(), close_ev(1000, "done")});
}

TEST_CASE("WsReader: fragments are reassembled, control frames between them are handed out") {
  const std::string stream = raw_frame(kBin, "frag-1|") + raw_frame(kFin | kPing, "ping-1") + raw_frame(kCont, "") +
                             raw_frame(kCont, "frag-2|") + raw_frame(kFin | kPong, "pong") +
                             raw_frame(kFin | kPing, "") + raw_frame(kFin | kCont, "frag-3") +
                             raw_frame(kFin | kBin, "after");
  expect_events(stream, {ping("ping-1"), pong(), ping(""), message("frag-1|frag-2|frag-3"), message("after")});
}

TEST_CASE("WsReader: a consumed fragment is reported by kNeedMore with consumed > 0") {
  WsReader reader(1000, Side::kServer);
  const std::string first = raw_frame(kBin, "abc");
  std::string in = first + raw_frame(kFin | kCont, "def").substr(0, 3);
  const WsEvent e = reader.next(in);
  CHECK(e.kind == WsEventKind::kNeedMore);
  CHECK(e.consumed == first.size());
  CHECK(reader.in_message());
  in.erase(0, e.consumed);
  in += raw_frame(kFin | kCont, "def").substr(3);
  const WsEvent m = reader.next(in);
  REQUIRE(m.kind == WsEventKind::kMessage);
  CHECK(m.payload == "abcdef");
  CHECK(m.consumed == in.size());
  CHECK_FALSE(reader.in_message());
}

TEST_CASE("WsReader: a reassembled message does not leak into the next one") {
  WsReader reader(1000, Side::kServer);
  std::string a = raw_frame(kBin, "12345") + raw_frame(kFin | kCont, "678");
  WsEvent e = reader.next(a);
  REQUIRE(e.kind == WsEventKind::kMessage);
  CHECK(e.payload == "12345678");
  std::string b = raw_frame(kBin, "x") + raw_frame(kFin | kCont, "y");
  e = reader.next(b);
  REQUIRE(e.kind == WsEventKind::kMessage);
  CHECK(e.payload == "xy");
  std::string c = raw_frame(kFin | kBin, "z");
  e = reader.next(c);
  REQUIRE(e.kind == WsEventKind::kMessage);
  CHECK(e.payload == "z");
}

TEST_CASE("WsReader: release() drops a half-received message") {
  WsReader reader(1000, Side::kServer);
  std::string a = raw_frame(kBin, "half");
  CHECK(reader.next(a).kind == WsEventKind::kNeedMore);
  CHECK(reader.in_message());
  reader.release();
  CHECK_FALSE(reader.in_message());
  // a continuation now starts nothing
  std::string c = raw_frame(kFin | kCont, "rest");
  const WsEvent e = reader.next(c);
  CHECK(e.kind == WsEventKind::kError);
  CHECK(e.close_code == kCloseProtocolError);
}

TEST_CASE("WsReader: protocol violations are kError with the close code") {
  SECTION("unmasked client frame") {
    expect_events(raw_frame(kFin | kBin, "x", false), {error_ev(kCloseProtocolError)});
  }
  SECTION("RSV bits") {
    for (std::uint8_t rsv : {0x40, 0x20, 0x10})
      expect_events(raw_frame(static_cast<std::uint8_t>(kFin | rsv | kBin), "x"), {error_ev(kCloseProtocolError)});
  }
  SECTION("unknown opcodes") {
    for (std::uint8_t op : {0x3, 0x7, 0xB, 0xF})
      expect_events(raw_frame(static_cast<std::uint8_t>(kFin | op), "x"), {error_ev(kCloseProtocolError)});
  }
  SECTION("a continuation without a started message") {
    expect_events(raw_frame(kFin | kCont, "x"), {error_ev(kCloseProtocolError)});
    expect_events(raw_frame(kFin | kBin, "whole") + raw_frame(kCont, "x"),
                  {message("whole"), error_ev(kCloseProtocolError)});
  }
  SECTION("a new data frame inside a fragmented message") {
    expect_events(raw_frame(kBin, "a") + raw_frame(kFin | kBin, "b"), {error_ev(kCloseProtocolError)});
    expect_events(raw_frame(kBin, "a") + raw_frame(kBin, "b"), {error_ev(kCloseProtocolError)});
    expect_events(raw_frame(kBin, "a") + raw_frame(kFin | kPing, "p") + raw_frame(kFin | kText, "b"),
                  {ping("p"), error_ev(kCloseProtocolError)});
  }
  SECTION("a control frame over 125 bytes") {
    expect_events(raw_frame(kFin | kPing, std::string(126, 'x')), {error_ev(kCloseProtocolError)});
    expect_events(raw_frame(kFin | kClose, close_body(1000, std::string(124, 'x'))), {error_ev(kCloseProtocolError)});
  }
  SECTION("a fragmented control frame") {
    expect_events(raw_frame(kPing, "x"), {error_ev(kCloseProtocolError)});
    expect_events(raw_frame(kBin, "a") + raw_frame(kPong, "x"), {error_ev(kCloseProtocolError)});
  }
  SECTION("a text message") {
    expect_events(raw_frame(kFin | kText, "hello"), {error_ev(kCloseUnsupportedData)});
    expect_events(raw_frame(kText, "hel"), {error_ev(kCloseUnsupportedData)});
  }
}

TEST_CASE("WsReader: the message limit counts fragments added up, from length fields alone") {
  constexpr std::uint64_t kLimit = 100;
  expect_events(raw_frame(kFin | kBin, std::string(100, 'x')), {message(std::string(100, 'x'))}, kLimit);
  expect_events(raw_frame(kFin | kBin, std::string(101, 'x')), {error_ev(kCloseTooBig)}, kLimit);
  const std::string sixty(60, 'a'), forty(40, 'b');
  expect_events(raw_frame(kBin, sixty) + raw_frame(kFin | kCont, forty), {message(sixty + forty)}, kLimit);
  expect_events(raw_frame(kBin, sixty) + raw_frame(kFin | kPing, "p") + raw_frame(kFin | kCont, forty + "c"),
                {ping("p"), error_ev(kCloseTooBig)}, kLimit);
  expect_events(raw_frame(kBin, sixty) + raw_frame(kCont, forty) + raw_frame(kFin | kCont, "c"),
                {error_ev(kCloseTooBig)}, kLimit);
  // zero-length fragments at the limit are fine
  expect_events(raw_frame(kBin, sixty) + raw_frame(kCont, forty) + raw_frame(kFin | kCont, ""),
                {message(sixty + forty)}, kLimit);
  // the limit does not carry over to the next message
  expect_events(raw_frame(kBin, sixty) + raw_frame(kFin | kCont, forty) + raw_frame(kFin | kBin, sixty + forty),
                {message(sixty + forty), message(sixty + forty)}, kLimit);
}

TEST_CASE("WsReader: a 1 TiB length claim is 1009 at once, from the header alone, allocating nothing large") {
  constexpr std::uint64_t kLimit = 65536 + 20;
  for (std::uint8_t b0 : {std::uint8_t(kFin | kBin), std::uint8_t(kBin)}) {
    WsReader reader(kLimit, Side::kServer);
    std::string in = head_claim(b0, 1ull << 40);  // 10 bytes: no mask, no payload
    WsEvent e;
    std::size_t largest = 0;
    {
      Probe probe;
      e = reader.next(in);
      largest = probe.largest();
    }
    CHECK(e.kind == WsEventKind::kError);
    CHECK(e.close_code == kCloseTooBig);
    CHECK(largest < 4096);
  }
  // the same claim on a continuation, once part of the message is buffered
  WsReader reader(kLimit, Side::kServer);
  std::string in = raw_frame(kBin, std::string(1000, 'x')) + head_claim(kCont, 1ull << 40);
  std::size_t largest = 0;
  WsEvent e;
  {
    Probe probe;
    e = reader.next(in);
    largest = probe.largest();
  }
  CHECK(e.kind == WsEventKind::kError);
  CHECK(e.close_code == kCloseTooBig);
  CHECK(largest < 64 * 1024);
  // fed a byte at a time, the claim is refused at its tenth byte
  WsReader slow(kLimit, Side::kServer);
  const std::string claim = head_claim(kFin | kBin, 1ull << 40);
  std::string pending;
  for (std::size_t i = 0; i < claim.size(); ++i) {
    pending.push_back(claim[i]);
    const WsEvent s = slow.next(pending);
    if (i + 1 < claim.size()) {
      CHECK(s.kind == WsEventKind::kNeedMore);
    } else {
      CHECK(s.kind == WsEventKind::kError);
      CHECK(s.close_code == kCloseTooBig);
    }
  }
}

TEST_CASE("WsReader: close frames: code, reason, and their checks") {
  expect_events(raw_frame(kFin | kClose, ""), {close_ev(kCloseNoStatus)});
  expect_events(raw_frame(kFin | kClose, close_body(1000)), {close_ev(1000)});
  expect_events(raw_frame(kFin | kClose, close_body(1001, "going")), {close_ev(1001, "going")});
  expect_events(raw_frame(kFin | kClose, close_body(3000)), {close_ev(3000)});
  expect_events(raw_frame(kFin | kClose, close_body(4999, "app")), {close_ev(4999, "app")});
  expect_events(raw_frame(kFin | kClose, close_body(1000, "\xC3\xA9t\xC3\xA9")), {close_ev(1000, "\xC3\xA9t\xC3\xA9")});
  expect_events(raw_frame(kFin | kClose, close_body(1000, std::string(123, 'r'))),
                {close_ev(1000, std::string(123, 'r'))});
  for (std::uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}) {
    INFO("code " << code);
    CHECK(feed_whole(raw_frame(kFin | kClose, close_body(code))) == std::vector<Ev>{close_ev(code)});
  }
  // codes a peer may not send
  for (std::uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535}) {
    INFO("code " << code);
    CHECK(feed_whole(raw_frame(kFin | kClose, close_body(code))) == std::vector<Ev>{error_ev(kCloseProtocolError)});
  }
  // a one-byte payload cannot hold a code
  expect_events(raw_frame(kFin | kClose, "\x03"), {error_ev(kCloseProtocolError)});
  // a reason that is not UTF-8
  expect_events(raw_frame(kFin | kClose, close_body(1000, "\xC3(")), {error_ev(kCloseInvalidPayload)});
  expect_events(raw_frame(kFin | kClose, close_body(1000, "\xED\xA0\x80")), {error_ev(kCloseInvalidPayload)});
  // a close between fragments is handed out too
  expect_events(raw_frame(kBin, "a") + raw_frame(kFin | kClose, close_body(1000)), {close_ev(1000)});
}

TEST_CASE("WsReader: ping payloads are unmasked for the pong, pong payloads are not needed") {
  std::string all;
  for (int i = 0; i < 125; ++i) all.push_back(static_cast<char>(i * 2));
  expect_events(raw_frame(kFin | kPing, all, true, {1, 2, 3, 4}), {ping(all)});
  expect_events(raw_frame(kFin | kPong, all), {pong()});
}

TEST_CASE("WsReader, client side: reads unmasked server frames and refuses masked ones") {
  const std::string stream = encode_frame(Opcode::kBinary, "srv") + encode_frame(Opcode::kPing, "") +
                             raw_frame(kBin, "fr", false) + raw_frame(kFin | kCont, "ag", false) +
                             encode_frame(Opcode::kClose, close_payload(1009));
  const std::vector<Ev> expected{message("srv"), ping(""), message("frag"), close_ev(1009)};
  CHECK(feed(stream, {stream.size()}, 1000, Side::kClient) == expected);
  CHECK(feed(stream, std::vector<std::size_t>(stream.size(), 1), 1000, Side::kClient) == expected);
  CHECK(feed(raw_frame(kFin | kBin, "m"), {100}, 1000, Side::kClient) ==
        std::vector<Ev>{error_ev(kCloseProtocolError)});
}

TEST_CASE("WsReader: random streams of messages, fragments and control frames, cut at random points") {
  std::mt19937 rng(6455);
  constexpr std::uint64_t kLimit = 70000;
  for (int round = 0; round < 60; ++round) {
    std::string stream;
    std::vector<Ev> expected;
    const int messages = 1 + static_cast<int>(rng() % 8);
    for (int m = 0; m < messages; ++m) {
      // sizes that cross every length form
      static constexpr std::size_t kSizes[] = {0, 1, 20, 125, 126, 127, 200, 65535, 65536, 69999};
      const std::size_t size = (rng() % 4 == 0) ? kSizes[rng() % std::size(kSizes)] : rng() % 300;
      std::string payload(size, '\0');
      for (auto& c : payload) c = static_cast<char>(rng());
      const std::array<std::uint8_t, 4> mask{static_cast<std::uint8_t>(rng()), static_cast<std::uint8_t>(rng()),
                                             static_cast<std::uint8_t>(rng()), static_cast<std::uint8_t>(rng())};
      const int pieces = (rng() % 2 == 0) ? 1 : 2 + static_cast<int>(rng() % 4);
      std::size_t pos = 0;
      for (int p = 0; p < pieces; ++p) {
        const bool last = p == pieces - 1;
        const std::size_t n = last ? size - pos : std::min<std::size_t>(size - pos, rng() % (size / 2 + 2));
        const std::uint8_t op = p == 0 ? kBin : kCont;
        stream += raw_frame(static_cast<std::uint8_t>((last ? kFin : 0) | op), payload.substr(pos, n), true, mask);
        pos += n;
        if (!last && rng() % 2 == 0) {
          std::string pp(rng() % 126, 'x');
          for (auto& c : pp) c = static_cast<char>(rng());
          if (rng() % 2 == 0) {
            stream += raw_frame(kFin | kPing, pp, true, mask);
            expected.push_back(ping(pp));
          } else {
            stream += raw_frame(kFin | kPong, pp, true, mask);
            expected.push_back(pong());
          }
        }
      }
      expected.push_back(message(payload));
    }
    if (rng() % 2 == 0) {
      stream += raw_frame(kFin | kClose, close_body(1000, "bye"));
      expected.push_back(close_ev(1000, "bye"));
    }
    INFO("round " << round << ", " << stream.size() << " bytes");
    CHECK(feed(stream, {stream.size()}, kLimit) == expected);
    CHECK(feed(stream, random_cuts(rng, stream.size()), kLimit) == expected);
    if (stream.size() < 5000) CHECK(feed(stream, std::vector<std::size_t>(stream.size(), 1), kLimit) == expected);
  }
}
