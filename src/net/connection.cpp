#include "net/connection.h"

#include <array>

#include <spdlog/spdlog.h>
#include <asio/post.hpp>
#include <asio/write.hpp>

#include "common/metrics.h"
#include "im/frame_codec.h"
#include "net/admission_control.h"
#include "net/io_loop.h"

namespace im::net {
namespace {
constexpr std::size_t kMaxGather = 64;  // frames per writev
constexpr int kReadsPerWakeup = 4;      // fairness between busy connections
}  // namespace

Connection::Connection(IoLoop& loop, Socket socket, std::uint64_t peer_key)
    : loop_(loop), socket_(std::move(socket)), peer_key_(peer_key) {}

Connection::~Connection() = default;

void Connection::start() {
  asio::error_code ec;
  socket_.non_blocking(true, ec);
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  mark_ms_ = loop_.now_ms();
  metrics::get().connections.add(1);
  context_ = loop_.service().on_open(*this);
  wait_readable();
}

void Connection::wait_readable() {
  if (reading_ || phase_ == Phase::kClosed || (paused_ && phase_ != Phase::kClosing)) return;
  reading_ = true;
  socket_.async_wait(Socket::wait_read,
                     [self = shared_from_this()](const asio::error_code& ec) { self->on_readable(ec); });
}

void Connection::on_readable(const asio::error_code& ec) {
  reading_ = false;
  if (phase_ == Phase::kClosed) return;
  if (ec) {
    close();
    return;
  }
  std::span<char> buf = loop_.read_buffer();
  if (phase_ == Phase::kClosing) {
    discard_input(buf);
    return;
  }
  for (int i = 0; i < kReadsPerWakeup && !paused_ && phase_ < Phase::kClosing; ++i) {
    asio::error_code read_ec;
    const std::size_t n = socket_.read_some(asio::buffer(buf.data(), buf.size()), read_ec);
    if (read_ec == asio::error::would_block || read_ec == asio::error::try_again) break;
    if (read_ec) {  // eof, reset: the peer is gone
      close();
      return;
    }
    ingest(std::string_view(buf.data(), n));
    if (phase_ == Phase::kClosed) return;
    if (n < buf.size()) break;
  }
  wait_readable();
}

void Connection::ingest(std::string_view data) {
  in_input_ = true;
  if (partial_.empty()) {
    const std::size_t used = process(data);
    if (used < data.size() && phase_ < Phase::kClosing) partial_.assign(data.substr(used));
  } else {
    partial_.append(data);
    const std::size_t used = process(partial_);
    partial_.erase(0, used);
  }
  if (partial_.empty()) std::string().swap(partial_);  // an idle connection keeps no buffer
  in_input_ = false;
  flush();
}

std::size_t Connection::process(std::string_view data) {
  std::size_t used = 0;
  while (!paused_ && phase_ < Phase::kClosing) {
    const Decoded d = decode_frame(data.substr(used), loop_.limits().max_frame_bytes);
    if (d.status == DecodeStatus::kNeedMore) break;
    if (d.status == DecodeStatus::kBad) {
      fail_framing(d.error);
      return data.size();
    }
    used += d.consumed;
    if (phase_ == Phase::kActive) mark_ms_ = loop_.now_ms();
    metrics::get().frames_in.inc(static_cast<std::uint16_t>(d.header.cmd));
    metrics::get().bytes_in.inc(static_cast<std::uint16_t>(d.header.cmd), d.consumed);
    loop_.service().on_frame(*this, d.header, d.body);
  }
  return used;
}

void Connection::fail_framing(StatusCode error) {
  std::string_view why = error == StatusCode::kFrameTooLarge        ? "body_len over the frame limit"
                         : error == StatusCode::kUnsupportedVersion ? "unsupported protocol version"
                                                                    : "bad magic";
  spdlog::debug("loop {}: framing violation: {}", loop_.index(), why);
  send(make_error_frame(error, why));
  close_after_flush();
}

void Connection::send(SharedFrame frame) {
  if (phase_ >= Phase::kClosing || !frame) return;
  pending_bytes_ += frame->size();
  if (pending_bytes_ > loop_.limits().max_pending_bytes) {
    spdlog::debug("loop {}: closing a slow consumer ({} bytes unsent)", loop_.index(), pending_bytes_);
    close();
    return;
  }
  const auto cmd = static_cast<std::uint16_t>((static_cast<unsigned char>((*frame)[4]) << 8) |
                                              static_cast<unsigned char>((*frame)[5]));
  metrics::get().frames_out.inc(cmd);
  metrics::get().bytes_out.inc(cmd, frame->size());
  queue_.push_back(std::move(frame));
  schedule_flush();
}

void Connection::schedule_flush() {
  // Inside input processing the flush at its end covers this frame; a write
  // already waiting for writability covers it too. Otherwise flush once at the
  // end of this loop turn, so frames queued together leave in one syscall.
  if (in_input_ || write_waiting_ || flush_posted_) return;
  flush_posted_ = true;
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->flush_posted_ = false;
    self->flush();
  });
}

