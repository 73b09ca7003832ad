#pragma once
// Admission of new connections: the global connection cap
// (server.max_connections, clamped to the file limit), the accept rate
// (limits.accept_per_second, a token bucket) and the per-IP cap
// (limits.connections_per_ip). Thread safe; off the message path.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include <asio/ip/address.hpp>

namespace im::net {

class AdmissionControl {
 public:
  AdmissionControl(std::uint64_t max_connections, std::uint32_t accept_per_second, std::uint32_t connections_per_ip);

  // nullopt: admitted (release() it when it closes). Otherwise refused, with
  // the retry_after_ms to tell the client (jittered, so refused clients do
  // not come back together).
  std::optional<std::uint32_t> try_admit(std::uint64_t peer_key);
  void release(std::uint64_t peer_key);
  std::uint64_t open() const { return open_.load(std::memory_order_relaxed); }
  std::uint64_t max_connections() const { return max_connections_; }

  // The per-IP key of an address: IPv4 exactly, IPv6 by its /64 prefix.
  static std::uint64_t peer_key(const asio::ip::address& address);

 private:
  std::uint32_t jitter(std::uint32_t base_ms);

  const std::uint64_t max_connections_;
  const double accept_per_second_;
  const std::uint32_t connections_per_ip_;
  std::atomic<std::uint64_t> open_{0};
  std::mutex mutex_;  // guards what follows
  double tokens_;
  std::chrono::steady_clock::time_point refilled_ = std::chrono::steady_clock::now();
  std::unordered_map<std::uint64_t, std::uint32_t> per_ip_;
  std::uint64_t rng_ = 0x9E3779B97F4A7C15ull;
};

}  // namespace im::net
