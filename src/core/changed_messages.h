#pragma once
// The recalled and edited messages (PROTOCOL 8.3), as every inbox copy must
// be answered. A message has a copy in each participant's inbox, and some
// copies are out of reach of the event that changes it: a former member's,
// one written after its event (a fan-out retried past it), one far back in
// a busy inbox. So copies are not rewritten; the owner records where the
// changed message is (`changes`, by msg_id: its conversation and conv_seq,
// in the batch that rewrites its history row and appends the event), and
// every answer built from inbox rows (PULL, a copy written after its
// event, offline_push) answers the copy as its history row now is.
//
// Telling unchanged rows apart costs a bit test: a fixed filter of the
// changed msg_ids (two bits each; filled from `changes` at start and built
// again after each retention pass, so it holds about a month of changes),
// and memory stays the same however many messages change. A hit is
// confirmed by reading `changes` (a RocksDB bloom filter answers a false
// one without touching disk); as the filter fills, more rows pay that
// read, none is ever missed.
//
// Thread safe: owners add on their shard thread, any shard reads.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "im/result.h"
#include "proto/im.pb.h"

namespace im::store {
class Store;
}

namespace im::core {

class ChangedMessages {
 public:
  explicit ChangedMessages(store::Store& store);
  ~ChangedMessages();
  ChangedMessages(const ChangedMessages&) = delete;
  ChangedMessages& operator=(const ChangedMessages&) = delete;

  // Reads every msg_id in `changes` (start-up, before any request).
  Result<Ok> load();
  // Builds the filter again from `changes` and swaps it in (retention,
  // after it deleted rows): the bits of expired ids go. Ids added while it
  // runs are in both filters.
  Result<Ok> rebuild();
  // A change staged in a batch: from now on copies of `msg_id` are looked
  // up (before the batch is durable a lookup finds the previous state,
  // which is what a reader may still see).
  void add(std::uint64_t msg_id);
  // False: `msg_id` was never changed. True: it may have been.
  bool may_contain(std::uint64_t msg_id) const;
  // The msg_ids in the filter (the loaded ones, and those added since).
  std::uint64_t added() const { return added_.load(std::memory_order_relaxed); }

  // The stored row `row` as it must be answered: nullopt when its message
  // was never changed, else the row with the change applied.
  Result<std::optional<std::string>> changed_row(std::string_view row) const;
  // The same on a parsed row (a copy being written): true when it changed.
  Result<bool> apply(v1::Message& row) const;

 private:
  static constexpr std::size_t kFilterBits = std::size_t{1} << 25;  // 4 MiB each, two of them
  static constexpr std::size_t kRecent = 4096;
  using Filter = std::unique_ptr<std::atomic<std::uint64_t>[]>;
  static void set_bits(const Filter& f, std::uint64_t msg_id);
  void count(std::int64_t delta);

  store::Store& store_;
  Filter filters_[2];
  std::atomic<unsigned> active_{0};
  std::atomic<std::uint64_t> added_{0};
  std::atomic<bool> any_{false};  // an id was ever added: else no row is looked at
  std::mutex mutex_;  // add() against rebuild's start and swap
  bool rebuilding_ = false;
  std::int64_t added_while_rebuilding_ = 0;
  // The last kRecent ids added: one added just before a rebuild began may
  // not be durable when its scan passes; it goes into the new filter too.
  std::vector<std::uint64_t> recent_ = std::vector<std::uint64_t>(kRecent, 0);
  std::size_t recent_next_ = 0;
};

}  // namespace im::core
