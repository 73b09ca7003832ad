#include "cluster/trimmer.h"

#include <algorithm>
#include <exception>

#include <spdlog/spdlog.h>

#include "cluster/partition_log.h"
#include "common/metrics.h"
#include "proto/cluster_log.pb.h"

namespace im::cluster {

Trimmer::Trimmer(JetStream& js, store::Store& store, std::vector<const PartitionLog*> logs, SnapshotOptions options,
                 unsigned at_percent, std::chrono::seconds every, std::uint64_t log_floor_bytes)
    : js_(js),
      store_(store),
      logs_(std::move(logs)),
      options_(std::move(options)),
      at_percent_(at_percent),
      log_floor_bytes_(log_floor_bytes) {
  if (at_percent_ == 0) return;  // never trims
  thread_ = std::thread([this, every] {
    std::unique_lock lock(mutex_);
    unsigned failures = 0, skip = 0;
    while (!wake_.wait_for(lock, every, [this] { return stopping_.load(); })) {
      if (skip > 0) {
        --skip;
        continue;
      }
      lock.unlock();
      std::string failed;
      try {
        if (auto r = run_once(); !r) failed = r.error().message;
      } catch (const std::exception& e) {
        failed = e.what();
      }
      if (failed.empty()) {
        failures = 0;
      } else if (!stopping_) {
        skip = (1u << std::min(failures++, 5u)) - 1;
        metrics::get().cluster_snapshot_failures.inc();
        spdlog::warn("cluster: snapshot failed (tried again in {} s): {}", every.count() * (skip + 1), failed);
      }
      lock.lock();
    }
  });
}

Trimmer::~Trimmer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<std::uint64_t> Trimmer::streams_bytes(const std::function<void(const PartitionLog&, const StreamState&)>& each) {
  std::uint64_t bytes = 0;
  for (const PartitionLog* log : logs_) {
    auto state = js_.stream_state(log->options().stream.name);
    if (!state) return state.error();
    each(*log, *state);
    bytes += state->bytes;
  }
  return bytes;
}

Result<bool> Trimmer::run_once() {
  std::lock_guard run(run_mutex_);
  if (at_percent_ == 0) return false;
  bool full = false, shrinks = false;
  auto log_bytes = streams_bytes([&](const PartitionLog& log, const StreamState& state) {
    const std::size_t m = log.options().partition;
    const bool can_shrink = m >= last_cut_.size() || state.last_seq > last_cut_[m] + 1;
    shrinks = shrinks || can_shrink;
    full = full || (can_shrink && state.max_bytes > 0 &&
                    state.bytes * 100 >= std::uint64_t{at_percent_} * static_cast<std::uint64_t>(state.max_bytes));
  });
  if (!log_bytes) return log_bytes.error();
  // Grown since the last trim: what a purge leaves (each stream's last
  // entry, a stopped partition's stream) is not counted again.
  const std::uint64_t grown = *log_bytes - std::min(*log_bytes, kept_bytes_);
  bool outgrown = false;
  if (!full && shrinks && grown >= log_floor_bytes_) {
    if (!last_snapshot_bytes_) {
      // A manifest that cannot be read counts as none: the next snapshot
      // replaces it (take_snapshot). A read error leaves this trigger to
      // the next check.
      bool unreadable = false;
      auto last = last_manifest(js_, options_.spec, &unreadable);
      if (last)
        last_snapshot_bytes_ = *last ? (*last)->bytes() : 0;
      else
        spdlog::warn("cluster: the last snapshot manifest could not be read (tried again at the next check): {}",
                     last.error().message);
    }
    outgrown = last_snapshot_bytes_ && grown >= *last_snapshot_bytes_;
  }
  if (!full && !outgrown) return false;
  const auto started = std::chrono::steady_clock::now();
  auto taken = take_snapshot(js_, store_, logs_, options_, &stopping_);
  if (!taken) return taken.error();
  last_cut_ = taken->applied;
  last_snapshot_bytes_ = taken->bytes;
  // What the purges left; unknown (a read error): all of it grew since.
  auto left = streams_bytes([](const PartitionLog&, const StreamState&) {});
  kept_bytes_ = left ? *left : 0;
  spdlog::info(
      "cluster: snapshot {} stored ({}): {} rows, {} bytes of rows in {} chunks, {} bytes stored, in {} ms; {} "
      "stream entries trimmed",
      taken->id, full ? "a stream past cluster.trim_at_percent" : "the streams grown by the last snapshot's rows",
      taken->rows, taken->bytes, taken->chunks, taken->stored_bytes,
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count(),
      taken->purged);
  return true;
}

}  // namespace im::cluster
