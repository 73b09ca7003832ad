#pragma once
// TYPING (PROTOCOL 8.4): ephemeral, never stored, never pulled. A TypingJob
// goes from the typer's loop (the per-connection cap, the fields) to the
// group's shard (GROUP: membership and size, the member list), then to the
// typer's shard (TypingThrottle), which encodes one TypingPush and posts it
// with per-shard uid lists to the recipients' shards; each hands it to its
// users' online sessions. Only errors are answered.
//
// TypingThrottle runs on the typer's shard only.

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "core/dispatcher.h"
#include "proto/im.pb.h"

namespace im::core {

// TypingPush.expires_ms: when the receiver drops the indicator.
inline constexpr std::uint32_t kTypingExpiresMs = 6000;
// A start (TYPING, RECORDING) is forwarded at most once per (user,
// conversation) in this many ms.
inline constexpr std::int64_t kTypingStartEveryMs = 3000;
// STOPPED is forwarded only this soon after a forwarded start.
inline constexpr std::int64_t kTypingStopWithinMs = 6000;
// (The per-connection cap, kTypingPerSecond, is in core/client_context.h.)

struct TypingJob {
  std::string uid;  // the typer
  v1::TypingReq req;
  Replier replier;  // answers errors only
  // GROUP: the members but the typer, filled on the group's shard.
  std::vector<std::string> members;
};

// Which TYPING requests are forwarded, per (user, conversation):
// - a start, when no start was forwarded in the last kTypingStartEveryMs
//   (whatever came between: a repeat, a change TYPING <-> RECORDING, or a
//   STOPPED is not forwarded sooner);
// - STOPPED, when a start was forwarded in the last kTypingStopWithinMs and
//   no STOPPED was forwarded since (one STOPPED per start).
// An entry is useless kTypingStopWithinMs after its start, and is pruned
// then (a timer on the shard's loop, while any entry is held): the entries
// are those of the starts forwarded in the last 6 to 12 seconds, however
// many conversations a client makes up (TYPING is capped per connection).
class TypingThrottle {
 public:
  explicit TypingThrottle(asio::io_context& loop) : timer_(loop) {}

  // Whether `state` by `uid` in the conversation `conv_type`/`peer` (from
  // the typer's side) is forwarded at `now_ms` (a steady clock); records it
  // when it is.
  bool admit(const std::string& uid, int conv_type, const std::string& peer, v1::TypingState state,
             std::int64_t now_ms);
  // Forgets the entries whose start is kTypingStopWithinMs old or more;
  // returns how many.
  std::size_t prune(std::int64_t now_ms);
  std::size_t size() const { return entries_.size(); }
  void cancel() { timer_.cancel(); }

 private:
  struct Entry {
    std::int64_t start_ms = 0;  // the last start forwarded
    bool stopped = false;       // a STOPPED was forwarded after it
  };
  void arm();

  std::unordered_map<std::string, Entry> entries_;
  asio::steady_timer timer_;
  bool armed_ = false;
};

}  // namespace im::core
