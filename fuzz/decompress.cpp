// decompress_body (include/im/frame_codec.h): what a client does with the
// body of a COMPRESSED frame, against bodies no server should send.
//
// Input: [limit selector] [the compressed body]. Whatever it is, the result
// is nothing or at most the limit; what comes out compresses (through the
// server's FrameCompressor) and decompresses back to itself.

#include <string>

#include "fuzz.h"
#include "im/frame_codec.h"
#include "net/frame_compressor.h"

namespace {

constexpr std::uint32_t kLimits[] = {0, 1, 255, 256, 4096, 16384, 65536, 1u << 20};

}  // namespace

int fuzz_one(const std::uint8_t* data, std::size_t size) {
  im::fuzz::Reader in(data, size);
  const std::uint32_t limit = kLimits[in.byte() % std::size(kLimits)];
  const std::string_view body = in.rest();
  const auto out = im::decompress_body(body, limit);
  if (!out) return 0;
  FUZZ_CHECK(out->size() <= limit);
  im::FrameHeader h;
  h.cmd = im::Cmd::kPush;
  h.seq = 1;
  auto frame = std::make_shared<const std::string>(im::encode_frame(h, *out));
  im::net::FrameCompressor compressor;
  const auto sent = compressor.compress(frame);
  const im::Decoded d = im::decode_frame(*sent, 0xFFFFFFFFu);
  FUZZ_CHECK(d.status == im::DecodeStatus::kFrame);
  if ((d.header.flags & im::kFlagCompressed) == 0) {
    FUZZ_CHECK(sent == frame);
    return 0;
  }
  FUZZ_CHECK(d.body.size() < out->size());
  const auto again = im::decompress_body(d.body, limit);
  FUZZ_CHECK(again && *again == *out);
  return 0;
}
