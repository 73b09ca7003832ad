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
// msg_ids ever added (two bits each, never cleared; filled from `changes`
// at start), so memory stays the same however many messages change. A hit
// is confirmed by reading `changes` (a RocksDB bloom filter answers a
// false one without touching disk); as the filter fills, more rows pay
// that read, none is ever missed.
//
// Thread safe: owners add on their shard thread, any shard reads.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

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
  // A change staged in a batch: from now on copies of `msg_id` are looked
  // up (before the batch is durable a lookup finds the previous state,
  // which is what a reader may still see).
  void add(std::uint64_t msg_id);
  // False: `msg_id` was never changed. True: it may have been.
  bool may_contain(std::uint64_t msg_id) const;
  // The msg_ids added since start (loaded ones included): the filter's load.
  std::uint64_t added() const { return added_.load(std::memory_order_relaxed); }

  // The stored row `row` as it must be answered: nullopt when its message
  // was never changed, else the row with the change applied.
  Result<std::optional<std::string>> changed_row(std::string_view row) const;
  // The same on a parsed row (a copy being written): true when it changed.
  Result<bool> apply(v1::Message& row) const;

 private:
  static constexpr std::size_t kFilterBits = std::size_t{1} << 26;  // 8 MiB

  store::Store& store_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> filter_;
  std::atomic<std::uint64_t> added_{0};
};

}  // namespace im::core
