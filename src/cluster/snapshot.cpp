#include "cluster/snapshot.h"

#include <charconv>
#include <future>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <zstd.h>

#include "cluster/partition_log.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "im/frame_codec.h"
#include "proto/cluster_log.pb.h"
#include "store/keys.h"

namespace im::cluster {

SnapshotSpec snapshot_spec(const std::string& prefix) {
  SnapshotSpec spec;
  spec.stream.name = prefix + "_SNAP";
  const std::string root = subject_root(prefix);
  spec.stream.subject = root + ".s.>";
  spec.chunks = root + ".s.c";
  spec.manifests = root + ".s.m";
  return spec;
}

std::uint64_t restoring_id(const v1::SnapshotManifest& manifest) {
  std::uint64_t id = 0;
  const std::string& text = manifest.id();
  std::from_chars(text.data(), text.data() + text.size(), id, 16);
  return id == 0 ? 1 : id;
}

namespace {

using Outcome = Published::Outcome;

// One publish answered: one whose fate is unknown (fate_unknown) is sent
// again with the same id until `retry_for` has passed, as a partition's
// append is (PartitionLog::advance).
Published publish_answered(JetStream& js, const std::string& subject, const std::string& data, const std::string& id,
                           std::uint64_t expect, const SnapshotOptions& o, const std::atomic<bool>* stop) {
  const auto deadline = std::chrono::steady_clock::now() + o.retry_for;
  bool maybe_stored = false;
  for (;;) {
    auto answer = std::make_shared<std::promise<Published>>();
    auto got = answer->get_future();
    js.publish(subject, data, id, expect, o.publish_wait, [answer](const Published& p) { answer->set_value(p); });
    Published p;
    // libnats answers every publish with a time limit; the margin guards against one that would not.
    if (got.wait_for(o.publish_wait + std::chrono::seconds(5)) == std::future_status::ready)
      p = got.get();
    else
      p = Published{Outcome::kTimeout, 0, "no answer from the NATS client"};
    if (!fate_unknown(p, maybe_stored)) return p;
    if (std::chrono::steady_clock::now() >= deadline || (stop && stop->load())) return p;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// Whether an answer leaves the entry surely not stored.
bool surely_not_stored(const Published& p) {
  return p.outcome == Outcome::kWrongLastSequence || p.outcome == Outcome::kFull || p.outcome == Outcome::kNotSent;
}

Error publish_error(const std::string& id, const std::string& what, const Published& p) {
  std::string text = fmt::format("snapshot {}: {}: {} {}", id, what, to_string(p.outcome), p.error);
  if (p.outcome == Outcome::kFull) text += " (cluster.snapshot_max_bytes must hold two snapshots)";
  return make_error(StatusCode::kUnavailable, std::move(text));
}

// "applied:7" -> 7 when the name is `prefix` and a partition below `partitions`.
std::optional<unsigned> partition_of(std::string_view key, std::string_view prefix, std::size_t partitions) {
  if (key.substr(0, prefix.size()) != prefix) return std::nullopt;
  unsigned n = 0;
  const char* first = key.data() + prefix.size();
  const char* last = key.data() + key.size();
  auto [end, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || end != last || first == last || n >= partitions) return std::nullopt;
  return n;
}

constexpr std::string_view kApplied = PartitionLog::kAppliedPrefix, kLamport = PartitionLog::kLamportPrefix;

// zstd's default level. A chunk whose rows serialize to more than
// kMaxChunkRaw (a row larger than that) is stored as rows, and a reader
// decompresses no more.
constexpr int kChunkLevel = 3;
constexpr std::size_t kMaxChunkRaw = 64u << 20;

// The rows of `meta` that describe the data dir itself, or a cut (the
// manifest carries those): never in a chunk.
bool own_row(std::string_view key) {
  return key == store::kSchemaVersionKey || key == store::kClusterPartitionsKey || key == kRestoringKey ||
         key.substr(0, kApplied.size()) == kApplied || key.substr(0, kLamport.size()) == kLamport;
}

// Whether the last entry of `log`'s stream is still this writer's: its
// epoch marker or one of its entries.
Result<bool> still_ours(JetStream& js, const PartitionLog& log) {
  const auto& o = log.options();
  auto last = js.last_on_subject(o.stream.name, o.stream.subject);
  if (!last) return last.error();
  if (!last->has_value()) return false;
  v1::LogEntry entry;
  if (!entry.ParseFromString((*last)->data)) return false;
  if (entry.node() != o.node) return false;
  return entry.marker() ? (*last)->seq == log.epoch() : entry.epoch() == log.epoch();
}

// Refused unless every stream's last entry is still this writer's.
Error stopped(const std::string& id) {
  return make_error(StatusCode::kUnavailable, "snapshot " + id + ": stopped");
}

Result<Ok> check_writer(JetStream& js, const std::vector<const PartitionLog*>& logs, const std::string& id,
                        const std::atomic<bool>* stop) {
  for (const PartitionLog* log : logs) {
    if (stop && stop->load()) return stopped(id);
    auto ours = still_ours(js, *log);
    if (!ours) return ours.error();
    if (!*ours)
      return make_error(StatusCode::kUnavailable,
                        fmt::format("snapshot {}: stream {} was written by another node since this one opened it", id,
                                    log->options().stream.name));
  }
  return Ok{};
}

}  // namespace

Result<SnapshotTaken> take_snapshot(JetStream& js, store::Store& store, const std::vector<const PartitionLog*>& logs,
                                    const SnapshotOptions& options, const std::atomic<bool>* stop) {
  const auto started = std::chrono::steady_clock::now();
  const SnapshotSpec& spec = options.spec;
  const std::string id = random_id();
  // A fenced node writes nothing, not even a purge of leftovers.
  if (auto writer = check_writer(js, logs, id, stop); !writer) return writer.error();
  // The stream's end first, then the last manifest: every chunk and the
  // manifest expect that end, so no manifest stored after it can come
  // between (one would fail this snapshot's first chunk).
  auto snap = js.ensure_stream(spec.stream);
  if (!snap) return snap.error();
  bool unreadable = false;
  auto found = last_manifest(js, spec, &unreadable);
  if (!found) return found.error();
  if (unreadable) spdlog::warn("cluster: the last snapshot manifest on {} does not parse; replaced", spec.stream.name);
  const std::optional<v1::SnapshotManifest> previous = std::move(*found);
  // Chunks of attempts that stored no manifest (failed, or cut short by a
  // kill) would fill the stream: only the last manifest's are kept. A purge
  // leaves the stream's last sequence as it is.
  auto leftovers = js.subjects(spec.stream.name, spec.chunks + ".*");
  if (!leftovers) return leftovers.error();
  for (const auto& [subject, count] : *leftovers)
    if (!previous || subject != spec.chunks_of(previous->id()))
      if (auto purged = js.purge(spec.stream.name, 0, subject); !purged) return purged.error();

  v1::SnapshotManifest manifest;
  manifest.set_id(id);
  manifest.set_node(options.node);
  // Indexed by partition: the node's count, or enough for the logs given.
  std::size_t partitions = 0;
  for (const PartitionLog* log : logs)
    partitions = std::max<std::size_t>({partitions, log->options().partitions, log->options().partition + 1u});
  manifest.set_partitions(static_cast<std::uint32_t>(partitions));
  manifest.set_schema_version(store::kSchemaVersion);
  manifest.set_time_ms(wall_ms());
  std::vector<std::int64_t> created(partitions, 0);
  std::vector<std::uint64_t> epochs(partitions, 0);
  for (const PartitionLog* log : logs) {
    if (stop && stop->load()) return stopped(id);
    auto state = js.stream_state(log->options().stream.name);
    if (!state) return state.error();
    created[log->options().partition] = state->created_ns;
    epochs[log->options().partition] = log->epoch();
  }
  std::vector<std::uint64_t> applied(partitions, 0), lamport(partitions, 0);

  // Chunks chained by the SNAP stream's last sequence: another writer's
  // publish in between fails this snapshot instead of interleaving.
  std::uint64_t expect = snap->last_seq;
  manifest.set_first_chunk_seq(expect + 1);
  // Until the manifest is stored, a failure purges this attempt's chunks
  // (best effort: the next attempt purges what is left).
  struct Leftovers {
    JetStream& js;
    const SnapshotSpec& spec;
    std::string subject;
    bool keep = false;
    ~Leftovers() {
      if (!keep) (void)js.purge(spec.stream.name, 0, subject);
    }
  } own{js, spec, spec.chunks_of(id)};
  v1::SnapshotChunk chunk;
  std::size_t chunk_bytes = 0;
  std::optional<Error> failed;
  ChunkPacker packer;
  auto flush = [&]() -> bool {
    const std::string data = packer.pack(chunk, id, manifest.chunks());
    const Published p = publish_answered(js, spec.chunks_of(id), data, fmt::format("snap:{}:{}", id, manifest.chunks()),
                                         expect, options, stop);
    if (p.outcome != Outcome::kStored && p.outcome != Outcome::kDuplicate) {
      failed = publish_error(id, fmt::format("chunk {}", manifest.chunks()), p);
      return false;
    }
    expect = p.seq;
    manifest.set_stored_bytes(manifest.stored_bytes() + data.size());
    manifest.set_chunks(manifest.chunks() + 1);
    chunk.Clear();
    chunk_bytes = 0;
    return true;
  };
  auto scanned = store.scan_snapshot([&](store::Cf cf, std::string_view key, std::string_view value) {
    if (stop && stop->load()) {
      failed = stopped(id);
      return false;
    }
    if (cf == store::Cf::kMeta && own_row(key)) {
      if (auto n = partition_of(key, kApplied, partitions))
        applied[*n] = value.size() == 8 ? store::read_u64(value) : 0;
      if (auto n = partition_of(key, kLamport, partitions))
        lamport[*n] = value.size() == 8 ? store::read_u64(value) : 0;
      return true;
    }
    auto* row = chunk.add_rows();
    row->set_family(static_cast<std::uint32_t>(cf));
    row->set_op(v1::LogRow::PUT);  // merge rows come read merged
    row->set_key(key.data(), key.size());
    row->set_value(value.data(), value.size());
    chunk_bytes += key.size() + value.size();
    manifest.set_rows(manifest.rows() + 1);
    manifest.set_bytes(manifest.bytes() + key.size() + value.size());
    return chunk_bytes < options.chunk_bytes || flush();
  });
  if (!scanned) return scanned.error();
  if (failed) return *failed;
  if (chunk.rows_size() > 0 && !flush()) return *failed;
  for (std::size_t m = 0; m < partitions; ++m) {
    manifest.add_applied(applied[m]);
    manifest.add_lamport(lamport[m]);
    manifest.add_created_ns(created[m]);
    manifest.add_epoch(epochs[m]);
  }
  // The cut is on this disk before any stream goes below it: a power loss
  // of this machine cannot take the store back behind a trimmed head.
  if (auto synced = store.sync_wal(); !synced) return synced.error();
  // Only a writer of every stream may name a cut of them, and never one
  // older than the last snapshot's (its streams may be trimmed past it).
  if (auto writer = check_writer(js, logs, id, stop); !writer) return writer.error();
  if (previous && previous->created_ns_size() == previous->applied_size())
    for (const PartitionLog* log : logs) {
      const int m = static_cast<int>(log->options().partition);
      if (m < previous->applied_size() && previous->created_ns(m) == created[m] && previous->applied(m) > applied[m])
        return make_error(StatusCode::kUnavailable,
                          fmt::format("snapshot {}: its cut of stream {} ({}) is older than snapshot {}'s ({})", id,
                                      log->options().stream.name, applied[m], previous->id(), previous->applied(m)));
    }
  const Published p = publish_answered(js, spec.manifests, manifest.SerializeAsString(), "snap:" + id + ":manifest",
                                       expect, options, stop);
  own.keep = !surely_not_stored(p);  // a manifest whose fate is unknown may be stored: its chunks stay
  if (p.outcome != Outcome::kStored && p.outcome != Outcome::kDuplicate) return publish_error(id, "manifest", p);
  // Every chunk still there (a purge by another node's snapshot would have
  // left a manifest without them): else the streams are left as they are,
  // for the next snapshot to replace this one.
  auto held = js.subjects(spec.stream.name, spec.chunks_of(id));
  if (!held) return held.error();
  const auto it = held->find(spec.chunks_of(id));
  if (manifest.chunks() > 0 && (it == held->end() || it->second != manifest.chunks()))
    return make_error(StatusCode::kInternal,
                      fmt::format("snapshot {}: its chunks were purged after its manifest was stored (another "
                                  "node's snapshot?); nothing trimmed",
                                  id));

  SnapshotTaken taken;
  taken.id = id;
  taken.rows = manifest.rows();
  taken.bytes = manifest.bytes();
  taken.stored_bytes = manifest.stored_bytes();
  taken.chunks = manifest.chunks();
  taken.applied = applied;
  // The manifest is stored: every stream may go below its cut, and the
  // older snapshots with it. A stream keeps its last entry, whose writer
  // the next snapshot checks (an idle partition's cut is its last entry).
  for (const PartitionLog* each : logs) {
    if (stop && stop->load()) break;  // the rest at the next snapshot
    const PartitionLog& log = *each;
    const std::size_t m = log.options().partition;
    auto ours = still_ours(js, log);
    if (!ours) return ours.error();
    if (!*ours) {
      spdlog::warn("cluster: snapshot {}: stream {} was written by another node since; not trimmed", id,
                   log.options().stream.name);
      continue;
    }
    auto before = js.stream_state(log.options().stream.name);
    if (!before) return before.error();
    const std::uint64_t keep_from = std::min(applied[m] + 1, before->last_seq);
    if (keep_from <= std::max<std::uint64_t>(before->first_seq, 1)) continue;
    if (auto purged = js.purge(log.options().stream.name, keep_from); !purged) return purged.error();
    taken.purged += keep_from - std::max<std::uint64_t>(before->first_seq, 1);
  }
  if (auto purged = js.purge(spec.stream.name, manifest.first_chunk_seq()); !purged) return purged.error();
  auto& mx = metrics::get();
  mx.cluster_purged_entries.inc(taken.purged);
  mx.cluster_snapshot_bytes.set(static_cast<std::int64_t>(taken.bytes));
  mx.cluster_snapshot_stored_bytes.set(static_cast<std::int64_t>(taken.stored_bytes));
  mx.cluster_snapshot_ms.set(static_cast<std::int64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count()));
  mx.cluster_snapshots.inc();
  return taken;
}

void ChunkPacker::FreeCctx::operator()(ZSTD_CCtx_s* c) const {
  ZSTD_freeCCtx(c);
}

ChunkPacker::ChunkPacker() : ctx_(ZSTD_createCCtx()) {}

std::string ChunkPacker::pack(const v1::SnapshotChunk& rows, const std::string& id, std::uint32_t index) {
  // A message's fields may come in any order: the header's, then the rows'.
  v1::SnapshotChunk header;
  header.set_id(id);
  header.set_index(index);
  const std::string raw = rows.SerializeAsString();
  if (ctx_ && raw.size() <= kMaxChunkRaw) {
    std::string compressed(ZSTD_compressBound(raw.size()), '\0');
    const std::size_t n =
        ZSTD_compressCCtx(ctx_.get(), compressed.data(), compressed.size(), raw.data(), raw.size(), kChunkLevel);
    if (!ZSTD_isError(n) && n < raw.size()) {
      compressed.resize(n);
      header.set_zstd_rows(std::move(compressed));
      return header.SerializeAsString();
    }
  }
  return header.SerializeAsString() + raw;
}

Result<Ok> unpack_chunk(const std::string& data, v1::SnapshotChunk& chunk) {
  auto refused = [](std::string_view why) { return make_error(StatusCode::kInternal, std::string(why)); };
  if (!chunk.ParseFromString(data)) return refused("it does not parse");
  if (chunk.zstd_rows().empty()) return Ok{};
  if (chunk.rows_size() > 0) return refused("it holds rows and compressed rows");
  auto raw = decompress_body(chunk.zstd_rows(), kMaxChunkRaw);
  if (!raw) {
    const auto size = ZSTD_getFrameContentSize(chunk.zstd_rows().data(), chunk.zstd_rows().size());
    if (size != ZSTD_CONTENTSIZE_UNKNOWN && size != ZSTD_CONTENTSIZE_ERROR && size > kMaxChunkRaw)
      return refused(fmt::format("its compressed rows decompress to {} bytes, more than {}", size, kMaxChunkRaw));
    return refused("its compressed rows are no whole zstd frame");
  }
  v1::SnapshotChunk rows;
  if (!rows.ParseFromString(*raw) || !rows.id().empty() || rows.index() != 0 || !rows.zstd_rows().empty())
    return refused("its compressed rows are not rows only");
  chunk.clear_zstd_rows();
  chunk.mutable_rows()->Swap(rows.mutable_rows());
  return Ok{};
}

Result<std::optional<v1::SnapshotManifest>> last_manifest(JetStream& js, const SnapshotSpec& spec, bool* unreadable) {
  auto stream = js.stream_state(spec.stream.name);
  if (!stream && stream.error().code == StatusCode::kNotFound) return std::optional<v1::SnapshotManifest>{};
  if (!stream) return stream.error();
  auto last = js.last_on_subject(spec.stream.name, spec.manifests);
  if (!last) return last.error();
  if (!last->has_value()) return std::optional<v1::SnapshotManifest>{};
  v1::SnapshotManifest manifest;
  if (!manifest.ParseFromString((*last)->data) || manifest.id().empty()) {
    if (unreadable) {
      *unreadable = true;
      return std::optional<v1::SnapshotManifest>{};
    }
    return make_error(StatusCode::kInternal, fmt::format("the snapshot manifest at entry {} of {} does not parse",
                                                         (*last)->seq, spec.stream.name));
  }
  return std::optional<v1::SnapshotManifest>(std::move(manifest));
}

Result<std::uint64_t> load_snapshot(JetStream& js, store::Store& store, const SnapshotSpec& spec,
                                    const v1::SnapshotManifest& manifest, std::size_t read_bytes) {
  {
    store::Batch mark(store);
    mark.put_meta(kRestoringKey, restoring_id(manifest));
    if (auto written = store.write(mark); !written) return written.error();
  }
  std::uint64_t rows = 0;
  std::uint32_t index = 0;
  const std::uint64_t first = manifest.first_chunk_seq();
  const std::string subject = spec.chunks_of(manifest.id());
  for (int empty_reads = 0; index < manifest.chunks();) {
    auto read = js.read(spec.stream.name, subject, first + index, manifest.chunks() - index, read_bytes);
    if (!read) return read.error();
    if (read->empty()) {
      // A read can come back short while the cluster elects a leader (bounded: 50 tries, 10 s).
      if (++empty_reads > 50)
        return make_error(StatusCode::kUnavailable,
                          fmt::format("snapshot {}: chunk {} (entry {} of {}) cannot be read; a newer snapshot "
                                      "may have replaced it: empty storage.data_dir and start again",
                                      manifest.id(), index, first + index, spec.stream.name));
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    empty_reads = 0;
    for (const Entry& e : *read) {
      v1::SnapshotChunk chunk;
      if (auto unpacked = unpack_chunk(e.data, chunk); !unpacked)
        return make_error(StatusCode::kInternal,
                          fmt::format("snapshot {}: entry {} of {} cannot be read: {}", manifest.id(), e.seq,
                                      spec.stream.name, unpacked.error().message));
      if (e.seq != first + index || chunk.id() != manifest.id() || chunk.index() != index)
        return make_error(StatusCode::kInternal, fmt::format("snapshot {}: entry {} of {} is not its chunk {}",
                                                             manifest.id(), e.seq, spec.stream.name, index));
      store::Batch batch(store);
      for (const auto& row : chunk.rows()) {
        const bool refused = row.family() >= store::kCfCount || row.op() != v1::LogRow::PUT ||
                             (row.family() == static_cast<std::uint32_t>(store::Cf::kMeta) && own_row(row.key()));
        if (refused)
          return make_error(StatusCode::kInternal,
                            fmt::format("snapshot {}: chunk {} holds a row no snapshot writes (family {}, operation "
                                        "{})",
                                        manifest.id(), index, row.family(), static_cast<int>(row.op())));
        batch.add_row(store::Row{static_cast<store::Cf>(row.family()), store::RowOp::kPut, row.key(), row.value()});
      }
      if (auto written = store.write(batch); !written) return written.error();
      rows += static_cast<std::uint64_t>(chunk.rows_size());
      ++index;
    }
  }
  if (rows != manifest.rows())
    return make_error(StatusCode::kInternal, fmt::format("snapshot {}: {} rows read, the manifest names {}",
                                                         manifest.id(), rows, manifest.rows()));
  return rows;
}

}  // namespace im::cluster
