// FrameCompressor (PROTOCOL 1, COMPRESSED) and decompress_body, the client's half.
#include <catch2/catch.hpp>
#include <random>
#include <string>

#include <zstd.h>

#include "im/frame_codec.h"
#include "net/frame_compressor.h"

using namespace im;
using im::net::FrameCompressor;
using im::net::SharedFrame;

namespace {

SharedFrame frame_with(std::string body, std::uint8_t flags = kFlagResponse) {
  FrameHeader h;
  h.flags = flags;
  h.cmd = Cmd::kPull;
  h.status = StatusCode::kOk;
  h.seq = 77;
  return std::make_shared<const std::string>(encode_frame(h, body));
}

std::string chatty(std::size_t n) {
  std::string s;
  while (s.size() < n) s += "see you at the meeting tomorrow, bring the budget draft; ";
  s.resize(n);
  return s;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

Decoded header_of(const SharedFrame& f) {
  return decode_frame(*f, 1u << 20);
}

}  // namespace

TEST_CASE(
    "compressor: a body of 256 bytes and up that shrinks goes out compressed, header kept, and comes back whole") {
  FrameCompressor compressor;
  const std::string body = chatty(4000);
  const SharedFrame in = frame_with(body);
  const SharedFrame out = compressor.compress(in);
  REQUIRE(out != in);
  const Decoded d = header_of(out);
  REQUIRE(d.status == DecodeStatus::kFrame);
  CHECK(d.consumed == out->size());
  CHECK(d.header.flags == (kFlagResponse | kFlagCompressed));
  CHECK(d.header.cmd == Cmd::kPull);
  CHECK(d.header.status == StatusCode::kOk);
  CHECK(d.header.seq == 77);
  CHECK(d.header.body_len < body.size() / 4);
  auto back = decompress_body(d.body, 65536);
  REQUIRE(back);
  CHECK(*back == body);
}

TEST_CASE("compressor: a body under 256 bytes, or one that does not shrink, goes out as it is") {
  FrameCompressor compressor;
  const SharedFrame small = frame_with(chatty(kCompressMinBody - 1));
  CHECK(compressor.compress(small) == small);
  const SharedFrame at_limit = frame_with(chatty(kCompressMinBody));
  CHECK(compressor.compress(at_limit) != at_limit);
  const SharedFrame noise = frame_with(random_bytes(4000, 1));
  CHECK(compressor.compress(noise) == noise);
  const SharedFrame empty = frame_with("");
  CHECK(compressor.compress(empty) == empty);
  CHECK(compressor.compress(nullptr) == nullptr);
}

TEST_CASE("compressor: one frame sent to many sessions is compressed once, the next frame anew") {
  FrameCompressor compressor;
  const SharedFrame a = frame_with(chatty(3000));
  const SharedFrame first = compressor.compress(a);
  CHECK(compressor.compress(a) == first);  // the same shared bytes
  const SharedFrame b = frame_with(chatty(2000));
  const SharedFrame second = compressor.compress(b);
  CHECK(second != first);
  auto back = decompress_body(header_of(second).body, 65536);
  REQUIRE(back);
  CHECK(*back == chatty(2000));
  // Back to the first one: compressed again, to the same bytes.
  CHECK(*compressor.compress(a) == *first);
}

TEST_CASE("decompress_body: the limit applies to the decompressed size, checked first") {
  const std::string body = chatty(65536);
  const SharedFrame out = FrameCompressor().compress(frame_with(body));
  const Decoded d = header_of(out);
  REQUIRE((d.header.flags & kFlagCompressed) != 0);
  CHECK(decompress_body(d.body, 65536) == body);
  CHECK_FALSE(decompress_body(d.body, 65535));
  // A small bomb: 8 MiB of zeros in a few hundred bytes.
  const std::string zeros(std::size_t{8} << 20, '\0');
  std::string bomb(ZSTD_compressBound(zeros.size()), '\0');
  bomb.resize(ZSTD_compress(bomb.data(), bomb.size(), zeros.data(), zeros.size(), 3));
  CHECK(bomb.size() < 65536);
  CHECK_FALSE(decompress_body(bomb, 65536));
}

TEST_CASE("decompress_body: garbage, a cut frame, bytes after the frame, no stated size: refused") {
  const std::string body = chatty(5000);
  const std::string packed = std::string(header_of(FrameCompressor().compress(frame_with(body))).body);
  REQUIRE(decompress_body(packed, 65536) == body);
  CHECK_FALSE(decompress_body("", 65536));
  CHECK_FALSE(decompress_body(random_bytes(300, 2), 65536));
  CHECK_FALSE(decompress_body(packed.substr(0, packed.size() - 1), 65536));
  CHECK_FALSE(decompress_body(packed + "x", 65536));
  CHECK_FALSE(decompress_body(packed + packed, 65536));
  // A frame written by streaming, without its content size.
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  std::string unsized(ZSTD_compressBound(body.size()), '\0');
  ZSTD_outBuffer out{unsized.data(), unsized.size(), 0};
  ZSTD_inBuffer in{body.data(), body.size(), 0};
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  REQUIRE(ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end) == 0);
  ZSTD_freeCCtx(cctx);
  unsized.resize(out.pos);
  CHECK_FALSE(decompress_body(unsized, 65536));
  // Corrupted in the middle: the checksum-less frame fails to decode or
  // decodes to the stated size only.
  std::string flipped = packed;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x5a);
  auto damaged = decompress_body(flipped, 65536);
  if (damaged) CHECK(damaged->size() == body.size());
}
