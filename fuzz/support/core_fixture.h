#pragma once
// The core as the dispatcher and admin harnesses need it: a real
// core::Service (2 shards) over RocksDB in a fresh temporary folder, started
// once per process and removed at exit; and FuzzClient, a real
// net::Connection whose peer is the other end of a socketpair. The calling
// thread is the connection's loop thread: it runs the loop's io_context
// itself (the IoLoop's own thread is never started), hands frames to the
// Service exactly as Connection::dispatch does, and reads the answers from
// the peer socket. The shards run on their own threads, as in the server.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/executor_work_guard.hpp>

#include "core/service.h"
#include "http/admin_server.h"
#include "im/config.h"
#include "im/protocol.h"
#include "net/admission_control.h"
#include "net/connection.h"
#include "net/io_loop.h"
#include "net/net_limits.h"
#include "net/transport.h"

namespace im::fuzz {

// The uids a fuzz session logs in as (and that corpus bodies name).
inline constexpr const char* kUids[] = {"alice", "bob", "carol", "dave"};

class CoreFixture {
 public:
  // The process's fixture, built (and the Service started) on first use.
  static CoreFixture& get();
  ~CoreFixture();

  core::Service& service() { return *service_; }
  const Config& config() const { return config_; }
  net::IoLoop& loop() { return *loop_; }
  net::AdmissionControl& admission() { return *admission_; }
  const net::Transport& transport() const { return transport_; }
  // Returns once every shard has run what was posted to it before the call.
  void settle_shards();
  // The admin HTTP API over this Service on 127.0.0.1 (a free port), started
  // on first use; its key is kAdminKey.
  http::AdminServer& admin();
  static constexpr const char* kAdminKey = "fuzz-admin-key";

 private:
  CoreFixture();

  std::string dir_;
  Config config_;
  net::NetLimits limits_;
  net::Transport transport_;
  std::unique_ptr<net::AdmissionControl> admission_;
  std::unique_ptr<core::Service> service_;
  std::unique_ptr<net::IoLoop> loop_;
  std::atomic<bool> draining_{false};
  std::unique_ptr<http::AdminServer> admin_;
  // Keeps the loop's io_context from stopping when no connection is open.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
};

// A frame as the peer received it.
struct PeerFrame {
  FrameHeader header;
  std::string body;
};

class FuzzClient {
 public:
  explicit FuzzClient(CoreFixture& fx);
  ~FuzzClient();
  FuzzClient(const FuzzClient&) = delete;
  FuzzClient& operator=(const FuzzClient&) = delete;

  // LOGIN with a valid token; true when answered OK (then logged in).
  bool login(const std::string& uid, int device_type, const std::string& device_id);
  // One request, handed to Service::on_frame as the connection would, then
  // waits until it is answered (or, when no answer is due, until the shards
  // have run what it posted). Aborts when a due answer never comes.
  // Returns the answer, if any.
  std::optional<PeerFrame> request(FrameHeader header, std::string_view body);
  // Closes the connection (as a peer's disconnect does).
  void close();
  // The connection is neither closing nor closed.
  bool usable() const;
  bool logged_in() const;
  // The largest body the connection accepts now (16 KiB before LOGIN).
  std::uint32_t frame_limit() const;
  std::uint32_t next_seq() { return ++seq_; }
  // Every frame the peer has received so far.
  const std::vector<PeerFrame>& received() const { return received_; }

 private:
  // Runs the loop's ready handlers and reads what the peer was sent.
  void pump();
  void read_peer();

  CoreFixture& fx_;
  std::shared_ptr<net::Connection> conn_;
  int peer_fd_ = -1;
  std::uint64_t peer_key_;
  std::string peer_buf_;
  std::vector<PeerFrame> received_;
  std::uint32_t seq_ = 0;
};

}  // namespace im::fuzz
