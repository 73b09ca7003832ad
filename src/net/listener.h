#pragma once
// A listener: accepts on one loop and hands each admitted connection to the
// I/O loops in turn, speaking its Transport. A refused connection is closed
// after one answer where the transport allows one before any handshake: an
// ERROR frame (UNAVAILABLE, retry_after_ms) on plain TCP, an HTTP 503 with
// Retry-After on plain WebSocket; on TLS it is closed without a word (a
// handshake would spend the CPU the refusal saves). After the answer it
// sends FIN and drops what the client still sends for up to a second, so
// the answer is not lost to an RST (listener.cpp, Refusal).

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "net/transport.h"

namespace im::net {

class AdmissionControl;
class IoLoop;

class Listener {
 public:
  // Binds and listens at once (throws std::system_error when it cannot);
  // accepting starts with start().
  Listener(IoLoop& accept_loop, std::vector<IoLoop*> loops, AdmissionControl& admission,
           const asio::ip::tcp::endpoint& endpoint, const Transport& transport);
  void start();
  // Thread safe; returns once the acceptor is closed.
  void stop();
  asio::ip::tcp::endpoint local_endpoint() const { return local_; }

 private:
  void accept_next();

  IoLoop& accept_loop_;
  std::vector<IoLoop*> loops_;
  AdmissionControl& admission_;
  const Transport& transport_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer backoff_;
  asio::ip::tcp::endpoint local_;
  std::size_t next_ = 0;
  // Refused connections lingering after their answer (shared with them:
  // they may outlive the listener on their loops).
  std::shared_ptr<std::atomic<std::uint32_t>> lingering_ = std::make_shared<std::atomic<std::uint32_t>>(0);
};

}  // namespace im::net
