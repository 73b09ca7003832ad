#pragma once
// PROTOCOL 1, COMPRESSED: the bodies of frames sent to a session that asked
// for zstd, compressed when they are at least kCompressMinBody bytes and
// shrink. One per I/O loop (a zstd context is about 1 MiB at level 3): never
// one per connection. Loop thread only.

#include <string>

#include "net/frames.h"

struct ZSTD_CCtx_s;

namespace im::net {

class FrameCompressor {
 public:
  FrameCompressor();
  ~FrameCompressor();
  FrameCompressor(const FrameCompressor&) = delete;
  FrameCompressor& operator=(const FrameCompressor&) = delete;

  // `frame` with its body compressed and the COMPRESSED flag set, or
  // `frame` itself when its body is small or does not shrink.
  SharedFrame compress(const SharedFrame& frame);
  // Lets go of the remembered frame (the loop's sweep calls it, so a frame
  // is not kept alive long after it was sent).
  void forget();

 private:
  ZSTD_CCtx_s* ctx_ = nullptr;  // made by the first body worth compressing
  std::string scratch_;         // the compressed frame being built
  // The last frame asked about and the answer: a frame for every session of
  // one user (several devices on one loop) is compressed once.
  SharedFrame last_in_, last_out_;
};

}  // namespace im::net
