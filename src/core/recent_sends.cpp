#include "core/recent_sends.h"

#include <algorithm>
#include <random>

#include "common/metrics.h"

namespace im::core {
namespace {

std::uint64_t random_seed() {
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd();
}

// splitmix64's finalizer.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

RecentSends::RecentSends(std::uint64_t capacity, std::int64_t window_ms)
    : capacity_(capacity), window_ms_(window_ms), seed_(random_seed()) {}

RecentSends::~RecentSends() {
  metrics::get().dedupe_entries.add(-static_cast<std::int64_t>(entries_));
}

std::uint64_t RecentSends::hash_of(std::string_view client_msg_id) const {
  // Each 8-byte word folded in through the mixer, the length last: not a
  // cryptographic MAC, but without the seed no two ids are known to collide.
  std::uint64_t h = mix(seed_);
  std::size_t i = 0;
  for (; i + 8 <= client_msg_id.size(); i += 8) {
    std::uint64_t w = 0;
    for (std::size_t b = 0; b < 8; ++b) w |= std::uint64_t{static_cast<unsigned char>(client_msg_id[i + b])} << (8 * b);
    h = mix(h ^ w);
  }
  std::uint64_t tail = 0;
  for (std::size_t b = 0; i + b < client_msg_id.size(); ++b)
    tail |= std::uint64_t{static_cast<unsigned char>(client_msg_id[i + b])} << (8 * b);
  return mix(h ^ tail ^ (std::uint64_t{client_msg_id.size()} << 56) ^ 0x9e3779b97f4a7c15ULL);
}

RecentSends::Sender& RecentSends::sender(std::string_view uid) {
  if (idle_ > capacity_ / 4 + 1024) forget_idle();
  auto [it, added] = senders_.try_emplace(std::string(uid));
  if (added) {
    it->second.uid = &it->first;
    ++idle_;
  }
  return it->second;
}

void RecentSends::forget_idle() {
  // At most capacity / 4 + 1024 senders made since the last sweep are
  // idle, and the senders with entries are at most the entries: a sweep
  // visits at most five times the senders it may drop.
  std::erase_if(senders_, [](const auto& kv) { return kv.second.sent.empty(); });
  idle_ = 0;
}

void RecentSends::mark_loaded(std::string_view uid) {
  sender(uid).loaded = true;
}

RecentSends::Found RecentSends::find(std::string_view uid, std::uint64_t hash) const {
  auto it = senders_.find(std::string(uid));
  if (it == senders_.end()) return {};
  return {it->second.loaded, it->second.sent.find(hash)};
}

bool RecentSends::loaded(std::string_view uid) const {
  auto it = senders_.find(std::string(uid));
  return it != senders_.end() && it->second.loaded;
}

RecentSends::Added RecentSends::add(std::string_view uid, std::uint64_t hash, std::uint64_t inbox_seq,
                                    std::int64_t time_ms) {
  if (inbox_seq == 0) return Added::kTaken;  // not a row (SeqTable's empty mark)
  Sender& s = sender(uid);
  const bool first = s.sent.empty();
  if (const std::uint64_t held = s.sent.insert(hash, inbox_seq); held != 0)
    return held == inbox_seq ? Added::kKnown : Added::kTaken;
  if (first && idle_ > 0) --idle_;
  ++entries_;
  metrics::get().dedupe_entries.add(1);
  order_.push_back(Queued{time_ms, &s, hash});
  return Added::kAdded;
}

void RecentSends::expire(std::int64_t now_ms) {
  const std::int64_t cutoff = now_ms - window_ms_;
  while (!order_.empty() && order_.front().time_ms < cutoff) {
    const Queued q = order_.front();
    order_.pop_front();
    Sender& s = *q.sender;
    s.sent.erase(q.hash);
    --entries_;
    metrics::get().dedupe_entries.add(-1);
    if (s.sent.empty()) senders_.erase(senders_.find(*s.uid));
  }
}

}  // namespace im::core
