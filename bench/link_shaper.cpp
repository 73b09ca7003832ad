#include "link_shaper.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>

namespace imbench {
namespace {

using Clock = std::chrono::steady_clock;

// About one TCP segment: the rate is applied at this grain.
constexpr std::size_t kChunk = 1400;

int connect_to(const std::string& host, std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void no_delay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

// One direction of one connection: the reader stamps each chunk with the
// time it leaves the link, the writer hands it on then.
struct LinkShaper::Pipe {
  struct Chunk {
    Clock::time_point due;
    std::string bytes;
  };
  int from = -1, to = -1;
  bool down = false;
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Chunk> queue;
  bool ended = false;
  std::thread reader, writer;
};

LinkShaper::LinkShaper(Options options) : options_(std::move(options)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 4) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    throw std::runtime_error("link shaper: cannot listen on loopback");
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

LinkShaper::~LinkShaper() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  for (auto& p : pipes_) {
    ::shutdown(p->from, SHUT_RDWR);
    ::shutdown(p->to, SHUT_RDWR);
    {
      std::lock_guard lock(p->mutex);
      p->ended = true;
    }
    p->cv.notify_all();
  }
  for (auto& p : pipes_) {
    p->reader.join();
    p->writer.join();
  }
  // Each connection's two fds appear in both of its pipes: close them once.
  for (auto& p : pipes_)
    if (p->down) {
      ::close(p->from);
      ::close(p->to);
    }
  ::close(listen_fd_);
}

void LinkShaper::accept_loop() {
  while (!stopping_) {
    const int client = ::accept(listen_fd_, nullptr, nullptr);
    if (client < 0) {
      if (stopping_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // EMFILE and the like
      continue;
    }
    // The TCP handshake's round trip, which the loopback connect skipped:
    // the client's first bytes wait in the socket meanwhile.
    for (auto waited = std::chrono::milliseconds(0); waited < 2 * options_.delay && !stopping_;
         waited += std::chrono::milliseconds(10))
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const int server = connect_to(options_.server_host, options_.server_port);
    if (server < 0) {
      ::close(client);
      continue;
    }
    no_delay(client);
    no_delay(server);
    auto up = std::make_shared<Pipe>();
    up->from = client;
    up->to = server;
    auto down = std::make_shared<Pipe>();
    down->from = server;
    down->to = client;
    down->down = true;
    for (const auto& p : {up, down}) {
      Pipe* pipe = p.get();
      pipe->reader = std::thread([this, pipe] {
        auto& counter = pipe->down ? bytes_down_ : bytes_up_;
        Clock::time_point link_free = Clock::now();
        char buf[kChunk];
        for (;;) {
          const ssize_t n = ::read(pipe->from, buf, sizeof buf);
          const auto now = Clock::now();
          std::lock_guard lock(pipe->mutex);
          if (n <= 0) {
            pipe->ended = true;
            pipe->cv.notify_all();
            return;
          }
          counter += static_cast<std::uint64_t>(n);
          Clock::time_point due = now + options_.delay;
          if (pipe->down) {
            // Serialised at the link's rate behind what is already on it.
            link_free = std::max(link_free, now) +
                        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                            static_cast<double>(n) / static_cast<double>(options_.down_bytes_per_s)));
            due = link_free + options_.delay;
          }
          pipe->queue.push_back({due, std::string(buf, static_cast<std::size_t>(n))});
          pipe->cv.notify_all();
        }
      });
      pipe->writer = std::thread([this, pipe] {
        for (;;) {
          std::unique_lock lock(pipe->mutex);
          pipe->cv.wait(lock, [&] { return !pipe->queue.empty() || pipe->ended || stopping_; });
          if (pipe->queue.empty() || stopping_) {
            ::shutdown(pipe->to, SHUT_WR);
            return;
          }
          Pipe::Chunk chunk = std::move(pipe->queue.front());
          pipe->queue.pop_front();
          lock.unlock();
          std::this_thread::sleep_until(chunk.due);
          for (std::size_t off = 0; off < chunk.bytes.size();) {
            const ssize_t w = ::write(pipe->to, chunk.bytes.data() + off, chunk.bytes.size() - off);
            if (w <= 0) return;
            off += static_cast<std::size_t>(w);
          }
        }
      });
    }
    pipes_.push_back(up);
    pipes_.push_back(down);
  }
}

}  // namespace imbench
