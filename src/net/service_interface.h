#pragma once
// The one narrow interface through which src/net reaches the business logic
// (implemented by core::Service). Every method runs on the loop thread that
// owns the connection.

#include <memory>
#include <string_view>

#include "im/protocol.h"

namespace im::net {

class Connection;

// Per-connection state owned by the service; net only keeps it alive.
class ConnectionContext {
 public:
  virtual ~ConnectionContext() = default;
};

class ServiceInterface {
 public:
  virtual ~ServiceInterface() = default;
  // A connection was admitted; its context lives as long as it does.
  virtual std::unique_ptr<ConnectionContext> on_open(Connection& conn) = 0;
  // One whole, well-framed frame. `body` is valid only during the call. The
  // service may pause reading (conn.pause_reading()) to keep request order
  // across an asynchronous step.
  virtual void on_frame(Connection& conn, const FrameHeader& header, std::string_view body) = 0;
  // The connection is closed; called once.
  virtual void on_close(Connection& conn) = 0;
  // The deadline the service set (Connection::set_deadline) has passed;
  // called once, from the loop's sweep, while the connection is logged in.
  virtual void on_deadline(Connection& conn) = 0;
};

}  // namespace im::net
