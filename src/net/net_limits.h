#pragma once
// The limits the network layer enforces itself, taken from the [server] and
// [heartbeat] config sections.

#include <cstdint>

namespace im::net {

struct NetLimits {
  std::uint32_t max_frame_bytes = 65536;      // largest body accepted
  std::uint64_t max_pending_bytes = 1048576;  // unsent bytes before a connection is closed
  std::uint32_t auth_timeout_ms = 10000;      // handshake phase (not logged in)
  std::uint32_t idle_timeout_ms = 180000;     // active phase, no inbound frame
  std::uint32_t closing_grace_ms = 700;       // a closing connection flushes at most this long (+ one sweep: under 1 s)
};

}  // namespace im::net
