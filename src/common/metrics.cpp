#include "common/metrics.h"

#include <fmt/format.h>

#include "im/protocol.h"

namespace im::metrics {
namespace {

void header(std::string& out, const std::string& name, const char* type, const std::string& help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void scalar(std::string& out, const std::string& name, const char* type, const std::string& help, double value) {
  header(out, name, type, help);
  out += fmt::format("{} {}\n", name, value);
}

void per_cmd(std::string& out, const std::string& name, const std::string& help, const PerCmd& c) {
  header(out, name, "counter", help);
  for (unsigned cmd = 0; cmd < 256; ++cmd) {
    const std::uint64_t v = c.value(static_cast<std::uint16_t>(cmd));
    if (v == 0) continue;
    std::string_view label = cmd_name(static_cast<Cmd>(cmd));
    if (label == "UNKNOWN") {
      out += fmt::format("{}{{cmd=\"0x{:02x}\"}} {}\n", name, cmd, v);
    } else {
      out += fmt::format("{}{{cmd=\"{}\"}} {}\n", name, label, v);
    }
  }
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<std::uint64_t>(v * 1e6), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  header(out, name, "histogram", help);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
  }
  cumulative += buckets_[bounds_.size()].load(std::memory_order_relaxed);
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, cumulative);
  out += fmt::format("{}_sum {}\n", name, static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6);
  out += fmt::format("{}_count {}\n", name, cumulative);
}

std::string Registry::render() const {
  std::string out;
  scalar(out, "imserver_connections", "gauge", "Open client connections.", static_cast<double>(connections.value()));
  scalar(out, "imserver_sessions", "gauge", "Logged-in sessions.", static_cast<double>(sessions.value()));
  header(out, "imserver_logins_total", "counter", "LOGIN requests by result.");
  out += fmt::format("imserver_logins_total{{result=\"ok\"}} {}\n", logins_ok.value());
  out += fmt::format("imserver_logins_total{{result=\"unauthenticated\"}} {}\n", logins_unauthenticated.value());
  out += fmt::format("imserver_logins_total{{result=\"bad_request\"}} {}\n", logins_bad_request.value());
  per_cmd(out, "imserver_frames_in_total", "Frames received, by command.", frames_in);
  per_cmd(out, "imserver_frames_out_total", "Frames sent, by command.", frames_out);
  per_cmd(out, "imserver_bytes_in_total", "Bytes of frames received, by command.", bytes_in);
  per_cmd(out, "imserver_bytes_out_total", "Bytes of frames sent, by command.", bytes_out);
  scalar(out, "imserver_messages_stored_total", "counter", "Messages stored (history rows).",
         static_cast<double>(messages_stored.value()));
  scalar(out, "imserver_fanout_deliveries_total", "counter", "Inbox rows written (one per recipient and message).",
         static_cast<double>(inbox_rows.value()));
  scalar(out, "imserver_pushes_total", "counter", "PUSH frames queued to sessions.",
         static_cast<double>(pushes.value()));
  scalar(out, "imserver_reports_queued_total", "counter", "REPORT events queued for the webhook.",
         static_cast<double>(reports_queued.value()));
  scalar(out, "imserver_offline_pushes_queued_total", "counter", "offline_push events queued for the webhook.",
         static_cast<double>(offline_pushes_queued.value()));
  scalar(out, "imserver_device_cursors_evicted_total", "counter",
         "Device cursors forgotten for limits.devices_per_user.", static_cast<double>(cursors_evicted.value()));
  scalar(out, "imserver_fanout_rate_limited_total", "counter",
         "Requests refused by limits.fanout_rows_per_second.", static_cast<double>(fanout_rate_limited.value()));
  scalar(out, "imserver_cache_evictions_total", "counter",
         "Idle users, conversations and groups dropped from the shards' caches (sharding.cache_entries).",
         static_cast<double>(cache_evictions.value()));
  scalar(out, "imserver_frames_compressed_total", "counter",
         "Frames sent with a zstd-compressed body (sessions that asked at LOGIN).",
         static_cast<double>(frames_compressed.value()));
  scalar(out, "imserver_ring_reads_total", "counter",
         "Socket reads the I/O loops handed to io_uring, many per syscall (server.io_uring).",
         static_cast<double>(ring_reads.value()));
  scalar(out, "imserver_ring_writes_total", "counter",
         "Socket writes the I/O loops handed to io_uring, many per syscall (server.io_uring).",
         static_cast<double>(ring_writes.value()));
  scalar(out, "imserver_changed_messages", "gauge",
         "Recalled or edited messages added to the filter that makes their inbox copies answer changed (since start).",
         static_cast<double>(changed_messages.value()));
  scalar(out, "imserver_presence_watches", "gauge",
         "(session, watched uid) pairs of PRESENCE_WATCH held by the shards.",
         static_cast<double>(presence_watches.value()));
  scalar(out, "imserver_typing_entries", "gauge",
         "(user, conversation) entries of the TYPING throttle (each kept 6 to 12 s).",
         static_cast<double>(typing_entries.value()));
  scalar(out, "imserver_dedupe_entries", "gauge",
         "SENDs of the dedupe window held in memory (at most storage.dedupe_memory_entries).",
         static_cast<double>(dedupe_entries.value()));
  scalar(out, "imserver_dedupe_rows_total", "counter",
         "Dedupe rows written while the memory window is on (no room, a hash held, a rebuild beyond its room).",
         static_cast<double>(dedupe_rows.value()));
  scalar(out, "imserver_dedupe_rebuild_rows_total", "counter",
         "Inbox rows read to rebuild senders' dedupe windows (a sender's first SEND since it was last held).",
         static_cast<double>(dedupe_rebuild_rows.value()));
  scalar(out, "imserver_dedupe_rebuild_slices_total", "counter",
         "Shard turns those reads took: at most 4,096 rows each, the sender's SENDs waiting meanwhile.",
         static_cast<double>(dedupe_rebuild_slices.value()));
  scalar(out, "imserver_inbox_refs_total", "counter",
         "Inbox rows written as references to the message's history row instead of a copy.",
         static_cast<double>(inbox_refs.value()));
  scalar(out, "imserver_inbox_refs_expired_total", "counter",
         "Inbox references read whose history row was gone (history retention): skipped as expired.",
         static_cast<double>(inbox_refs_expired.value()));
  scalar(out, "imserver_search_indexed_total", "counter",
         "Messages added to or replaced in the search index (PROTOCOL 8.6).",
         static_cast<double>(search_indexed.value()));
  scalar(out, "imserver_search_commits_total", "counter", "Commits of the shards' search indexes.",
         static_cast<double>(search_commits.value()));
  scalar(out, "imserver_search_pending_conversations", "gauge",
         "Conversations with history rows written and not yet read by the search indexers.",
         static_cast<double>(search_pending.value()));
  scalar(out, "imserver_outbox_depth", "gauge", "Webhook events queued and not yet delivered.",
         static_cast<double>(outbox_depth.value()));
  scalar(out, "imserver_webhook_deliveries_total", "counter", "Webhook events delivered (2xx).",
         static_cast<double>(webhook_deliveries.value()));
  scalar(out, "imserver_webhook_failures_total", "counter", "Webhook attempts that failed (to be retried).",
         static_cast<double>(webhook_failures.value()));
  header(out, "imserver_webhook_dropped_total", "counter",
         "Webhook events dropped undelivered: refused (a 4xx other than 408 and 429) or expired "
         "(still failing after webhook.max_retry_s).");
  out += fmt::format("imserver_webhook_dropped_total{{reason=\"refused\"}} {}\n", webhook_dropped_refused.value());
  out += fmt::format("imserver_webhook_dropped_total{{reason=\"expired\"}} {}\n", webhook_dropped_expired.value());
  scalar(out, "imserver_offline_pushes_dropped_total", "counter",
         "offline_push events not queued: the webhook queue held webhook.max_queued events.",
         static_cast<double>(offline_pushes_dropped.value()));
  scalar(out, "imserver_store_write_errors_total", "counter", "Store batches that failed to write.",
         static_cast<double>(store_write_errors.value()));
  scalar(out, "imserver_store_read_errors_total", "counter",
         "Store reads that failed (answered INTERNAL, never taken for no data).",
         static_cast<double>(store_read_errors.value()));
  send_latency.render(out, "imserver_send_latency_seconds", "SEND from decoding to its answer being ready.");
  search_latency.render(out, "imserver_search_latency_seconds",
                        "SEARCH from its request queued for a search thread to its answer.");
  store_write_latency.render(out, "imserver_store_write_seconds", "Time to write one batch to the store.");
  cluster_publish_latency.render(out, "imserver_cluster_publish_seconds",
                                 "Cluster mode: from publishing a batch to its partition's stream to the answer, "
                                 "retries included.");
  scalar(out, "imserver_cluster_pending_entries", "gauge",
         "Cluster mode: batches published to their stream and not answered yet.",
         static_cast<double>(cluster_pending_entries.value()));
  scalar(out, "imserver_cluster_unavailable_partitions", "gauge",
         "Cluster mode: partitions that refuse writes (fenced by another node, or stopped after an unanswered "
         "publish).",
         static_cast<double>(cluster_unavailable_partitions.value()));
  scalar(out, "imserver_cluster_caught_up_entries", "gauge",
         "Cluster mode: log entries applied at start before the listeners opened, this start's own markers included.",
         static_cast<double>(cluster_caught_up_entries.value()));
  scalar(out, "imserver_cluster_snapshots_total", "counter",
         "Cluster mode: snapshots of the store stored on the SNAP stream, after which the partition streams were "
         "trimmed.",
         static_cast<double>(cluster_snapshots.value()));
  scalar(out, "imserver_cluster_snapshot_failures_total", "counter",
         "Cluster mode: snapshots begun and not stored (the streams stay untrimmed until one is).",
         static_cast<double>(cluster_snapshot_failures.value()));
  scalar(out, "imserver_cluster_snapshot_bytes", "gauge",
         "Cluster mode: the last stored snapshot's size, its rows' keys and values.",
         static_cast<double>(cluster_snapshot_bytes.value()));
  scalar(out, "imserver_cluster_snapshot_stored_bytes", "gauge",
         "Cluster mode: the last stored snapshot's chunks as stored on the SNAP stream, compressed.",
         static_cast<double>(cluster_snapshot_stored_bytes.value()));
  scalar(out, "imserver_cluster_snapshot_seconds", "gauge",
         "Cluster mode: how long the last stored snapshot took, its purges included.",
         static_cast<double>(cluster_snapshot_ms.value()) / 1000.0);
  scalar(out, "imserver_cluster_purged_entries_total", "counter",
         "Cluster mode: partition stream entries removed because a snapshot holds them.",
         static_cast<double>(cluster_purged_entries.value()));
  batch_rows.render(out, "imserver_store_batch_rows", "Rows per store batch (group commit).");
  return out;
}

Registry& get() {
  static Registry registry;
  return registry;
}

}  // namespace im::metrics
