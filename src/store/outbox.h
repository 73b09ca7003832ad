#pragma once
// The webhook outbox (the `outbox` family): events waiting for the webhook
// worker, in id order. Shards push events in their own batches (so an event
// is durable with what caused it); the worker reads the oldest and removes
// it once delivered. Thread safe (RocksDB is).

#include <cstdint>
#include <optional>

#include "im/result.h"
#include "store/records.h"
#include "store/store.h"

namespace im::store {

class Outbox {
 public:
  explicit Outbox(Store& store) : store_(store) {}

  // Queues `event` in `batch` (written with the rest of it).
  static void push(Batch& batch, const OutboxEvent& event) { batch.put_outbox(event); }
  // The event with the lowest id, if any.
  Result<std::optional<OutboxEvent>> oldest() { return store_.oldest_event(); }
  // Deletes a delivered (or dropped) event now.
  Result<Ok> remove(std::uint64_t id) {
    Batch b(store_);
    b.del_outbox(id);
    return store_.write(b);
  }
  Result<std::uint64_t> count() { return store_.count_events(); }

 private:
  Store& store_;
};

}  // namespace im::store
