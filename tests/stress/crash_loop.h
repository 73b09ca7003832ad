#pragma once
// The crash loop (docs/testing.md): one imserver on a fresh data dir; each
// cycle runs the mixed load (load.h) from several connections and the admin
// API, SIGKILLs the server at a random moment (and now and then again
// during the restart's recovery), starts it again on the same data dir and
// holds it to everything acknowledged (verifier.h). Loopback only; it stops
// only the server it started, by PID.

#include <cstdint>
#include <string>

namespace im::stress {

struct CrashLoopOptions {
  std::string imserver;
  int cycles = 30;
  std::uint64_t seed = 0;
  int actors = 6;
  int shards = 4;          // sharding.shards of the server
  int quiet = 500;         // users who only belong to the big group (0: no big group)
  int max_kill_ms = 2500;  // a cycle's load runs 200 ms .. this long before the kill
  bool keep_dir = false;
  bool verbose = false;
  // Proves the checks can fail: after each kill, cuts the newest RocksDB
  // WAL file (*.log of the data dir) in half, as a server that lost the
  // tail of its log would. A run with it must report violations.
  bool cut_wal = false;
};

// 0 when every cycle held; 1 with the violations printed.
int run_crash_loop(const CrashLoopOptions& options);

}  // namespace im::stress
