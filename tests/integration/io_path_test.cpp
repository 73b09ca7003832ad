// The I/O loops' two ways to read and write sockets (server.io_uring): the
// reads of an epoll wake-up and the writes of a turn in one io_uring_enter
// each, or a syscall per socket. Every case runs both ways; where the kernel
// refuses io_uring the server falls back to syscalls and says so in its log.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <thread>

#include "http_helpers.h"
#include "messaging.h"
#include "server_process.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

Overrides io_path(const std::string& io_uring) {
  return Overrides{{"server.io_uring", io_uring},
                   {"server.io_threads", "1"},  // every socket on one loop: batches of many
                   {"limits.messages_per_second", "1000000"},
                   {"limits.burst", "1000000"},
                   {"limits.max_message_bytes", "61000"},
                   {"admin.listen", "\"127.0.0.1:0\""}};
}

// Whether this server reads and writes through io_uring (the kernel may
// refuse it: then its log says so, and the counters stay at 0).
bool ring_refused(const ServerProcess& server) {
  return server.log().find("io_uring refused") != std::string::npos;
}

// `count` SENDs to `to` with seqs from 1000 (clear of a SyncClient's own),
// client ids and bodies `prefix` + i, bodies padded to `body_bytes`.
std::string send_frames(const std::string& to, const std::string& prefix, int count, std::size_t body_bytes = 0) {
  std::string bytes;
  for (int i = 0; i < count; ++i) {
    FrameHeader h;
    h.cmd = Cmd::kSend;
    h.seq = static_cast<std::uint32_t>(1000 + i);
    std::string body = prefix + std::to_string(i);
    if (body.size() < body_bytes) body.resize(body_bytes, '.');
    bytes += encode_frame(h, send_req(to, prefix + std::to_string(i), body).SerializeAsString());
  }
  return bytes;
}

// Frames from a raw socket, decoded as they come.
class RawReader {
 public:
  explicit RawReader(int fd) : fd_(fd) {}
  // The next frame, or none after 30 s or when the server has closed
  // (closed() then says which).
  std::optional<FrameHeader> next(std::string* body = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    for (int i = 0; i < 100000 && std::chrono::steady_clock::now() < deadline; ++i) {
      const Decoded d = decode_frame(in_, 1 << 20);
      REQUIRE(d.status != DecodeStatus::kBad);
      if (d.status == DecodeStatus::kFrame) {
        if (body) body->assign(d.body);
        const FrameHeader h = d.header;
        in_.erase(0, d.consumed);
        return h;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = ::read(fd_, buf_.data(), buf_.size());
      if (n <= 0) {
        closed_ = true;
        return std::nullopt;
      }
      in_.append(buf_.data(), static_cast<std::size_t>(n));
    }
    return std::nullopt;
  }
  bool closed() const { return closed_; }
  // The bodies of the next `want` PUSHed messages (fewer if they stop coming).
  std::vector<std::string> pushes(std::size_t want) {
    std::vector<std::string> bodies;
    std::string body;
    while (bodies.size() < want) {
      auto h = next(&body);
      if (!h) break;
      if (h->cmd != Cmd::kPush) continue;
      v1::MessagePush push;
      REQUIRE(push.ParseFromString(body));
      for (const auto& m : push.messages()) bodies.push_back(m.body());
    }
    return bodies;
  }

 private:
  int fd_;
  bool closed_ = false;
  std::string in_;
  std::array<char, 16384> buf_;
};

std::string login_frame(const std::string& uid) {
  FrameHeader h;
  h.cmd = Cmd::kLogin;
  h.seq = 1;
  return encode_frame(h, login_body(uid, token_for(uid)));
}

std::string heartbeat_frame(std::uint32_t seq) {
  FrameHeader h;
  h.cmd = Cmd::kHeartbeat;
  h.seq = seq;
  return encode_frame(h, "");
}

void write_all(int fd, const std::string& bytes) {
  REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
}

// Sends LOGIN for `uid` on the raw socket `fd` and checks its answer.
void raw_login(int fd, RawReader& reader, const std::string& uid) {
  write_all(fd, login_frame(uid));
  auto login = reader.next();
  REQUIRE(login);
  REQUIRE(login->status == StatusCode::kOk);
}

// The ring's counters: above 0 with io_uring on (unless the kernel refused
// it), 0 with it off; and no ring failure logged.
void check_ring_counters(ServerProcess& server, const std::string& io_uring) {
  AdminClient admin(server.admin_port(), "");
  const double reads = admin.metric("imserver_ring_reads_total").value_or(-1);
  const double writes = admin.metric("imserver_ring_writes_total").value_or(-1);
  CHECK(server.log().find("io_uring failed") == std::string::npos);
  if (io_uring == "false" || ring_refused(server)) {
    if (io_uring == "true") WARN("io_uring refused on this kernel: only the syscall path ran");
    CHECK(reads == 0);
    CHECK(writes == 0);
  } else {
    CHECK(reads > 0);
    CHECK(writes > 0);
  }
}

}  // namespace

