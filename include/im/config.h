#pragma once
// The whole configuration as one typed tree (docs/operations.md lists every
// key; config/im.toml documents each where it is set). Parsed once, then
// handed to each component by const&. Defaults are the in-class initializers.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace im {

// The smallest server.max_frame_bytes: the largest group event (a 4096-byte
// announcement, a 256-byte name, 64-byte ids) must fit one frame with its
// answer's fields (tests/core/bounds_unit_test.cpp checks the sum).
inline constexpr std::uint32_t kMinFrameBytes = 6144;

// What 0 means for server.io_threads and for sharding.shards: half the
// cores each, at least one, so the loops and the shards together have one
// thread per core. Both kinds are busy under load; with one of each per
// core, 2 cores ran 4 busy threads plus RocksDB's, and W2 was 35% slower
// with tails ten times longer (bench/ANALYSIS.md, "Threads per core").
unsigned auto_thread_count();
// What `server.io_threads` or `sharding.shards` resolves to: the value
// set, or auto_thread_count() for 0.
inline unsigned thread_count(std::uint32_t configured) {
  return configured != 0 ? configured : auto_thread_count();
}

struct ServerConfig {
  std::string listen = "0.0.0.0:9700";     // TCP protocol listener
  std::string ws_listen = "0.0.0.0:9701";  // WebSocket (path /ws); "" disables
  std::uint32_t io_threads = 0;            // 0 = auto_thread_count()
  std::uint64_t max_connections = 1000000;
  std::uint32_t max_frame_bytes = 65536;
  std::uint64_t max_pending_bytes = 1048576;  // unsent bytes per connection
  std::uint32_t auth_timeout_ms = 10000;
  std::vector<std::string> ws_allowed_origins;  // empty: any Origin
  bool io_uring = true;  // the loops' reads and writes batched through io_uring, where the kernel allows it
  bool batch_scheduling = true;  // I/O loops and core shards under SCHED_BATCH (common/thread_policy.h)
  std::string web_root;  // the web client's files, GET / of the WebSocket listener; "" = a built-in page
};

struct TlsConfig {
  std::string cert_file;
  std::string key_file;
  bool enabled() const { return !cert_file.empty(); }
};

struct HeartbeatConfig {
  std::uint32_t interval_s = 60;  // told to clients in LoginResp
  std::uint32_t timeout_s = 180;  // silent this long: closed
};

struct ShardingConfig {
  std::uint32_t shards = 0;  // 0 = auto_thread_count()
  // Users, conversations and groups whose state each shard keeps in memory
  // (each kind); the least recently used idle ones are dropped beyond it.
  std::uint32_t cache_entries = 100000;
};

struct StorageConfig {
  std::string data_dir = "./data";
  bool fsync = false;
  std::uint32_t dedupe_window_s = 86400;
  // SENDs of the window answered from memory (all shards together, about
  // 65 bytes each); a SEND beyond it writes a dedupe row, as every SEND
  // does with 0.
  std::uint32_t dedupe_memory_entries = 2000000;
  std::uint32_t inbox_retention_days = 30;
  std::uint32_t history_retention_days = 365;
  std::uint32_t max_wal_mb = 256;      // RocksDB max_total_wal_size
  std::uint32_t write_buffer_mb = 256;  // RocksDB db_write_buffer_size (all memtables)
  std::string backup_dir;               // POST /v1/backup writes checkpoints here; "" disables it
};

struct AuthConfig {
  std::string mode = "jwt";  // "jwt" or "insecure"
  std::string jwt_secret;
  std::string jwt_secret_file;
  bool insecure() const { return mode == "insecure"; }
};

struct AdminConfig {
  std::string listen = "127.0.0.1:9702";
  std::string api_key;
};

struct PushConfig {
  std::uint32_t offline_delay_ms = 5000;
};

struct WebhookConfig {
  std::string url;     // "" disables (REPORT is then DISABLED)
  std::string secret;  // at least 32 bytes when url is set
  std::uint32_t timeout_ms = 3000;
  std::uint64_t max_queued = 1000000;  // events waiting; at it REPORT is UNAVAILABLE
  std::uint32_t max_retry_s = 86400;   // an event failing this long is dropped
  std::uint32_t concurrency = 8;       // POSTs in flight at once (lanes; a user's events keep one lane)
};

