// PROTOCOL 1, compression: a session that asks with LoginReq.compression =
// "zstd" gets the bodies of 256 bytes and up zstd-compressed when that
// shrinks them; everyone else gets what they always got.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <zstd.h>

#include <fmt/format.h>

#include "im/client.h"
#include "messaging.h"
#include "proto/im.pb.h"
#include "server_process.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

std::string chatty(std::size_t n) {
  std::string s;
  while (s.size() < n) s += "are we still on for the budget review on friday? ";
  s.resize(n);
  return s;
}

// A client logged in as `uid` that asked for `compression`; the LoginResp in `resp`.
std::unique_ptr<SyncClient> login_asking(const ServerProcess& server, const std::string& uid, int device_type,
                                         const std::string& compression, v1::LoginResp& resp,
                                         Transport transport = Transport::kTcp) {
  auto c = std::make_unique<SyncClient>();
  ClientOptions o;
  o.transport = transport;
  o.max_frame_bytes = 65536;  // PROTOCOL 1's limit: a body larger once decompressed ends the link
  REQUIRE(c->connect("127.0.0.1", transport == Transport::kWs ? server.ws_port() : server.tcp_port(), o));
  v1::LoginReq req;
  req.set_uid(uid);
  req.set_token(token_for(uid));
  req.set_device_type(static_cast<v1::DeviceType>(device_type));
  req.set_compression(compression);
  auto r = c->call(Cmd::kLogin, &req);
  REQUIRE(r);
  INFO(r->error_message());
  REQUIRE(r->ok());
  REQUIRE(r->parse(resp));
  return c;
}

// The next PUSH frame `c` receives (other server frames skipped).
Frame next_push_frame(SyncClient& c) {
  for (int i = 0; i < 100; ++i) {
    auto f = c.next_frame(5s);
    REQUIRE(f);
    if (f->header.cmd == Cmd::kPush) return *f;
  }
  FAIL("no PUSH");
  return {};
}

bool compressed(const Frame& f) {
  return (f.header.flags & kFlagCompressed) != 0;
}

// A LOGIN of bob on `c` asking for zstd with a bad token: refused.
void refuse_zstd_login(SyncClient& c, v1::DeviceType device) {
  v1::LoginReq req;
  req.set_uid("bob");
  req.set_token("not-a-token");
  req.set_device_type(device);
  req.set_compression("zstd");
  auto refused = c.call(Cmd::kLogin, &req);
  REQUIRE(refused);
  CHECK(refused->status() == StatusCode::kUnauthenticated);
}

}  // namespace

TEST_CASE(
    "compression: a session that asks gets bodies of 256 bytes and up compressed, the same messages as a plain one") {
  ServerProcess server(fast_overrides());
  v1::LoginResp zr, pr;
  auto zipped = login_asking(server, "bob", 1, "zstd", zr);
  auto plain = login_asking(server, "bob", 2, "", pr);
  CHECK(zr.compression() == "zstd");
  CHECK(pr.compression().empty());
  auto alice = server.login("alice");

  // A long message: compressed to one session, not to the other.
  send_ok(*alice, "bob", "long", chatty(3000));
  const Frame zf = next_push_frame(*zipped);
  const Frame pf = next_push_frame(*plain);
  CHECK(compressed(zf));
  CHECK_FALSE(compressed(pf));
  CHECK(zf.header.body_len < pf.body.size() / 3);  // the wire length
  CHECK(zf.body == pf.body);                       // decompressed: the same bytes

  // A short one: under 256 bytes, sent as it is to both.
  send_ok(*alice, "bob", "short", "hi");
  const Frame zs = next_push_frame(*zipped);
  CHECK_FALSE(compressed(zs));
  CHECK(zs.body == next_push_frame(*plain).body);

  // A PULL answer of nearly a whole frame: compressed, within the limit once
  // decompressed (the client refuses more), the same messages.
  for (int i = 0; i < 44; ++i) send_ok(*alice, "bob", fmt::format("m{}", i), chatty(1500));
  // Bob's copies are written after alice's answers: their pushes say they are in.
  CHECK(pushed(*zipped, 44).size() == 44);
  CHECK(pushed(*plain, 44).size() == 44);
  v1::PullReq req;
  req.set_after_seq(0);
  req.set_limit(1000);
  auto zp = zipped->call(Cmd::kPull, &req);
  auto pp = plain->call(Cmd::kPull, &req);
  REQUIRE(zp);
  REQUIRE(pp);
  REQUIRE(zp->ok());
  CHECK(compressed(*zp));
  CHECK_FALSE(compressed(*pp));
  CHECK(zp->body.size() > 60000);
  CHECK(zp->body.size() <= 65536);
  CHECK(zp->body == pp->body);
  v1::PullResp resp;
  REQUIRE(zp->parse(resp));
  CHECK(resp.has_more());  // stopped at the frame limit, before compression

  // Heartbeats: small, plain.
  auto hb = zipped->call_raw(Cmd::kHeartbeat, "");
  REQUIRE(hb);
  CHECK_FALSE(compressed(*hb));
}

