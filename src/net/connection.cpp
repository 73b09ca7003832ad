#include "net/connection.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>

#include <openssl/err.h>
#include <spdlog/spdlog.h>
#include <asio/post.hpp>
#include <asio/write.hpp>

#include "common/metrics.h"
#include "im/frame_codec.h"
#include "net/admission_control.h"
#include "net/io_loop.h"
#include "net/tls_context.h"
#include "net/web_root.h"
#include "net/ws_codec.h"
#include "net/ws_handshake.h"

namespace im::net {
namespace {
constexpr int kReadsPerWakeup = 4;      // fairness between busy connections
// Answers made on the loop wait for the end of its turn up to this much
// (and up to half of server.max_pending_bytes).
constexpr std::uint64_t kDeferredAnswerBytes = 65536;

std::uint64_t deferred_answer_limit(const NetLimits& limits) {
  return std::min<std::uint64_t>(kDeferredAnswerBytes, limits.max_pending_bytes / 2);
}

asio::error_code last_error() {
  return {errno, asio::error::get_system_category()};
}

// One read(2): the count, or 0 with `ec` set (eof when the peer has closed).
std::size_t read_fd(int fd, std::span<char> buf, asio::error_code& ec) {
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n > 0) return static_cast<std::size_t>(n);
    if (n == 0) {
      ec = asio::error::eof;
      return 0;
    }
    if (errno != EINTR) {
      ec = last_error();
      return 0;
    }
  }
}

// One gathered send(2), never raising SIGPIPE.
std::size_t write_fd(int fd, std::span<iovec> bufs, asio::error_code& ec) {
  msghdr msg{};
  msg.msg_iov = bufs.data();
  msg.msg_iovlen = bufs.size();
  for (;;) {
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) {
      ec = last_error();
      return 0;
    }
  }
}

// OpenSSL's reason for the last failure on this thread, for the debug log.
std::string tls_reason() {
  char text[256] = "no reason given";
  if (const unsigned long e = ERR_get_error()) ERR_error_string_n(e, text, sizeof text);
  ERR_clear_error();
  return text;
}
}  // namespace

// A WebSocket connection's state: the HTTP request until the upgrade, then
// the message reader.
struct Connection::WebSocket {
  explicit WebSocket(std::uint64_t max_message) : reader(max_message, ws::Side::kServer) {}
  ws::WsReader reader;
  bool open = false;        // upgraded: binary messages carry frames
  bool close_sent = false;  // our close frame is queued
};

// W1's goal (bench/ANALYSIS.md): with make_shared's 16-byte block, 128
// bytes per connection (jemalloc's size class; the next is 160), a 144-byte
// chunk under glibc's malloc (-DIM_JEMALLOC=OFF).
static_assert(sizeof(void*) != 8 || sizeof(Connection) <= 112);

Connection::Connection(IoLoop& loop, Socket socket, std::uint64_t peer_key, const Transport& transport)
    : loop_(loop), transport_(transport), peer_key_(peer_key) {
  asio::error_code ec;
  fd_ = socket.release(ec);  // start() closes the connection if this failed
  if (ec) fd_ = -1;
  // A message holds one frame: the largest body plus its header.
  if (transport.websocket) ws_ = std::make_unique<WebSocket>(frame_limit() + kHeaderSize);
  if (transport.tls) ssl_ = transport.tls->new_ssl();
}

Connection::~Connection() {
  if (ssl_) SSL_free(ssl_);
  if (fd_ >= 0) ::close(fd_);
}

asio::io_context::executor_type Connection::executor() {
  return loop_.context().get_executor();
}

void Connection::start() {
  mark_ms_ = loop_.now_ms();
  metrics::get().connections.add(1);
  context_ = loop_.service().on_open(*this);
  if (fd_ < 0) {
    close();
    return;
  }
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const int flags = fcntl(fd_, F_GETFL);
  if (flags < 0 || fcntl(fd_, F_SETFL, flags | O_NONBLOCK) != 0) {
    spdlog::warn("loop {}: cannot make a socket non-blocking: {}", loop_.index(), std::strerror(errno));
    close();
    return;
  }
  if (transport_.tls && (!ssl_ || SSL_set_fd(ssl_, fd_) != 1)) {
    spdlog::warn("loop {}: cannot start TLS on a connection: {}", loop_.index(), tls_reason());
    close();
    return;
  }
  if (const int err = loop_.watch(fd_, *this)) {
    spdlog::warn("loop {}: cannot watch a socket: {}", loop_.index(), std::strerror(err));
    close();
    return;
  }
  wait_readable();
}

