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

Result<bool> Trimmer::run_once() {
  std::lock_guard run(run_mutex_);
  if (at_percent_ == 0) return false;
  if (!last_snapshot_bytes_) {
    auto last = last_manifest(js_, options_.spec);
    if (!last) return last.error();
    last_snapshot_bytes_ = *last ? (*last)->bytes() : 0;
  }
  bool full = false, shrinks = false;
  std::uint64_t log_bytes = 0;
  for (const PartitionLog* log : logs_) {
    auto state = js_.stream_state(log->options().stream.name);
    if (!state) return state.error();
    const std::size_t m = log->options().partition;
    const bool can_shrink = m >= last_cut_.size() || state->last_seq > last_cut_[m] + 1;
    shrinks = shrinks || can_shrink;
    full = full || (can_shrink && state->max_bytes > 0 &&
                    state->bytes * 100 >= std::uint64_t{at_percent_} * static_cast<std::uint64_t>(state->max_bytes));
    log_bytes += state->bytes;
  }
  const bool outgrown = shrinks && log_bytes >= std::max(log_floor_bytes_, *last_snapshot_bytes_);
  if (!full && !outgrown) return false;
  const auto started = std::chrono::steady_clock::now();
  auto taken = take_snapshot(js_, store_, logs_, options_, &stopping_);
  if (!taken) return taken.error();
  last_cut_ = taken->applied;
  last_snapshot_bytes_ = taken->bytes;
  spdlog::info(
      "cluster: snapshot {} stored ({}): {} rows, {} bytes in {} chunks, in {} ms; {} stream entries trimmed",
      taken->id, full ? "a stream past cluster.trim_at_percent" : "the streams past the last snapshot's size",
      taken->rows, taken->bytes, taken->chunks,
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count(),
      taken->purged);
  return true;
}

}  // namespace im::cluster
