#pragma once
// The SENDs of the dedupe window, in memory, on the sender's shard: what
// answers a retried (from, client_msg_id) without a `dedupe` row per message
// (a fourth, randomly keyed put that cost about 30% of the write throughput,
// BENCHMARKS.md). The durable record is the sender's own inbox row, which
// carries `from`, `client_msg_id` and `server_time_ms`:
// - an entry maps a keyed hash of a client_msg_id to that row's inbox_seq;
//   a hit is confirmed by reading the row, so a hash shared by two ids never
//   answers one with the other;
// - a sender's entries are rebuilt from its inbox the first time it SENDs
//   after a start (`loaded`), newest rows first, back to the window's start,
//   from the rows earlier runs wrote (Shard::Rebuild);
// - entries stay within `capacity`: a SEND that finds no room (or its hash
//   taken) gets a `dedupe` row in its own batch instead, the durable form
//   used before and still read on a miss;
// - entries older than the window are dropped, and a sender left with none
//   is forgotten (rebuilt at its next SEND while earlier runs' rows may
//   still be in the window); senders that never had one are forgotten once
//   more than capacity / 4 + 1024 of them were made.
//
// Runs on its shard's thread only.

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/seq_table.h"

namespace im::core {

class RecentSends {
 public:
  // capacity 0 or no window: no memory window (every SEND writes its
  // dedupe row).
  RecentSends(std::uint64_t capacity, std::int64_t window_ms);
  ~RecentSends();
  RecentSends(const RecentSends&) = delete;
  RecentSends& operator=(const RecentSends&) = delete;

  bool enabled() const { return capacity_ > 0 && window_ms_ > 0; }
  // Room for `more` entries beyond those held.
  bool has_room(std::uint64_t more) const { return entries_ + more <= capacity_; }
  std::uint64_t room() const { return capacity_ > entries_ ? capacity_ - entries_ : 0; }

  // Keyed by a random seed drawn per process: ids cannot be made to collide
  // from outside.
  std::uint64_t hash_of(std::string_view client_msg_id) const;

  struct Found {
    bool loaded = false;          // the sender's window is in memory (rebuilt since it was last forgotten)
    std::uint64_t inbox_seq = 0;  // the sender's row that may hold the id (to confirm by reading it), or 0
  };
  Found find(std::string_view uid, std::uint64_t hash) const;
  bool loaded(std::string_view uid) const;
  void mark_loaded(std::string_view uid);

  enum class Added { kAdded, kKnown, kTaken };
  // Adds a written row of the sender's (`hash`: of its client_msg_id).
  // kKnown: that row is held already; kTaken: another row holds the hash
  // (nothing changes: the caller writes a dedupe row for this one).
  Added add(std::string_view uid, std::uint64_t hash, std::uint64_t inbox_seq, std::int64_t time_ms);
  // Drops what left the window, and senders left with nothing.
  void expire(std::int64_t now_ms);

  std::uint64_t size() const { return entries_; }
  std::size_t senders() const { return senders_.size(); }

 private:
  struct Sender {
    const std::string* uid = nullptr;                       // its key in senders_
    SeqTable sent;                                          // hash of client_msg_id -> inbox_seq
    bool loaded = false;
  };
  struct Queued {
    std::int64_t time_ms;
    Sender* sender;
    std::uint64_t hash;
  };

  Sender& sender(std::string_view uid);
  void forget_idle();

  const std::uint64_t capacity_;
  const std::int64_t window_ms_;
  const std::uint64_t seed_;
  std::unordered_map<std::string, Sender> senders_;
  // One per entry, by insertion (about the order of time): a sender is
  // erased only once it has no entry, so no Queued points at it.
  std::deque<Queued> order_;
  std::uint64_t entries_ = 0;
  std::uint64_t idle_ = 0;  // senders made since the last sweep that have had no entry yet
};

}  // namespace im::core
