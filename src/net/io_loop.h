#pragma once
// One I/O loop: an asio::io_context on its own thread. A connection lives its
// whole life on the loop that accepted it; the loop owns it (the registry holds
// the only long-lived strong reference), reads into one buffer shared by all of
// its connections, and sweeps their timeouts every quarter second instead of
// arming a timer per connection.
//
// Connections' sockets are not Asio objects: each is registered, edge-
// triggered, on the loop's own epoll instance, which Asio watches as one
// descriptor. That saves Asio's per-socket reactor state and the pending
// wait operation, about 270 bytes per idle connection (bench/ANALYSIS.md,
// W1); timers and posted work stay on the io_context.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>

#include "net/frame_compressor.h"
#include "net/net_limits.h"

namespace im::net {

class AdmissionControl;
class Connection;
class ServiceInterface;

class IoLoop {
 public:
  IoLoop(unsigned index, const NetLimits& limits, ServiceInterface& service, AdmissionControl& admission);
  ~IoLoop();
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  // Thread safe.
  void start();
  void stop();  // stops the io_context and joins; connections are dropped
  asio::io_context& context() { return context_; }
  unsigned index() const { return index_; }
  const NetLimits& limits() const { return limits_; }
  ServiceInterface& service() { return service_; }
  AdmissionControl& admission() { return admission_; }

  // Loop thread only.
  void add(std::shared_ptr<Connection> conn);
  // Drops the registry's reference; the connection is destroyed once the
  // readiness events fetched with it have been handled.
  void remove(Connection& conn);
  // Registers `fd` for `conn`'s readiness (in, out, hang-up; edge-triggered):
  // Connection::on_events is called on this loop. Errors come back as errno.
  int watch(int fd, Connection& conn);
  void unwatch(int fd);
  std::span<char> read_buffer() { return read_buffer_; }
  // Where TLS connections assemble one record's plaintext to write.
  std::span<char> tls_scratch();
  // Compresses frames for the loop's sessions that asked for it.
  FrameCompressor& compressor() { return compressor_; }
  std::size_t connection_count() const { return connections_.size(); }
  void for_each_connection(const std::function<void(Connection&)>& fn);
  // Milliseconds since the loop started (wraps after 49 days; compared by
  // unsigned difference, so timeouts up to 24 days are exact).
  std::uint32_t now_ms() const;

 private:
  void arm_sweep();
  void sweep();
  void arm_poll();
  void poll();
  void reap();

  const unsigned index_;
  const NetLimits& limits_;
  ServiceInterface& service_;
  AdmissionControl& admission_;
  asio::io_context context_{1};
  asio::steady_timer sweep_timer_{context_};
  std::chrono::steady_clock::time_point epoch_ = std::chrono::steady_clock::now();
  asio::posix::stream_descriptor poller_;  // the loop's epoll instance
  // A deque: it grows by 512-byte blocks, where a vector's doubling left
  // up to half of its array unused, about 10 bytes per idle connection on
  // average (bench/ANALYSIS.md, W1).
  std::deque<std::shared_ptr<Connection>> connections_;
  std::vector<std::shared_ptr<Connection>> removed_;  // until the events of this turn are handled
  bool reap_posted_ = false;
  std::vector<char> read_buffer_;
  std::vector<char> tls_scratch_;  // allocated by the first TLS write
  FrameCompressor compressor_;
  std::thread thread_;
};

}  // namespace im::net