bool Connection::on_events(std::uint32_t events, bool ring_read) {
  if (phase_ == Phase::kClosed) return false;
  // A hang-up or an error makes the next read or write report it.
  const bool readable = (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  const bool writable = (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;
  if (readable) read_ready_ = true;
  if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) peer_gone_ = true;
  if (writable && write_waiting_) {
    write_waiting_ = false;
    flush();
  }
  // A read already posted covers this event: one read chain per connection.
  if (phase_ == Phase::kClosed || !reading_ || read_posted_) return false;
  if (!readable && !(writable && read_wants_write_)) return false;
  if (ring_read) return want_ring_read();
  on_readable();
  return false;
}

void Connection::wait_readable() {
  if (reading_ || phase_ == Phase::kClosed || (paused_ && phase_ != Phase::kClosing)) return;
  reading_ = true;
  // Edge-triggered: input left unread (a busy connection's share of this
  // turn, or bytes OpenSSL has decrypted already) makes no new event, so
  // it is read in a later turn of the loop.
  if (!read_posted_ && (read_ready_ || (ssl_ && phase_ < Phase::kClosing && SSL_pending(ssl_) > 0))) {
    read_posted_ = true;
    asio::post(executor(), [self = shared_from_this()] {
      self->read_posted_ = false;
      if (self->reading_ && self->phase_ != Phase::kClosed) self->on_readable();
    });
  }
}

void Connection::on_readable() {
  if (begin_read()) read_on(kReadsPerWakeup);
}

bool Connection::begin_read() {
  reading_ = false;
  read_wants_write_ = false;
  if (phase_ == Phase::kClosed) return false;
  if (phase_ == Phase::kClosing) {
    discard_input(loop_.read_buffer());
    return false;
  }
  return true;
}

void Connection::read_on(int reads) {
  std::span<char> buf = loop_.read_buffer();
  for (int i = 0; i < reads && !paused_ && phase_ < Phase::kClosing; ++i) {
    asio::error_code ec;
    const std::size_t n = read_some(buf, ec);
    const ReadStep step = take_read(buf.first(n), ec, buf.size());
    if (step == ReadStep::kDone) return;
    if (step == ReadStep::kDrained) break;
  }
  end_read();
}

Connection::ReadStep Connection::take_read(std::span<char> data, asio::error_code ec, std::size_t asked) {
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    read_ready_ = false;
    return ReadStep::kDrained;
  }
  if (ec == asio::error::in_progress) {  // TLS must write before it can read on
    reading_ = true;
    read_wants_write_ = true;
    return ReadStep::kDone;
  }
  if (ec) {  // eof, reset, a TLS failure: the peer is gone
    // A peer that sent its last request with its FIN still gets the
    // answers made on the loop (ingest left them for the turn's end); on
    // a broken connection the write fails and closes it.
    if (queued()) flush();
    close();
    return ReadStep::kDone;
  }
  ingest(data);
  if (phase_ == Phase::kClosed) return ReadStep::kDone;
  // Drained: more input makes a new event. Not after a hang-up or an
  // error, which came with the same event: the next read reports it.
  if (!ssl_ && data.size() < asked && !peer_gone_) {
    read_ready_ = false;
    return ReadStep::kDrained;
  }  // TLS reads one record at a time: read on until it would block
  return ReadStep::kMore;
}

void Connection::end_read() {
  if (ssl_ && queued()) flush();  // a TLS write that waited for a read goes on
  wait_readable();
}

bool Connection::want_ring_read() {
  if (ssl_) {  // OpenSSL reads the socket itself
    on_readable();
    return false;
  }
  if (!begin_read()) return false;
  if (paused_) {
    end_read();
    return false;
  }
  return true;
}

