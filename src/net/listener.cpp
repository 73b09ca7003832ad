#include "net/listener.h"

#include <array>
#include <atomic>
#include <chrono>
#include <future>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <asio/post.hpp>
#include <asio/write.hpp>

#include "net/admission_control.h"
#include "net/connection.h"
#include "net/frames.h"
#include "net/io_loop.h"
#include "net/ws_handshake.h"

namespace im::net {
namespace {

// A refused connection lingers after its answer for at most this long, or
// until the client has sent this much more, and at most this many linger
// at once per listener (beyond that one is closed at once: under a flood
// the descriptors matter more than the answer). The descriptors are part of
// the file-limit reserve (src/main.cpp).
constexpr auto kRefusalLinger = std::chrono::milliseconds(1000);
constexpr std::size_t kRefusalDrainBytes = 65536;
constexpr std::uint32_t kMaxLingering = 32;

// A refused connection after its answer and FIN: reads and drops what the
// client sends (a LOGIN sent at once, say) until it closes, then closes
// too. Closing with unread input would make the kernel send an RST, which
// can destroy the answer before the client has read it. Runs on the
// socket's loop.
class Refusal : public std::enable_shared_from_this<Refusal> {
 public:
  Refusal(Connection::Socket socket, std::shared_ptr<std::atomic<std::uint32_t>> lingering)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), lingering_(std::move(lingering)) {}
  ~Refusal() { lingering_->fetch_sub(1, std::memory_order_relaxed); }

  void start() {
    timer_.expires_after(kRefusalLinger);
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec) self->close();
    });
    wait();
  }

 private:
  void wait() {
    socket_.async_wait(Connection::Socket::wait_read,
                       [self = shared_from_this()](const asio::error_code& ec) { self->on_readable(ec); });
  }
  void on_readable(const asio::error_code& wait_ec) {
    if (wait_ec || !socket_.is_open()) return close();
    std::array<char, 4096> buf;
    for (;;) {
      asio::error_code ec;
      const std::size_t n = socket_.read_some(asio::buffer(buf), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;
      drained_ += n;
      if (ec || drained_ >= kRefusalDrainBytes) return close();  // eof: the client has closed
    }
    wait();
  }
  void close() {
    asio::error_code ec;
    timer_.cancel();
    socket_.close(ec);
  }

  Connection::Socket socket_;
  asio::steady_timer timer_;
  std::shared_ptr<std::atomic<std::uint32_t>> lingering_;
  std::size_t drained_ = 0;
};

// Answers a refused connection where its transport allows, sends FIN, and
// lets it linger (Refusal) unless too many do already; a TLS one is closed.
void refuse(const Transport& transport, Connection::Socket socket, std::uint32_t retry_after_ms,
            const std::shared_ptr<std::atomic<std::uint32_t>>& lingering) {
  asio::error_code ec;
  if (transport.tls) {
    socket.close(ec);
    return;
  }
  std::string answer;
  if (transport.websocket) {
    answer = ws::http_response(503, "text/plain; charset=utf-8", "server busy\n", false,
                               fmt::format("Retry-After: {}\r\n", (retry_after_ms + 999) / 1000));
  } else {
    answer = *make_error_frame(StatusCode::kUnavailable, "server busy", retry_after_ms);
  }
  socket.non_blocking(true, ec);
  socket.write_some(asio::buffer(answer), ec);
  socket.shutdown(Connection::Socket::shutdown_send, ec);
  if (lingering->fetch_add(1, std::memory_order_relaxed) >= kMaxLingering) {
    lingering->fetch_sub(1, std::memory_order_relaxed);
    socket.close(ec);
    return;
  }
  // The socket belongs to a loop's context: its reads and timer run there.
  auto executor = socket.get_executor();
  auto refusal = std::make_shared<Refusal>(std::move(socket), lingering);
  asio::post(executor, [refusal] { refusal->start(); });
}

}  // namespace

Listener::Listener(IoLoop& accept_loop, std::vector<IoLoop*> loops, AdmissionControl& admission,
                   const asio::ip::tcp::endpoint& endpoint, const Transport& transport)
    : accept_loop_(accept_loop),
      loops_(std::move(loops)),
      admission_(admission),
      transport_(transport),
      acceptor_(accept_loop.context()),
      backoff_(accept_loop.context()) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  local_ = acceptor_.local_endpoint();
}

void Listener::start() {
  asio::post(accept_loop_.context(), [this] { accept_next(); });
}

void Listener::stop() {
  std::promise<void> done;
  asio::post(accept_loop_.context(), [&] {
    asio::error_code ec;
    acceptor_.close(ec);
    backoff_.cancel();
    done.set_value();
  });
  done.get_future().wait();
}

void Listener::accept_next() {
  IoLoop& target = *loops_[next_++ % loops_.size()];
  acceptor_.async_accept(target.context(), [this, &target](const asio::error_code& ec, Connection::Socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Out of descriptors or memory: wait a little rather than spin.
      spdlog::warn("accept failed: {}", ec.message());
      backoff_.expires_after(std::chrono::milliseconds(50));
      backoff_.async_wait([this](const asio::error_code& wait_ec) {
        if (!wait_ec) accept_next();
      });
      return;
    }
    asio::error_code peer_ec;
    const auto peer = socket.remote_endpoint(peer_ec);
    const std::uint64_t key = peer_ec ? 0 : AdmissionControl::peer_key(peer.address());
    if (auto retry_after_ms = admission_.try_admit(key)) {
      refuse(transport_, std::move(socket), *retry_after_ms, lingering_);
    } else {
      asio::post(target.context(), [this, &target, key, s = std::move(socket)]() mutable {
        auto conn = std::make_shared<Connection>(target, std::move(s), key, transport_);
        target.add(conn);
        conn->start();
      });
    }
    accept_next();
  });
}

}  // namespace im::net
