#pragma once
// A client connection: framing, reads, batched writes and timeouts. Speaks
// frames only; what they mean is the ServiceInterface's business.
//
// Every method runs on the owning loop's thread (post to executor() from
// elsewhere). Memory while idle: no read buffer (bytes are read into the
// loop's buffer and only a partial frame is kept), an empty write queue, and
// one pending readiness wait.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "net/frames.h"
#include "net/service_interface.h"

namespace im::net {

class IoLoop;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Socket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;
  enum class Phase : std::uint8_t {
    kHandshake,  // not logged in: the auth timeout runs
    kActive,     // logged in: the idle timeout runs, reset by every frame
    kClosing,    // flushing what is queued, then closed (within the closing grace)
    kClosed,
  };

  // `peer_key` identifies the peer for the per-IP admission count.
  Connection(IoLoop& loop, Socket socket, std::uint64_t peer_key);
  ~Connection();

  void start();
  // Queues a frame; written in one gathered syscall with whatever else is
  // queued this turn. Dropped once closing. Over max_pending_bytes: closed.
  void send(SharedFrame frame);
  void close_after_flush();
  void close();
  void pause_reading();
  void resume_reading();
  void set_active();

  Phase phase() const { return phase_; }
  bool is_open() const { return phase_ != Phase::kClosed; }
  IoLoop& loop() { return loop_; }
  asio::io_context::executor_type executor() { return socket_.get_executor(); }
  ConnectionContext* context() { return context_.get(); }
  std::uint64_t pending_bytes() const { return pending_bytes_; }
  // The sweep: closes the connection when its phase's deadline has passed.
  void check_timeout(std::uint32_t now_ms);

  // The registry slot, kept by IoLoop.
  std::uint32_t slot = 0;

 private:
  void wait_readable();
  void on_readable(const asio::error_code& ec);
  void ingest(std::string_view data);
  std::size_t process(std::string_view data);
  void schedule_flush();
  void flush();
  void fail_framing(StatusCode error);
  void linger();
  void discard_input(std::span<char> buf);

  IoLoop& loop_;
  Socket socket_;
  std::unique_ptr<ConnectionContext> context_;
  std::string partial_;             // an incomplete frame, or input held while paused
  std::vector<SharedFrame> queue_;  // not yet written; the first may be partly written
  std::uint64_t pending_bytes_ = 0;
  std::uint64_t peer_key_;
  std::uint32_t head_offset_ = 0;  // bytes of queue_[0] already written
  std::uint32_t mark_ms_ = 0;      // start of the current phase's deadline
  Phase phase_ = Phase::kHandshake;
  bool reading_ = false;
  bool paused_ = false;
  bool in_input_ = false;
  bool flush_posted_ = false;
  bool write_waiting_ = false;
  bool fin_sent_ = false;
};

// Sends `frame` on `conn` from any thread (posted to the connection's loop).
void send_from_any_thread(const std::shared_ptr<Connection>& conn, SharedFrame frame);

}  // namespace im::net
