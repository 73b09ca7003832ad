#pragma once
// One protocol connection driven by the thread that owns it: an im::Client
// on a private io_context that runs only inside this object's calls. So a
// caller may pipeline requests (send many, then wait for all answers) with
// no other thread and no locks; frames the server starts (PUSH, KICKOUT,
// ERROR) are kept until taken. NOT thread safe: one thread per Conn.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>

#include "im/client.h"
#include "proto/im.pb.h"

namespace im::stress {

using namespace std::chrono_literals;

class Conn {
 public:
  Conn();
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Connects to 127.0.0.1:port; false when it failed within `timeout`.
  bool connect(std::uint16_t port, std::chrono::milliseconds timeout = 5s);
  // Sends every request at once, then waits until each is answered, the
  // connection ends or `timeout` passes: the answers in request order,
  // nullopt for each that got none.
  std::vector<std::optional<Frame>> calls(const std::vector<std::pair<Cmd, std::string>>& requests,
                                          std::chrono::milliseconds timeout = 5s);
  std::optional<Frame> call(Cmd cmd, const google::protobuf::MessageLite& body, std::chrono::milliseconds timeout = 5s);
  std::optional<Frame> call_empty(Cmd cmd, std::chrono::milliseconds timeout = 5s);
  // A request with no answer when it succeeds (ACK).
  void notify(Cmd cmd, const google::protobuf::MessageLite& body);
  // Runs the connection's I/O for `d` (reads pushes, answers heartbeats,
  // writes what notify queued).
  void pump(std::chrono::milliseconds d);
  // The frames the server started since the last call.
  std::vector<Frame> take_started();
  bool open() const { return client_ && !closed_; }
  // Drops the connection; `abort`: with a TCP reset, so no TIME_WAIT is left
  // on this side (floods of short connections).
  void close(bool abort = false);

 private:
  void run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);

  asio::io_context io_;
  std::shared_ptr<Client> client_;
  std::vector<Frame> started_;
  bool closed_ = false;
  // Which client the handlers belong to: a closed client's late handlers
  // must not touch its successor's state.
  std::uint64_t generation_ = 0;
};

// LOGIN on a connected `c`: the LoginResp, or nullopt with the reason (the
// status and its message, or "no answer") in `why`.
std::optional<v1::LoginResp> login(Conn& c, const std::string& uid, const std::string& token, v1::DeviceType device,
                                   const std::string& device_id, std::string& why);

// "OK", a status name with the error's message, or "no answer".
std::string describe(const std::optional<Frame>& answer);

}  // namespace im::stress
