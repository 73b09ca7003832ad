#pragma once
// Many sockets' reads, or many sockets' writes, in one syscall: an I/O
// loop hands the reads of one epoll wake-up, and the flushes of one turn,
// to the kernel through io_uring, one io_uring_enter for each batch, where
// each would otherwise be a read(2) or a sendmsg(2) of its own
// (bench/ANALYSIS.md, "Reads and writes through io_uring": a paced W2
// message took 1.9 reads and 1.5 sendmsg calls, at about 5 µs of syscall
// entry and exit each on the hosts measured).
//
// Every operation is flagged MSG_DONTWAIT, so the kernel completes it
// during the submission (bytes, or -EAGAIN when the socket has no input or
// no room) instead of waiting: a batch comes back with every result, with
// the semantics of the calls it replaces. Readiness still comes from the
// loop's epoll.

#include <sys/socket.h>

#include <climits>
#include <memory>
#include <span>

struct io_uring;

namespace im::net {

class SocketRing {
 public:
  // A ring for batches of up to `entries` operations, or null when the
  // kernel refuses io_uring (not built in, disabled by the
  // kernel.io_uring_disabled sysctl, blocked by a seccomp filter, as
  // container runtimes do, or too old for recv and sendmsg); `error` then
  // holds the errno.
  static std::unique_ptr<SocketRing> open(unsigned entries, int& error);
  ~SocketRing();
  SocketRing(const SocketRing&) = delete;
  SocketRing& operator=(const SocketRing&) = delete;

  unsigned capacity() const { return entries_; }

  // `results[i]` of an operation the kernel did not take: nothing was read
  // or written.
  static constexpr int kNotSent = INT_MIN;

  // Sends `msgs[i]` on `fds[i]` (MSG_NOSIGNAL, MSG_DONTWAIT) for every i,
  // at most capacity() of them (more: none is taken), and sets
  // `results[i]` to the bytes written, -errno, or kNotSent. Returns false
  // when the ring failed (some not taken, or completions not readable):
  // the caller does the kNotSent ones itself and stops using the ring.
  bool send_all(std::span<const int> fds, std::span<const msghdr> msgs, std::span<int> results);
  // The same for receiving into `bufs[i]` from `fds[i]`: the bytes read (0:
  // the peer has closed), -errno, or kNotSent.
  bool recv_all(std::span<const int> fds, std::span<const std::span<char>> bufs, std::span<int> results);

 private:
  SocketRing(std::unique_ptr<io_uring> ring, unsigned entries);
  // Submits the `n` operations already prepared and collects their results.
  bool run(unsigned n, std::span<int> results);
  // More than capacity(): none taken.
  static bool refuse(unsigned n, std::span<int> results);

  std::unique_ptr<io_uring> ring_;
  unsigned entries_;
};

}  // namespace im::net
