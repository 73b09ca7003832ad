#include "net/io_loop.h"

#include <sys/epoll.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <spdlog/spdlog.h>
#include <asio/post.hpp>

#include "common/metrics.h"
#include "common/thread_policy.h"
#include "net/connection.h"

namespace im::net {
namespace {
constexpr auto kSweepInterval = std::chrono::milliseconds(250);
constexpr int kEventsPerPoll = 256;
constexpr unsigned kRingBatch = 128;          // reads or writes per io_uring_enter
constexpr std::size_t kRingReadBytes = 2048;  // per read; a longer input is read on with read(2)

// Calls `fn` on `all` in slices of at most one ring batch.
template <class T, class Fn>
void in_ring_batches(std::span<T> all, Fn fn) {
  while (!all.empty()) {
    const std::size_t n = std::min<std::size_t>(all.size(), kRingBatch);
    fn(all.first(n));
    all = all.subspan(n);
  }
}

int new_epoll() {
  const int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  return fd;
}
}  // namespace

IoLoop::IoLoop(unsigned index, const NetLimits& limits, ServiceInterface& service, AdmissionControl& admission,
               LoopOptions options)
    : index_(index),
      batch_scheduling_(options.batch_scheduling),
      limits_(limits),
      service_(service),
      admission_(admission),
      poller_(context_, new_epoll()),
      read_buffer_(std::max<std::size_t>(65536, limits.max_frame_bytes + kHeaderSize)) {
  if (!options.io_uring) return;
  int error = 0;
  ring_ = SocketRing::open(kRingBatch, error);
  if (!ring_) {
    spdlog::info("loop {}: io_uring refused ({}): reads and writes go through read(2) and sendmsg(2)", index_,
                 std::strerror(error));
    return;
  }
  ring_fds_.resize(kRingBatch);
  ring_results_.resize(kRingBatch);
  ring_msgs_.resize(kRingBatch);
  ring_iovs_.resize(std::size_t{kRingBatch} * Connection::kMaxGather);
  ring_read_buffer_.resize(std::size_t{kRingBatch} * kRingReadBytes);
  for (unsigned i = 0; i < kRingBatch; ++i)
    ring_reads_.emplace_back(ring_read_buffer_.data() + std::size_t{i} * kRingReadBytes, kRingReadBytes);
  readers_.reserve(kEventsPerPoll);
}

IoLoop::~IoLoop() {
  stop();
}

void IoLoop::start() {
  arm_sweep();
  arm_poll();
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(context_);
    context_.run();
  });
  set_up_busy_thread(thread_, fmt::format("im:io{}", index_), batch_scheduling_);  // "im:io" and 10 digits fit
}

void IoLoop::stop() {
  if (!thread_.joinable()) return;
  asio::post(context_, [this] {
    sweep_timer_.cancel();
    auto all = connections_;
    for (auto& c : all) c->close();
    removed_.clear();
    asio::error_code ec;
    poller_.close(ec);
    context_.stop();
  });
  thread_.join();
}

void IoLoop::add(std::shared_ptr<Connection> conn) {
  conn->slot = static_cast<std::uint32_t>(connections_.size());
  connections_.push_back(std::move(conn));
}

void IoLoop::remove(Connection& conn) {
  const std::uint32_t slot = conn.slot;
  if (slot >= connections_.size() || connections_[slot].get() != &conn) return;
  removed_.push_back(std::move(connections_[slot]));
  if (slot + 1 != connections_.size()) {
    connections_[slot] = std::move(connections_.back());
    connections_[slot]->slot = slot;
  }
  connections_.pop_back();
  // A closed connection may still be named by an event fetched with the one
  // being handled: it is destroyed after this handler (reap), not now.
  if (!reap_posted_) {
    reap_posted_ = true;
    asio::post(context_, [this] { reap(); });
  }
}

void IoLoop::reap() {
  reap_posted_ = false;
  removed_.clear();
}

