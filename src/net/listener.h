#pragma once
// A TCP listener: accepts on one loop and hands each admitted connection to
// the I/O loops in turn. A refused connection gets one ERROR frame
// (UNAVAILABLE, retry_after_ms) and is closed.

#include <memory>
#include <string>
#include <vector>

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

namespace im::net {

class AdmissionControl;
class IoLoop;

class Listener {
 public:
  // Binds and listens at once (throws std::system_error when it cannot);
  // accepting starts with start().
  Listener(IoLoop& accept_loop, std::vector<IoLoop*> loops, AdmissionControl& admission,
           const asio::ip::tcp::endpoint& endpoint);
  void start();
  // Thread safe; returns once the acceptor is closed.
  void stop();
  asio::ip::tcp::endpoint local_endpoint() const { return local_; }

 private:
  void accept_next();

  IoLoop& accept_loop_;
  std::vector<IoLoop*> loops_;
  AdmissionControl& admission_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer backoff_;
  asio::ip::tcp::endpoint local_;
  std::size_t next_ = 0;
};

}  // namespace im::net
