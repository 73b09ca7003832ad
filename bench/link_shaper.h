#pragma once
// A slow mobile link in the process, for W8: a TCP relay on a loopback port
// in front of the server that holds every byte for `delay` in each
// direction and lets the server's bytes out at `down_bytes_per_s` (the way
// a link's bottleneck serialises them, then the propagation delay). Up is
// not rate-limited. One client connection at a time; blocking sockets and
// four threads (a reader and a writer per direction): the relay's own cost
// is nothing next to the link it imitates. A connection's bytes flow only
// after 2 x delay (the TCP handshake's round trip). The queues are not
// bounded: the server never feels back-pressure (a resync of a bounded
// inbox is all it is for).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace imbench {

class LinkShaper {
 public:
  struct Options {
    std::string server_host = "127.0.0.1";
    std::uint16_t server_port = 0;
    std::chrono::milliseconds delay{100};
    std::uint64_t down_bytes_per_s = 32 * 1024;
  };

  explicit LinkShaper(Options options);
  ~LinkShaper();
  LinkShaper(const LinkShaper&) = delete;
  LinkShaper& operator=(const LinkShaper&) = delete;

  // The loopback port clients connect to.
  std::uint16_t port() const { return port_; }
  // Bytes relayed from the server to the client (the link's down traffic),
  // and from the client to the server, since the start.
  std::uint64_t bytes_down() const { return bytes_down_.load(); }
  std::uint64_t bytes_up() const { return bytes_up_.load(); }

 private:
  struct Pipe;
  void accept_loop();

  Options options_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> bytes_down_{0}, bytes_up_{0};
  std::vector<std::shared_ptr<Pipe>> pipes_;
  std::thread acceptor_;
};

}  // namespace imbench
