#include "net/socket_ring.h"

#include <liburing.h>

#include <cerrno>

namespace im::net {

std::unique_ptr<SocketRing> SocketRing::open(unsigned entries, int& error) {
  auto ring = std::make_unique<io_uring>();
  // Each SQE is submitted even when one before it fails (SUBMIT_ALL, Linux
  // 5.18), and completions need no interrupt of the loop's thread
  // (COOP_TASKRUN, 5.19): it is in io_uring_enter whenever it wants them.
  // An older kernel refuses the flags: then a ring without either, which
  // behaves the same for these operations (each completes inside the call).
  int r = io_uring_queue_init(entries, ring.get(), IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN);
  if (r == -EINVAL) r = io_uring_queue_init(entries, ring.get(), 0);
  if (r < 0) {
    error = -r;
    return nullptr;
  }
  auto socket_ring = std::unique_ptr<SocketRing>(new SocketRing(std::move(ring), entries));
  // A kernel with io_uring but without these operations (before 5.6 for
  // recv) would fail every one: such a ring is refused too.
  io_uring_probe* probe = io_uring_get_probe_ring(socket_ring->ring_.get());
  const bool supported = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_RECV) &&
                         io_uring_opcode_supported(probe, IORING_OP_SENDMSG);
  if (probe != nullptr) io_uring_free_probe(probe);
  if (!supported) {
    error = EOPNOTSUPP;
    return nullptr;
  }
  return socket_ring;
}

SocketRing::SocketRing(std::unique_ptr<io_uring> ring, unsigned entries) : ring_(std::move(ring)), entries_(entries) {}

SocketRing::~SocketRing() {
  io_uring_queue_exit(ring_.get());
}

bool SocketRing::send_all(std::span<const int> fds, std::span<const msghdr> msgs, std::span<int> results) {
  const unsigned n = static_cast<unsigned>(fds.size());
  if (n > entries_) return refuse(n, results);
  for (unsigned i = 0; i < n; ++i) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());  // never null: at most capacity(), and the ring is drained
    io_uring_prep_sendmsg(sqe, fds[i], &msgs[i], MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, i);
  }
  return run(n, results);
}

bool SocketRing::recv_all(std::span<const int> fds, std::span<const std::span<char>> bufs, std::span<int> results) {
  const unsigned n = static_cast<unsigned>(fds.size());
  if (n > entries_) return refuse(n, results);
  for (unsigned i = 0; i < n; ++i) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
    io_uring_prep_recv(sqe, fds[i], bufs[i].data(), bufs[i].size(), MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, i);
  }
  return run(n, results);
}

bool SocketRing::refuse(unsigned n, std::span<int> results) {
  for (unsigned i = 0; i < n; ++i) results[i] = kNotSent;
  return false;
}

bool SocketRing::run(unsigned n, std::span<int> results) {
  for (unsigned i = 0; i < n; ++i) results[i] = kNotSent;
  if (n == 0) return true;
  int submitted;
  do {
    submitted = io_uring_submit_and_wait(ring_.get(), n);
  } while (submitted == -EINTR);
  if (submitted <= 0) return false;  // the SQEs stay queued: the ring must go
  // The kernel takes SQEs in order. One taken whose completion cannot be
  // read may have been done or not: -EIO, and the caller closes its socket.
  for (int i = 0; i < submitted; ++i) results[static_cast<unsigned>(i)] = -EIO;
  // Nothing waits for input or room, so the kernel has completed them all
  // by now; a wait interrupted by a signal is resumed. One not completed
  // within a second (a kernel that queued it instead) fails the ring.
  for (int done = 0; done < submitted;) {
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec limit{.tv_sec = 1, .tv_nsec = 0};
    const int r = io_uring_wait_cqe_timeout(ring_.get(), &cqe, &limit);
    if (r == -EINTR) continue;
    if (r < 0) return false;
    const auto i = io_uring_cqe_get_data64(cqe);
    if (i < n) results[i] = cqe->res;
    io_uring_cqe_seen(ring_.get(), cqe);
    ++done;
  }
  return static_cast<unsigned>(submitted) == n;
}

}  // namespace im::net
