#pragma once
// A client connection: framing, reads, batched writes and timeouts, over
// plain TCP or TLS, with frames straight on the stream or inside WebSocket
// messages (Transport). Speaks frames only; what they mean is the
// ServiceInterface's business, and a WebSocket session is the same kind of
// session as a TCP one.
//
// Every method runs on the owning loop's thread (post to executor() from
// elsewhere). Memory while idle: no read buffer (bytes are read into the
// loop's buffer and only a partial frame is kept), an empty write queue, and
// the socket's registration on the loop's epoll (IoLoop::watch). TLS runs
// OpenSSL on the socket itself in non-blocking mode (SSL_set_fd), so it keeps
// the same readiness model and, with released buffers, no record buffers
// while idle.

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <sys/uio.h>

#include <openssl/ssl.h>

#include "im/frame_codec.h"
#include "net/frames.h"
#include "net/service_interface.h"
#include "net/transport.h"
#include "net/ws_codec.h"

namespace im::net {

class IoLoop;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Socket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;
  static constexpr std::size_t kMaxGather = 64;  // buffers per write (a WebSocket frame takes two)
  enum class Phase : std::uint8_t {
    kHandshake,  // not logged in: the auth timeout runs
    kActive,     // logged in: the idle timeout runs, reset by every frame
    kClosing,    // flushing what is queued, then closed (within the closing grace)
    kClosed,
  };

  // `peer_key` identifies the peer for the per-IP admission count. Takes
  // the socket's descriptor from Asio: the loop's epoll watches it.
  Connection(IoLoop& loop, Socket socket, std::uint64_t peer_key, const Transport& transport);
  ~Connection();

  void start();
  // Queues a frame; written at the end of this loop turn, in one gathered
  // write with whatever else is queued on this connection. Dropped once
  // closing, and on a WebSocket connection before its upgrade. Over
  // max_pending_bytes: closed.
  void send(SharedFrame frame);
  // Flushes what is queued, then closes (a WebSocket connection sends a close
  // frame with `ws_code` first: ws::kCloseNormal for a kick or a logout,
  // ws::kCloseGoingAway when the server shuts down).
  void close_after_flush(std::uint16_t ws_code = ws::kCloseNormal);
  void close();
  void pause_reading();
  void resume_reading();
  void set_active();
  // From now on, frame bodies worth it go out zstd-compressed (PROTOCOL 1):
  // the session asked for it at LOGIN.
  void set_compression() { compress_ = true; }
  // A deadline on the wall clock (seconds since the epoch) for the service:
  // once it has passed, the sweep calls ServiceInterface::on_deadline (a
  // token's `exp`). 0 clears it; one after 2106 never comes.
  void set_deadline(std::int64_t wall_s);

  Phase phase() const { return phase_; }
  bool is_open() const { return phase_ != Phase::kClosed; }
  IoLoop& loop() { return loop_; }
  asio::io_context::executor_type executor();
  ConnectionContext* context() { return context_.get(); }
  std::uint64_t pending_bytes() const { return pending_bytes_; }
  // The sweep: closes the connection when its phase's deadline has passed,
  // and tells the service when the wall-clock deadline has (`wall_s`).
  void check_timeout(std::uint32_t now_ms, std::int64_t wall_s);
  // Readiness from the loop's epoll (EPOLLIN, EPOLLOUT, ... bits). With
  // `ring_read`, a plain socket with input to read does not read it: true
  // asks the loop for one read into a buffer of its own, whose result it
  // then hands to on_ring_read (the loop reads many sockets in one
  // io_uring_enter).
  bool on_events(std::uint32_t events, bool ring_read = false);
  // The loop's read for on_events: the bytes read into `buf` (0: the peer
  // has closed) or -errno.
  void on_ring_read(int result, std::span<char> buf);

 private:
  friend class IoLoop;  // keeps `slot`

  // A queued write: `bytes`, after `head_len` bytes of `head` (a WebSocket
  // frame header; none on TCP, and none for bytes already framed).
  struct Outgoing {
    explicit Outgoing(SharedFrame b) : bytes(std::move(b)) {}
    SharedFrame bytes;
    std::array<char, ws::kMaxHeadSize> head{};
    std::uint8_t head_len = 0;
    std::size_t size() const { return head_len + bytes->size(); }
  };
  struct WebSocket;

