#pragma once
// Process-wide metrics, rendered in the Prometheus text format at /metrics.
// Every update is one relaxed atomic add: safe from any thread, cheap enough
// for the message path. (Servers embedded in one process share them.)

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace im::metrics {

class Counter {
 public:
  void inc(std::uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  void add(std::int64_t n) { v_.fetch_add(n, std::memory_order_relaxed); }
  void set(std::int64_t n) { v_.store(n, std::memory_order_relaxed); }
  std::int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

// Fixed buckets (upper bounds, ascending); the +Inf bucket is implicit.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // per bound, then +Inf
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_micros_{0};  // sum in millionths of the unit
};

// A counter per command id (0x00 to 0xFF: every cmd of the protocol).
class PerCmd {
 public:
  void inc(std::uint16_t cmd, std::uint64_t n = 1) { v_[cmd & 0xFF].fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value(std::uint16_t cmd) const { return v_[cmd & 0xFF].load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<std::uint64_t>, 256> v_{};
};

struct Registry {
  Gauge connections;
  Gauge sessions;
  Counter logins_ok;
  Counter logins_unauthenticated;
  Counter logins_bad_request;
  PerCmd frames_in, frames_out, bytes_in, bytes_out;
  Counter messages_stored;  // history rows
  Counter inbox_rows;       // fan-out deliveries: inbox rows written
  Counter pushes;           // PUSH frames sent to sessions
  Counter reports_queued;
  Counter offline_pushes_queued;
  Gauge outbox_depth;
  Counter webhook_deliveries;
  Counter webhook_failures;
  Counter webhook_dropped_refused;  // a 4xx other than 408 and 429
  Counter webhook_dropped_expired;  // still failing after webhook.max_retry_s
  Counter offline_pushes_dropped;   // not queued: webhook.max_queued reached
  Counter store_write_errors;
  Counter store_read_errors;
  Counter cursors_evicted;       // device cursors forgotten (limits.devices_per_user)
  Counter fanout_rate_limited;   // requests refused by limits.fanout_rows_per_second
  Counter cache_evictions;       // users, conversations and groups dropped from the shards' caches
  Counter frames_compressed;     // frames sent zstd-compressed (PROTOCOL 1)
  Counter ring_reads;            // socket reads handed to the I/O loops' io_uring (server.io_uring)
  Counter ring_writes;           // socket writes handed to the I/O loops' io_uring (server.io_uring)
  Gauge changed_messages;        // msg_ids added to ChangedMessages' filter since start
  Gauge presence_watches;        // (session, watched uid) pairs held by the shards (PRESENCE_WATCH)
  Gauge typing_entries;         // (user, conversation) entries of the TYPING throttle
  Gauge dedupe_entries;         // SENDs of the dedupe window held in memory (RecentSends)
  // Cluster mode (docs/cluster.md).
  Gauge cluster_pending_entries;         // published to a partition's stream, not answered yet
  Gauge cluster_unavailable_partitions;  // fenced or stopped: their writes are refused
  Gauge cluster_caught_up_entries;       // log entries applied at start, before the listeners opened
  Counter cluster_snapshots;             // snapshots stored (docs/cluster.md, "Trimming")
  Counter cluster_snapshot_failures;     // snapshots begun and not stored
  Gauge cluster_snapshot_bytes;          // the last stored snapshot's rows, in bytes
  Gauge cluster_snapshot_stored_bytes;   // the same snapshot's chunks as stored (compressed)
  Gauge cluster_snapshot_ms;             // how long the last stored snapshot took, purges included
  Counter cluster_purged_entries;        // partition stream entries removed below a snapshot
  Counter dedupe_rows;          // SENDs given a dedupe row instead (memory window full, or a hash taken)
  Counter dedupe_rebuild_rows;  // inbox rows read to rebuild senders' windows after a start
  Counter dedupe_rebuild_slices;  // turns those reads took (at most 4,096 rows each)
  Counter inbox_refs;           // inbox rows written as references to a history row
  Counter inbox_refs_expired;   // inbox references read whose history row retention took
  Counter search_indexed;       // messages added to or replaced in the search index (PROTOCOL 8.6)
  Counter search_commits;       // commits of the shards' search indexes
  Gauge search_pending;         // conversations with history rows the search indexers have not read yet
  Histogram send_latency{{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
  Histogram store_write_latency{{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5}};
  Histogram batch_rows{{1, 4, 16, 64, 256, 1024, 2048, 4096}};
  Histogram cluster_publish_latency{{0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2, 10}};
  Histogram search_latency{{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};

  // The whole exposition.
  std::string render() const;
};

Registry& get();

}  // namespace im::metrics
