#include "im/server.h"

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <asio/post.hpp>

#include "config/config_loader.h"
#include "core/service.h"
#include "http/admin_server.h"
#include "http/webhook_worker.h"
#include "net/admission_control.h"
#include "net/connection.h"
#include "net/io_loop.h"
#include "net/listener.h"

namespace im {

std::string BoundListener::address() const {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

struct Server::Impl {
  explicit Impl(Config c)
      : config(std::move(c)),
        limits{config.server.max_frame_bytes, config.server.max_pending_bytes, config.server.auth_timeout_ms,
               config.heartbeat.timeout_s * 1000u},
        admission(config.server.max_connections, config.limits.accept_per_second, config.limits.connections_per_ip),
        service(config) {}

  Config config;
  net::NetLimits limits;
  net::AdmissionControl admission;
  core::Service service;
  std::vector<std::unique_ptr<net::IoLoop>> loops;
  std::vector<std::unique_ptr<net::Listener>> listeners;
  std::unique_ptr<http::AdminServer> admin;
  std::unique_ptr<http::WebhookWorker> webhook;
  std::atomic<bool> draining{false};
  std::vector<BoundListener> bound;
  bool running = false;
};

Server::Server(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}

Server::~Server() {
  stop();
}

const Config& Server::config() const {
  return impl_->config;
}

std::uint64_t Server::connection_count() const {
  return impl_->admission.open();
}

std::vector<BoundListener> Server::listeners() const {
  return impl_->bound;
}

void Server::reload(const Config& fresh) {
  impl_->service.reload(fresh);
}

void Server::start() {
  Impl& s = *impl_;
  if (s.running) return;
  if (s.config.tls.enabled()) throw std::runtime_error("tls: TLS listeners are not supported by this build yet");
  unsigned n = s.config.server.io_threads;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  s.service.start();  // the store, the shards, recovery: before any listener
  for (unsigned i = 0; i < n; ++i)
    s.loops.push_back(std::make_unique<net::IoLoop>(i, s.limits, s.service, s.admission));
  std::vector<net::IoLoop*> loops;
  for (auto& l : s.loops) loops.push_back(l.get());

  auto hp = parse_host_port(s.config.server.listen);
  if (!hp) throw std::runtime_error("server.listen: " + hp.error().message);
  const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(hp->host), hp->port);
  try {
    s.listeners.push_back(std::make_unique<net::Listener>(*loops[0], loops, s.admission, endpoint));
  } catch (const std::system_error& e) {
    throw std::runtime_error(
        fmt::format("server.listen: cannot listen on {}: {}", s.config.server.listen, e.code().message()));
  }
  const auto local = s.listeners.back()->local_endpoint();
  s.bound.push_back({"tcp", local.address().to_string(), local.port()});
  if (!s.config.webhook.url.empty())
    s.webhook = std::make_unique<http::WebhookWorker>(s.config.webhook, s.service.store());
  if (!s.config.admin.listen.empty()) {
    s.admin = std::make_unique<http::AdminServer>(s.config, s.service, s.draining);
    s.admin->start();
    s.bound.push_back({"admin", s.admin->host(), s.admin->port()});
  }
  if (!s.config.server.ws_listen.empty())
    spdlog::warn("server.ws_listen: the WebSocket listener is not in this build yet; {} is not opened",
                 s.config.server.ws_listen);

  for (auto& l : s.loops) l->start();
  for (auto& l : s.listeners) l->start();
  s.running = true;
}

void Server::stop() {
  Impl& s = *impl_;
  if (!s.running) return;
  s.running = false;
  s.draining = true;  // /healthz answers 503 from now on
  for (auto& l : s.listeners) l->stop();
  for (auto& loop : s.loops) {
    asio::post(loop->context(), [&s, l = loop.get()] {
      l->for_each_connection([&s](net::Connection& conn) { s.service.drain(conn); });
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(s.config.shutdown.timeout_s);
  while (s.admission.open() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (s.admission.open() > 0) spdlog::warn("shutdown: {} connections still open at the deadline", s.admission.open());
  for (auto& l : s.loops) l->stop();
  if (s.admin) s.admin->stop();
  s.webhook.reset();
  s.service.stop();
  s.listeners.clear();
  s.loops.clear();
}

}  // namespace im
