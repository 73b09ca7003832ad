#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "net/socket_ring.h"

using im::net::SocketRing;

namespace {
// A connected, non-blocking stream socket pair, closed on scope exit.
struct Pair {
  Pair() { REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd.data()) == 0); }
  ~Pair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  std::string read_all() const {
    std::string out;
    std::array<char, 65536> buf;
    for (int i = 0; i < 10000; ++i) {
      const ssize_t n = ::read(fd[1], buf.data(), buf.size());
      if (n <= 0) break;
      out.append(buf.data(), static_cast<std::size_t>(n));
    }
    return out;
  }
  std::array<int, 2> fd{-1, -1};
};

msghdr message(std::vector<iovec>& iov) {
  msghdr m{};
  m.msg_iov = iov.data();
  m.msg_iovlen = iov.size();
  return m;
}

iovec bytes(std::string& s) {
  return iovec{s.data(), s.size()};
}

// The ring, or a skipped test on a kernel that refuses io_uring (the server
// then reads and writes with syscalls alone: tests/integration/io_path_test
// covers that path).
std::unique_ptr<SocketRing> open_ring(unsigned entries) {
  int error = 0;
  auto ring = SocketRing::open(entries, error);
  if (!ring) WARN("io_uring refused here (errno " << error << "): the ring's tests do not run");
  return ring;
}
}  // namespace

TEST_CASE("socket ring: writes: one batch writes gathered buffers to several sockets, in order per socket") {
  auto ring = open_ring(8);
  if (!ring) return;
  CHECK(ring->capacity() == 8);
  std::array<Pair, 3> pairs;
  std::vector<std::string> parts = {"alpha-", "beta-", "gamma"};
  std::array<std::vector<iovec>, 3> iov;
  std::vector<msghdr> msgs;
  std::vector<int> fds;
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    for (auto& p : parts) iov[i].push_back(bytes(p));
    msgs.push_back(message(iov[i]));
    fds.push_back(pairs[i].fd[0]);
  }
  std::vector<int> results(3, 0);
  // Two batches on the same ring: it is drained after each.
  for (int round = 0; round < 2; ++round) {
    REQUIRE(ring->send_all(fds, msgs, results));
    for (int r : results) CHECK(r == 16);
  }
  for (auto& p : pairs) CHECK(p.read_all() == "alpha-beta-gammaalpha-beta-gamma");
}

TEST_CASE(
    "socket ring: writes: a full socket answers -EAGAIN at once, a closed descriptor -EBADF, the rest are written") {
  auto ring = open_ring(4);
  if (!ring) return;
  Pair full, ok;
  // Fill the first socket's buffer with plain writes.
  std::string chunk(65536, 'x');
  for (int i = 0; i < 10000; ++i)
    if (::write(full.fd[0], chunk.data(), chunk.size()) < 0) break;
  REQUIRE(errno == EAGAIN);

  Pair gone;
  const int closed_fd = gone.fd[0];
  ::close(gone.fd[0]);
  gone.fd[0] = -1;

  std::string payload = "hello";
  std::vector<iovec> iov = {bytes(payload)};
  const std::vector<msghdr> msgs(3, message(iov));
  const std::vector<int> fds = {full.fd[0], closed_fd, ok.fd[0]};
  std::vector<int> results(3, 0);
  REQUIRE(ring->send_all(fds, msgs, results));
  CHECK(results[0] == -EAGAIN);
  CHECK(results[1] == -EBADF);
  CHECK(results[2] == 5);
  CHECK(ok.read_all() == "hello");
}

TEST_CASE("socket ring: writes: a peer that has gone answers -EPIPE without raising SIGPIPE") {
  auto ring = open_ring(2);
  if (!ring) return;
  Pair p;
  ::close(p.fd[1]);
  p.fd[1] = -1;
  std::string payload = "late";
  std::vector<iovec> iov = {bytes(payload)};
  const std::vector<msghdr> msgs = {message(iov)};
  const std::vector<int> fds = {p.fd[0]};
  std::vector<int> results(1, 0);
  REQUIRE(ring->send_all(fds, msgs, results));  // a SIGPIPE would end the test binary here
  CHECK(results[0] == -EPIPE);
}

TEST_CASE("socket ring: writes: an empty batch is a no-op, more than the capacity is refused whole") {
  auto ring = open_ring(2);
  if (!ring) return;
  std::vector<int> results;
  CHECK(ring->send_all({}, {}, results));
  CHECK(ring->recv_all({}, {}, results));
  std::array<Pair, 3> pairs;
  std::string payload = "x";
  std::vector<iovec> iov = {bytes(payload)};
  const std::vector<msghdr> msgs(3, message(iov));
  const std::vector<int> fds = {pairs[0].fd[0], pairs[1].fd[0], pairs[2].fd[0]};
  results.assign(3, 0);
  CHECK_FALSE(ring->send_all(fds, msgs, results));
  CHECK(results == std::vector<int>(3, SocketRing::kNotSent));
  for (auto& p : pairs) CHECK(p.read_all().empty());
}

TEST_CASE("socket ring: reads: one batch reads several sockets: data, nothing yet, a closed peer, a full buffer") {
  auto ring = open_ring(8);
  if (!ring) return;
  std::array<Pair, 4> pairs;
  REQUIRE(::write(pairs[0].fd[1], "some input", 10) == 10);
  // pairs[1]: nothing written
  ::close(pairs[2].fd[1]);
  pairs[2].fd[1] = -1;
  REQUIRE(::write(pairs[3].fd[1], "0123456789", 10) == 10);
  std::array<std::array<char, 16>, 4> space{};
  std::vector<std::span<char>> bufs;
  for (auto& s : space) bufs.emplace_back(s.data(), s.size());
  bufs[3] = bufs[3].first(4);  // less room than input
  const std::vector<int> fds = {pairs[0].fd[0], pairs[1].fd[0], pairs[2].fd[0], pairs[3].fd[0]};
  std::vector<int> results(4, 0);
  REQUIRE(ring->recv_all(fds, bufs, results));
  CHECK(results[0] == 10);
  CHECK(std::string(space[0].data(), 10) == "some input");
  CHECK(results[1] == -EAGAIN);
  CHECK(results[2] == 0);
  CHECK(results[3] == 4);
  CHECK(std::string(space[3].data(), 4) == "0123");
  // The rest stays for the next read.
  std::array<char, 16> rest{};
  CHECK(::read(pairs[3].fd[0], rest.data(), rest.size()) == 6);
  CHECK(std::string(rest.data(), 6) == "456789");
}
