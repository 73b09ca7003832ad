#pragma once
// The imserver client library: frames over TCP, requests matched to their
// responses by seq, a callback for everything the server starts (PUSH,
// KICKOUT, SERVER_PUSH, ERROR).
//
// Client is asynchronous and runs on the caller's asio::io_context (one
// thread can drive thousands of them); every method runs on that thread.
// SyncClient wraps one Client with its own thread, for tests and tools.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <google/protobuf/message_lite.h>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "im/protocol.h"

namespace im {

// A frame as received: header and body bytes.
struct Frame {
  FrameHeader header;
  std::string body;

  StatusCode status() const { return header.status; }
  bool ok() const { return header.status == StatusCode::kOk; }
  template <class T>
  bool parse(T& msg) const {
    return msg.ParseFromArray(body.data(), static_cast<int>(body.size()));
  }
  // The Error body's message of a failed response ("" when none).
  std::string error_message() const;
  // The Error body's retry_after_ms (0 when none).
  std::uint32_t retry_after_ms() const;
};

class Client : public std::enable_shared_from_this<Client> {
 public:
  using FrameHandler = std::function<void(Frame&)>;
  using CloseHandler = std::function<void(const asio::error_code&)>;

  static std::shared_ptr<Client> create(asio::io_context& io, std::uint32_t max_frame_bytes = 16 * 1024 * 1024);

  // `source`: the local endpoint to connect from; a load generator with tens
  // of thousands of clients picks them itself, because the kernel's search
  // for a free ephemeral port then dominates its CPU. Unspecified: the
  // kernel's choice.
  void connect(const asio::ip::tcp::endpoint& server, std::function<void(const asio::error_code&)> done,
               const asio::ip::tcp::endpoint& source = {});
  // Sends a request (seq chosen here, returned); `on_response` gets its answer.
  std::uint32_t request(Cmd cmd, const google::protobuf::MessageLite* body, FrameHandler on_response);
  std::uint32_t request(Cmd cmd, std::string_view body, FrameHandler on_response);
  // Sends a request that has no answer when it succeeds (ACK).
  void notify(Cmd cmd, const google::protobuf::MessageLite* body);
  // Sends bytes as they are (for tests of hostile input).
  void send_raw(std::string bytes);
  // Frames the server starts: PUSH, KICKOUT, SERVER_PUSH, ERROR, and answers
  // to no pending request. The server's HEARTBEAT is answered by the client.
  void on_frame(FrameHandler handler) { on_frame_ = std::move(handler); }
  void on_close(CloseHandler handler) { on_close_ = std::move(handler); }
  void close();
  bool is_open() const { return socket_.is_open(); }
  std::size_t pending_requests() const { return pending_.size(); }
  asio::ip::tcp::socket& socket() { return socket_; }

  explicit Client(asio::io_context& io, std::uint32_t max_frame_bytes);

 private:
  void read_more();
  void write_more();
  void fail(const asio::error_code& ec);
  std::uint32_t next_seq();

  asio::ip::tcp::socket socket_;
  std::uint32_t max_frame_bytes_;
  std::vector<char> rbuf_;
  std::size_t rlen_ = 0;
  std::vector<std::string> queued_;
  std::vector<std::string> writing_;
  std::unordered_map<std::uint32_t, FrameHandler> pending_;
  std::uint32_t seq_ = 0;
  FrameHandler on_frame_;
  CloseHandler on_close_;
  bool closed_ = false;
};

// A blocking client with its own I/O thread. Thread safe.
class SyncClient {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kDefaultTimeout{5000};

  SyncClient();
  ~SyncClient();
  SyncClient(const SyncClient&) = delete;
  SyncClient& operator=(const SyncClient&) = delete;

  bool connect(const std::string& host, std::uint16_t port);
  // A request and its answer; nullopt when none came within `timeout` or
  // the connection closed first.
  std::optional<Frame> call(Cmd cmd, const google::protobuf::MessageLite* body,
                            std::chrono::milliseconds timeout = kDefaultTimeout);
  std::optional<Frame> call_raw(Cmd cmd, std::string_view body, std::chrono::milliseconds timeout = kDefaultTimeout);
  void notify(Cmd cmd, const google::protobuf::MessageLite* body);
  void send_raw(std::string bytes);
  // The next frame the server started (PUSH, KICKOUT, ERROR, ...).
  std::optional<Frame> next_frame(std::chrono::milliseconds timeout = kDefaultTimeout);
  // Waits until the server closes the connection.
  bool wait_closed(std::chrono::milliseconds timeout = kDefaultTimeout);
  bool is_closed();
  void close();

 private:
  asio::io_context io_;
  std::shared_ptr<Client> client_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Frame> frames_;
  bool closed_ = false;
};

}  // namespace im