  // The largest frame body accepted now: 16 KiB before LOGIN (PROTOCOL 1).
  std::uint32_t frame_limit() const;
  // What a read's result means for the reads after it.
  enum class ReadStep : std::uint8_t {
    kMore,     // read on (a full buffer, or TLS's record at a time)
    kDrained,  // nothing more for now: wait for readiness again
    kDone,     // closed, or TLS waits for writability: nothing more to do
  };
  void wait_readable();
  void on_readable();
  // Readiness handled: false when there is nothing to read (closed, or
  // closing, whose input is dropped here).
  bool begin_read();
  // Up to `reads` reads into the loop's buffer, then end_read.
  void read_on(int reads);
  // Handles one read's outcome: `data` read after asking for `asked` bytes,
  // or `ec`.
  ReadStep take_read(std::span<char> data, asio::error_code ec, std::size_t asked);
  void end_read();
  // on_events with `ring_read`: whether the loop should read for it.
  bool want_ring_read();
  // Whether the loop may still read for it (not closed, closing or paused
  // since on_events asked).
  bool ring_readable() const { return phase_ < Phase::kClosing && !paused_ && fd_ >= 0; }
  std::size_t read_some(std::span<char> buf, asio::error_code& ec);
  void ingest(std::span<char> data);
  std::size_t process(std::span<char> data);
  std::size_t process_frames(std::string_view data);
  std::size_t process_ws(std::span<char> data);
  std::size_t process_http(std::string_view data);
  void deliver_ws_message(std::string_view message);
  void dispatch(const Decoded& d);
  void answer_http(std::string response);
  void enqueue(Outgoing out);
  bool queued() const { return queue_ && !queue_->empty(); }
  // The write queue, taken from the thread's spares when there is none.
  std::vector<Outgoing>& queue();
  // Gives a drained queue back to the thread's spares.
  void release_queue();
  static std::vector<std::unique_ptr<std::vector<Outgoing>>>& spare_queues();
  void enqueue_raw(std::string bytes);
  void schedule_flush();
  void flush();
  // The loop's end-of-turn flush (IoLoop::flush_all): writes itself...
  void flush_now();
  // ...or, a plain socket with output and room, hands its buffers to the
  // loop's ring: their count (0: flush_now instead). The queue stays as it
  // is until the kernel's result: the bytes written are consume()d for
  // every connection of the batch first, then on_written(result: bytes or
  // -errno) of each writes the rest or closes, so no code runs while a
  // queue still holds bytes already sent.
  std::size_t gather_for_ring(std::span<iovec> bufs);
  // The queue, taken away whole (pending bytes back to 0): for a ring that
  // failed with this connection's send perhaps still in the kernel, which
  // may read its frames and WebSocket heads (IoLoop::flush_through_ring).
  std::shared_ptr<void> detach_queue();
  void on_written(int result);
  // The queue's unwritten bytes as buffers, as many as fit in `bufs`.
  std::size_t gather(std::span<iovec> bufs) const;
  // Drops `written` bytes from the queue's front.
  void consume(std::size_t written);
  std::size_t write_some(asio::error_code& ec);
  void wait_writable();
  void fail_framing(StatusCode error, std::string_view why = {});
  void fail_ws(std::uint16_t code);
  void refresh_on_control();
  void close_on_timeout();
  void linger();
  void discard_input(std::span<char> buf);

  // An idle connection's size is a goal (bench/ANALYSIS.md, W1): members
  // are ordered to leave no padding, and input kept between reads and
  // output not yet written sit behind pointers, null while there is none,
  // and the flags are bits (one memory location: the loop's thread alone
  // touches them). With its shared_ptr block, 128 bytes: jemalloc's
  // 128-byte class (a 144-byte chunk under glibc's malloc).
  IoLoop& loop_;
  const Transport& transport_;
  std::unique_ptr<ConnectionContext> context_;
  std::unique_ptr<WebSocket> ws_;      // WebSocket listeners only
  SSL* ssl_ = nullptr;                 // TLS listeners only; owned
  std::unique_ptr<std::string> held_;  // an incomplete frame, or input held while paused; never empty
  // Not yet written; the first may be partly written. Null while empty.
  std::unique_ptr<std::vector<Outgoing>> queue_;
  std::uint64_t pending_bytes_ = 0;
  std::uint64_t peer_key_;
  int fd_ = -1;
  std::uint32_t slot = 0;          // the registry slot, kept by IoLoop (a friend)
  std::uint32_t head_offset_ = 0;  // bytes of queue_[0] already written
  std::uint32_t mark_ms_ = 0;      // start of the current phase's deadline
  std::uint32_t deadline_s_ = 0;   // set_deadline's, 0: none
  Phase phase_ = Phase::kHandshake;
  bool reading_ : 1 = false;           // on_readable is wanted at the next readiness
  bool read_ready_ : 1 = true;         // input may be waiting: no read has come back short since the last event
  bool read_wants_write_ : 1 = false;  // TLS: a read waits for writability
  bool read_posted_ : 1 = false;       // a read is posted (wait_readable): events wait for it
  bool peer_gone_ : 1 = false;         // a hang-up or an error was signalled: read until the read reports it
  bool paused_ : 1 = false;
  bool in_input_ : 1 = false;
  bool flush_posted_ : 1 = false;
  bool write_waiting_ : 1 = false;
  bool fin_sent_ : 1 = false;
  bool compress_ : 1 = false;
};

// Sends `frame` on `conn` from any thread (posted to the connection's loop).
void send_from_any_thread(const std::shared_ptr<Connection>& conn, SharedFrame frame);
// Sends `frames` on every connection of `conns` from any thread, with one
// post per loop rather than one per connection (a large group's PUSH).
void send_to_all_from_any_thread(std::vector<std::shared_ptr<Connection>> conns,
                                 const std::vector<SharedFrame>& frames);

}  // namespace im::net
