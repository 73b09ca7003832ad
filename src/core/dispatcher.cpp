#include "core/dispatcher.h"

#include <stdexcept>

#include <fmt/format.h>

#include "core/errors.h"
#include "core/wire.h"
#include "net/frames.h"

namespace im::core {

void Replier::ok(const google::protobuf::MessageLite* body) const {
  net::send_from_any_thread(conn_, net::make_response(request_, StatusCode::kOk, body));
}

void Replier::ok_raw(std::string body) const {
  net::send_from_any_thread(conn_, wire::response(request_, std::move(body)));
}

void Replier::fail(const Error& error) const {
  net::send_from_any_thread(conn_,
                            net::make_error_response(request_, error.code, client_text(error), error.retry_after_ms));
}

void Call::reply(const google::protobuf::MessageLite* body) const {
  conn.send(net::make_response(header, StatusCode::kOk, body));
}

void Call::fail(StatusCode code, std::string_view text, std::uint32_t retry_after_ms) const {
  conn.send(net::make_error_response(header, code, client_text(Error{code, std::string(text), 0}), retry_after_ms));
}

void Dispatcher::add_empty(Cmd cmd, std::function<void(Call&)> handler) {
  route(cmd, [handler = std::move(handler)](Call& call, std::string_view) { handler(call); });
}

void Dispatcher::route(Cmd cmd, Route r) {
  const auto index = static_cast<std::uint16_t>(cmd);
  if (index >= routes_.size()) throw std::logic_error(fmt::format("cmd 0x{:04x} is past the routing table", index));
  routes_[index] = std::move(r);
}

bool Dispatcher::routes(Cmd cmd) const {
  const auto index = static_cast<std::uint16_t>(cmd);
  return index < routes_.size() && routes_[index];
}

void Dispatcher::dispatch(Call& call, std::string_view body) const {
  if (!routes(call.header.cmd))
    return call.fail(StatusCode::kUnknownCommand,
                     fmt::format("unknown command 0x{:04x}", static_cast<std::uint16_t>(call.header.cmd)));
  routes_[static_cast<std::uint16_t>(call.header.cmd)](call, body);
}

}  // namespace im::core
