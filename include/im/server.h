#pragma once
// imserver as a library: build a Server from a validated Config, start it,
// read the addresses it really bound (port 0 picks a free one), stop it.
//
//   im::Server server(config);
//   server.start();                  // throws std::runtime_error when it cannot
//   for (auto& l : server.listeners()) ...
//   server.stop();                   // graceful: KICKOUT SERVER_SHUTDOWN, flush
//
// Not thread safe: call start() and stop() from one thread.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "im/config.h"

namespace im {

struct BoundListener {
  std::string kind;  // "tcp", "ws" or "admin"
  std::string host;
  std::uint16_t port = 0;
  std::string address() const;  // "127.0.0.1:9700", "[::1]:9700"
};

class Server {
 public:
  explicit Server(Config config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  // Stops accepting, kicks every session with SERVER_SHUTDOWN, waits up to
  // shutdown.timeout_s for their queues to drain, then stops every thread.
  void stop();
  std::vector<BoundListener> listeners() const;
  // Applies what can change while running from a new, validated config:
  // the JWT secret and the per-connection rate limit (log levels are the
  // embedder's). Thread safe.
  void reload(const Config& fresh);
  const Config& config() const;
  // Connections open right now (thread safe).
  std::uint64_t connection_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace im
