#pragma once
// The admin HTTP API (PROTOCOL 6) on cpp-httplib: /healthz, /metrics, and
// the /v1 calls of the business backend, each behind
// `Authorization: Bearer <admin.api_key>`. One table of routes (method,
// path, whether the key is needed, handler); a handler turns JSON into the
// core facade's request types (core::Service) and its answer back into JSON.
// Runs on its own small thread pool; every wait for the shards is bounded.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "im/config.h"

namespace httplib {
class Server;
}

namespace im::core {
class Service;
}

namespace im::http {

class AdminServer {
 public:
  // `draining` makes /healthz answer 503.
  AdminServer(const Config& config, core::Service& service, const std::atomic<bool>& draining);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds admin.listen (throws std::runtime_error) and serves.
  void start();
  void stop();
  const std::string& host() const { return host_; }
  std::uint16_t port() const { return port_; }

 private:
  // Registers the error and exception handlers and every route of the table.
  void routes();

  const Config& config_;
  core::Service& service_;
  const std::atomic<bool>& draining_;
  std::unique_ptr<httplib::Server> server_;
  std::string host_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  // Requests that hold an admin thread long (exports, backups) under way:
  // bounded, so that health checks and metrics always find a thread.
  std::shared_ptr<std::atomic<int>> exports_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> backups_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace im::http
