#include "cluster/partition_log.h"

#include <cctype>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/metrics.h"
#include "proto/cluster_log.pb.h"

namespace im::cluster {

StreamSpec partition_stream(const std::string& prefix, unsigned p) {
  StreamSpec spec;
  spec.name = fmt::format("{}_P{}", prefix, p);
  spec.subject = fmt::format("{}.p.{}", subject_root(prefix), p);
  return spec;
}

std::string subject_root(const std::string& prefix) {
  std::string lower = prefix;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return lower;
}

std::string random_id() {
  std::random_device random;
  return fmt::format("{:016x}", (std::uint64_t{random()} << 32) | random());
}

namespace {

using Outcome = Published::Outcome;

// How many times a marker is tried again when another writer appended
// between reading the stream's end and storing the marker.
constexpr int kMarkerTries = 5;

v1::LogRow::Op op_of(store::RowOp op) {
  switch (op) {
    case store::RowOp::kPut: return v1::LogRow::PUT;
    case store::RowOp::kDelete: return v1::LogRow::DELETE;
    case store::RowOp::kDeleteRange: return v1::LogRow::DELETE_RANGE;
    case store::RowOp::kMerge: return v1::LogRow::MERGE;
  }
  return v1::LogRow::PUT;
}

// The clock at `at_least` or above, whoever else raises it meanwhile.
void raise_to(std::atomic<std::uint64_t>& clock, std::uint64_t at_least) {
  for (std::uint64_t seen = clock.load(); seen < at_least && !clock.compare_exchange_weak(seen, at_least);) {
  }
}

Result<store::RowOp> row_op_of(int op) {
  switch (op) {
    case v1::LogRow::PUT: return store::RowOp::kPut;
    case v1::LogRow::DELETE: return store::RowOp::kDelete;
    case v1::LogRow::DELETE_RANGE: return store::RowOp::kDeleteRange;
    case v1::LogRow::MERGE: return store::RowOp::kMerge;
    default: return make_error(StatusCode::kInternal, fmt::format("a log row with the unknown operation {}", op));
  }
}

}  // namespace

Result<Ok> durable_write(store::Store& store, PartitionLog* log, store::Batch& batch) {
  if (!log) return store.write(batch);
  if (batch.empty()) return Ok{};
  auto appended = log->append(batch);
  if (!appended) return appended.error();
  return Ok{};
}

std::string PartitionLog::applied_key(unsigned partition) {
  return fmt::format("{}{}", kAppliedPrefix, partition);
}

std::string PartitionLog::lamport_key(unsigned partition) {
  return fmt::format("{}{}", kLamportPrefix, partition);
}

PartitionLog::PartitionLog(JetStream& js, store::Store& store, Options options)
    : js_(js), store_(store), options_(std::move(options)) {}

Error PartitionLog::unavailable(std::string why) const {
  Error e = make_error(StatusCode::kUnavailable, fmt::format("partition {}: {}", options_.partition, why));
  e.retry_after_ms = 1000;
  return e;
}

std::future<Published> PartitionLog::send(const std::string& data, const std::string& id, std::uint64_t expect) {
  auto answer = std::make_shared<std::promise<Published>>();
  auto got = answer->get_future();
  // The callback runs on a libnats thread: it only hands the answer over.
  js_.publish(options_.stream.subject, data, id, expect, options_.publish_wait,
              [answer](const Published& p) { answer->set_value(p); });
  return got;
}

bool PartitionLog::advance(InFlight& f, std::chrono::steady_clock::time_point until) {
  using Clock = std::chrono::steady_clock;
  while (!f.settled) {
    if (!f.answer.valid()) {  // refused at once: the next attempt is paced
      if (Clock::now() < f.resend_at) {
        if (until < f.resend_at) {
          std::this_thread::sleep_until(until);
          return false;
        }
        std::this_thread::sleep_until(f.resend_at);
      }
      f.answer = send(f.data, f.id, f.expect);
      f.attempt_started = Clock::now();
      continue;
    }
    // libnats answers every publish that has a time limit; the margin only
    // guards against a library that would not.
    const auto give_up = f.attempt_started + options_.publish_wait + std::chrono::seconds(5);
    Published p;
    if (f.answer.wait_until(std::min(until, give_up)) == std::future_status::ready) {
      p = f.answer.get();
    } else if (Clock::now() < give_up) {
      return false;  // `until` came first
    } else {
      f.answer = {};
      p = Published{Outcome::kTimeout, 0, "no answer from the NATS client"};
    }
    // Only an unknown fate is retried. Whether this attempt was refused at
    // once is read before fate_unknown, which may turn kNotSent into a
    // timeout: such a retry is paced too.
    const bool refused_at_once = p.outcome == Outcome::kNotSent || p.outcome == Outcome::kFailed;
    if (!fate_unknown(p, f.maybe_stored)) {
      f.settled = p;
      break;
    }
    const auto now = Clock::now();
    if (now >= f.deadline) {
      f.settled = p;
      break;
    }
    spdlog::warn("partition {}: publish of {} not answered ({}: {}); trying again", options_.partition, f.id,
                 to_string(p.outcome), p.error);
    if (refused_at_once) {
      // A failed publish (no responders while a leader is elected) or one
      // refused while reconnecting comes back at once: pace the retries.
      f.answer = {};
      f.resend_at = now + std::chrono::milliseconds(100);
    } else {
      f.answer = send(f.data, f.id, f.expect);
      f.attempt_started = now;
    }
  }
  return true;
}

PartitionLog::InFlight PartitionLog::first_attempt(std::string data, std::string id, std::uint64_t expect) {
  InFlight f;
  f.data = std::move(data);
  f.id = std::move(id);
  f.expect = expect;
  f.started = f.attempt_started = std::chrono::steady_clock::now();
  f.deadline = f.started + options_.retry_for;
  f.answer = send(f.data, f.id, f.expect);
  return f;
}

Published PartitionLog::publish(const std::string& data, const std::string& id, std::uint64_t expect) {
  InFlight f = first_attempt(data, id, expect);
  advance(f, std::chrono::steady_clock::time_point::max());
  return *f.settled;
}

Result<Ok> PartitionLog::prepare() {
  // Reads only: a start refused here has changed nothing in the streams.
  auto stream = js_.stream_state(options_.stream.name);
  if (!stream && stream.error().code != StatusCode::kNotFound) return stream.error();
  const StreamState state = stream ? *stream : StreamState{};  // none yet: open_all creates it next
  auto restoring = store_.get_meta(kRestoringKey);
  if (!restoring) return restoring.error();
  restoring_ = restoring->value_or(0);
  auto applied = store_.get_meta(applied_key(options_.partition));
  if (!applied) return applied.error();
  applied_ = applied->value_or(0);
  first_seq_ = state.first_seq;
  // The clock starts above every entry this data dir applied or appended:
  // entries already applied are not read again.
  auto lamport = store_.get_meta(lamport_key(options_.partition));
  if (!lamport) return lamport.error();
  raise_to(*options_.clock, lamport->value_or(0));
  if (auto counted = check_count(state); !counted) return counted;
  if (applied_ > state.last_seq)
    return make_error(StatusCode::kInternal,
                      fmt::format("partition {}: the data dir holds entry {} but stream {} ends at {}: it belongs "
                                  "to another stream, or the stream was lost",
                                  options_.partition, applied_, options_.stream.name, state.last_seq));
  return Ok{};
}

Result<Ok> PartitionLog::check_count(const StreamState& state) {
  if (count_checked_ || options_.partitions == 0 || state.messages == 0 || state.first_seq > state.last_seq)
    return Ok{};
  // Every start stores a marker, the stream's first entry included (until
  // something trims streams: then the first entry may be a batch, and this
  // check is skipped).
  auto first = read_stored(state.first_seq, 1);
  if (!first) return first.error();
  v1::LogEntry head;
  if (!head.ParseFromString(first->front().data))
    return make_error(StatusCode::kInternal, fmt::format("partition {}: the first entry of stream {} does not parse",
                                                         options_.partition, options_.stream.name));
  if (head.marker() && head.partitions() != 0 && head.partitions() != options_.partitions)
    return make_error(StatusCode::kInternal,
                      fmt::format("stream {} was written with cluster.partitions = {}, not {}; the partition "
                                  "count is fixed once the streams hold data",
                                  options_.stream.name, head.partitions(), options_.partitions));
  count_checked_ = true;
  return Ok{};
}

Result<std::vector<Entry>> PartitionLog::read_stored(std::uint64_t from, std::size_t max) {
  // A read can come back short while the cluster elects a leader (bounded:
  // 50 tries, 10 s).
  for (int tries = 0;; ++tries) {
    auto read = js_.read(options_.stream.name, options_.stream.subject, from, max, options_.read_bytes);
    if (read && !read->empty()) return read;
    if (tries >= 50) {
      if (!read) return read;
      return unavailable(fmt::format("stream {} gives no entry {}", options_.stream.name, from));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Result<Ok> PartitionLog::apply(const Entry& e, const v1::LogEntry& entry) {
  if (e.seq != applied_ + 1)
    return make_error(StatusCode::kInternal, fmt::format("partition {}: the stream has no entry {} (the next is {}); "
                                                         "the data dir cannot be caught up from it",
                                                         options_.partition, applied_ + 1, e.seq));
  if (entry.partition() != options_.partition)
    return make_error(StatusCode::kInternal, fmt::format("partition {}: entry {} belongs to partition {}",
                                                         options_.partition, e.seq, entry.partition()));
  store::Batch batch(store_);
  for (const auto& row : entry.rows()) {
    if (row.family() >= store::kCfCount)
      return make_error(StatusCode::kInternal, fmt::format("partition {}: entry {} names the unknown family {}",
                                                           options_.partition, e.seq, row.family()));
    auto op = row_op_of(row.op());
    if (!op) return op.error();
    batch.add_row(store::Row{static_cast<store::Cf>(row.family()), *op, row.key(), row.value()});
  }
  batch.put_meta(applied_key(options_.partition), e.seq);
  if (entry.lamport() > 0) batch.put_meta(lamport_key(options_.partition), entry.lamport());
  if (auto written = store_.write(batch); !written) return written.error();
  applied_ = e.seq;
  ++caught_up_;
  // The clock stays above every entry applied.
  raise_to(*options_.clock, entry.lamport());
  return Ok{};
}

Result<Ok> PartitionLog::catch_up_all(const std::vector<PartitionLog*>& logs) {
  // A k-way merge of the partitions' streams by Lamport time, each read in
  // chunks from its applied:<n> on.
  struct Cursor {
    PartitionLog* log;
    std::vector<Entry> chunk;
    std::size_t next = 0;
    v1::LogEntry head;
    bool done = false;
  };
  std::vector<Cursor> cursors;
  for (PartitionLog* log : logs) cursors.push_back(Cursor{log, {}, 0, {}, false});
  // Makes `c.head` the cursor's next entry, reading a chunk when needed.
  auto advance = [](Cursor& c) -> Result<Ok> {
    PartitionLog& log = *c.log;
    if (c.next >= c.chunk.size()) {
      // Up to this run's marker, never past it: entries after it are
      // another writer's, which open_all refuses.
      if (log.applied_ >= log.epoch_) {
        c.done = true;
        return Ok{};
      }
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(log.options_.read_chunk, log.epoch_ - log.applied_));
      // The end is the marker, not an empty read.
      auto read = log.read_stored(log.applied_ + 1, want);
      if (!read) return read.error();
      c.chunk = std::move(*read);
      c.next = 0;
    }
    if (!c.head.ParseFromString(c.chunk[c.next].data))
      return make_error(StatusCode::kInternal, fmt::format("partition {}: entry {} does not parse",
                                                           log.options_.partition, c.chunk[c.next].seq));
    return Ok{};
  };
  for (auto& c : cursors)
    if (auto r = advance(c); !r) return r;
  for (;;) {
    Cursor* first = nullptr;
    for (auto& c : cursors)
      if (!c.done && (!first || c.head.lamport() < first->head.lamport())) first = &c;
    if (!first) return Ok{};
    if (auto applied = first->log->apply(first->chunk[first->next], first->head); !applied) return applied;
    ++first->next;
    if (auto r = advance(*first); !r) return r;
  }
}

namespace {
// More than a marker entry takes in a stream, headers and subject included.
constexpr std::uint64_t kMarkerRoom = 4096;
}  // namespace

Result<Ok> PartitionLog::write_marker(const std::string& nonce) {
  v1::LogEntry marker;
  marker.set_node(options_.node);
  marker.set_partition(options_.partition);
  marker.set_marker(true);  // Lamport time 0: no rows, so no order to keep
  marker.set_partitions(options_.partitions);
  const std::string id = fmt::format("{}:{}:marker:{}", options_.node, nonce, options_.partition);
  for (int tries = 0; tries < kMarkerTries; ++tries) {
    auto state = js_.stream_state(options_.stream.name);
    if (!state) return state.error();
    // A stream empty at prepare() may have been filled since, by a node of
    // another count: checked here, against the very end the marker expects.
    if (auto counted = check_count(*state); !counted) return counted;
    const Published p = publish(marker.SerializeAsString(), id, state->last_seq);
    if (p.outcome == Outcome::kWrongLastSequence) continue;  // appended meanwhile: expect the new end
    // Too full for even a marker (a few hundred bytes with its headers): no
    // snapshot can purge it before the node runs, but a larger limit is
    // applied to the stream at start.
    if (p.outcome == Outcome::kFull && state->max_bytes > 0 &&
        state->bytes + kMarkerRoom >= static_cast<std::uint64_t>(state->max_bytes))
      return unavailable(
          fmt::format("stream {} is too full for this run's epoch marker ({}): start with a larger "
                      "cluster.stream_max_bytes than {} (the stream's limit is raised at start; trimming, "
                      "cluster.trim_at_percent, then purges it)",
                      options_.stream.name, p.error, state->max_bytes));
    if (p.outcome == Outcome::kFull)
      return unavailable(fmt::format(
          "stream {} refused this run's epoch marker as full ({}) below its byte limit: the NATS servers' own "
          "storage (max_file_store) may be full",
          options_.stream.name, p.error));
    if (p.outcome != Outcome::kStored && p.outcome != Outcome::kDuplicate)
      return unavailable(fmt::format("epoch marker: {} {}", to_string(p.outcome), p.error));
    epoch_ = p.seq;
    return Ok{};
  }
  return unavailable("another writer keeps appending to the stream");
}

namespace {

// `step` for every log, on up to 16 threads at once; the first error, in the
// logs' order, when any failed.
Result<Ok> each_at_once(const std::vector<PartitionLog*>& logs, const std::function<Result<Ok>(PartitionLog&)>& step) {
  std::vector<Result<Ok>> results(logs.size(), Ok{});
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < logs.size();) results[i] = step(*logs[i]);
  };
  std::vector<std::thread> threads;
  for (std::size_t t = 1; t < std::min<std::size_t>(16, logs.size()); ++t) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  for (auto& r : results)
    if (!r) return r;
  return Ok{};
}

}  // namespace

Result<Ok> PartitionLog::open_all(const std::vector<PartitionLog*>& logs, const std::function<Result<Ok>()>& checked) {
  // This run's ids: a retry of one publish reuses its id, nothing else does,
  // not even a later run of the same node (JetStream checks an id before
  // the expected sequence).
  const std::string nonce = random_id();
  for (PartitionLog* log : logs) log->nonce_ = nonce;
  // Each step runs for the partitions side by side: creating a replicated
  // stream, or storing its first entry, waits for its group to elect a
  // leader (about 0.3 s on loopback).
  // 1. Checks that only read: a start refused here changed nothing.
  if (auto prepared = each_at_once(logs, [](PartitionLog& log) { return log.prepare(); }); !prepared) return prepared;
  if (auto behind = check_trimmed_heads(logs); !behind) return behind;
  // 2. Streams created, or checked for their layout and their limits
  //    updated to this node's configuration. A new replicated stream waits
  //    for its group's leader, which a loaded cluster may elect after the
  //    API's wait: an unavailable answer is asked again (bounded: 3 tries;
  //    the stream made meanwhile is found by the next).
  if (auto ensured = each_at_once(logs,
                                  [](PartitionLog& log) -> Result<Ok> {
                                    for (int tries = 1;; ++tries) {
                                      auto stream = log.js_.ensure_stream(log.options_.stream);
                                      if (stream) return Ok{};
                                      if (stream.error().code != StatusCode::kUnavailable || tries >= 3)
                                        return stream.error();
                                      spdlog::warn("cluster: stream {}: {}; asking again", log.options_.stream.name,
                                                   stream.error().message);
                                    }
                                  });
      !ensured)
    return ensured;
  spdlog::debug("cluster: {} streams ready", logs.size());
  // 3. The caller's first writes, before anyone is fenced.
  if (checked) {
    if (auto r = checked(); !r) return r;
  }
  // 4. Fence: once a marker is stored no earlier writer can append to its
  //    stream, so catching up to the marker leaves nothing behind.
  if (auto marked = each_at_once(logs, [&](PartitionLog& log) { return log.write_marker(nonce); }); !marked)
    return marked;
  for (PartitionLog* log : logs) {
    // A marker at or below what the data dir applied: the stream was
    // deleted and made again since prepare() read it.
    if (log->epoch_ <= log->applied_)
      return make_error(StatusCode::kInternal,
                        fmt::format("partition {}: the data dir holds entry {} but stream {} was made again (this "
                                    "run's marker is entry {}): the stream was lost",
                                    log->options_.partition, log->applied_, log->options_.stream.name, log->epoch_));
  }
  spdlog::debug("cluster: {} epoch markers stored", logs.size());
  // 5. An empty data dir and trimmed streams: the last snapshot first.
  if (auto restored = restore_snapshot(logs); !restored) return restored;
  // 6. The catch-up.
  if (auto caught = catch_up_all(logs); !caught) return caught;
  spdlog::debug("cluster: {} partitions caught up", logs.size());
  for (PartitionLog* log : logs) {
    auto state = log->js_.stream_state(log->options_.stream.name);
    if (!state) return state.error();
    if (state->last_seq != log->epoch_) {
      // Another writer stored entries after this run's marker: it holds the partition now.
      log->state_ = State::kFenced;
      return log->unavailable(fmt::format("another writer appended after this node's marker {} (the stream is at {})",
                                          log->epoch_, state->last_seq));
    }
    log->batch_ = 0;
    log->state_ = State::kWriting;
  }
  return Ok{};
}

namespace {

Error refusal(const v1::SnapshotManifest& manifest, const std::string& why) {
  return make_error(StatusCode::kInternal, fmt::format("snapshot {} of node {} cannot rebuild this node: {}",
                                                       manifest.id(), manifest.node(), why));
}

// The last manifest, when an empty data dir must restore one: the streams
// are trimmed (`trimmed`) or a restore was cut short (`resuming`, its id).
// Checked for what this node can restore: its layout, its partition count,
// the snapshot a restore cut short. Reads only.
Result<std::optional<v1::SnapshotManifest>> manifest_to_restore(JetStream& js, const SnapshotSpec& spec, bool trimmed,
                                                                std::uint64_t resuming, unsigned partitions) {
  if (!trimmed && resuming == 0) return std::optional<v1::SnapshotManifest>{};
  auto found = last_manifest(js, spec);
  if (!found) return found.error();
  if (!found->has_value())
    return make_error(StatusCode::kInternal,
                      fmt::format("an empty data dir must be restored from a snapshot (the streams were trimmed, or "
                                  "a restore was cut short), but {} holds none",
                                  spec.stream.name));
  const v1::SnapshotManifest& manifest = **found;
  if (resuming != 0 && resuming != restoring_id(manifest))
    return make_error(StatusCode::kInternal,
                      fmt::format("the data dir holds part of an older snapshot than {}'s last one ({}): empty "
                                  "storage.data_dir to rebuild",
                                  spec.stream.name, manifest.id()));
  auto refuse = [&](const std::string& why) { return refusal(manifest, why); };
  if (manifest.schema_version() < store::kRowsReadableFrom || manifest.schema_version() > store::kSchemaVersion)
    return refuse(
        fmt::format("its rows have the store layout {}, this build reads {} to {}; start the build that "
                    "wrote it",
                    manifest.schema_version(), store::kRowsReadableFrom, store::kSchemaVersion));
  if (partitions != 0 && manifest.partitions() != partitions)
    return refuse(fmt::format("it holds {} partitions, this node has {}", manifest.partitions(), partitions));
  return found;
}

}  // namespace

Result<Ok> PartitionLog::check_trimmed_heads(const std::vector<PartitionLog*>& logs) {
  // A data dir that applied anything must hold every stream from its head
  // on; one that applied nothing is restored from the last snapshot.
  bool any = false, trimmed = false;
  for (PartitionLog* log : logs) {
    any = any || log->applied_ > 0;
    trimmed = trimmed || log->first_seq_ > 1;
  }
  for (PartitionLog* log : logs) {
    if (log->restoring_ != 0 && any)
      return make_error(StatusCode::kInternal,
                        "the data dir holds part of a snapshot and entries applied after it: "
                        "empty storage.data_dir to rebuild");
    if (any && log->applied_ + 1 < log->first_seq_)
      return make_error(
          StatusCode::kInternal,
          fmt::format("partition {}: the data dir holds entries up to {}, but stream {} was trimmed to begin at {} "
                      "since (a snapshot holds the rest): empty storage.data_dir to rebuild it from the snapshot "
                      "and the streams",
                      log->options_.partition, log->applied_, log->options_.stream.name, log->first_seq_));
  }
  if (any || logs.empty()) return Ok{};
  // Refused now, before any stream is made or marker stored, rather than
  // after the markers have fenced the running node (restore_snapshot
  // checks again).
  const PartitionLog& first = *logs.front();
  auto found =
      manifest_to_restore(first.js_, first.options_.snapshots, trimmed, first.restoring_, first.options_.partitions);
  if (!found) return found.error();
  return Ok{};
}

Result<Ok> PartitionLog::restore_snapshot(const std::vector<PartitionLog*>& logs) {
  if (logs.empty()) return Ok{};
  for (PartitionLog* log : logs)
    if (log->applied_ > 0) return Ok{};  // not empty: check_trimmed_heads() checked it
  // The streams as they are now, after the markers: a snapshot stored
  // since prepare() may have trimmed them further.
  std::vector<StreamState> states;
  bool trimmed = false;
  for (PartitionLog* log : logs) {
    auto state = log->js_.stream_state(log->options_.stream.name);
    if (!state) return state.error();
    trimmed = trimmed || state->first_seq > 1;
    states.push_back(*state);
  }
  // A restore cut short (a kill, NATS away) is resumed from the same
  // snapshot: its rows are PUTs, written again as they were.
  const SnapshotSpec& spec = logs.front()->options_.snapshots;
  auto found = manifest_to_restore(logs.front()->js_, spec, trimmed, logs.front()->restoring_,
                                   logs.front()->options_.partitions);
  if (!found) return found.error();
  if (!found->has_value()) return Ok{};
  const v1::SnapshotManifest& manifest = **found;
  auto refuse = [&](const std::string& why) { return refusal(manifest, why); };
  std::uint64_t clock = 0;
  for (std::size_t i = 0; i < logs.size(); ++i) {
    const PartitionLog& log = *logs[i];
    const unsigned m = log.options_.partition;
    if (m >= static_cast<unsigned>(manifest.applied_size()) || manifest.created_ns_size() != manifest.applied_size() ||
        manifest.lamport_size() != manifest.applied_size())
      return refuse(fmt::format("it has no position for partition {}", m));
    if (manifest.created_ns(static_cast<int>(m)) != states[i].created_ns)
      return refuse(fmt::format("stream {} was made again since", log.options_.stream.name));
    const std::uint64_t cut = manifest.applied(static_cast<int>(m));
    if (cut + 1 < states[i].first_seq)
      return refuse(fmt::format("stream {} begins at {}, past its cut {}: a newer snapshot trimmed it; start again",
                                log.options_.stream.name, states[i].first_seq, cut));
    // Below this run's marker: the cut holds entries the stream holds.
    if (cut >= log.epoch_ || cut > states[i].last_seq)
      return refuse(fmt::format("its cut of stream {} ({}) is past this node's marker {}", log.options_.stream.name,
                                cut, log.epoch_));
    clock = std::max(clock, manifest.lamport(static_cast<int>(m)));
  }
  auto rows = load_snapshot(logs.front()->js_, logs.front()->store_, spec, manifest, logs.front()->options_.read_bytes);
  if (!rows) return rows.error();
  store::Batch cut(logs.front()->store_);
  for (PartitionLog* log : logs) {
    const int m = static_cast<int>(log->options_.partition);
    if (manifest.applied(m) > 0) cut.put_meta(applied_key(log->options_.partition), manifest.applied(m));
    if (manifest.lamport(m) > 0) cut.put_meta(lamport_key(log->options_.partition), manifest.lamport(m));
  }
  cut.del_meta(kRestoringKey);
  if (auto written = logs.front()->store_.write(cut); !written) return written.error();
  for (PartitionLog* log : logs) log->applied_ = manifest.applied(static_cast<int>(log->options_.partition));
  raise_to(*logs.front()->options_.clock, clock);
  spdlog::info("cluster: snapshot restored: {} of node {}, {} rows", manifest.id(), manifest.node(), *rows);
  return Ok{};
}

Result<std::uint64_t> PartitionLog::append(store::Batch& batch) {
  if (auto started = start_append(batch); !started) return started.error();
  return finish_append(batch);
}

Result<Ok> PartitionLog::start_append(const store::Batch& batch) {
  if (in_flight_) return make_error(StatusCode::kInternal, "an append while another is in flight");
  switch (state_) {
    case State::kWriting: break;
    case State::kClosed: return unavailable("not open");
    case State::kFenced: return unavailable("written by another node since this one opened it");
    case State::kStopped: return unavailable("stopped: " + stopped_why_ + "; a restart catches up from the stream");
  }
  if (batch.refused()) return make_error(StatusCode::kInternal, "a range deletion the store refuses");
  v1::LogEntry entry;
  entry.set_node(options_.node);
  entry.set_epoch(epoch_);
  entry.set_partition(options_.partition);
  entry.set_batch(++batch_);
  entry.set_lamport(options_.clock->fetch_add(1) + 1);
  auto rows = batch.for_each_row([&entry](const store::Row& r) {
    auto* row = entry.add_rows();
    row->set_family(static_cast<std::uint32_t>(r.cf));
    row->set_op(op_of(r.op));
    row->set_key(r.key.data(), r.key.size());
    row->set_value(r.value.data(), r.value.size());
  });
  if (!rows) return rows.error();
  InFlight f = first_attempt(entry.SerializeAsString(),
                             fmt::format("{}:{}:{}:{}", options_.node, nonce_, options_.partition, batch_), applied_);
  f.lamport = entry.lamport();
  f.batch = &batch;
  metrics::get().cluster_pending_entries.add(1);
  in_flight_ = std::move(f);
  return Ok{};
}

bool PartitionLog::settle(std::chrono::steady_clock::time_point until) {
  if (!in_flight_ || in_flight_->settled) return true;
  InFlight& f = *in_flight_;
  if (!advance(f, until)) return false;
  auto& m = metrics::get();
  m.cluster_pending_entries.add(-1);
  m.cluster_publish_latency.observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - f.started).count());
  return true;
}