void Connection::on_ring_read(int result, std::span<char> buf) {
  if (phase_ == Phase::kClosed) return;  // closed by another's input in the same batch: its input goes too
  asio::error_code ec;
  if (result == 0) ec = asio::error::eof;
  if (result < 0) ec = asio::error_code(-result, asio::error::get_system_category());
  const std::size_t n = result > 0 ? static_cast<std::size_t>(result) : 0;
  const ReadStep step = take_read(buf.first(n), ec, buf.size());
  if (step == ReadStep::kDone) return;
  if (step == ReadStep::kDrained) {
    end_read();
    return;
  }
  read_on(kReadsPerWakeup - 1);
}

std::size_t Connection::read_some(std::span<char> buf, asio::error_code& ec) {
  if (!ssl_) return read_fd(fd_, buf, ec);
  ERR_clear_error();
  const int r = SSL_read(ssl_, buf.data(), static_cast<int>(std::min<std::size_t>(buf.size(), INT_MAX)));
  if (r > 0) return static_cast<std::size_t>(r);
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ: ec = asio::error::would_block; break;
    case SSL_ERROR_WANT_WRITE: ec = asio::error::in_progress; break;
    case SSL_ERROR_ZERO_RETURN: ec = asio::error::eof; break;
    default:
      spdlog::debug("loop {}: TLS failed: {}", loop_.index(), tls_reason());
      ec = asio::error::connection_aborted;
      break;
  }
  return 0;
}

void Connection::ingest(std::span<char> data) {
  in_input_ = true;
  if (!held_) {
    const std::size_t used = process(data);
    if (used < data.size() && phase_ < Phase::kClosing)
      held_ = std::make_unique<std::string>(data.data() + used, data.size() - used);
  } else {
    held_->append(data.data(), data.size());
    const std::size_t used = process(std::span<char>(held_->data(), held_->size()));
    held_->erase(0, used);
  }
  // An idle connection keeps no buffer, nor does a closing one.
  if (held_ && (held_->empty() || phase_ >= Phase::kClosing)) held_.reset();
  in_input_ = false;
  // Answers made here (HEARTBEAT, errors) leave at the end of the loop's
  // turn, with every other connection's writes; a client pipelining many
  // such requests gets them as they pile up, and a closing connection
  // (its last answer queued) at once.
  if (queued() && phase_ < Phase::kClosing && pending_bytes_ < deferred_answer_limit(loop_.limits()))
    schedule_flush();
  else
    flush();  // releases an empty queue, or lingers when closing
}

std::size_t Connection::process(std::span<char> data) {
  if (ws_) return process_ws(data);
  return process_frames(std::string_view(data.data(), data.size()));
}

std::size_t Connection::process_frames(std::string_view data) {
  std::size_t used = 0;
  while (!paused_ && phase_ < Phase::kClosing) {
    const Decoded d = decode_frame(data.substr(used), frame_limit());
    if (d.status == DecodeStatus::kNeedMore) break;
    if (d.status == DecodeStatus::kBad) {
      fail_framing(d.error);
      return data.size();
    }
    used += d.consumed;
    dispatch(d);
  }
  return used;
}

void Connection::dispatch(const Decoded& d) {
  if (phase_ == Phase::kActive) mark_ms_ = loop_.now_ms();
  metrics::get().frames_in.inc(static_cast<std::uint16_t>(d.header.cmd));
  metrics::get().bytes_in.inc(static_cast<std::uint16_t>(d.header.cmd), d.consumed);
  loop_.service().on_frame(*this, d.header, d.body);
}

std::size_t Connection::process_ws(std::span<char> data) {
  std::size_t used = 0;
  while (!paused_ && phase_ < Phase::kClosing) {
    if (!ws_->open) {
      const std::size_t n = process_http(std::string_view(data.data() + used, data.size() - used));
      if (n == 0) break;
      used += n;
      continue;
    }
    const ws::WsEvent e = ws_->reader.next(data.subspan(used));
    used += e.consumed;
    switch (e.kind) {
      case ws::WsEventKind::kNeedMore: return used;
      case ws::WsEventKind::kMessage: deliver_ws_message(e.payload); break;
      case ws::WsEventKind::kPing:
        refresh_on_control();
        enqueue_raw(ws::encode_frame(ws::Opcode::kPong, e.payload));
        break;
      case ws::WsEventKind::kPong: refresh_on_control(); break;
      case ws::WsEventKind::kClose:  // the peer's close: answer with its code, then end
        close_after_flush(e.close_code);
        return data.size();
      case ws::WsEventKind::kError: fail_ws(e.close_code); return data.size();
    }
  }
  return used;
}

