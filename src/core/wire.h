#pragma once
// Bodies that carry stored Message rows (PullResp, HistoryResp,
// MessagePush), built from the rows' bytes as they lie in RocksDB: a row is
// already a serialized Message, so it is copied into the repeated field, not
// parsed and serialized again. Field numbers come from the generated code.
// Thread-agnostic.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "im/protocol.h"
#include "net/frames.h"

namespace im::core::wire {

// Room kept in a frame for the fields of an answer beside its messages.
inline constexpr std::size_t kFrameSlack = 64;

// The largest row that fits alone in `budget` (its field's tag and length
// taken off).
std::size_t max_row_bytes(std::size_t budget);

// The `messages` field (number 1 in all three bodies) being filled, within a
// byte budget.
class MessageRows {
 public:
  explicit MessageRows(std::size_t budget) : budget_(budget) {}
  // Whether `row` still fits.
  bool fits(std::string_view row) const;
  void add(std::string_view row);
  std::size_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  std::string take();

 private:
  std::size_t budget_;
  std::string bytes_;
  std::size_t count_ = 0;
};

std::string pull_resp(MessageRows rows, bool has_more, std::uint64_t inbox_max_seq, std::uint64_t oldest_seq);
std::string history_resp(MessageRows rows, bool has_more);

// The OK answer to `request` with an already serialized body.
net::SharedFrame response(const FrameHeader& request, std::string body);

// PUSH frames carrying `rows` in order, as many per frame as fit `budget`;
// `next_seq` numbers each frame.
std::vector<net::SharedFrame> push_frames(const std::vector<std::string_view>& rows, std::size_t budget,
                                          const std::function<std::uint32_t()>& next_seq);

}  // namespace im::core::wire
