#pragma once
// Frame encoding and incremental decoding (docs/protocol.md, "Frame").
// Neither touches a socket; the decoder never throws and never allocates.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "im/protocol.h"

namespace im {

enum class DecodeStatus {
  kFrame,     // `header` and `body` describe one whole frame; `consumed` bytes used
  kNeedMore,  // the input holds no whole frame yet; nothing consumed
  kBad,       // a framing violation; `error` says which; the stream is dead
};

struct Decoded {
  DecodeStatus status = DecodeStatus::kNeedMore;
  std::size_t consumed = 0;
  FrameHeader header;
  std::string_view body;  // points into the input
  StatusCode error = StatusCode::kOk;
};

// Decodes the first frame of `in`. Checks magic, version and body_len (against
// `max_body_bytes`) as soon as the 20 header bytes are there, so a violation is
// reported before the body arrives and nothing is ever sized by body_len.
Decoded decode_frame(std::string_view in, std::uint32_t max_body_bytes);

// Writes the 20 header bytes of `header` (its body_len included) into `out`.
void encode_header(const FrameHeader& header, std::span<std::byte, kHeaderSize> out);

// One whole frame: the header, with body_len set from `body`, then `body`.
std::string encode_frame(FrameHeader header, std::string_view body);

// The body of a COMPRESSED frame, decompressed. nullopt when it is not one
// whole zstd frame stating its size, or when that size exceeds
// `max_body_bytes` (the limit applies before compression): checked before
// anything is allocated.
std::optional<std::string> decompress_body(std::string_view body, std::uint32_t max_body_bytes);

}  // namespace im
