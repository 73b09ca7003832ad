#include "net/frame_compressor.h"

#include <cstdint>
#include <span>

#include <zstd.h>

namespace im::net {
namespace {

// zstd's default level: 3.7 times fewer bytes on W8's chat text
// (bench/RESULTS.md), where a mobile link moves tens of KB/s.
constexpr int kLevel = 3;

}  // namespace

FrameCompressor::FrameCompressor() = default;

FrameCompressor::~FrameCompressor() {
  ZSTD_freeCCtx(ctx_);
}

void FrameCompressor::forget() {
  last_in_.reset();
  last_out_.reset();
}

SharedFrame FrameCompressor::compress(const SharedFrame& frame) {
  if (!frame || frame->size() < kHeaderSize + kCompressMinBody) return frame;
  if (frame == last_in_) return last_out_;
  const std::string_view body = std::string_view(*frame).substr(kHeaderSize);
  if (!ctx_) ctx_ = ZSTD_createCCtx();
  SharedFrame out = frame;
  const std::size_t bound = ZSTD_compressBound(body.size());
  if (ctx_ && bound != 0) {
    if (scratch_.size() < kHeaderSize + bound) scratch_.resize(kHeaderSize + bound);
    const std::size_t n =
        ZSTD_compressCCtx(ctx_, scratch_.data() + kHeaderSize, bound, body.data(), body.size(), kLevel);
    if (!ZSTD_isError(n) && n < body.size()) {
      FrameHeader h = decode_frame(*frame, UINT32_MAX).header;
      h.flags |= kFlagCompressed;
      h.body_len = static_cast<std::uint32_t>(n);
      encode_header(h, std::span<std::byte, kHeaderSize>(reinterpret_cast<std::byte*>(scratch_.data()), kHeaderSize));
      out = std::make_shared<const std::string>(scratch_.data(), kHeaderSize + n);
    }
  }
  last_in_ = frame;
  last_out_ = out;
  return out;
}

}  // namespace im::net
