#pragma once
// What core keeps per connection. Touched only on the connection's loop.

#include <cstdint>
#include <string>

#include "core/token_bucket.h"
#include "net/service_interface.h"

namespace im::core {

class ClientContext : public net::ConnectionContext {
 public:
  enum class Phase : std::uint8_t {
    kAnonymous,  // only HEARTBEAT and LOGIN are served
    kLoggingIn,  // LOGIN is at the user's shard; reading is paused
    kLoggedIn,
    kEnded,  // logged out or kicked: no more requests
  };

  explicit ClientContext(std::uint32_t burst) : bucket(static_cast<float>(burst)) {}

  Phase phase = Phase::kAnonymous;
  std::uint8_t device_type = 0;
  TokenBucket bucket;
  std::uint64_t session_id = 0;
  std::string uid;
  std::string device_id;
};

}  // namespace im::core