void Connection::flush() {
  if (phase_ == Phase::kClosed || write_waiting_) return;
  while (!queue_.empty()) {
    std::array<asio::const_buffer, kMaxGather> bufs;
    std::size_t count = 0;
    for (; count < queue_.size() && count < kMaxGather; ++count) {
      const std::string& f = *queue_[count];
      const std::size_t skip = count == 0 ? head_offset_ : 0;
      bufs[count] = asio::const_buffer(f.data() + skip, f.size() - skip);
    }
    asio::error_code ec;
    std::size_t written = socket_.write_some(std::span(bufs.data(), count), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      write_waiting_ = true;
      socket_.async_wait(Socket::wait_write, [self = shared_from_this()](const asio::error_code& wait_ec) {
        self->write_waiting_ = false;
        if (wait_ec) {
          self->close();
          return;
        }
        self->flush();
      });
      return;
    }
    if (ec) {
      close();
      return;
    }
    pending_bytes_ -= written;
    std::size_t done = 0;
    while (done < queue_.size() && written > 0) {
      const std::size_t left = queue_[done]->size() - head_offset_;
      if (written < left) {
        head_offset_ += static_cast<std::uint32_t>(written);
        break;
      }
      written -= left;
      head_offset_ = 0;
      ++done;
    }
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(done));
  }
  std::vector<SharedFrame>().swap(queue_);  // an idle connection keeps no queue
  if (phase_ == Phase::kClosing) linger();
}

void Connection::close_after_flush() {
  if (phase_ >= Phase::kClosing) return;
  phase_ = Phase::kClosing;
  paused_ = false;
  mark_ms_ = loop_.now_ms();
  std::string().swap(partial_);
  if (queue_.empty() && !in_input_) {
    linger();
    return;
  }
  schedule_flush();
}

void Connection::linger() {
  // Everything is written: send FIN, then read and drop what the peer still
  // sends until it closes too (or the closing grace ends). Closing with unread
  // input would send an RST, which may destroy our last frame in flight.
  if (fin_sent_) return;
  fin_sent_ = true;
  asio::error_code ec;
  socket_.shutdown(Socket::shutdown_send, ec);
  wait_readable();
}

void Connection::discard_input(std::span<char> buf) {
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    asio::error_code ec;
    socket_.read_some(asio::buffer(buf.data(), buf.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) break;
    if (ec) {
      close();
      return;
    }
  }
  wait_readable();
}

void Connection::close() {
  if (phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosed;
  auto self = shared_from_this();  // the registry may hold the last reference
  metrics::get().connections.add(-1);
  asio::error_code ec;
  socket_.close(ec);
  queue_.clear();
  pending_bytes_ = 0;
  std::string().swap(partial_);
  loop_.service().on_close(*this);
  loop_.admission().release(peer_key_);
  loop_.remove(*this);
}

void Connection::pause_reading() {
  paused_ = true;
}

void Connection::resume_reading() {
  if (!paused_) return;
  paused_ = false;
  if (phase_ >= Phase::kClosing) return;
  // Frames that arrived behind the pausing one wait in partial_.
  if (!partial_.empty()) {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      if (self->paused_ || self->phase_ >= Phase::kClosing) return;
      self->ingest({});
      self->wait_readable();
    });
    return;
  }
  wait_readable();
}

void Connection::set_active() {
  if (phase_ != Phase::kHandshake) return;
  phase_ = Phase::kActive;
  mark_ms_ = loop_.now_ms();
}

void Connection::check_timeout(std::uint32_t now_ms) {
  const std::uint32_t elapsed = now_ms - mark_ms_;
  const NetLimits& l = loop_.limits();
  switch (phase_) {
    case Phase::kHandshake:
      if (elapsed >= l.auth_timeout_ms) {
        spdlog::debug("loop {}: closing a connection that did not log in", loop_.index());
        close();
      }
      break;
    case Phase::kActive:
      if (elapsed >= l.idle_timeout_ms) {
        spdlog::debug("loop {}: closing a silent session", loop_.index());
        close();
      }
      break;
    case Phase::kClosing:
      if (elapsed >= l.closing_grace_ms) close();
      break;
    case Phase::kClosed: break;
  }
}

void send_from_any_thread(const std::shared_ptr<Connection>& conn, SharedFrame frame) {
  if (!conn) return;
  asio::post(conn->executor(), [conn, frame = std::move(frame)]() mutable { conn->send(std::move(frame)); });
}

}  // namespace im::net
