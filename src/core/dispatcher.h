#pragma once
// The one place that routes commands (muduo's ProtobufDispatcher is the
// model): a table from cmd to a handler that receives the already-parsed
// request. A body that does not parse is answered BAD_REQUEST here, an
// unrouted cmd UNKNOWN_COMMAND. The command families register their
// handlers (core/commands.h).
//
// Built at start-up; dispatch() runs on the connection's loop thread.

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <google/protobuf/message_lite.h>

#include "core/client_context.h"
#include "im/protocol.h"
#include "im/result.h"
#include "net/connection.h"

namespace im::core {

// Answers one request, later and from any thread (the shards answer with it).
class Replier {
 public:
  Replier(std::shared_ptr<net::Connection> conn, const FrameHeader& request)
      : conn_(std::move(conn)), request_(request) {}

  void ok(const google::protobuf::MessageLite* body = nullptr) const;
  // OK with a body serialized already (core/wire.h).
  void ok_raw(std::string body) const;
  // The error's text, or the canned one (core/errors.h) when it has none.
  void fail(const Error& error) const;
  template <class T>
  void answer(const Result<T>& result) const {
    if (!result) return fail(result.error());
    if constexpr (std::is_same_v<T, Ok>) {
      ok();
    } else {
      ok(&*result);
    }
  }

 private:
  std::shared_ptr<net::Connection> conn_;
  FrameHeader request_;
};

// One request being handled on the loop thread.
struct Call {
  net::Connection& conn;
  ClientContext& ctx;
  const FrameHeader& header;

  void reply(const google::protobuf::MessageLite* body = nullptr) const;
  void fail(StatusCode code, std::string_view text = {}, std::uint32_t retry_after_ms = 0) const;
  void fail(const Error& error) const { fail(error.code, error.message, error.retry_after_ms); }
  Replier replier() const { return Replier(conn.shared_from_this(), header); }
};

// "im.v1.SendReq" -> "SendReq".
inline std::string unqualified(const std::string& type) {
  return type.substr(type.rfind('.') + 1);
}

class Dispatcher {
 public:
  // `handler(call, req)` with the body parsed as Req.
  template <class Req>
  void add(Cmd cmd, std::function<void(Call&, Req&)> handler) {
    route(cmd, [handler = std::move(handler)](Call& call, std::string_view body) {
      Req req;
      if (!req.ParseFromArray(body.data(), static_cast<int>(body.size())))
        return call.fail(StatusCode::kBadRequest, unqualified(req.GetTypeName()) + " does not parse");
      handler(call, req);
    });
  }
  // A command whose body is empty (any bytes sent are ignored).
  void add_empty(Cmd cmd, std::function<void(Call&)> handler);
  bool routes(Cmd cmd) const;
  void dispatch(Call& call, std::string_view body) const;

 private:
  using Route = std::function<void(Call&, std::string_view)>;
  void route(Cmd cmd, Route r);
  std::array<Route, 256> routes_;
};

}  // namespace im::core
