// The frame decoder (include/im/frame_codec.h) as a connection uses it.
//
// Input: [limit selector] [chunking seed] [the byte stream]. The stream is
// decoded twice: whole, and fed in chunks with the unconsumed tail kept (as
// Connection::ingest does); both must give the same frames and the same
// end. Each frame must re-encode to its own bytes, and no prefix of a good
// frame may be refused.

#include <string>
#include <vector>

#include "fuzz.h"
#include "im/frame_codec.h"

namespace {

using im::Decoded;
using im::DecodeStatus;
using im::StatusCode;

constexpr std::uint32_t kLimits[] = {0, 1, 19, 20, 16384, 65536, 16777216, 0xFFFFFFFFu};

struct Outcome {
  std::vector<std::string> frames;  // each whole frame's bytes
  DecodeStatus end = DecodeStatus::kNeedMore;
  StatusCode error = StatusCode::kOk;
  bool operator==(const Outcome&) const = default;
};

void check_frame(const Decoded& d, std::string_view in, std::uint32_t limit) {
  FUZZ_CHECK(d.consumed == im::kHeaderSize + d.header.body_len);
  FUZZ_CHECK(d.consumed <= in.size());
  FUZZ_CHECK(d.header.body_len <= limit);
  FUZZ_CHECK(d.header.version == im::kVersion);
  FUZZ_CHECK(d.body.size() == d.header.body_len);
  FUZZ_CHECK(d.body.data() == in.data() + im::kHeaderSize);
  // encode(decode(x)) == x but for the 4 reserved bytes, which encode zeroes.
  const std::string again = im::encode_frame(d.header, d.body);
  FUZZ_CHECK(again.size() == d.consumed);
  FUZZ_CHECK(again.compare(0, 16, in.substr(0, 16)) == 0);
  FUZZ_CHECK(std::string_view(again).substr(im::kHeaderSize) == d.body);
  // Bytes arrive in pieces: a prefix of a good frame is never refused.
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{3}, im::kHeaderSize - 1,
                        im::kHeaderSize, d.consumed - 1}) {
    if (n >= d.consumed) continue;
    const Decoded p = im::decode_frame(in.substr(0, n), limit);
    FUZZ_CHECK(p.status == DecodeStatus::kNeedMore && p.consumed == 0);
  }
}

void note_end(Outcome& out, const Decoded& d) {
  out.end = d.status;
  out.error = d.error;
  if (d.status == DecodeStatus::kBad) {
    FUZZ_CHECK(d.error == StatusCode::kBadFrame || d.error == StatusCode::kUnsupportedVersion ||
               d.error == StatusCode::kFrameTooLarge);
    FUZZ_CHECK(d.consumed == 0);
  } else {
    FUZZ_CHECK(d.consumed == 0 && d.error == StatusCode::kOk);
  }
}

Outcome decode_whole(std::string_view stream, std::uint32_t limit) {
  Outcome out;
  std::size_t pos = 0;
  for (;;) {
    const std::string_view rest = stream.substr(pos);
    const Decoded d = im::decode_frame(rest, limit);
    if (d.status != DecodeStatus::kFrame) {
      note_end(out, d);
      return out;
    }
    check_frame(d, rest, limit);
    out.frames.emplace_back(rest.substr(0, d.consumed));
    pos += d.consumed;
  }
}

Outcome decode_chunked(std::string_view stream, std::uint32_t limit, std::uint8_t seed) {
  Outcome out;
  std::string pending;
  std::size_t pos = 0;
  unsigned step = 0;
  bool done = false;
  while (!done) {
    const std::size_t chunk = 1 + (seed * 31u + step++ * 17u) % 61u;
    pending.append(stream.substr(pos, chunk));
    pos = std::min(stream.size(), pos + chunk);
    std::size_t used = 0;
    for (;;) {
      const Decoded d = im::decode_frame(std::string_view(pending).substr(used), limit);
      if (d.status == DecodeStatus::kFrame) {
        out.frames.emplace_back(pending.substr(used, d.consumed));
        used += d.consumed;
        continue;
      }
      if (d.status == DecodeStatus::kBad || pos == stream.size()) {
        note_end(out, d);
        done = true;
      }
      break;
    }
    pending.erase(0, used);
  }
  return out;
}

}  // namespace

int fuzz_one(const std::uint8_t* data, std::size_t size) {
  im::fuzz::Reader in(data, size);
  const std::uint32_t limit = kLimits[in.byte() % std::size(kLimits)];
  const std::uint8_t seed = in.byte();
  const std::string_view stream = in.rest();
  const Outcome whole = decode_whole(stream, limit);
  const Outcome chunked = decode_chunked(stream, limit, seed);
  FUZZ_CHECK(whole == chunked);
  return 0;
}