PartitionLog::~PartitionLog() {
  if (in_flight_ && !in_flight_->settled) metrics::get().cluster_pending_entries.add(-1);
}

Result<std::uint64_t> PartitionLog::finish_append(store::Batch& batch) {
  if (!in_flight_) return make_error(StatusCode::kInternal, "no append in flight");
  settle(std::chrono::steady_clock::time_point::max());
  if (in_flight_->batch != &batch) {
    // A broken invariant of the caller: whether the entry sent is the batch
    // it holds is unknown, so the partition stops (a restart catches up).
    in_flight_.reset();
    state_ = State::kStopped;
    metrics::get().cluster_unavailable_partitions.add(1);
    stopped_why_ = "an append finished with another batch than the one sent";
    spdlog::error("partition {}: {}", options_.partition, stopped_why_);
    return make_error(StatusCode::kInternal, fmt::format("partition {}: {}", options_.partition, stopped_why_));
  }
  InFlight f = std::move(*in_flight_);
  in_flight_.reset();
  auto& m = metrics::get();
  const Published p = *f.settled;
  const std::string& id = f.id;
  switch (p.outcome) {
    case Outcome::kStored:
    case Outcome::kDuplicate: break;
    case Outcome::kWrongLastSequence:
      state_ = State::kFenced;
      m.cluster_unavailable_partitions.add(1);
      spdlog::error("partition {}: fenced: another writer appended to {} after this node's epoch {}",
                    options_.partition, options_.stream.name, epoch_);
      return unavailable("written by another node since this one opened it");
    case Outcome::kFull: return unavailable("stream " + options_.stream.name + " is full: " + p.error);
    case Outcome::kNotSent: {  // not stored: nothing to resolve
      const std::string why = fmt::format("entry of {} bytes not sent: {}", f.data.size(), p.error);
      // Larger than the servers take (their max_payload lowered since the
      // start checked it): a retry never passes, so not UNAVAILABLE, which
      // clients retry without end. Otherwise (a reconnect's buffer full) it may.
      if (p.too_large)
        return make_error(StatusCode::kInternal, fmt::format("partition {}: {}", options_.partition, why));
      return unavailable(why);
    }
    case Outcome::kTimeout:
    case Outcome::kFailed:
      state_ = State::kStopped;
      m.cluster_unavailable_partitions.add(1);
      stopped_why_ = fmt::format("entry {} unanswered for {} ms ({})", id, options_.retry_for.count(), p.error);
      spdlog::error("partition {}: {}", options_.partition, stopped_why_);
      return unavailable(stopped_why_);
  }
  if (p.seq != applied_ + 1) {
    state_ = State::kStopped;
    m.cluster_unavailable_partitions.add(1);
    stopped_why_ = fmt::format("entry {} stored at {}, not at {}", id, p.seq, applied_ + 1);
    spdlog::error("partition {}: {}", options_.partition, stopped_why_);
    return unavailable(stopped_why_);
  }
  batch.put_meta(applied_key(options_.partition), p.seq);
  batch.put_meta(lamport_key(options_.partition), f.lamport);
  if (auto written = store_.write(batch); !written) {
    // The stream holds the entry, the store does not: only a catch-up
    // (at restart) brings them together again.
    state_ = State::kStopped;
    m.cluster_unavailable_partitions.add(1);
    stopped_why_ =
        fmt::format("entry {} is in the stream but its store write failed: {}", p.seq, written.error().message);
    spdlog::error("partition {}: {}", options_.partition, stopped_why_);
    return unavailable(stopped_why_);  // stored: a restart applies it
  }
  applied_ = p.seq;
  return p.seq;
}

}  // namespace im::cluster
