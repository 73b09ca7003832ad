#pragma once
// A connection to a NATS JetStream cluster, as cluster mode uses it
// (docs/cluster.md): streams that refuse writes when full instead of dropping
// entries, asynchronous publishes chained by the expected last sequence and
// deduplicated by an id, and reads of a stream from a sequence on.
//
// libnats runs the publish callbacks on its own threads; a caller that owns
// state on another thread posts from `done` to it. Every publish has a
// `max_wait`: without one libnats never calls back when the answer is lost.
//
// Thread safe: libnats' connection and context are.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "im/result.h"

namespace im::cluster {

struct StreamSpec {
  std::string name;     // "IM_P7"
  std::string subject;  // the stream's one subject, "im.p.7"
  int replicas = 3;
  std::int64_t max_bytes = -1;  // -1: no limit; past it a publish is refused (Discard=New)
  // Retries of one id are deduplicated within this (config_loader.cpp
  // bounds cluster.unanswered_stop_ms by it).
  std::chrono::milliseconds duplicates_window{std::chrono::minutes(2)};
};

struct StreamState {
  std::uint64_t first_seq = 0;
  std::uint64_t last_seq = 0;  // 0: nothing stored yet
  std::uint64_t messages = 0;
  std::uint64_t bytes = 0;
  int replicas = 0;
  std::int64_t max_bytes = -1;
  std::int64_t created_ns = 0;  // when the stream was made (ns since the epoch): names it across a delete and remake
};

struct Published {
  enum class Outcome {
    kStored,             // seq is the new entry's
    kDuplicate,          // the id was stored before, at seq (a retried publish)
    kWrongLastSequence,  // the stream's last entry is not expect_last_seq: another writer
    kFull,               // the stream is at max_bytes (or the server's store is full)
    kTimeout,            // no answer within max_wait: stored or not, unknown; retry with the same id
    kFailed,             // any other error (no quorum, no stream, closed connection): maybe retry
    kNotSent,            // never left this process (too large for the servers, closed): not stored
  };
  Outcome outcome = Outcome::kFailed;
  std::uint64_t seq = 0;
  std::string error;       // for the log
  bool too_large = false;  // kNotSent: over the servers' max_payload, so no retry can pass
};

std::string_view to_string(Published::Outcome outcome);

// Whether a publish's fate is unknown, so that it is sent again with the
// same id (the stream deduplicates it): a timeout or a failure. kNotSent
// never left this process, but after an attempt that did (`maybe_stored`:
// the client refuses publishes while it reconnects, then sends its buffer)
// the entry may still be stored: `p` then becomes a timeout. An unknown
// fate sets `maybe_stored`.
bool fate_unknown(Published& p, bool& maybe_stored);

struct Entry {
  std::uint64_t seq = 0;
  std::string data;
};

class JetStream {
 public:
  struct Options {
    std::vector<std::string> urls;                 // "nats://127.0.0.1:4222", ...
    std::string name = "imserver";                 // the connection's name on the servers
    std::chrono::milliseconds api_wait{5000};      // stream management and reads
    std::chrono::milliseconds connect_wait{5000};  // each connection attempt
    int max_pending = 8192;                        // publishes without an answer yet
  };

  static Result<std::unique_ptr<JetStream>> connect(const Options& options);
  ~JetStream();
  JetStream(const JetStream&) = delete;
  JetStream& operator=(const JetStream&) = delete;

  // Creates the stream, or checks an existing one: same subject, file
  // storage, Discard=New; replicas and max_bytes are updated to the spec.
  Result<StreamState> ensure_stream(const StreamSpec& spec);
  Result<StreamState> stream_state(const std::string& stream);
  // Removes a stream and every entry in it (tests and tools; imserver never
  // does). A stream that does not exist is not an error.
  Result<Ok> delete_stream(const std::string& stream);

  // Removes the entries of `stream` below `keep_from` (all of them when it
  // is past the end), only those on `subject` when one is given (then
  // keep_from 0: all of them); the stream's sequence numbers go on from
  // where they were.
  Result<Ok> purge(const std::string& stream, std::uint64_t keep_from, const std::string& subject = {});
  // The subjects of `stream` matching `filter` ("a.b.*") that hold
  // entries, each with how many.
  Result<std::map<std::string, std::uint64_t>> subjects(const std::string& stream, const std::string& filter);
  // The stream's last entry on `subject` (none: the stream holds none).
  Result<std::optional<Entry>> last_on_subject(const std::string& stream, const std::string& subject);

  using Done = std::function<void(const Published&)>;
  // Publishes `data` to `subject` with the id `msg_id` (Nats-Msg-Id), stored
  // only if the stream's last sequence is `expect_last_seq` (0: the stream
  // is empty). `done` runs exactly once, on a libnats thread (or on the
  // caller's, when the publish cannot even be queued).
  void publish(const std::string& subject, std::string_view data, const std::string& msg_id,
               std::uint64_t expect_last_seq, std::chrono::milliseconds max_wait, Done done);

  // Up to `max` entries of `stream` (whose subject is `subject`) from
  // `from_seq` on, in order, through a short-lived pull consumer; fewer at
  // the stream's end. With `max_bytes` the entries' data stay within it,
  // but for the first entry, which is read whatever its size.
  static constexpr std::size_t kNoByteLimit = static_cast<std::size_t>(-1);
  Result<std::vector<Entry>> read(const std::string& stream, const std::string& subject, std::uint64_t from_seq,
                                  std::size_t max, std::size_t max_bytes = kNoByteLimit);

  // Publishes queued but not answered yet.
  std::size_t pending() const;
  // The largest message the servers take (their max_payload).
  std::int64_t max_payload() const;

 private:
  struct Impl;
  explicit JetStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace im::cluster