TEST_CASE("io paths: 40 senders pipelining into one loop, every message pushed once and in each sender's order",
          "[embedded]") {
  const std::string io_uring = GENERATE("true", "false");
  INFO("server.io_uring = " << io_uring);
  ServerProcess server(io_path(io_uring));
  auto reader = server.login("reader", v1::IOS);
  constexpr int kSenders = 40;
  constexpr int kEach = 100;
  std::vector<std::unique_ptr<SyncClient>> senders;
  for (int s = 0; s < kSenders; ++s) senders.push_back(server.login("sender" + std::to_string(s)));
  // Each sender's 100 SENDs in one write: reads of many frames, and answers
  // to many sockets in the same turns.
  for (int s = 0; s < kSenders; ++s) senders[s]->send_raw(send_frames("reader", std::to_string(s) + "-", kEach));
  auto got = pushed(*reader, kSenders * kEach);
  REQUIRE(got.size() == kSenders * kEach);
  std::map<std::string, int> next;  // per sender, the next client message id expected
  for (std::size_t i = 0; i < got.size(); ++i) {
    REQUIRE(got[i].inbox_seq() == i + 1);
    const std::string& cmid = got[i].client_msg_id();
    const auto dash = cmid.find('-');
    REQUIRE(dash != std::string::npos);
    CHECK(std::stoi(cmid.substr(dash + 1)) == next[cmid.substr(0, dash)]++);
  }
  check_ring_counters(server, io_uring);
}

TEST_CASE("io paths: frames longer than one ring read, and frames cut into pieces, arrive whole", "[embedded]") {
  const std::string io_uring = GENERATE("true", "false");
  INFO("server.io_uring = " << io_uring);
  ServerProcess server(io_path(io_uring));
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  // 60,000 bytes: far more than the loop reads for one socket in a batch.
  const std::string big(60000, 'z');
  CHECK(send_ok(*alice, "bob", "big", big).inbox_seq() == 1);
  auto first = next_push(*bob);
  REQUIRE(first.size() == 1);
  CHECK(first[0].body() == big);
  // A frame in three writes, 50 ms apart: the first two end mid-header and
  // mid-body.
  FrameHeader h;
  h.cmd = Cmd::kSend;
  h.seq = 77;
  const std::string frame = encode_frame(h, send_req("bob", "pieces", "in three pieces").SerializeAsString());
  alice->send_raw(frame.substr(0, 7));
  std::this_thread::sleep_for(50ms);
  alice->send_raw(frame.substr(7, 20));
  std::this_thread::sleep_for(50ms);
  alice->send_raw(frame.substr(27));
  auto second = next_push(*bob);
  REQUIRE(second.size() == 1);
  CHECK(second[0].body() == "in three pieces");
  CHECK(second[0].inbox_seq() == 2);
  check_ring_counters(server, io_uring);
}

TEST_CASE("io paths: LOGIN and requests behind it in one write, then a request with the FIN, all answered",
          "[embedded]") {
  const std::string io_uring = GENERATE("true", "false");
  INFO("server.io_uring = " << io_uring);
  ServerProcess server(io_path(io_uring));
  const int fd = connect_raw(server.tcp_port());
  REQUIRE(fd >= 0);
  RawReader reader(fd);
  // Reading pauses at LOGIN until the shard has answered: the HEARTBEATs
  // behind it wait, held, and are answered after it, in order.
  std::string bytes = login_frame("carol");
  for (std::uint32_t seq = 2; seq <= 6; ++seq) bytes += heartbeat_frame(seq);
  write_all(fd, bytes);
  std::vector<std::uint32_t> seqs;
  for (int i = 0; i < 6; ++i) {
    auto h = reader.next();
    REQUIRE(h);
    CHECK(h->status == StatusCode::kOk);
    seqs.push_back(h->seq);
  }
  CHECK(seqs == std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6});
  // The last request and the FIN in one segment (corked until the
  // shutdown): answered before the close.
  const int on = 1;
  REQUIRE(::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0);
  write_all(fd, heartbeat_frame(7));
  ::shutdown(fd, SHUT_WR);
  auto last = reader.next();
  REQUIRE(last);
  CHECK(last->seq == 7);
  CHECK_FALSE(reader.next());
  CHECK(reader.closed());  // the server closed, within the reader's 30 s
  ::close(fd);
}

