#pragma once
// The recalled and edited messages (PROTOCOL 8.3), as every inbox copy must
// be answered. A message has a copy in each participant's inbox, and some
// copies are out of reach of the event that changes it: a former member's,
// one written after its event (a fan-out retried past it), one far back in
// a busy inbox. So copies are not rewritten; the change is recorded once,
// by msg_id, in the `changes` family, in the batch that rewrites the
// history row and appends the event, and every answer built from inbox
// rows (PULL, PUSH of a late copy, offline_push) applies it. The msg_ids
// are kept in memory (loaded at start, a few tens of bytes each, expired
// with the retention of what they change), so an unchanged row costs a
// bit test; a changed one a point read.
//
// Thread safe: owners add on their shard thread, any shard reads.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_set>

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
  // The change row is gone (retention).
  void remove(std::uint64_t msg_id);
  bool contains(std::uint64_t msg_id) const;
  std::size_t size() const { return size_.load(std::memory_order_relaxed); }

  // The stored row `row` as it must be answered: nullopt when its message
  // was never changed, else the row with the change applied.
  Result<std::optional<std::string>> changed_row(std::string_view row) const;
  // The same on a parsed row (a copy being written): true when it changed.
  Result<bool> apply(v1::Message& row) const;

 private:
  static constexpr std::size_t kFilterBits = std::size_t{1} << 23;  // 1 MiB
  static std::size_t bit_of(std::uint64_t msg_id);

  store::Store& store_;
  // A bit per hash of a msg_id ever added (never cleared: a stale bit only
  // costs a look in ids_): unchanged messages are told apart without a lock.
  std::unique_ptr<std::atomic<std::uint64_t>[]> filter_;
  mutable std::shared_mutex mutex_;  // guards ids_
  std::unordered_set<std::uint64_t> ids_;
  std::atomic<std::size_t> size_{0};
};

}  // namespace im::core