struct LimitsConfig {
  std::uint32_t max_message_bytes = 32768;
  std::uint32_t max_group_members = 100000;  // large groups (PROTOCOL 9) included
  std::uint32_t messages_per_second = 100;  // per connection, token bucket
  std::uint32_t burst = 200;
  std::uint32_t accept_per_second = 20000;
  std::uint32_t connections_per_ip = 0;  // 0 = no limit
  std::uint32_t fanout_rows_per_second = 20000;  // inbox rows a user's requests may cause; burst twice that
  std::uint32_t devices_per_user = 32;           // device cursors kept per user
  std::uint32_t recall_window_s = 120;           // PROTOCOL 8.3
  std::uint32_t edit_window_s = 900;
  std::uint32_t max_edits = 20;
  std::uint32_t max_pinned = 20;                 // PROTOCOL 8.1
  std::uint32_t receipts_max_members = 500;      // PROTOCOL 8.2
  std::uint32_t typing_max_members = 100;        // PROTOCOL 8.4
  std::uint32_t max_presence_watch = 1000;       // PROTOCOL 8.5
  std::uint32_t write_fanout_max_members = 2000;  // PROTOCOL 9: above it, read fan-out
};

struct SearchConfig {  // PROTOCOL 8.6
  bool enabled = true;
  std::vector<std::uint32_t> text_content_types;  // bodies indexed as they are (valid UTF-8)
  std::uint32_t commit_interval_ms = 1000;        // the index commits this often
};

// Cluster mode (docs/cluster.md): every write goes through a replicated NATS
// JetStream log first. "embedded" (the default) is the single box.
struct ClusterConfig {
  std::string mode = "embedded";                // or "jetstream"
  std::vector<std::string> nats_urls;           // "nats://host:4222", ... (jetstream)
  std::string node_name;                        // names this node's log entries; "" = the host name
  std::string stream_prefix = "IM";             // streams <prefix>_P0.., subjects <prefix, lower case>.p.0..
  std::uint32_t partitions = 64;                // streams IM_P0..; fixed once data exists
  std::uint32_t replicas = 3;                   // each stream's copies on the NATS servers
  std::uint64_t stream_max_bytes = 1ull << 30;  // per stream (reserved on each NATS server); full: writes refused
  std::uint32_t publish_timeout_ms = 2000;      // one publish attempt
  std::uint32_t unanswered_stop_ms = 30000;     // a partition stops after this long unanswered
  // Trimming (docs/cluster.md): a snapshot of the store once a stream holds
  // this share of stream_max_bytes, then the streams are purged below it (0: never).
  std::uint32_t trim_at_percent = 50;
  std::uint32_t trim_check_s = 60;                 // how often the streams' fill is looked at
  std::uint64_t snapshot_max_bytes = 16ull << 30;  // the SNAP stream's limit: the last snapshot and the next
};

struct LogConfig {
  std::string level = "info";
  std::string format = "text";  // or "json"
};

struct ShutdownConfig {
  std::uint32_t timeout_s = 10;
};

struct Config {
  ServerConfig server;
  TlsConfig tls;
  HeartbeatConfig heartbeat;
  ShardingConfig sharding;
  StorageConfig storage;
  AuthConfig auth;
  AdminConfig admin;
  PushConfig push;
  WebhookConfig webhook;
  LimitsConfig limits;
  SearchConfig search;
  ClusterConfig cluster;
  LogConfig log;
  ShutdownConfig shutdown;
};

// The core's shards: one per partition in cluster mode (docs/cluster.md),
// else sharding.shards (0: auto_thread_count()).
inline unsigned shard_count(const Config& c) {
  return c.cluster.mode == "jetstream" ? c.cluster.partitions : thread_count(c.sharding.shards);
}

// The threads the core's shards run on: sharding.shards (0: auto_thread_count()),
// at most one per shard. In cluster mode the partitions share them.
inline unsigned shard_thread_count(const Config& c) {
  return std::min(shard_count(c), thread_count(c.sharding.shards));
}

}  // namespace im
