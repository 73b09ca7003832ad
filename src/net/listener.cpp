#include "net/listener.h"

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

// Answers a refused connection where its transport allows, then closes it.
void refuse(const Transport& transport, Connection::Socket& socket, std::uint32_t retry_after_ms) {
  asio::error_code ec;
  if (!transport.tls) {
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
  }
  socket.close(ec);
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
      refuse(transport_, socket, *retry_after_ms);
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