int IoLoop::watch(int fd, Connection& conn) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = &conn;
  return epoll_ctl(poller_.native_handle(), EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : errno;
}

void IoLoop::unwatch(int fd) {
  epoll_event ev{};
  epoll_ctl(poller_.native_handle(), EPOLL_CTL_DEL, fd, &ev);
}

void IoLoop::arm_poll() {
  poller_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const asio::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;  // stopping
    if (ec) spdlog::error("loop {}: waiting for its epoll failed: {}", index_, ec.message());
    poll();
  });
}

void IoLoop::poll() {
  // Every registration is edge-triggered, so a fetched event leaves the
  // ready list; each new readiness also wakes Asio's epoll, which watches
  // this one, so nothing is left waiting once the wait is armed again.
  std::array<epoll_event, kEventsPerPoll> events;
  const int n = epoll_wait(poller_.native_handle(), events.data(), kEventsPerPoll, 0);
  if (!ring_) {
    for (int i = 0; i < n; ++i) static_cast<Connection*>(events[i].data.ptr)->on_events(events[i].events);
  } else {
    // The connections named stay alive until this handler returns (remove).
    readers_.clear();
    for (int i = 0; i < n; ++i) {
      auto* conn = static_cast<Connection*>(events[i].data.ptr);
      if (conn->on_events(events[i].events, true)) readers_.push_back(conn);
    }
    in_ring_batches(std::span<Connection* const>(readers_),
                    [this](std::span<Connection* const> batch) { read_through_ring(batch); });
  }
  if (n == kEventsPerPoll) {
    asio::post(context_, [this] { poll(); });  // more are ready: after the work already queued
    return;
  }
  // An error (none is expected of epoll_wait with a zero timeout) is logged
  // and the loop keeps waiting: returning would stop every connection's I/O.
  if (n < 0 && errno != EINTR) spdlog::error("loop {}: epoll_wait failed: {}", index_, std::strerror(errno));
  arm_poll();
}

void IoLoop::flush_at_turn_end(std::shared_ptr<Connection> conn) {
  to_flush_.push_back(std::move(conn));
  if (flush_posted_) return;
  flush_posted_ = true;
  asio::post(context_, [this] { flush_all(); });
}

void IoLoop::flush_all() {
  flush_posted_ = false;
  flushing_.swap(to_flush_);  // a flush may queue more: they go in the next turn's batch
  in_ring_batches(std::span<const std::shared_ptr<Connection>>(flushing_),
                  [this](std::span<const std::shared_ptr<Connection>> batch) { flush_through_ring(batch); });
  flushing_.clear();
}

void IoLoop::flush_through_ring(std::span<const std::shared_ptr<Connection>> batch) {
  // Gathers every plain socket's output; TLS connections and those with
  // nothing to write (or closed, or waiting for room) flush themselves, as
  // every connection does without a ring.
  std::array<std::uint8_t, kRingBatch> in_ring{};
  unsigned count = 0;
  for (std::size_t i = 0; ring_ && i < batch.size(); ++i) {
    Connection& conn = *batch[i];
    const std::span<iovec> iov(ring_iovs_.data() + std::size_t{count} * Connection::kMaxGather, Connection::kMaxGather);
    const std::size_t bufs = conn.gather_for_ring(iov);
    if (bufs == 0) continue;
    ring_msgs_[count] = msghdr{};
    ring_msgs_[count].msg_iov = iov.data();
    ring_msgs_[count].msg_iovlen = bufs;
    ring_fds_[count] = conn.fd_;
    in_ring[i] = 1;
    ++count;
  }
  if (count > 0 && !ring_->send_all(std::span(ring_fds_.data(), count), std::span(ring_msgs_.data(), count),
                                    std::span(ring_results_.data(), count))) {
    // A send the kernel took without reporting it (-EIO) may still run
    // once the ring is gone, reading its frames and the WebSocket heads in
    // its queue: those queues are kept for the loop's life (at most one
    // batch's, once: the ring is not made again), their connections closed.
    for (std::size_t i = 0, k = 0; i < batch.size(); ++i) {
      if (in_ring[i] && ring_results_[k++] == -EIO) ring_orphans_.push_back(batch[i]->detach_queue());
    }
    drop_ring();
  }
  // First what was written leaves every queue (no code runs in between),
  // then each connection goes on: writes the rest, waits, or closes.
  unsigned done = 0;
  for (std::size_t i = 0, k = 0; i < batch.size(); ++i) {
    if (!in_ring[i]) continue;
    const int result = ring_results_[k++];
    if (result < 0) continue;
    batch[i]->consume(static_cast<std::size_t>(result));
    ++done;
  }
  if (done > 0) metrics::get().ring_writes.inc(done);
  unsigned k = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!in_ring[i]) {
      batch[i]->flush_now();
      continue;
    }
    const int result = ring_results_[k++];
    if (result == SocketRing::kNotSent || result == -EINTR)
      batch[i]->flush_now();
    else
      batch[i]->on_written(result);
  }
}

