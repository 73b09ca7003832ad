#pragma once
// PRESENCE_WATCH (PROTOCOL 8.5) on a shard: for each of the shard's users
// that some session watches, the sessions that watch it, and the merging of
// its changes. A session's list lives on the shards of the uids it watches
// (its ClientContext on its loop keeps only the set of uids, to check
// limits.max_presence_watch and to remove every pair when the session
// ends). Nothing is held for a user nobody watches, nor for a session that
// watches nobody.
//
// Pushes: a watched user's first change is pushed at once; further changes
// within kPresenceMergeMs of a push wait for the end of that interval and
// go as one push carrying the state then (one timer per shard).
//
// A pair added (or added again) by a PRESENCE_WATCH is muted until that
// request has been answered (`activate`), so that no push overtakes the
// answer; a change made in between is pushed to that session at activation.
//
// Runs on its shard's thread only.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "net/connection.h"
#include "proto/im.pb.h"

namespace im::core {

inline constexpr std::int64_t kPresenceMergeMs = 1000;

// What a push reports of a presence, as bits: 1 when online, and 2 << d for
// each device type d. Two presences with the same mask need no push between
// them (last_seen_ms aside).
std::uint32_t presence_mask(const v1::Presence& p);

struct Watcher {
  std::weak_ptr<net::Connection> conn;
  std::uint64_t session_id = 0;
  std::uint32_t muted_by = 0;  // the PRESENCE_WATCH being answered; 0: active
  std::uint32_t answered = 0;  // presence_mask of the state that answer carries
};

class PresenceWatch {
 public:
  // Sends uid's current presence to `to` (never empty).
  using Push = std::function<void(const std::string& uid, const std::vector<const Watcher*>& to)>;

  PresenceWatch(asio::io_context& loop, Push push) : timer_(loop), push_(std::move(push)) {}

  // Adds the pair (uid, session), or finds it, and mutes it until
  // `request` is answered; `mask` is the state the answer carries. True
  // when the pair is new.
  bool watch(const std::string& uid, std::uint64_t session_id, std::weak_ptr<net::Connection> conn,
             std::uint32_t request, std::uint32_t mask);
  // `request` has been answered: its pair gets pushes again, and one at once
  // when `mask` (the state now) differs from what the answer carried.
  void activate(const std::string& uid, std::uint64_t session_id, std::uint32_t request, std::uint32_t mask);
  // True when the pair was held.
  bool unwatch(const std::string& uid, std::uint64_t session_id);
  // uid's online state or device set changed at `now_ms` (a steady clock).
  void changed(const std::string& uid, std::int64_t now_ms);
  // Sends the merged pushes due at `now_ms` (the timer calls it).
  void flush(std::int64_t now_ms);

  std::size_t pairs() const { return pairs_; }
  std::size_t watched() const { return entries_.size(); }
  void cancel() { timer_.cancel(); }

 private:
  struct Entry {
    std::unordered_map<std::uint64_t, Watcher> sessions;
    std::int64_t pushed_ms = 0;  // the last push; valid when `pushed`
    std::int64_t due_ms = 0;     // of the merged push; valid when `merging`
    bool pushed = false;
    bool merging = false;
  };
  void push_now(const std::string& uid, Entry& e, std::int64_t now_ms);
  void arm();

  std::unordered_map<std::string, Entry> entries_;
  // (due_ms, uid) of the merged pushes to come, soonest first; an element
  // whose entry has gone or moved on is skipped.
  std::priority_queue<std::pair<std::int64_t, std::string>, std::vector<std::pair<std::int64_t, std::string>>,
                      std::greater<>>
      due_;
  std::size_t pairs_ = 0;
  asio::steady_timer timer_;
  std::int64_t armed_at_ = 0;
  bool armed_ = false;
  Push push_;
};

}  // namespace im::core