void Connection::refresh_on_control() {
  // A ping or pong keeps a session alive, but not a half-received message:
  // its buffer must not outlive the idle timeout.
  if (phase_ == Phase::kActive && !ws_->reader.in_message()) mark_ms_ = loop_.now_ms();
}

void Connection::deliver_ws_message(std::string_view message) {
  const Decoded d = decode_frame(message, frame_limit());
  if (d.status == DecodeStatus::kBad) {
    fail_framing(d.error);
    return;
  }
  if (d.status == DecodeStatus::kNeedMore || d.consumed != message.size()) {
    fail_framing(StatusCode::kBadFrame, "a WebSocket message must carry exactly one frame");
    return;
  }
  dispatch(d);
}

std::size_t Connection::process_http(std::string_view data) {
  const ws::ParsedRequest p = ws::parse_request(data);
  if (p.status == ws::HeadParse::kNeedMore) return 0;
  if (p.status == ws::HeadParse::kBad) {
    answer_http(ws::http_response(p.error_status, "text/plain; charset=utf-8", "malformed HTTP request\n"));
    return data.size();
  }
  const ws::HttpRequest& req = p.request;
  if (req.path() == "/ws") {
    static const std::vector<std::string> kAnyOrigin;
    ws::UpgradeAnswer a =
        ws::answer_upgrade(req, transport_.allowed_origins ? *transport_.allowed_origins : kAnyOrigin);
    if (a.status != 101) {
      spdlog::debug("loop {}: WebSocket upgrade refused with {}", loop_.index(), a.status);
      answer_http(std::move(a.response));
      return data.size();
    }
    enqueue_raw(std::move(a.response));
    ws_->open = true;
    return p.consumed;
  }
  const bool head_only = req.method == "HEAD";
  if (req.method != "GET" && !head_only) {
    answer_http(ws::http_response(405, "text/plain; charset=utf-8", "GET or HEAD only\n", false,
                                  "Allow: GET, HEAD\r\n"));
    return data.size();
  }
  static const WebRoot kPlaceholderOnly("");
  const WebReply r = (transport_.web_root ? *transport_.web_root : kPlaceholderOnly).get(req.path());
  answer_http(ws::http_response(r.status, r.content_type, r.body, head_only));
  return data.size();
}

void Connection::answer_http(std::string response) {
  // One answer per connection, then closed: its size is the file's (bounded
  // by WebRoot), not counted against the slow-consumer limit.
  pending_bytes_ += response.size();
  queue().push_back(Outgoing(std::make_shared<const std::string>(std::move(response))));
  close_after_flush();
}

void Connection::fail_framing(StatusCode error, std::string_view why) {
  if (why.empty())
    why = error == StatusCode::kFrameTooLarge        ? "body_len over the frame limit"
          : error == StatusCode::kUnsupportedVersion ? "unsupported protocol version"
                                                     : "bad magic";
  spdlog::debug("loop {}: framing violation: {}", loop_.index(), why);
  send(make_error_frame(error, why));
  close_after_flush(error == StatusCode::kFrameTooLarge ? ws::kCloseTooBig : ws::kCloseProtocolError);
}

void Connection::fail_ws(std::uint16_t code) {
  // Too large is a framing violation of the protocol too: ERROR, then 1009.
  if (code == ws::kCloseTooBig) {
    fail_framing(StatusCode::kFrameTooLarge, "WebSocket message over the frame limit");
    return;
  }
  spdlog::debug("loop {}: WebSocket violation, closing with {}", loop_.index(), code);
  close_after_flush(code);
}