TEST_CASE("io paths: requests pipelined past server.max_pending_bytes in one write are all answered, in order",
          "[embedded]") {
  // 3,000 HEARTBEATs in one write: 60,000 bytes of answers, made on the
  // loop, against 8 KiB of max_pending_bytes. The loop writes them as they
  // pile up instead of holding them to the end of its turn, and the client,
  // which reads, is not closed as a slow consumer.
  const std::string io_uring = GENERATE("true", "false");
  INFO("server.io_uring = " << io_uring);
  Overrides o = io_path(io_uring);
  o["server.max_frame_bytes"] = "6144";
  o["server.max_pending_bytes"] = "8192";
  o["limits.max_message_bytes"] = "4096";
  ServerProcess server(o);
  const int fd = connect_raw(server.tcp_port());
  REQUIRE(fd >= 0);
  RawReader reader(fd);
  raw_login(fd, reader, "dave");
  constexpr std::uint32_t kCount = 3000;
  std::string bytes;
  for (std::uint32_t seq = 2; seq < 2 + kCount; ++seq) bytes += heartbeat_frame(seq);
  write_all(fd, bytes);
  std::uint32_t expected = 2;
  for (std::uint32_t i = 0; i < kCount; ++i) {
    auto h = reader.next();
    REQUIRE(h);
    REQUIRE(h->seq == expected++);
    REQUIRE(h->status == StatusCode::kOk);
  }
  // Still open: one more request, answered.
  write_all(fd, heartbeat_frame(2 + kCount));
  auto after = reader.next();
  REQUIRE(after);
  CHECK(after->seq == 2 + kCount);
  CHECK(server.log().find("slow consumer") == std::string::npos);
  ::close(fd);
}

TEST_CASE("io paths: a reader with a full socket gets everything once it reads, in order", "[embedded]") {
  const std::string io_uring = GENERATE("true", "false");
  INFO("server.io_uring = " << io_uring);
  Overrides o = io_path(io_uring);
  o["server.max_pending_bytes"] = "16777216";
  ServerProcess server(o);
  // bob's socket takes little and he reads nothing until 8 MB are on
  // their way to him: more than the kernel's buffers on both ends hold, so
  // the server's writes come back short or would block, and wait for room.
  const int fd = connect_raw(server.tcp_port(), 4096);
  REQUIRE(fd >= 0);
  RawReader bob(fd);
  raw_login(fd, bob, "bob");
  auto alice = server.login("alice");
  constexpr int kCount = 4000;  // 4,000 x 2,000 bytes: over the sockets' buffers, under max_pending_bytes
  alice->send_raw(send_frames("bob", "full-", kCount, 2000));
  // The SENDs to bob are stored before this one is answered (one sender's
  // requests, on one shard, in order): his PUSHes pile up unread meanwhile.
  send_ok(*alice, "carol", "marker");
  auto bodies = bob.pushes(kCount);
  ::close(fd);
  REQUIRE(bodies.size() == kCount);
  for (int i = 0; i < kCount; ++i) {
    REQUIRE(bodies[i].size() == 2000);
    CHECK(bodies[i].rfind("full-" + std::to_string(i) + ".", 0) == 0);
  }
  CHECK(server.log().find("slow consumer") == std::string::npos);
  check_ring_counters(server, io_uring);
}

TEST_CASE("io paths: a peer that hangs up is noticed, its session ended", "[embedded]") {
  const std::string io_uring = GENERATE("true", "false");
  INFO("server.io_uring = " << io_uring);
  ServerProcess server(io_path(io_uring));
  AdminClient admin(server.admin_port(), "");
  std::vector<std::unique_ptr<SyncClient>> clients;
  for (int i = 0; i < 20; ++i) clients.push_back(server.login("u" + std::to_string(i)));
  REQUIRE(wait_until([&] { return admin.metric("imserver_sessions") == 20.0; }));
  for (auto& c : clients) c->close();
  CHECK(wait_until([&] { return admin.metric("imserver_sessions") == 0.0; }));
  CHECK(wait_until([&] { return admin.metric("imserver_connections") == 0.0; }));
}
