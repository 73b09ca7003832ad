#include "net/io_loop.h"

#include <sys/epoll.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <spdlog/spdlog.h>
#include <asio/post.hpp>

#include "net/connection.h"

namespace im::net {
namespace {
constexpr auto kSweepInterval = std::chrono::milliseconds(250);
constexpr int kEventsPerPoll = 256;

int new_epoll() {
  const int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  return fd;
}
}  // namespace

IoLoop::IoLoop(unsigned index, const NetLimits& limits, ServiceInterface& service, AdmissionControl& admission)
    : index_(index),
      limits_(limits),
      service_(service),
      admission_(admission),
      poller_(context_, new_epoll()),
      read_buffer_(std::max<std::size_t>(65536, limits.max_frame_bytes + kHeaderSize)) {}

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
  for (int i = 0; i < n; ++i) static_cast<Connection*>(events[i].data.ptr)->on_events(events[i].events);
  if (n == kEventsPerPoll) {
    asio::post(context_, [this] { poll(); });  // more are ready: after the work already queued
    return;
  }
  // An error (none is expected of epoll_wait with a zero timeout) is logged
  // and the loop keeps waiting: returning would stop every connection's I/O.
  if (n < 0 && errno != EINTR) spdlog::error("loop {}: epoll_wait failed: {}", index_, std::strerror(errno));
  arm_poll();
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