void Connection::send(SharedFrame frame) {
  if (phase_ >= Phase::kClosing || !frame) return;
  if (ws_ && !ws_->open) return;  // no frames before the upgrade
  if (compress_) {
    SharedFrame sent = loop_.compressor().compress(frame);
    if (sent != frame) metrics::get().frames_compressed.inc();  // a new frame: the compressed copy
    frame = std::move(sent);
  }
  const auto cmd = static_cast<std::uint16_t>((static_cast<unsigned char>((*frame)[4]) << 8) |
                                              static_cast<unsigned char>((*frame)[5]));
  metrics::get().frames_out.inc(cmd);
  metrics::get().bytes_out.inc(cmd, frame->size());
  Outgoing out(std::move(frame));
  if (ws_) out.head_len = static_cast<std::uint8_t>(ws::encode_head(ws::Opcode::kBinary, out.bytes->size(), out.head));
  enqueue(std::move(out));
}

namespace {

// Drained write queues kept by each loop's thread for its connections'
// next writes: an idle connection holds none (W1), and a busy loop does
// not allocate one per flush. Bounded in count and in each one's capacity.
constexpr std::size_t kSpareQueues = 64;
constexpr std::size_t kSpareQueueCapacity = 64;

}  // namespace

std::vector<Connection::Outgoing>& Connection::queue() {
  if (!queue_) {
    auto& spares = spare_queues();
    if (spares.empty()) {
      queue_ = std::make_unique<std::vector<Outgoing>>();
    } else {
      queue_ = std::move(spares.back());
      spares.pop_back();
    }
  }
  return *queue_;
}

void Connection::release_queue() {
  if (!queue_) return;
  queue_->clear();
  auto& spares = spare_queues();
  if (spares.size() < kSpareQueues && queue_->capacity() <= kSpareQueueCapacity) spares.push_back(std::move(queue_));
  queue_.reset();
}

std::vector<std::unique_ptr<std::vector<Connection::Outgoing>>>& Connection::spare_queues() {
  thread_local std::vector<std::unique_ptr<std::vector<Outgoing>>> spares;
  return spares;
}

void Connection::enqueue_raw(std::string bytes) {
  enqueue(Outgoing(std::make_shared<const std::string>(std::move(bytes))));
}

void Connection::enqueue(Outgoing out) {
  // Answers made while input is processed wait for its end, but not past
  // the deferral limit: a client pipelining many requests in one write
  // gets its answers as they pile up, instead of a close as a slow
  // consumer once they pass server.max_pending_bytes.
  if (in_input_ && phase_ < Phase::kClosing && queued() &&
      pending_bytes_ + out.size() > deferred_answer_limit(loop_.limits())) {
    flush();
    if (phase_ == Phase::kClosed) return;
  }
  pending_bytes_ += out.size();
  if (pending_bytes_ > loop_.limits().max_pending_bytes) {
    spdlog::debug("loop {}: closing a slow consumer ({} bytes unsent)", loop_.index(), pending_bytes_);
    close();
    return;
  }
  queue().push_back(std::move(out));
  schedule_flush();
}

void Connection::schedule_flush() {
  // Inside input processing the flush at its end covers this frame; a write
  // already waiting for writability covers it too. Otherwise flush once at the
  // end of this loop turn, so frames queued together leave in one syscall.
  if (in_input_ || write_waiting_ || flush_posted_) return;
  flush_posted_ = true;
  loop_.flush_at_turn_end(shared_from_this());
}

void Connection::flush_now() {
  flush_posted_ = false;
  flush();
}

std::size_t Connection::gather_for_ring(std::span<iovec> bufs) {
  flush_posted_ = false;
  if (ssl_ || phase_ == Phase::kClosed || write_waiting_ || !queued()) return 0;
  return gather(bufs);
}

std::shared_ptr<void> Connection::detach_queue() {
  pending_bytes_ = 0;
  head_offset_ = 0;
  return std::shared_ptr<void>(std::move(queue_));
}

void Connection::on_written(int result) {
  if (phase_ == Phase::kClosed) return;  // closed by another's result in the same batch
  if (result == -EAGAIN) {
    wait_writable();
    return;
  }
  if (result < 0) {
    close();
    return;
  }
  flush();  // what did not fit in one write, then the queue's release (or the linger of a closing connection)
}

