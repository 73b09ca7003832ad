// The client library's WebSocket closing (im::Client, include/im/client.h):
// ws_close() ends the connection even when the server never answers the
// close, and a request made when nothing can be sent any more is dropped at
// once instead of waiting for an answer that cannot come. Against a fake
// server that upgrades and then only reads, and against the real binary.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <asio/io_context.hpp>

#include "im/client.h"
#include "server_process.h"
#include "wait_until.h"
#include "ws_raw.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

// A WebSocket "server" on 127.0.0.1 for one client: it answers the upgrade
// with 101, then reads and drops whatever comes and never sends a byte more:
// no close frame, no FIN. It notes whether a close frame came and whether
// the client then closed its socket. Everything it does is bounded by 30 s.
class SilentWsServer {
 public:
  SilentWsServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(listen_fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_fd_, 1) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~SilentWsServer() {
    stop_ = true;
    thread_.join();
    if (conn_fd_ >= 0) ::close(conn_fd_);
    ::close(listen_fd_);
  }
  SilentWsServer(const SilentWsServer&) = delete;
  SilentWsServer& operator=(const SilentWsServer&) = delete;

  std::uint16_t port() const { return port_; }
  bool upgraded() const { return upgraded_; }
  // A client close frame (FIN + opcode 8) came after the upgrade.
  bool saw_close() const { return saw_close_; }
  // The client ended the TCP connection.
  bool peer_closed() const { return peer_closed_; }

 private:
  bool wait_readable(int fd, std::chrono::steady_clock::time_point deadline) {
    while (!stop_ && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) return true;
    }
    return false;
  }

  // Drops the whole client frames at the front of `in`, noting a close.
  void skip_frames(std::string& in) {
    for (;;) {
      if (in.size() < 2) return;
      const auto b0 = static_cast<std::uint8_t>(in[0]);
      const auto b1 = static_cast<std::uint8_t>(in[1]);
      std::uint64_t len = b1 & 0x7F;
      std::size_t pos = 2;
      if (len == 126) {
        if (in.size() < 4) return;
        len = (static_cast<std::uint64_t>(static_cast<std::uint8_t>(in[2])) << 8) | static_cast<std::uint8_t>(in[3]);
        pos = 4;
      } else if (len == 127) {
        if (in.size() < 10) return;
        len = 0;
        for (std::size_t i = 2; i < 10; ++i) len = (len << 8) | static_cast<std::uint8_t>(in[i]);
        pos = 10;
      }
      if ((b1 & 0x80) != 0) pos += 4;
      if (in.size() < pos || in.size() - pos < len) return;
      if ((b0 & 0x0F) == 0x8) saw_close_ = true;
      in.erase(0, pos + static_cast<std::size_t>(len));
    }
  }

  void run() {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    if (!wait_readable(listen_fd_, deadline)) return;
    conn_fd_ = ::accept(listen_fd_, nullptr, nullptr);
    if (conn_fd_ < 0) return;
    std::string in;
    std::size_t end = std::string::npos;
    while ((end = in.find("\r\n\r\n")) == std::string::npos) {
      if (!wait_readable(conn_fd_, deadline)) return;
      char buf[4096];
      const ssize_t n = ::recv(conn_fd_, buf, sizeof buf, 0);
      if (n <= 0) return;
      in.append(buf, static_cast<std::size_t>(n));
    }
    const std::string head = in.substr(0, end);
    in.erase(0, end + 4);
    std::string key;
    const std::string name = "sec-websocket-key:";
    for (std::size_t pos = 0; pos < head.size();) {
      std::size_t eol = head.find("\r\n", pos);
      if (eol == std::string::npos) eol = head.size();
      std::string line = head.substr(pos, eol - pos);
      pos = eol + 2;
      std::string lowered = line;
      for (char& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lowered.rfind(name, 0) != 0) continue;
      key = line.substr(name.size());
      while (!key.empty() && key.front() == ' ') key.erase(0, 1);
      while (!key.empty() && key.back() == ' ') key.pop_back();
    }
    const std::string answer =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
        ws_accept_for(key) + "\r\n\r\n";
    if (::send(conn_fd_, answer.data(), answer.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(answer.size())) return;
    upgraded_ = true;
    for (;;) {
      skip_frames(in);
      if (!wait_readable(conn_fd_, deadline)) return;
      char buf[4096];
      const ssize_t n = ::recv(conn_fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        peer_closed_ = true;
        return;
      }
      in.append(buf, static_cast<std::size_t>(n));
    }
  }

  int listen_fd_ = -1;
  int conn_fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> upgraded_{false};
  std::atomic<bool> saw_close_{false};
  std::atomic<bool> peer_closed_{false};
};

// Runs `io` on this thread until `done` holds or `timeout` passed; whether it held.
template <class Done>
bool run_until(asio::io_context& io, Done done, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    if (io.stopped()) io.restart();
    io.run_for(20ms);
  }
  return done();
}

struct Watched {
  std::shared_ptr<int> token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  bool called = false;
  // A response handler that owns the token: when the client drops the
  // handler, the token goes with it.
  Client::FrameHandler handler() {
    return [this, t = std::move(token)](Frame&) { called = true; };
  }
  bool dropped() const { return watch.expired(); }
};

