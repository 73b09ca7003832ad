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
// RocksDB's write. It comes in two halves, so that the partitions sharing a
// thread publish side by side and then wait: `start_append` sends the entry
// and returns at once; `finish_append` waits for its answer and writes the
// store. An ambiguous answer (a timeout) is retried with the
// same entry id, which JetStream deduplicates; past `retry_for` the
// partition stops taking writes, since the stream may hold the entry, and a
// restart catches up from the stream.
//
// Runs on one thread (its shard's); not thread safe.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/jetstream.h"
#include "cluster/snapshot.h"
#include "im/result.h"
#include "store/store.h"

namespace im::cluster {

namespace v1 {
class LogEntry;
}

// Partition `p`'s stream of a deployment: "<prefix>_P7" on the subject
// "<prefix in lower case>.p.7" (cluster.stream_prefix, "IM" by default).
StreamSpec partition_stream(const std::string& prefix, unsigned p);
// A deployment's subjects begin with its stream prefix in lower case.
std::string subject_root(const std::string& prefix);
// 16 random hex digits: a run's nonce, a snapshot's id.
std::string random_id();

class PartitionLog {
 public:
  struct Options {
    unsigned partition = 0;
    unsigned partitions = 0;  // the node's cluster.partitions, recorded in markers (0: not recorded or checked)
    std::string node;  // names this writer in its entries' ids
    StreamSpec stream;
    std::chrono::milliseconds publish_wait{2000};  // one publish attempt
    std::chrono::milliseconds retry_for{30000};    // an unanswered publish is retried this long
    std::size_t read_chunk = 512;                  // entries per read while catching up
    // Bytes per read while catching up: a catch-up holds about this much
    // per partition at once (64 partitions: 256 MiB).
    std::size_t read_bytes = 4u << 20;
    // Where the deployment's snapshots are (snapshot.h); a stream trimmed
    // below an empty data dir's needs is restored from the last one. The
    // same for every partition of a node (open_all reads the first's).
    SnapshotSpec snapshots = snapshot_spec("IM");
    // The node's Lamport clock, shared by all of its partitions (open_all).
    std::shared_ptr<std::atomic<std::uint64_t>> clock = std::make_shared<std::atomic<std::uint64_t>>(0);
  };

  enum class State {
    kClosed,   // before open()
    kWriting,  // appends go through
    kFenced,   // another writer stored an entry after ours: appends are refused
    kStopped,  // an entry's fate is unknown, or the store missed an entry the stream holds: restart
  };

  PartitionLog(JetStream& js, store::Store& store, Options options);
  ~PartitionLog();
  PartitionLog(const PartitionLog&) = delete;
  PartitionLog& operator=(const PartitionLog&) = delete;

  // Opens a node's partitions, which share one store and one clock: checks
  // each stream (its state and the partition count its first marker
  // records) and each partition's applied:<n>, reading only; creates the
  // streams or checks their layout and updates their limits; runs `checked`
  // (the caller's first writes, before anyone is fenced); stores this run's
  // epoch marker at each stream's end (fencing earlier writers); then
  // applies every entry past each partition's applied:<n>, up to the
  // marker, in Lamport order across the partitions. Entries must be
  // applied in that order: a record one partition puts (a C2C copy record)
  // is removed by another's later entry, and applying the removal first
  // would bring the record back.
  static Result<Ok> open_all(const std::vector<PartitionLog*>& logs, const std::function<Result<Ok>()>& checked = {});
  Result<Ok> open() { return open_all({this}); }
  // Stores `batch` as the partition's next entry, then writes it to the
  // store with applied:<n>; the new entry's stream seq. UNAVAILABLE when
  // fenced, stopped or the stream is full (nothing stored then).
  Result<std::uint64_t> append(store::Batch& batch);
  // append() in two halves: start_append sends `batch`'s entry (the first
  // attempt) and returns; finish_append(batch), with the same batch
  // unchanged, waits for the answer (retrying an unanswered one) and writes
  // the store. One append in flight at a time; an error from start_append
  // sent nothing.
  Result<Ok> start_append(const store::Batch& batch);
  Result<std::uint64_t> finish_append(store::Batch& batch);
  bool in_flight() const { return in_flight_.has_value(); }
  // Waits until `until` for the answer to the append in flight, retrying
  // an unanswered attempt on the entry's own clock (retry_for from its
  // first attempt), so that the appends of several partitions are
  // answered side by side; whether it is settled (true when nothing is in
  // flight). finish_append settles first.
  bool settle(std::chrono::steady_clock::time_point until);

