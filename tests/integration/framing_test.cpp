// Framing at the server: violations get one ERROR frame and a close; frames
// split at any byte or packed many to a write are served.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <set>
#include <thread>

#include "im/frame_codec.h"
#include "messaging.h"
#include "proto/im.pb.h"
#include "server_process.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

void expect_error_and_close(const ServerProcess& server, const std::string& bytes, StatusCode status) {
  auto c = server.connect();
  c->send_raw(bytes);
  auto f = c->next_frame();
  REQUIRE(f);
  CHECK(f->header.cmd == Cmd::kError);
  CHECK(f->header.seq == 0);
  CHECK(f->status() == status);
  CHECK_FALSE(f->error_message().empty());
  CHECK(c->wait_closed(3s));
}

// The next whole frame from a blocking socket.
Decoded read_raw_frame(int fd, std::string& in) {
  char buf[4096];
  Decoded d = decode_frame(in, 1 << 20);
  while (d.status == DecodeStatus::kNeedMore) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    REQUIRE(n > 0);
    in.append(buf, static_cast<std::size_t>(n));
    d = decode_frame(in, 1 << 20);
  }
  REQUIRE(d.status == DecodeStatus::kFrame);
  return d;
}

}  // namespace

TEST_CASE("framing violations: one ERROR frame, then the connection closes") {
  ServerProcess server;
  SECTION("wrong magic") {
    expect_error_and_close(server, forged_header(0x1234, 1, 0), StatusCode::kBadFrame);
  }
  SECTION("HTTP instead of frames") {
    expect_error_and_close(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", StatusCode::kBadFrame);
  }
  SECTION("version 2") {
    expect_error_and_close(server, forged_header(kMagic, 2, 0), StatusCode::kUnsupportedVersion);
  }
  SECTION("a header claiming a 2 GiB body") {
    expect_error_and_close(server, forged_header(kMagic, 1, 0x80000000u), StatusCode::kFrameTooLarge);
  }
  SECTION("one byte over the limit, logged in, followed by more bytes") {
    auto c = server.login("alice");
    c->send_raw(forged_header(kMagic, 1, 65537) + std::string(70000, 'x'));
    auto f = c->next_frame();
    REQUIRE(f);
    CHECK(f->status() == StatusCode::kFrameTooLarge);
    CHECK(c->wait_closed(3s));
  }
  // the server is fine
  auto ok = server.login("bob");
  CHECK(must(ok->call_raw(Cmd::kHeartbeat, "")).ok());
}

TEST_CASE("a LOGIN frame sent one byte per segment is served") {
  ServerProcess server;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server.tcp_port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  FrameHeader h;
  h.cmd = Cmd::kLogin;
  h.seq = 42;
  const std::string frame = encode_frame(h, login_body("alice", token_for("alice")));
  // The pause between bytes is the test's design, not a wait for anything:
  // with TCP_NODELAY it sends each byte in a segment of its own, and spaces
  // them so that the server mostly reads them one at a time.
  for (char byte : frame) {
    REQUIRE(::send(fd, &byte, 1, 0) == 1);
    std::this_thread::sleep_for(1ms);
  }
  std::string in;
  char buf[4096];
  while (in.size() < kHeaderSize) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    REQUIRE(n > 0);
    in.append(buf, static_cast<std::size_t>(n));
  }
  Decoded d = decode_frame(in, 1 << 20);
  while (d.status == DecodeStatus::kNeedMore) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    REQUIRE(n > 0);
    in.append(buf, static_cast<std::size_t>(n));
    d = decode_frame(in, 1 << 20);
  }
  REQUIRE(d.status == DecodeStatus::kFrame);
  CHECK(d.header.seq == 42);
  CHECK(d.header.status == StatusCode::kOk);
  ::close(fd);
}

TEST_CASE("a thousand frames in one write are all answered") {
  ServerProcess server(Overrides{{"limits.messages_per_second", "100000"}, {"limits.burst", "100000"}});
  auto c = server.login("alice");
  std::string bytes;
  for (std::uint32_t seq = 1000; seq < 2000; ++seq) {
    FrameHeader h;
    h.cmd = seq % 2 ? Cmd::kHeartbeat : Cmd::kPresence;
    h.seq = seq;
    v1::PresenceReq req;
    req.add_uids("alice");
    bytes += encode_frame(h, h.cmd == Cmd::kPresence ? req.SerializeAsString() : "");
  }
  c->send_raw(bytes);
  // Responses may come in any order (HEARTBEAT is answered on the I/O loop,
  // PRESENCE by the shards); each seq exactly once.
  std::set<std::uint32_t> seen;
  for (int i = 0; i < 1000; ++i) {
    auto f = c->next_frame();
    REQUIRE(f);
    CHECK(f->ok());
    CHECK(seen.insert(f->header.seq).second);
  }
  CHECK(*seen.begin() == 1000);
  CHECK(*seen.rbegin() == 1999);
}

TEST_CASE("a frame and the client's FIN arriving together end the session at once") {
  // The server reads the frame in one short read, with the hang-up signalled
  // by the same readiness event: it must read on and see the end, not wait
  // for the idle timeout (600 s here) to notice.
  ServerProcess server(Overrides{{"heartbeat.interval_s", "60"}, {"heartbeat.timeout_s", "600"}});
  auto observer = server.login("observer");
  constexpr int kClients = 20;
  for (int i = 0; i < kClients; ++i) {
    const std::string uid = "fin" + std::to_string(i);
    const int fd = connect_raw(server.tcp_port());
    REQUIRE(fd >= 0);
    const timeval limit{10, 0};  // a server that never closes fails the test, not hangs it
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    FrameHeader h;
    h.cmd = Cmd::kLogin;
    h.seq = 1;
    const std::string login = encode_frame(h, login_body(uid, token_for(uid)));
    REQUIRE(::send(fd, login.data(), login.size(), 0) == static_cast<ssize_t>(login.size()));
    std::string in;
    Decoded d = read_raw_frame(fd, in);
    REQUIRE(d.header.status == StatusCode::kOk);
    in.erase(0, d.consumed);
    h.cmd = Cmd::kHeartbeat;
    h.seq = 2;
    const std::string heartbeat = encode_frame(h, "");
    REQUIRE(::send(fd, heartbeat.data(), heartbeat.size(), 0) == static_cast<ssize_t>(heartbeat.size()));
    ::shutdown(fd, SHUT_WR);
    d = read_raw_frame(fd, in);  // the heartbeat is answered, then the server closes
    CHECK(d.header.seq == 2);
    char buf[256];
    CHECK(::recv(fd, buf, sizeof buf, 0) == 0);
    ::close(fd);
  }
  v1::PresenceReq req;
  for (int i = 0; i < kClients; ++i) req.add_uids("fin" + std::to_string(i));
  CHECK(wait_until([&] {
    v1::PresenceResp resp;
    if (!must(observer->call(Cmd::kPresence, &req)).parse(resp)) return false;
    return std::none_of(resp.presences().begin(), resp.presences().end(),
                        [](const v1::Presence& p) { return p.online(); });
  }));
}
