#pragma once
// Starts the real imserver binary for an integration test: a config written
// to a fresh temporary directory (which also holds the data dir and the
// server's log), every listener on 127.0.0.1 port 0 (TCP and WebSocket on
// by default, admin off), the bound ports read
// from the "imserver: listening ..." lines. The process is stopped by PID in
// the destructor (SIGKILL if it still runs), and only that process.
//
// The integration suite runs twice (tests/CMakeLists.txt): as it is, and in
// cluster mode. In the second run IM_TEST_NATS_DIR names a NATS cluster
// started by scripts/nats-cluster.sh, and every server whose overrides do not
// choose a cluster.mode runs in jetstream mode on streams of its own (named
// after its data dir, removed by the destructor). Tests of what only the
// embedded mode has carry the tag [embedded] and are left out of that run.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "im/client.h"

namespace im::test {

inline constexpr const char* kTestSecret = "test-secret-0123456789abcdef-0123456789";

// Whether this is the sanitized build (ASan + UBSan). There, RSS says
// nothing (shadow memory, the quarantine of freed memory), so the tests that
// check memory through it run a tenth of their load: the same paths under
// the sanitizers, in a tenth of the time.
#ifdef IM_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// "section.key" -> a TOML value as written in the file ("500", "\"text\"").
using Overrides = std::map<std::string, std::string>;

// `base` with `extra`'s keys set over it.
inline Overrides merged(Overrides base, const Overrides& extra) {
  for (const auto& [k, v] : extra) base[k] = v;
  return base;
}

class ServerProcess {
 public:
  explicit ServerProcess(Overrides overrides = {}, std::string data_dir = "");
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts again on the same data dir (after kill9() or terminate()).
  void restart();
  // The same, with `extra` set over the overrides from now on.
  void restart(const Overrides& extra);
  void kill9();
  // SIGTERM and wait; returns the exit status (-1 when it did not exit in time).
  int terminate(std::chrono::seconds within = std::chrono::seconds(20));
  bool running();

  pid_t pid() const { return pid_; }
  std::uint16_t tcp_port() const { return tcp_port_; }
  std::uint16_t ws_port() const { return ws_port_; }  // 0 when server.ws_listen is ""
  std::uint16_t admin_port() const { return admin_port_; }
  const std::string& dir() const { return dir_; }
  std::string data_dir() const { return data_dir_; }
  // Runs in jetstream mode on streams of its own (the suite's cluster run).
  bool on_suite_streams() const { return !cluster_.empty(); }
  std::string log() const;  // what the server wrote to standard error
  long rss_kb() const;      // VmRSS from /proc

  // A connected client (not logged in).
  std::unique_ptr<SyncClient> connect() const;
  // A connected client logged in as `uid` with a valid token; the LoginResp
  // frame is put in `resp` when given. Fails the test when anything fails.
  std::unique_ptr<SyncClient> login(const std::string& uid, int device_type = 1, const std::string& device_id = "",
                                    Frame* resp = nullptr) const;

 private:
  void spawn();
  void reap();
  void delete_streams();

  Overrides overrides_;
  std::string dir_;
  std::string data_dir_;
  bool own_data_dir_;
  pid_t pid_ = -1;
  Overrides cluster_;  // the jetstream settings of the suite's cluster run (empty otherwise)
  std::uint16_t tcp_port_ = 0;
  std::uint16_t ws_port_ = 0;
  std::uint16_t admin_port_ = 0;
};

// A TOML array of strings, for an override: ["a", "b"].
std::string toml_list(const std::vector<std::string>& items);

// The NATS URLs of the suite's cluster run (none in the embedded run).
std::vector<std::string> suite_nats_urls();

// What a run of the imserver binary with some arguments gave.
struct Run {
  int exit_code;
  std::string output;  // stdout and stderr
};
// Runs imserver with `args` (a shell fragment) and collects its output.
Run run_imserver(const std::string& args);

// A LoginReq frame body for `uid`.
std::string login_body(const std::string& uid, const std::string& token, int device_type = 1,
                       const std::string& device_id = "");
std::string token_for(const std::string& uid, std::int64_t exp_s = 0);

// A loopback TCP port free at the time of the call, below the kernel's
// ephemeral range (for a server that must come back on the same port after
// a restart).
std::uint16_t free_loopback_port();

// A path in the temporary directory unique to this process and call.
std::string unique_temp_path(const std::string& stem);

// A plain blocking TCP socket connected to 127.0.0.1:port (-1 on failure);
// `rcvbuf` > 0 sets SO_RCVBUF before connecting.
int connect_raw(std::uint16_t port, int rcvbuf = 0);

struct ProcessThread {
  pid_t tid;
  std::string name;  // its comm, e.g. "im:shard0"
};
// The threads of process `pid` now (one that ends while they are listed is
// left out).
std::vector<ProcessThread> threads_of(pid_t pid);

}  // namespace im::test

namespace im::test {
// The frame of a call that must have been answered.
inline Frame must(std::optional<Frame> f) {
  REQUIRE(f);
  return std::move(*f);
}
}  // namespace im::test