void Connection::flush() {
  if (phase_ == Phase::kClosed || write_waiting_) return;
  while (queued()) {
    asio::error_code ec;
    const std::size_t written = write_some(ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      wait_writable();
      return;
    }
    if (ec == asio::error::in_progress) {  // TLS must read first; the next read flushes
      wait_readable();
      return;
    }
    if (ec) {
      close();
      return;
    }
    consume(written);
  }
  release_queue();  // an idle connection keeps no queue
  if (phase_ == Phase::kClosing) linger();
}

void Connection::consume(std::size_t written) {
  pending_bytes_ -= written;
  std::size_t done = 0;
  std::vector<Outgoing>& q = *queue_;
  while (done < q.size() && written > 0) {
    const std::size_t left = q[done].size() - head_offset_;
    if (written < left) {
      head_offset_ += static_cast<std::uint32_t>(written);
      break;
    }
    written -= left;
    head_offset_ = 0;
    ++done;
  }
  q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(done));
}

std::size_t Connection::gather(std::span<iovec> bufs) const {
  std::size_t count = 0;
  std::size_t skip = head_offset_;
  auto add = [&](const char* data, std::size_t len) {
    if (skip >= len) {
      skip -= len;
      return;
    }
    bufs[count++] = iovec{const_cast<char*>(data + skip), len - skip};
    skip = 0;
  };
  const std::vector<Outgoing>& q = *queue_;  // called only with something queued
  for (std::size_t i = 0; i < q.size() && count + 2 <= bufs.size(); ++i) {
    add(q[i].head.data(), q[i].head_len);
    add(q[i].bytes->data(), q[i].bytes->size());
  }
  return count;
}

std::size_t Connection::write_some(asio::error_code& ec) {
  std::array<iovec, kMaxGather> bufs;
  const std::size_t count = gather(bufs);
  if (!ssl_) return write_fd(fd_, std::span(bufs.data(), count), ec);

  // TLS: up to one record from the loop's scratch buffer. After WANT_WRITE
  // OpenSSL wants the same bytes again (at least as many): the queue's front
  // does not change until written, so rebuilding the copy gives them.
  std::span<char> scratch = loop_.tls_scratch();
  std::size_t len = 0;
  for (std::size_t k = 0; k < count && len < scratch.size(); ++k) {
    const std::size_t n = std::min(bufs[k].iov_len, scratch.size() - len);
    std::memcpy(scratch.data() + len, bufs[k].iov_base, n);
    len += n;
  }
  ERR_clear_error();
  const int r = SSL_write(ssl_, scratch.data(), static_cast<int>(len));
  if (r > 0) return static_cast<std::size_t>(r);
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_WRITE: ec = asio::error::would_block; break;
    case SSL_ERROR_WANT_READ: ec = asio::error::in_progress; break;
    default:
      spdlog::debug("loop {}: TLS write failed: {}", loop_.index(), tls_reason());
      ec = asio::error::connection_aborted;
      break;
  }
  return 0;
}

void Connection::wait_writable() {
  write_waiting_ = true;  // the next EPOLLOUT flushes (on_events)
}

void Connection::close_after_flush(std::uint16_t ws_code) {
  if (phase_ >= Phase::kClosing) return;
  phase_ = Phase::kClosing;
  paused_ = false;
  mark_ms_ = loop_.now_ms();
  if (!in_input_) held_.reset();  // else released when the input is processed (ingest)
  if (ws_) {
    if (ws_->open && !ws_->close_sent) {
      ws_->close_sent = true;
      // A peer's close without a code (1005) is answered by a close without one.
      const std::string payload = ws_code == ws::kCloseNoStatus ? std::string() : ws::close_payload(ws_code);
      Outgoing out(std::make_shared<const std::string>(ws::encode_frame(ws::Opcode::kClose, payload)));
      pending_bytes_ += out.size();
      queue().push_back(std::move(out));
    }
  }
  if (!queued() && !in_input_) {
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
  if (ws_) ws_->reader.release();  // never inside input processing: the queue is flushed
  if (ssl_ && SSL_is_init_finished(ssl_)) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // close_notify, best effort: a full socket drops it
    ERR_clear_error();
  }
  ::shutdown(fd_, SHUT_WR);
  wait_readable();
}

