#pragma once
// The offline-push timers of a shard (PROTOCOL 5, "PUSH / ACK"): a message
// that no device of its recipient acknowledged within
// push.offline_delay_ms becomes one `offline_push` webhook event. The delay
// is the same for every message, so the queue is in due order and one timer
// serves it. The timers live in memory: a restart drops them.
//
// Runs on its shard's thread only.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "proto/im.pb.h"

namespace im::core {

class OfflinePushes {
 public:
  struct Entry {
    std::chrono::steady_clock::time_point due;
    std::string uid;
    std::uint64_t inbox_seq = 0;
    v1::Message msg;  // its body cut to the preview
  };
  // Called with the entries that fell due; it decides which still fire.
  using Fire = std::function<void(std::vector<Entry>& due)>;

  OfflinePushes(asio::io_context& loop, std::chrono::milliseconds delay, Fire fire);

  // An entry for a row just written; `msg` is copied with its body cut.
  Entry make(const std::string& uid, std::uint64_t inbox_seq, const v1::Message& msg) const;
  // A body cut to the preview the event carries.
  static void cut_body(v1::Message& msg);
  void add(std::vector<Entry>& entries);
  void cancel() { timer_.cancel(); }

 private:
  void arm();

  asio::steady_timer timer_;
  std::chrono::milliseconds delay_;
  Fire fire_;
  std::deque<Entry> queue_;
  bool armed_ = false;
};

}  // namespace im::core