struct Connected {
  std::shared_ptr<Client> client;
  std::optional<asio::error_code> closed;
};

void connect(asio::io_context& io, Connected& c, ClientOptions options, std::uint16_t port) {
  c.client = Client::create(io, std::move(options));
  c.client->on_close([&c](const asio::error_code& ec) { c.closed = ec; });
  std::optional<asio::error_code> connected;
  c.client->connect({asio::ip::make_address("127.0.0.1"), port},
                    [&connected](const asio::error_code& ec) { connected = ec; });
  REQUIRE(run_until(io, [&] { return connected.has_value(); }));
  INFO(connected->message());
  REQUIRE_FALSE(*connected);
}

// A condition for run_until: the connection of `c` ended.
auto ended(const Connected& c) {
  return [&c] { return c.closed.has_value(); };
}

ClientOptions ws_options() {
  ClientOptions o;
  o.transport = Transport::kWs;
  return o;
}

}  // namespace

TEST_CASE("client: ws_close() closes the socket after kWsCloseTimeout when the server never answers the close") {
  SilentWsServer fake;
  asio::io_context io;
  Connected c;
  connect(io, c, ws_options(), fake.port());
  REQUIRE(fake.upgraded());
  // a request before the close: pending, since the fake never answers
  Watched before;
  CHECK(c.client->request(Cmd::kHeartbeat, std::string_view{}, before.handler()) != 0);
  CHECK(c.client->pending_requests() == 1);
  c.client->ws_close(1000);
  // a request after ws_close() cannot be sent: dropped at once, never pending
  Watched after;
  CHECK(c.client->request(Cmd::kHeartbeat, std::string_view{}, after.handler()) == 0);
  CHECK(c.client->pending_requests() == 1);
  CHECK(after.dropped());
  CHECK_FALSE(after.called);
  // the server never answers: the client ends the connection itself
  REQUIRE(run_until(io, ended(c), 15s));
  CHECK(*c.closed == asio::error::timed_out);
  CHECK_FALSE(c.client->is_open());
  CHECK(c.client->ws_close_code() == 0);  // no close came from the server
  CHECK(c.client->pending_requests() == 0);
  CHECK(before.dropped());  // the pending request's handler is dropped, as on any end
  CHECK_FALSE(before.called);
  // the fake saw our close frame, then the end of the connection
  CHECK(wait_until([&] { return fake.saw_close(); }));
  CHECK(wait_until([&] { return fake.peer_closed(); }));
  // and after the end, too, a request is dropped at once
  Watched late;
  CHECK(c.client->request(Cmd::kHeartbeat, std::string_view{}, late.handler()) == 0);
  CHECK(late.dropped());
}

TEST_CASE("client: ws_close() against imserver ends with the server's echo, requests after it are dropped") {
  ServerProcess server;
  asio::io_context io;
  Connected c;
  connect(io, c, ws_options(), server.ws_port());
  std::optional<Frame> answer;
  c.client->request(Cmd::kHeartbeat, std::string_view{}, [&](Frame& f) { answer = f; });
  REQUIRE(run_until(io, [&] { return answer.has_value(); }));
  CHECK(answer->ok());
  c.client->ws_close(4000);
  Watched after;
  CHECK(c.client->request(Cmd::kHeartbeat, std::string_view{}, after.handler()) == 0);
  CHECK(after.dropped());
  CHECK(c.client->pending_requests() == 0);
  REQUIRE(run_until(io, ended(c), 15s));
  INFO(c.closed->message());
  CHECK(*c.closed == asio::error::eof);  // the server's close, not the timeout
  CHECK(c.client->ws_close_code() == 4000);
  CHECK_FALSE(after.called);
}

TEST_CASE("client: a request after close() is dropped at once, over tcp and ws") {
  ServerProcess server;
  for (const bool websocket : {false, true}) {
    INFO("websocket: " << websocket);
    asio::io_context io;
    Connected c;
    connect(io, c, websocket ? ws_options() : ClientOptions{}, websocket ? server.ws_port() : server.tcp_port());
    Watched pending;
    CHECK(c.client->request(Cmd::kHeartbeat, std::string_view{}, pending.handler()) != 0);
    c.client->close();
    REQUIRE(c.closed);
    CHECK(*c.closed == asio::error::operation_aborted);
    CHECK(pending.dropped());
    Watched after;
    CHECK(c.client->request(Cmd::kHeartbeat, std::string_view{}, after.handler()) == 0);
    CHECK(after.dropped());
    CHECK(c.client->pending_requests() == 0);
    io.run_for(50ms);  // whatever the close left to run
    CHECK_FALSE(pending.called);
    CHECK_FALSE(after.called);
  }
}

TEST_CASE("client: SyncClient::ws_close() against a server that never answers the close ends the connection") {
  SilentWsServer fake;
  SyncClient c;
  REQUIRE(c.connect("127.0.0.1", fake.port(), ws_options()));
  c.ws_close(1000);
  CHECK(c.wait_closed(15s));
  CHECK(wait_until([&] { return fake.saw_close(); }));
  CHECK(wait_until([&] { return fake.peer_closed(); }));
  CHECK_FALSE(c.call_raw(Cmd::kHeartbeat, "", 1s));
}
