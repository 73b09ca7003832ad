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
//
// Where the kernel allows io_uring (SocketRing), the reads of one epoll
// wake-up go to the kernel in one io_uring_enter, and so do the writes of
// one turn: output waits for the end of the turn, when every connection
// with output queued is flushed. Without it, one read(2) or sendmsg(2)
// each.

#include <sys/socket.h>
#include <sys/uio.h>

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
#include "net/socket_ring.h"

namespace im::net {

class AdmissionControl;
class Connection;
class ServiceInterface;

struct LoopOptions {
  // Read and write through io_uring where the kernel allows it
  // (server.io_uring); false: read(2) and sendmsg(2) for each connection.
  bool io_uring = true;
  // The loop's thread under SCHED_BATCH (server.batch_scheduling,
  // common/thread_policy.h).
  bool batch_scheduling = false;
};

class IoLoop {
 public:
  IoLoop(unsigned index, const NetLimits& limits, ServiceInterface& service, AdmissionControl& admission,
         LoopOptions options = {});
  ~IoLoop();
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  // Thread safe. The thread is named "im:io<index>".
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
  // Flushes `conn` at the end of this turn, with every other connection
  // whose output was queued in it.
  void flush_at_turn_end(std::shared_ptr<Connection> conn);
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
  void flush_all();
  // Writes `batch` (at most the ring's capacity) with one io_uring_enter
  // (without a ring, a sendmsg(2) each).
  void flush_through_ring(std::span<const std::shared_ptr<Connection>> batch);
  // Reads for `batch` (at most the ring's capacity) with one io_uring_enter.
  void read_through_ring(std::span<Connection* const> batch);
  // The ring failed: reads and writes go through syscalls of their own.
  void drop_ring();

  const unsigned index_;
  const bool batch_scheduling_;
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
  // Connections to flush at the end of this turn, and the batch being
  // flushed (kept to reuse their arrays).
  std::vector<std::shared_ptr<Connection>> to_flush_;
  std::vector<std::shared_ptr<Connection>> flushing_;
  bool flush_posted_ = false;
  std::unique_ptr<SocketRing> ring_;  // null: read(2) and sendmsg(2) per connection
  // The ring's batch (allocated with the ring): descriptors, results, and
  // for writes the messages and their gathered buffers, for reads a buffer
  // each.
  std::vector<int> ring_fds_;
  std::vector<int> ring_results_;
  std::vector<msghdr> ring_msgs_;
  std::vector<iovec> ring_iovs_;
  std::vector<std::span<char>> ring_reads_;
  std::vector<char> ring_read_buffer_;
  // The queues of sends a failed ring may still run (flush_through_ring);
  // with the buffers above, not freed before the loop is.
  std::vector<std::shared_ptr<void>> ring_orphans_;
  std::vector<Connection*> readers_;  // of one epoll wake-up
  std::thread thread_;
};

}  // namespace im::net
