#pragma once
// A shard's source of msg_ids (also outbox event ids and push ids): 41 bits
// of milliseconds since 2024, 8 bits of shard, 14 bits of counter, so ids
// are unique across shards and ordered by time. Ids are handed out only
// below a durable reservation (`meta`), and a new run starts above the last
// one, so neither a restart nor a clock going back repeats an id.
//
// Runs on its shard's thread only.

#include <cstdint>

#include "im/result.h"
#include "store/store.h"

namespace im::cluster {
class PartitionLog;
}

namespace im::core {

class MsgIdClock {
 public:
  // Reads the last reservation; an error when it cannot be read.
  // `log`: the shard's partition log in jetstream mode (null: embedded),
  // through which every reservation is written.
  static Result<MsgIdClock> open(unsigned shard, store::Store& store, cluster::PartitionLog* log = nullptr);

  // The next id, or INTERNAL when a new reservation cannot be written (no
  // id is handed out past a reservation that is not durable).
  Result<std::uint64_t> next();
  // The lowest id any shard hands out at wall time `ms` or later (0 before
  // the epoch): ids below it were handed out earlier.
  static std::uint64_t first_id_at(std::int64_t ms);
  // Before any shard opens: a wall time (ms) at or above every id handed
  // out so far and every `server_time_ms` stamped with one (those are read
  // after their id, from a clock the id never runs behind), and at least
  // now. What an earlier run wrote lies below it whatever the clock did
  // since.
  static Result<std::int64_t> earlier_runs_below_ms(store::Store& store);

 private:
  MsgIdClock(unsigned shard, store::Store& store, cluster::PartitionLog* log, std::uint64_t reserved_ms);
  // Written at once, not with the shard's next batch: the messages using
  // these ids may be written by another shard, and must never outlive it.
  Result<Ok> reserve(std::uint64_t from_ms);

  unsigned shard_;
  store::Store* store_;
  cluster::PartitionLog* log_;
  std::uint64_t last_ms_ = 0;
  std::uint64_t counter_ = 0;
  std::uint64_t reserved_ms_ = 0;
};

}  // namespace im::core
