#include "core/typing.h"

#include <chrono>

#include "common/clock.h"
#include "common/metrics.h"

namespace im::core {
namespace {

// uid, 0x00, conv_type, peer: ids never hold 0x00.
std::string throttle_key(const std::string& uid, int conv_type, const std::string& peer) {
  std::string key;
  key.reserve(uid.size() + 2 + peer.size());
  key += uid;
  key += '\0';
  key += static_cast<char>(conv_type);
  key += peer;
  return key;
}

}  // namespace

bool TypingThrottle::admit(const std::string& uid, int conv_type, const std::string& peer, v1::TypingState state,
                           std::int64_t now_ms) {
  const std::string key = throttle_key(uid, conv_type, peer);
  auto it = entries_.find(key);
  if (state == v1::STOPPED) {
    if (it == entries_.end() || it->second.stopped || now_ms - it->second.start_ms >= kTypingStopWithinMs) return false;
    it->second.stopped = true;
    return true;
  }
  if (it != entries_.end()) {
    if (now_ms - it->second.start_ms < kTypingStartEveryMs) return false;
    it->second = Entry{now_ms, false};
    return true;
  }
  entries_.emplace(key, Entry{now_ms, false});
  metrics::get().typing_entries.add(1);
  arm();
  return true;
}

std::size_t TypingThrottle::prune(std::int64_t now_ms) {
  const std::size_t dropped =
      std::erase_if(entries_, [now_ms](const auto& e) { return now_ms - e.second.start_ms >= kTypingStopWithinMs; });
  metrics::get().typing_entries.add(-static_cast<std::int64_t>(dropped));
  // A burst of made-up conversations leaves no bucket array behind.
  if (entries_.empty()) std::unordered_map<std::string, Entry>().swap(entries_);
  return dropped;
}

void TypingThrottle::arm() {
  if (armed_ || entries_.empty()) return;
  armed_ = true;
  timer_.expires_after(std::chrono::milliseconds(kTypingStopWithinMs));
  timer_.async_wait([this](const asio::error_code& ec) {
    armed_ = false;
    if (ec) return;
    prune(steady_ms());
    arm();
  });
}

}  // namespace im::core
