#pragma once
// Cluster mode's trimming policy (docs/cluster.md, "Trimming"): looks at the
// partition streams every cluster.trim_check_s and takes a snapshot
// (snapshot.h) once one of them holds cluster.trim_at_percent of its byte
// limit, or once the streams have grown since the last trim by as much as
// the last snapshot's rows (and at least `log_floor_bytes`): a node rebuilt then
// reads at most about as much log as snapshot. After it the streams are
// purged below the cut.
//
// A thread of its own (none when at_percent is 0: never); it stops, cutting a
// snapshot under way short, when destroyed. After a failed snapshot it skips
// 1, 3, 7 ... (at most 31) checks before trying again, since each attempt
// reads the whole store. Thread safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "cluster/jetstream.h"
#include "cluster/snapshot.h"
#include "im/result.h"
#include "store/store.h"

namespace im::cluster {

class Trimmer {
 public:
  static constexpr std::uint64_t kLogFloorBytes = 64ull << 20;

  Trimmer(JetStream& js, store::Store& store, std::vector<const PartitionLog*> logs, SnapshotOptions options,
          unsigned at_percent, std::chrono::seconds every, std::uint64_t log_floor_bytes = kLogFloorBytes);
  ~Trimmer();
  Trimmer(const Trimmer&) = delete;
  Trimmer& operator=(const Trimmer&) = delete;
  // One check now, and a snapshot if it is due (tests and the thread):
  // whether one was stored. Due when a snapshot can shrink a stream
  // (entries past the last cut; a stopped partition's cannot move) and
  // either a stream that can holds at_percent of its limit, or the streams
  // grew since the last trim by at least log_floor_bytes and the last
  // snapshot's bytes (its manifest's at the first such check; none, or one
  // that cannot be read: 0).
  Result<bool> run_once();

 private:
  // The streams' bytes together; `each` sees every stream's state.
  Result<std::uint64_t> streams_bytes(const std::function<void(const PartitionLog&, const StreamState&)>& each);

  JetStream& js_;
  store::Store& store_;
  const std::vector<const PartitionLog*> logs_;
  const SnapshotOptions options_;
  const unsigned at_percent_;
  const std::uint64_t log_floor_bytes_;
  std::mutex run_mutex_;                 // one check at a time
  std::vector<std::uint64_t> last_cut_;  // by partition, the last snapshot's (run_mutex_)
  // The last snapshot's rows' bytes (run_mutex_): read from its manifest at
  // the first check, then this node's.
  std::optional<std::uint64_t> last_snapshot_bytes_;
  std::uint64_t kept_bytes_ = 0;  // the streams' bytes after this node's last trim (run_mutex_)
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace im::cluster