  State state() const { return state_; }
  std::uint64_t applied() const { return applied_; }      // the stream seq the store holds
  std::uint64_t epoch() const { return epoch_; }          // the seq of this writer's marker
  std::uint64_t caught_up() const { return caught_up_; }  // entries applied by open()
  const Options& options() const { return options_; }

  // "applied:<n>" and "lamport:<n>" in `meta`.
  static constexpr std::string_view kAppliedPrefix = "applied:";
  static constexpr std::string_view kLamportPrefix = "lamport:";
  static std::string applied_key(unsigned partition);
  // The Lamport time of the newest entry the store holds (meta).
  static std::string lamport_key(unsigned partition);

 private:
  // An entry's publishes until it is settled: answered, or unanswered
  // past `deadline` (retry_for after the first attempt).
  struct InFlight {
    std::string data;
    std::string id;
    std::uint64_t expect = 0;
    std::uint64_t lamport = 0;
    const store::Batch* batch = nullptr;  // start_append's, for finish_append's check
    std::chrono::steady_clock::time_point started;
    std::chrono::steady_clock::time_point deadline;
    std::chrono::steady_clock::time_point attempt_started;
    std::chrono::steady_clock::time_point resend_at;  // while `answer` is not valid
    std::future<Published> answer;                    // the attempt out; not valid while pacing
    bool maybe_stored = false;                        // an earlier attempt went out unanswered
    std::optional<Published> settled;
  };
  // Publishes and waits for the answer, retrying an unanswered publish
  // with the same id until `retry_for` has passed.
  Published publish(const std::string& data, const std::string& id, std::uint64_t expect);
  // One attempt: the answer comes through the future (the libnats callback
  // only sets it).
  std::future<Published> send(const std::string& data, const std::string& id, std::uint64_t expect);
  // An entry with its first attempt sent.
  InFlight first_attempt(std::string data, std::string id, std::uint64_t expect);
  // Waits for `f`'s answer until `until`, retrying an unanswered attempt
  // with the same id (paced when refused at once) until its deadline;
  // whether it is settled.
  bool advance(InFlight& f, std::chrono::steady_clock::time_point until);
  // Checks the stream (and the partition count its first marker records)
  // and reads applied:<n>; reads only.
  Result<Ok> prepare();
  // Refuses a stream whose first marker records another partition count
  // (once per open: a stream with entries is checked once).
  Result<Ok> check_count(const StreamState& state);
  // Entries from `from` on (at most `max`), at least one: the caller knows
  // the stream holds `from`. UNAVAILABLE when reads keep coming back empty.
  Result<std::vector<Entry>> read_stored(std::uint64_t from, std::size_t max);
  // Applies one entry read from the stream (the next one: applied_ + 1).
  Result<Ok> apply(const Entry& e, const v1::LogEntry& entry);
  // Stores this run's epoch marker at the stream's end (fencing whoever
  // wrote before); epoch_ is its seq.
  Result<Ok> write_marker(const std::string& nonce);
  static Result<Ok> catch_up_all(const std::vector<PartitionLog*>& logs);
  // With an empty data dir and a stream trimmed at its head: the last
  // snapshot's cut written to the store, each partition's applied:<n> and
  // Lamport time set to it (catch-up goes on from there).
  static Result<Ok> restore_snapshot(const std::vector<PartitionLog*>& logs);
  // Refuses a data dir that applied entries but lacks some below a
  // stream's trimmed head, or holds part of a snapshot besides; reads only.
  static Result<Ok> check_trimmed_heads(const std::vector<PartitionLog*>& logs);
  Error unavailable(std::string why) const;

  JetStream& js_;
  store::Store& store_;
  const Options options_;
  State state_ = State::kClosed;
  std::uint64_t applied_ = 0;
  std::uint64_t first_seq_ = 0;  // the stream's first entry, at prepare() (0: none yet)
  std::uint64_t restoring_ = 0;  // the snapshot a restore cut short was writing (meta "restoring"; 0: none)
  std::uint64_t epoch_ = 0;
  std::uint64_t batch_ = 0;  // the last batch number used in this epoch
  std::uint64_t caught_up_ = 0;
  bool count_checked_ = false;
  std::string nonce_;  // this run's, in every entry id
  std::string stopped_why_;
  std::optional<InFlight> in_flight_;
};

// A batch made durable: written to the store in embedded mode (`log` is
// null), stored in the partition's stream and then written to the store in
// jetstream mode. On the partition's thread.
Result<Ok> durable_write(store::Store& store, PartitionLog* log, store::Batch& batch);

}  // namespace im::cluster
