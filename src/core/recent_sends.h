#pragma once
// The SENDs of the dedupe window, in memory, on the sender's shard: what
// answers a retried (from, client_msg_id) without a `dedupe` row per message
// (a fourth, randomly keyed put that cost about 30% of the write throughput,
// BENCHMARKS.md). The durable record is the sender's own inbox row, which
// carries `from`, `client_msg_id` and `server_time_ms`:
// - an entry maps the hash of a client_msg_id to that row's inbox_seq; a hit
//   is confirmed by reading the row (so a hash collision is never taken for
//   a retry);
// - a sender's entries are rebuilt from its inbox the first time it SENDs
//   after a start (`loaded`), newest rows first, back to the window's start
//   or kMaxRebuildRows rows;
// - past `capacity` entries the oldest are spilled: the shard writes their
//   `dedupe` row (the durable form used before, still read on a miss), so the
//   window holds whatever the memory bound;
// - entries older than the window are dropped, and a sender with none left
//   is forgotten.
//
// Runs on its shard's thread only.

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace im::core {

class RecentSends {
 public:
  // A sender whose inbox holds more rows than this inside the window is
  // rebuilt from its newest kMaxRebuildRows only (about 0.5 s of reading).
  static constexpr std::uint64_t kMaxRebuildRows = 1'000'000;

  struct Spilled {
    std::string uid;
    std::uint64_t inbox_seq;
  };

  // capacity 0: no memory window (every SEND writes its dedupe row).
  RecentSends(std::uint64_t capacity, std::int64_t window_ms) : capacity_(capacity), window_ms_(window_ms) {}

  bool enabled() const { return capacity_ > 0 && window_ms_ > 0; }
  struct Found {
    bool loaded = false;          // the sender's window is in memory (rebuilt since the start)
    std::uint64_t inbox_seq = 0;  // the sender's row that may hold the id (to confirm by reading it), or 0
  };
  static std::uint64_t hash_of(std::string_view client_msg_id);
  Found find(std::string_view uid, std::uint64_t hash) const;
  void mark_loaded(std::string_view uid);
  // Adds a committed row of the sender's (`hash`: of its client_msg_id);
  // entries beyond the capacity come back to be written as dedupe rows.
  void add(std::string_view uid, std::uint64_t hash, std::uint64_t inbox_seq, std::int64_t time_ms,
           std::vector<Spilled>& spilled);
  // Drops what left the window.
  void expire(std::int64_t now_ms);

  std::uint64_t size() const { return entries_; }
  std::size_t senders() const { return senders_.size(); }

 private:
  struct Sent {
    std::uint64_t inbox_seq;
    std::int64_t time_ms;
  };
  struct Sender {
    const std::string* uid = nullptr;              // its key in senders_
    std::unordered_map<std::uint64_t, Sent> sent;  // by hash of client_msg_id
    std::uint32_t queued = 0;                      // its entries in order_
    bool loaded = false;
  };
  struct Queued {
    std::int64_t time_ms;
    Sender* sender;
    std::uint64_t hash;
    std::uint64_t inbox_seq;  // the entry is live while sent[hash] still has it
  };

  Sender& sender(std::string_view uid);
  // Removes the oldest queued entry and its entry when still live (then
  // true). A sender left with nothing is forgotten only when `forget`.
  bool pop_oldest(Queued& out, bool forget);
  // Forgets the senders with no entry (their next SEND rebuilds them).
  void forget_idle();

  const std::uint64_t capacity_;
  const std::int64_t window_ms_;
  std::unordered_map<std::string, Sender> senders_;
  std::deque<Queued> order_;  // by insertion, about the order of time
  std::uint64_t entries_ = 0;
};

}  // namespace im::core
