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
#include "http/dev_admin_key.h"
#include "http/webhook_worker.h"
#include "net/admission_control.h"
#include "net/connection.h"
#include "net/io_loop.h"
#include "net/listener.h"
#include "net/tls_context.h"
#include "net/transport.h"
#include "net/web_root.h"

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
        web_root(config.server.web_root),
        service(config) {}

  Config config;
  net::NetLimits limits;
  net::AdmissionControl admission;
  net::WebRoot web_root;
  std::unique_ptr<net::TlsContext> tls;  // both listeners' TLS, when tls.* is set
  net::Transport tcp_transport;
  net::Transport ws_transport;
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
  if (!impl_->tls) {
    if (fresh.tls.enabled()) spdlog::warn("SIGHUP: TLS cannot be turned on while running; restart to use [tls]");
    return;
  }
  if (!fresh.tls.enabled()) {
    spdlog::warn("SIGHUP: TLS cannot be turned off while running; the listeners keep the current certificate");
    return;
  }
  if (auto r = impl_->tls->reload(fresh.tls.cert_file, fresh.tls.key_file); !r) {
    spdlog::error("SIGHUP: the TLS certificate is not replaced: {}", r.error().message);
    return;
  }
  spdlog::info("SIGHUP: TLS certificate and key re-read from {} and {}", fresh.tls.cert_file, fresh.tls.key_file);
}

namespace {

// admin.api_key empty and the admin listener on loopback only: the key of
// the data dir (made at the first start), so that the API works on a fresh
// checkout without a secret in the shipped config (docs/operations.md).
void use_dev_admin_key(Config& config) {
  if (!config.admin.api_key.empty()) return;
  auto hp = parse_host_port(config.admin.listen);
  if (!hp || !is_loopback_host(hp->host)) return;  // AdminServer warns: /v1 answers 401
  auto key = http::load_or_create_dev_admin_key(config.storage.data_dir);
  if (!key) throw std::runtime_error("admin.api_key: " + key.error().message);
  config.admin.api_key = key->key;
  if (key->created)
    spdlog::warn("admin.api_key is empty and the admin listener is on loopback: made a development key for the "
                 "admin API, kept in {} and shown this once: {}",
                 key->path, key->key);
  else
    spdlog::info("admin.api_key is empty: the admin API takes the development key kept in {}", key->path);
}

}  // namespace

void Server::start() {
  Impl& s = *impl_;
  if (s.running) return;
  if (s.config.tls.enabled()) {
    auto tls = net::TlsContext::load(s.config.tls.cert_file, s.config.tls.key_file);
    if (!tls) throw std::runtime_error(tls.error().message);
    s.tls = std::move(*tls);
  }
  s.tcp_transport = net::Transport{"tcp", false, s.tls.get(), nullptr, nullptr};
  s.ws_transport = net::Transport{"ws", true, s.tls.get(), &s.web_root, &s.config.server.ws_allowed_origins};
  const unsigned n = thread_count(s.config.server.io_threads);
  spdlog::info("{} I/O loops{}", n, s.config.server.io_threads == 0 ? " (server.io_threads = 0: half the cores)" : "");
  s.service.start();  // the store, the shards, recovery: before any listener
  for (unsigned i = 0; i < n; ++i)
    s.loops.push_back(
        std::make_unique<net::IoLoop>(i, s.limits, s.service, s.admission,
                                      net::LoopOptions{s.config.server.io_uring, s.config.server.batch_scheduling}));
  std::vector<net::IoLoop*> loops;
  for (auto& l : s.loops) loops.push_back(l.get());

  auto open_listener = [&](const std::string& key, const std::string& address, const net::Transport& transport) {
    auto hp = parse_host_port(address);
    if (!hp) throw std::runtime_error(key + ": " + hp.error().message);
    const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(hp->host), hp->port);
    try {
      s.listeners.push_back(std::make_unique<net::Listener>(*loops[0], loops, s.admission, endpoint, transport));
    } catch (const std::system_error& e) {
      throw std::runtime_error(fmt::format("{}: cannot listen on {}: {}", key, address, e.code().message()));
    }
    const auto local = s.listeners.back()->local_endpoint();
    s.bound.push_back({transport.name, local.address().to_string(), local.port()});
  };
  open_listener("server.listen", s.config.server.listen, s.tcp_transport);
  if (!s.config.server.ws_listen.empty()) open_listener("server.ws_listen", s.config.server.ws_listen, s.ws_transport);
  if (!s.config.webhook.url.empty())
    s.webhook = std::make_unique<http::WebhookWorker>(
        s.config.webhook, s.service.store(), static_cast<unsigned>(s.service.shard_count()), s.service.outbox_writer());
  if (!s.config.admin.listen.empty()) {
    use_dev_admin_key(s.config);
    s.admin = std::make_unique<http::AdminServer>(s.config, s.service, s.draining);
    s.admin->start();
    s.bound.push_back({"admin", s.admin->host(), s.admin->port()});
  }

  for (auto& l : s.loops) l->start();
  if (s.config.server.batch_scheduling)
    spdlog::info(
        "server.batch_scheduling: the I/O loops and core shards that ran under the default policy now run "
        "under SCHED_BATCH (a thread handed work does not preempt)");
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
