#pragma once
// Starts and stops the real imserver binary for imstress: a config written
// to its folder from "section.key" -> TOML value settings, standard error to
// server.log there, the bound ports read from the "imserver: listening"
// lines (so every listener may use port 0). The process is stopped by its
// PID only, and only the one this object started; it also dies with
// imstress (PR_SET_PDEATHSIG). Not thread safe: the thread that starts it
// owns it (the death signal follows that thread).

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace im::stress {

using Settings = std::map<std::string, std::string>;

class ServerRunner {
 public:
  // `dir` exists; the config and the log go there. `settings` must set
  // storage.data_dir; listeners at port 0 are fine.
  ServerRunner(std::string binary, std::string dir, Settings settings);
  ~ServerRunner();  // SIGKILL when still running
  ServerRunner(const ServerRunner&) = delete;
  ServerRunner& operator=(const ServerRunner&) = delete;

  // Starts the server and waits (at most `within`) until every listener of
  // the config has told its port. False with the reason in `why` when not
  // (the process is then killed).
  bool start(std::string& why, std::chrono::seconds within = std::chrono::seconds(30));
  // Starts the server and SIGKILLs it `after` later whatever it was doing
  // (opening RocksDB, replaying fan-outs, or already serving).
  void start_then_kill(std::chrono::milliseconds after);
  // SIGKILL, then reaps it.
  void kill9();
  // SIGTERM and waits; the exit status (128 + signal when killed by one),
  // -1 when it did not exit in time (then SIGKILL).
  int terminate(std::chrono::seconds within);
  // False when it is not running (it exited, or was never started).
  bool running();

  pid_t pid() const { return pid_; }
  std::uint16_t tcp_port() const { return tcp_port_; }
  std::uint16_t admin_port() const { return admin_port_; }
  const std::string& dir() const { return dir_; }
  std::string data_dir() const;
  // The last `bytes` of server.log.
  std::string log_tail(std::size_t bytes = 4000) const;

 private:
  // Writes the config and starts the process; the read end of its standard
  // output in `out`, or -1 (and `why`) when it could not start.
  bool spawn(int& out, std::string& why);
  void reap();

  std::string binary_;
  std::string dir_;
  Settings settings_;
  pid_t pid_ = -1;
  std::uint16_t tcp_port_ = 0;
  std::uint16_t admin_port_ = 0;
};

// A fresh folder under the temporary directory: /tmp/<stem>-XXXXXX.
std::string make_temp_dir(const std::string& stem);

// SIGINT and SIGTERM set a flag instead of ending imstress, so that its
// loops end early and stop the servers they started.
void install_interrupt_handlers();
bool interrupted();

// Raises this process's soft open-file limit to the hard one (the servers it
// starts inherit it); the new soft limit.
long raise_file_limit();

}  // namespace im::stress
