#pragma once
// Trimming the partition streams (docs/cluster.md, "Trimming"): a snapshot
// is one node-wide cut of the store, taken with a RocksDB snapshot. Every
// batch writes its rows together with applied:<n>, so the cut holds
// exactly the entries up to applied:<n> of every stream m. It is stored
// on one more stream, `<prefix>_SNAP`: chunks of rows, then a manifest
// naming the cut; only then is each partition stream purged below its
// position in the cut. A node with an empty data dir restores the last
// manifest's cut and then catches up from it as a restarted node does
// (PartitionLog::open_all).
//
// A cut, not one snapshot per partition: a C2C copy record is put by one
// partition and deleted by another, and a cut is closed under "applied
// before", so no purge drops an entry whose effect the snapshot lacks.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cluster/jetstream.h"
#include "im/result.h"
#include "store/store.h"

struct ZSTD_CCtx_s;

namespace im::cluster {

namespace v1 {
class SnapshotChunk;
class SnapshotManifest;
}

class PartitionLog;

// Where a deployment's snapshots live: stream "<prefix>_SNAP" with the
// subjects "<prefix lower>.s.>", each snapshot's chunks on ".s.c.<id>" (so
// those of an attempt that failed can be purged alone), manifests on
// ".s.m".
struct SnapshotSpec {
  StreamSpec stream;
  std::string chunks;  // "<prefix lower>.s.c": a snapshot's are on chunks + "." + id
  std::string manifests;
  std::string chunks_of(const std::string& id) const { return chunks + "." + id; }
};
SnapshotSpec snapshot_spec(const std::string& prefix);

struct SnapshotOptions {
  SnapshotSpec spec;
  std::string node;
  std::size_t chunk_bytes = 4u << 20;  // rows per chunk, by their bytes
  std::chrono::milliseconds publish_wait{2000};
  std::chrono::milliseconds retry_for{30000};  // an unanswered chunk is retried this long, then the snapshot fails
};

struct SnapshotTaken {
  std::string id;
  std::uint64_t rows = 0;
  std::uint64_t bytes = 0;         // the rows' keys and values
  std::uint64_t stored_bytes = 0;  // the chunks as stored, compressed
  std::uint32_t chunks = 0;
  std::uint64_t purged = 0;            // partition stream entries removed
  std::vector<std::uint64_t> applied;  // the cut, per partition
};

// Takes a snapshot of `store` now and stores it with its manifest, then
// purges each partition stream below the cut (never its last entry, which
// the next snapshot's "still this writer's" check reads) and the SNAP
// stream below the new snapshot. Refused, before anything is written, when
// a stream's last entry is no longer this writer's (another node fenced
// it). It purges the chunks of earlier attempts that stored no manifest
// first, and a failure its own when their fate is known. `logs` are the
// node's open partitions; any thread, one call at a time; `stop` cuts it
// short.
Result<SnapshotTaken> take_snapshot(JetStream& js, store::Store& store, const std::vector<const PartitionLog*>& logs,
                                    const SnapshotOptions& options, const std::atomic<bool>* stop = nullptr);

// Chunks are stored compressed (SnapshotChunk.zstd_rows) when that
// shrinks them. One packer per snapshot: a zstd context is about 1 MiB.
class ChunkPacker {
 public:
  ChunkPacker();
  // `rows`, a chunk holding only rows, as stored with `id` and `index`: its
  // rows compressed when that shrinks them (and they serialize to 64 MiB at
  // most), else as they are.
  std::string pack(const v1::SnapshotChunk& rows, const std::string& id, std::uint32_t index);

 private:
  struct FreeCctx {
    void operator()(ZSTD_CCtx_s* c) const;
  };
  std::unique_ptr<ZSTD_CCtx_s, FreeCctx> ctx_;
};
// A stored chunk, compressed or not, into `chunk` with its rows; an error
// saying why when `data` is no chunk, or its compressed rows do not
// decompress (to at most 64 MiB) to rows only.
Result<Ok> unpack_chunk(const std::string& data, v1::SnapshotChunk& chunk);

// The last manifest stored (none: no snapshot was ever stored). One that
// does not parse is an error, or none with *unreadable set when given.
Result<std::optional<v1::SnapshotManifest>> last_manifest(JetStream& js, const SnapshotSpec& spec,
                                                          bool* unreadable = nullptr);
// Writes the rows of `manifest`'s chunks to `store`, whose meta holds
// "restoring" = restoring_id(manifest) meanwhile (a restore cut short is
// resumed from the same snapshot, or refused); the rows written. The
// caller writes the cut's applied:<n> and removes "restoring".
Result<std::uint64_t> load_snapshot(JetStream& js, store::Store& store, const SnapshotSpec& spec,
                                    const v1::SnapshotManifest& manifest, std::size_t read_bytes);
inline constexpr const char* kRestoringKey = "restoring";
// A snapshot's id as the "restoring" row holds it (never 0).
std::uint64_t restoring_id(const v1::SnapshotManifest& manifest);

}  // namespace im::cluster
