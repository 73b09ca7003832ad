#pragma once
// One partition's log (docs/cluster.md): a batch goes to the partition's
// JetStream stream first and into the store only once the stream holds it.
// The store records the last entry it applied (`meta` "applied:<n>"), from
// which `open` catches up at start; with an empty data dir that rebuilds
// the partition from the stream alone.
//
// One writer per partition. `open` stores an epoch marker that expects the
// stream's end; a writer that opened earlier then finds its next
// expectation stale and stops (fenced): no entry is ever stored against
// another writer's sequence.
//
// `append` blocks its caller until the stream answers, as a shard waits for
// RocksDB's write today. An ambiguous answer (a timeout) is retried with the
// same entry id, which JetStream deduplicates; past `retry_for` the
// partition stops taking writes, since the stream may hold the entry, and a
// restart catches up from the stream.
//
// Runs on one thread (its shard's); not thread safe.

#include <chrono>
#include <cstdint>
#include <string>

#include "cluster/jetstream.h"
#include "im/result.h"
#include "store/store.h"

namespace im::cluster {

class PartitionLog {
 public:
  struct Options {
    unsigned partition = 0;
    std::string node;  // names this writer in its entries' ids
    StreamSpec stream;
    std::chrono::milliseconds publish_wait{2000};  // one publish attempt
    std::chrono::milliseconds retry_for{30000};    // an unanswered publish is retried this long
    std::size_t read_chunk = 512;                  // entries per read while catching up
  };

  enum class State {
    kClosed,   // before open()
    kWriting,  // appends go through
    kFenced,   // another writer stored an entry after ours: appends are refused
    kStopped,  // an entry's fate is unknown, or the store missed an entry the stream holds: restart
  };

  PartitionLog(JetStream& js, store::Store& store, Options options);

  // Creates or checks the stream, applies every entry past the store's
  // applied:<n>, then stores this writer's epoch marker.
  Result<Ok> open();
  // Stores `batch` as the partition's next entry, then writes it to the
  // store with applied:<n>; the new entry's stream seq. UNAVAILABLE when
  // fenced, stopped or the stream is full (nothing stored then).
  Result<std::uint64_t> append(store::Batch& batch);

  State state() const { return state_; }
  std::uint64_t applied() const { return applied_; }      // the stream seq the store holds
  std::uint64_t epoch() const { return epoch_; }          // the seq of this writer's marker
  std::uint64_t caught_up() const { return caught_up_; }  // entries applied by open()
  const Options& options() const { return options_; }

  static std::string applied_key(unsigned partition);

 private:
  // Publishes and waits for the answer, retrying an unanswered publish
  // with the same id until `retry_for` has passed.
  Published publish(const std::string& data, const std::string& id, std::uint64_t expect);
  Result<Ok> catch_up();
  Error unavailable(std::string why) const;

  JetStream& js_;
  store::Store& store_;
  const Options options_;
  State state_ = State::kClosed;
  std::uint64_t applied_ = 0;
  std::uint64_t epoch_ = 0;
  std::uint64_t batch_ = 0;  // the last batch number used in this epoch
  std::uint64_t caught_up_ = 0;
  std::string stopped_why_;
};

}  // namespace im::cluster