void Connection::discard_input(std::span<char> buf) {
  if (ssl_ && !fin_sent_) {
    // Still flushing through TLS: a write that waited for a read goes on
    // only if the reads go through OpenSSL too.
    for (int i = 0; i < kReadsPerWakeup; ++i) {
      asio::error_code ec;
      read_some(buf, ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        read_ready_ = false;
        break;
      }
      if (ec == asio::error::in_progress) {  // a read that must write first: wait for writability
        flush();
        if (phase_ == Phase::kClosed) return;
        reading_ = true;
        read_wants_write_ = true;
        return;
      }
      if (ec) {
        close();
        return;
      }
    }
    flush();
    wait_readable();
    return;
  }
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    asio::error_code ec;
    read_fd(fd_, buf, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      read_ready_ = false;
      break;
    }
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
  if (fd_ >= 0) {
    loop_.unwatch(fd_);
    ::close(fd_);
    fd_ = -1;
  }
  release_queue();
  pending_bytes_ = 0;
  if (!in_input_) held_.reset();  // else released when the input is processed (ingest)
  // Inside input processing a delivered message may still be in use.
  if (ws_ && !in_input_) ws_->reader.release();
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
  // Frames that arrived behind the pausing one wait in held_.
  if (held_) {
    asio::post(executor(), [self = shared_from_this()] {
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
  if (ws_) ws_->reader.set_max_message(frame_limit() + kHeaderSize);
}

std::uint32_t Connection::frame_limit() const {
  const std::uint32_t configured = loop_.limits().max_frame_bytes;
  return phase_ == Phase::kHandshake ? std::min(configured, kMaxPreLoginBody) : configured;
}

void Connection::set_deadline(std::int64_t wall_s) {
  deadline_s_ = wall_s > 0 && wall_s <= std::int64_t{UINT32_MAX} ? static_cast<std::uint32_t>(wall_s) : 0;
}

void Connection::check_timeout(std::uint32_t now_ms, std::int64_t wall_s) {
  const std::uint32_t elapsed = now_ms - mark_ms_;
  const NetLimits& l = loop_.limits();
  if (deadline_s_ != 0 && wall_s >= deadline_s_ && phase_ == Phase::kActive) {
    deadline_s_ = 0;
    loop_.service().on_deadline(*this);
    return;
  }
  switch (phase_) {
    case Phase::kHandshake:
      if (elapsed >= l.auth_timeout_ms) {
        spdlog::debug("loop {}: closing a connection that did not log in", loop_.index());
        close_on_timeout();
      }
      break;
    case Phase::kActive:
      if (elapsed >= l.idle_timeout_ms) {
        spdlog::debug("loop {}: closing a silent session", loop_.index());
        close_on_timeout();
      }
      break;
    case Phase::kClosing:
      if (elapsed >= l.closing_grace_ms) close();
      break;
    case Phase::kClosed: break;
  }
}

void Connection::close_on_timeout() {
  // A WebSocket peer is told why (1001) within the closing grace; a TCP one
  // is simply closed: nothing of ours can be in flight that it waits for.
  if (ws_ && ws_->open) {
    close_after_flush(ws::kCloseGoingAway);
    return;
  }
  close();
}

void send_from_any_thread(const std::shared_ptr<Connection>& conn, SharedFrame frame) {
  if (!conn) return;
  asio::post(conn->executor(), [conn, frame = std::move(frame)]() mutable { conn->send(std::move(frame)); });
}

void send_to_all_from_any_thread(std::vector<std::shared_ptr<Connection>> conns,
                                 const std::vector<SharedFrame>& frames) {
  std::sort(conns.begin(), conns.end(), [](const auto& a, const auto& b) { return &a->loop() < &b->loop(); });
  for (auto first = conns.begin(); first != conns.end();) {
    IoLoop* loop = &(*first)->loop();
    auto last = std::find_if(first, conns.end(), [loop](const auto& c) { return &c->loop() != loop; });
    std::vector<std::shared_ptr<Connection>> run(std::make_move_iterator(first), std::make_move_iterator(last));
    auto executor = run.front()->executor();
    asio::post(executor, [run = std::move(run), frames] {
      for (const auto& c : run)
        for (const auto& f : frames) c->send(f);
    });
    first = last;
  }
}

}  // namespace im::net
