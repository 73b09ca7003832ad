#pragma once
// The webhook outbox (the `outbox` family): events waiting for the webhook
// worker. Each shard writes its events to its own queue (the shard's index),
// in its own batches (so an event is durable with what caused it), with ids
// from its own clock: a queue's events become visible in id order, so the
// worker keeps a cursor per queue and never walks deleted events again. A
// user's events all come from the user's shard: one queue, in order.
//
// The depth (events queued) is counted at open and kept in memory: a shard
// reserves room before it stages an event and gives it back if the batch
// fails; the worker gives it back when it deletes an event. Thread safe.

#include <cstdint>
#include <functional>
#include <optional>

#include "im/result.h"
#include "store/records.h"
#include "store/store.h"

namespace im::store {

class Outbox {
 public:
  // Makes the worker's batches (deletes, failure records) durable. Empty:
  // written to the store at once. In cluster mode they go into the next
  // group-commit batch of the queue's shard, so through its partition's
  // log (docs/cluster.md; else a rebuilt node would send every event
  // again), and the worker does not wait; a failed batch is tried again
  // for about 10 s (Shard::stage_rows). `done` says, on that shard's
  // thread (or the caller's, when no shard takes the queue), whether it
  // was written. One never written leaves its event to be sent again
  // after a restart (at least once) and its room taken until then.
  using Writer = std::function<void(std::uint8_t queue, Batch batch, std::function<void(bool written)> done)>;

  explicit Outbox(Store& store, Writer writer = {}) : store_(store), writer_(std::move(writer)) {}

  // Room for one more event, unless `max_queued` are queued: false then.
  bool reserve(std::uint64_t max_queued) { return store_.reserve_outbox(max_queued); }
  // Gives back the room of `n` reserved events whose batch failed.
  void release(std::uint64_t n) { store_.release_outbox(n); }
  std::uint64_t depth() const { return store_.outbox_depth(); }
  // Queues `event` in `batch` (written with the rest of it), in its queue:
  // only the shard whose clock made `event.id` may write to it.
  static void push(Batch& batch, const OutboxEvent& event) { batch.put_outbox(event); }

  // The first event of `queue` with an id >= `from`, if any.
  Result<std::optional<OutboxEvent>> first(std::uint8_t queue, std::uint64_t from) {
    return store_.first_event(queue, from);
  }
  // The events of `queue` with from <= id < to, in id order, while `fn`
  // returns true.
  Result<Ok> read(std::uint8_t queue, std::uint64_t from, std::uint64_t to,
                  const std::function<bool(OutboxEvent&&)>& fn) {
    return store_.scan_queue(queue, from, to, fn);
  }
  // The highest id in `queue`, if it holds any event.
  Result<std::optional<std::uint64_t>> last_id(std::uint8_t queue) { return store_.last_event_id(queue); }
  // The shard count the queues were last delivered with (the webhook
  // worker records it once no event of another count is left), if any.
  Result<std::optional<std::uint64_t>> shard_count() { return store_.get_meta(kShardsMeta); }
  Result<Ok> set_shard_count(std::uint64_t shards) {
    Batch b(store_);
    b.put_meta(kShardsMeta, shards);
    return store_.write(b);
  }
  // The lowest queue >= `from` holding events, if any.
  Result<std::optional<std::uint8_t>> next_queue(unsigned from) { return store_.next_event_queue(from); }
  // When the delivery of `event` first failed, if it did (kept across restarts).
  Result<std::optional<std::int64_t>> failing_since(const OutboxEvent& event) {
    return store_.outbox_failing_since(event.queue, event.id);
  }
  Result<Ok> mark_failing(const OutboxEvent& event, std::int64_t since_ms) {
    Batch b(store_);
    b.put_outbox_failing(event.queue, event.id, since_ms);
    if (writer_) {
      writer_(event.queue, std::move(b), {});
      return Ok{};
    }
    return store_.write(b);
  }
  // Deletes a delivered (or dropped) event, with its failure record when
  // it has one, and gives back its room: now, or through the writer.
  Result<Ok> remove(const OutboxEvent& event, bool marked_failing) {
    Batch b(store_);
    b.del_outbox(event.queue, event.id);
    if (marked_failing) b.del_outbox_failing(event.queue, event.id);
    if (writer_) {
      // The room comes back once the delete is written (the store outlives
      // the shards, which outlive the worker).
      writer_(event.queue, std::move(b), [&store = store_](bool ok) {
        if (ok) store.release_outbox(1);
      });
      return Ok{};
    }
    auto written = store_.write(b);
    if (written) store_.release_outbox(1);
    return written;
  }
  // Counted by reading every event (tests).
  Result<std::uint64_t> count() { return store_.count_events(); }

 private:
  static constexpr const char* kShardsMeta = "outbox_shards";  // in `meta`
  Store& store_;
  Writer writer_;
};

}  // namespace im::store
