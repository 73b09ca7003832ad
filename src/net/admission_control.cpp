#include "net/admission_control.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace im::net {

AdmissionControl::AdmissionControl(std::uint64_t max_connections, std::uint32_t accept_per_second,
                                   std::uint32_t connections_per_ip)
    : max_connections_(max_connections),
      accept_per_second_(accept_per_second),
      connections_per_ip_(connections_per_ip),
      tokens_(accept_per_second) {}

std::uint64_t AdmissionControl::peer_key(const asio::ip::address& address) {
  if (address.is_v4()) return address.to_v4().to_uint();
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_uint();
  const auto bytes = address.to_v6().to_bytes();
  std::uint64_t prefix = 0;
  std::memcpy(&prefix, bytes.data(), sizeof prefix);
  return prefix | (1ull << 63) | 1;  // never equal to an IPv4 key
}

std::uint32_t AdmissionControl::jitter(std::uint32_t base_ms) {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return base_ms + static_cast<std::uint32_t>(rng_ % (base_ms + 1));
}

std::optional<std::uint32_t> AdmissionControl::try_admit(std::uint64_t peer_key) {
  std::lock_guard lock(mutex_);
  if (open_.load(std::memory_order_relaxed) >= max_connections_) return jitter(2000);
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - refilled_).count();
  refilled_ = now;
  tokens_ = std::min(accept_per_second_, tokens_ + elapsed * accept_per_second_);
  if (tokens_ < 1.0) {
    const auto wait_ms = static_cast<std::uint32_t>(std::ceil((1.0 - tokens_) * 1000.0 / accept_per_second_));
    return jitter(std::max<std::uint32_t>(wait_ms, 100));
  }
  if (connections_per_ip_ > 0) {
    std::uint32_t& n = per_ip_[peer_key];
    if (n >= connections_per_ip_) return jitter(1000);
    ++n;
  }
  tokens_ -= 1.0;
  open_.fetch_add(1, std::memory_order_relaxed);
  return std::nullopt;
}

void AdmissionControl::release(std::uint64_t peer_key) {
  open_.fetch_sub(1, std::memory_order_relaxed);
  if (connections_per_ip_ == 0) return;
  std::lock_guard lock(mutex_);
  auto it = per_ip_.find(peer_key);
  if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
}

}  // namespace im::net
