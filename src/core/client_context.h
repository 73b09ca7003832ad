#pragma once
// What core keeps per connection. Touched only on the connection's loop.

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>

#include "core/token_bucket.h"
#include "net/service_interface.h"

namespace im::core {

// TYPING requests a connection may make a second, with a burst of as many
// (PROTOCOL 8.4: limits.messages_per_second does not count them).
inline constexpr std::uint32_t kTypingPerSecond = 5;

// What a session that types or watches holds on its loop; a session that
// does neither has none (ClientContext::live stays null).
struct SessionLive {
  TokenBucket typing{static_cast<float>(kTypingPerSecond)};  // TYPING's own cap
  // The uids this session watches (PRESENCE_WATCH): the pairs themselves
  // live on the watched users' shards; these are removed from there when
  // the session ends.
  std::unordered_set<std::string> watched;
  std::uint32_t watch_requests = 0;  // numbers each PRESENCE_WATCH (never 0)
};

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
  // The device_id is kept on the user's shard only, in the device's cursor,
  // which records the session id that ACK and PULL name.
  std::unique_ptr<SessionLive> live;  // made by the first TYPING or PRESENCE_WATCH

  SessionLive& live_state() {
    if (!live) live = std::make_unique<SessionLive>();
    return *live;
  }
};

}  // namespace im::core