void IoLoop::read_through_ring(std::span<Connection* const> batch) {
  // Descriptors are taken here and submitted at once: no code runs between
  // that could close one (and let another thread's open reuse its number).
  std::array<std::uint8_t, kRingBatch> in_ring{};
  unsigned count = 0;
  for (std::size_t i = 0; ring_ && i < batch.size(); ++i) {
    if (!batch[i]->ring_readable()) continue;  // closed or paused by another's input since: read as it is now
    ring_fds_[count] = batch[i]->fd_;
    in_ring[i] = 1;
    ++count;
  }
  if (count > 0) {
    if (!ring_->recv_all(std::span(ring_fds_.data(), count), std::span(ring_reads_.data(), count),
                         std::span(ring_results_.data(), count)))
      drop_ring();
    const auto done = std::count_if(ring_results_.begin(), ring_results_.begin() + count,
                                    [](int r) { return r >= 0 || r == -EAGAIN; });
    if (done > 0) metrics::get().ring_reads.inc(static_cast<std::uint64_t>(done));
  }
  unsigned k = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!in_ring[i]) {
      batch[i]->on_readable();
      continue;
    }
    const int result = ring_results_[k];
    const std::span<char> buf = ring_reads_[k++];
    if (result == SocketRing::kNotSent || result == -EINTR)
      batch[i]->on_readable();
    else
      batch[i]->on_ring_read(result, buf);
  }
}

void IoLoop::drop_ring() {
  spdlog::error("loop {}: io_uring failed: reads and writes go through read(2) and sendmsg(2) from now on", index_);
  ring_.reset();
}

void IoLoop::for_each_connection(const std::function<void(Connection&)>& fn) {
  auto all = connections_;  // fn may close (and so remove) connections
  for (auto& c : all) fn(*c);
}

std::span<char> IoLoop::tls_scratch() {
  constexpr std::size_t kTlsRecord = 16384;  // the largest TLS record's plaintext
  if (tls_scratch_.empty()) tls_scratch_.resize(kTlsRecord);
  return tls_scratch_;
}

std::uint32_t IoLoop::now_ms() const {
  return static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - epoch_).count());
}

void IoLoop::arm_sweep() {
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    sweep();
    arm_sweep();
  });
}

void IoLoop::sweep() {
  const std::uint32_t now = now_ms();
  const std::int64_t wall_s =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  // Walk backwards: a connection that closes swaps the last one into its slot,
  // which has then been visited already.
  for (std::size_t i = connections_.size(); i-- > 0;) {
    if (i >= connections_.size()) continue;
    auto conn = connections_[i];
    conn->check_timeout(now, wall_s);
  }
  compressor_.forget();
}

}  // namespace im::net