TEST_CASE("compression: a request with bit 1 set is read as a plain one, and a LOGIN that failed can ask again") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  // Clients never compress: bit 1 on a request means nothing.
  FrameHeader h;
  h.cmd = Cmd::kSend;
  h.seq = 41;
  h.flags = kFlagCompressed;
  alice->send_raw(encode_frame(h, send_req("bob", "flagged", chatty(1000)).SerializeAsString()));
  auto answer = alice->next_frame(5s);
  REQUIRE(answer);
  CHECK(answer->header.seq == 41);
  CHECK(answer->ok());
  // A LOGIN asking for zstd that fails, then one that asks again.
  auto c = server.connect();
  refuse_zstd_login(*c, v1::IOS);
  v1::LoginReq req;
  req.set_uid("bob");
  req.set_token(token_for("bob"));
  req.set_device_type(v1::IOS);
  req.set_compression("zstd");
  auto ok = c->call(Cmd::kLogin, &req);
  REQUIRE(ok);
  REQUIRE(ok->ok());
  v1::LoginResp lr;
  REQUIRE(ok->parse(lr));
  CHECK(lr.compression() == "zstd");
  // Bob's copy is written after alice's answer: PULL until it is in.
  auto pulled = pull_until(*c, [](const std::vector<v1::Message>& got) { return !got.empty(); });
  REQUIRE(pulled.size() == 1);
  CHECK(pulled[0].body() == chatty(1000));
  send_ok(*alice, "bob", "long", chatty(3000));
  CHECK(compressed(next_push_frame(*c)));
}

TEST_CASE("compression: a LOGIN its client compressed (bit 1) is not decompressed: refused, then a plain one works") {
  ServerProcess server(fast_overrides());
  auto c = server.connect();
  // A device id that repeats, so that the zstd frame holds matches, not the
  // request's bytes as they are (a stored block would parse as the LOGIN).
  const std::string plain = login_body("bob", token_for("bob"), v1::IOS, std::string(64, 'd'));
  std::string packed(ZSTD_compressBound(plain.size()), '\0');
  const std::size_t n = ZSTD_compress(packed.data(), packed.size(), plain.data(), plain.size(), 3);
  REQUIRE_FALSE(ZSTD_isError(n));
  packed.resize(n);
  v1::LoginReq as_is;
  REQUIRE_FALSE((as_is.ParseFromString(packed) && as_is.uid() == "bob"));
  FrameHeader h;
  h.cmd = Cmd::kLogin;
  h.seq = 7;
  h.flags = kFlagCompressed;
  c->send_raw(encode_frame(h, packed));
  auto answer = c->next_frame(5s);
  REQUIRE(answer);
  CHECK(answer->header.seq == 7);
  CHECK_FALSE(answer->ok());
  auto good = c->call_raw(Cmd::kLogin, plain);
  REQUIRE(good);
  INFO(good->error_message());
  CHECK(good->ok());
}

TEST_CASE("compression: an unknown one, or one asked by a LOGIN that failed, is not used") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  v1::LoginResp lr;
  auto lz4 = login_asking(server, "bob", 1, "lz4", lr);
  CHECK(lr.compression().empty());

  // A LOGIN asking for zstd with a bad token fails; the next one, without
  // it, gets plain frames.
  auto retried = server.connect();
  refuse_zstd_login(*retried, v1::ANDROID);
  auto good = retried->call_raw(Cmd::kLogin, login_body("bob", token_for("bob"), v1::ANDROID));
  REQUIRE(good);
  REQUIRE(good->ok());

  send_ok(*alice, "bob", "long", chatty(3000));
  CHECK_FALSE(compressed(next_push_frame(*lz4)));
  CHECK_FALSE(compressed(next_push_frame(*retried)));
}

TEST_CASE("compression: over WebSocket, and for many sessions of one fan-out, each gets what it asked for") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  v1::LoginResp r;
  std::vector<std::unique_ptr<SyncClient>> zipped, plain;
  // Members on both kinds of listener, every other one asking.
  std::vector<std::string> members;
  for (int i = 0; i < 6; ++i) {
    const std::string uid = fmt::format("u{}", i);
    members.push_back(uid);
    const Transport t = i % 3 == 0 ? Transport::kWs : Transport::kTcp;
    if (i % 2 == 0)
      zipped.push_back(login_asking(server, uid, 1, "zstd", r, t));
    else
      plain.push_back(login_asking(server, uid, 1, "", r, t));
  }
  create_group(*alice, "g", members);
  // The CREATED event's pushes (small) first.
  for (auto& c : zipped) next_push_frame(*c);
  for (auto& c : plain) next_push_frame(*c);
  const std::string text = chatty(2000);
  auto req = send_req("g", "big", text, v1::GROUP);
  auto sent = alice->call(Cmd::kSend, &req);
  REQUIRE(sent);
  REQUIRE(sent->ok());
  for (auto& c : zipped) {
    const Frame f = next_push_frame(*c);
    CHECK(compressed(f));
    v1::MessagePush push;
    REQUIRE(f.parse(push));
    REQUIRE(push.messages_size() == 1);
    CHECK(push.messages(0).body() == text);
  }
  for (auto& c : plain) {
    const Frame f = next_push_frame(*c);
    CHECK_FALSE(compressed(f));
    v1::MessagePush push;
    REQUIRE(f.parse(push));
    REQUIRE(push.messages_size() == 1);
    CHECK(push.messages(0).body() == text);
  }
}

namespace {

// A one-connection fake server on loopback: accepts, reads the client's
// LOGIN, writes `bytes`, then waits for the client to hang up.
class FakeServer {
 public:
  explicit FakeServer(std::string bytes) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 1) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, bytes = std::move(bytes)] {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      (void)::read(c, buf, sizeof buf);
      (void)::write(c, bytes.data(), bytes.size());
      // Until the client closes (bounded: the test's client closes or times out).
      timeval tv{10, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      while (::read(c, buf, sizeof buf) > 0) {
      }
      ::close(c);
    });
  }
  ~FakeServer() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

// A LoginResp-shaped answer to seq 1 with `body` as a COMPRESSED body.
std::string compressed_answer(const std::string& body) {
  FrameHeader h;
  h.cmd = Cmd::kLogin;
  h.seq = 1;
  h.flags = kFlagResponse | kFlagCompressed;
  return encode_frame(h, body);
}

std::string zstd_of(const std::string& text) {
  std::string out(ZSTD_compressBound(text.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 3));
  return out;
}

}  // namespace

TEST_CASE("compression: the client ends a link whose COMPRESSED body is a bomb, garbage, cut or followed by more") {
  const std::string ok_body = zstd_of(chatty(3000));
  const std::string bomb = zstd_of(std::string(std::size_t{8} << 20, 'a'));  // 8 MiB in a few hundred bytes
  REQUIRE(bomb.size() < 4096);
  const std::string skippable("\x50\x2a\x4d\x18\x00\x00\x00\x00", 8);  // an empty skippable frame
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"bomb", bomb},
      {"garbage", chatty(300)},
      {"cut", ok_body.substr(0, ok_body.size() - 3)},
      {"trailing", ok_body + "zz"},
      {"skippable", skippable},
  };
  for (const auto& [name, body] : cases) {
    INFO(name);
    FakeServer fake(compressed_answer(body));
    SyncClient c;
    ClientOptions o;
    o.max_frame_bytes = 65536;
    REQUIRE(c.connect("127.0.0.1", fake.port(), o));
    auto r = c.call_raw(Cmd::kLogin, login_body("bob", "t"), 5s);
    CHECK_FALSE(r);  // nothing delivered: the link ends
    CHECK(c.is_closed());
  }
  // The same server with a good body: delivered, decompressed.
  FakeServer fake(compressed_answer(ok_body));
  SyncClient c;
  REQUIRE(c.connect("127.0.0.1", fake.port()));
  auto r = c.call_raw(Cmd::kLogin, login_body("bob", "t"), 5s);
  REQUIRE(r);
  CHECK(r->body == chatty(3000));
  CHECK(r->header.body_len == ok_body.size());
}
