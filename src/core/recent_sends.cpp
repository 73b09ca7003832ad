#include "core/recent_sends.h"

#include <algorithm>
#include <functional>

#include "common/metrics.h"

namespace im::core {

std::uint64_t RecentSends::hash_of(std::string_view client_msg_id) {
  return std::hash<std::string_view>{}(client_msg_id);
}

RecentSends::Sender& RecentSends::sender(std::string_view uid) {
  auto [it, added] = senders_.try_emplace(std::string(uid));
  if (added) it->second.uid = &it->first;
  return it->second;
}

void RecentSends::mark_loaded(std::string_view uid) {
  sender(uid).loaded = true;
}

RecentSends::Found RecentSends::find(std::string_view uid, std::uint64_t hash) const {
  auto it = senders_.find(std::string(uid));
  if (it == senders_.end()) return {};
  auto sent = it->second.sent.find(hash);
  return {it->second.loaded, sent == it->second.sent.end() ? 0 : sent->second.inbox_seq};
}

void RecentSends::add(std::string_view uid, std::uint64_t hash, std::uint64_t inbox_seq, std::int64_t time_ms,
                      std::vector<Spilled>& spilled) {
  if (!enabled()) return;
  Sender& s = sender(uid);
  auto [it, added] = s.sent.try_emplace(hash, Sent{inbox_seq, time_ms});
  if (!added) {
    if (it->second.inbox_seq == inbox_seq) return;  // already known (a rebuild meeting a live entry)
    it->second = Sent{inbox_seq, time_ms};          // a hash shared by two ids: the newer wins
  } else {
    ++entries_;
    metrics::get().dedupe_entries.add(1);
  }
  order_.push_back(Queued{time_ms, &s, hash, inbox_seq});
  ++s.queued;
  while (entries_ > capacity_) {
    Queued oldest{};
    if (pop_oldest(oldest, false)) spilled.push_back(Spilled{*oldest.sender->uid, oldest.inbox_seq});
  }
  // Senders emptied by spilling stay (still loaded) until there are many.
  if (senders_.size() > 2 * capacity_ + 1024) forget_idle();
}

void RecentSends::expire(std::int64_t now_ms) {
  const std::int64_t cutoff = now_ms - window_ms_;
  while (!order_.empty() && order_.front().time_ms < cutoff) {
    Queued oldest{};
    pop_oldest(oldest, true);
  }
}

bool RecentSends::pop_oldest(Queued& out, bool forget) {
  out = order_.front();
  order_.pop_front();
  Sender& s = *out.sender;
  --s.queued;
  bool live = false;
  if (auto it = s.sent.find(out.hash); it != s.sent.end() && it->second.inbox_seq == out.inbox_seq) {
    s.sent.erase(it);
    --entries_;
    metrics::get().dedupe_entries.add(-1);
    live = true;
  }
  if (forget && s.queued == 0 && s.sent.empty()) senders_.erase(senders_.find(*s.uid));
  return live;
}

void RecentSends::forget_idle() {
  std::erase_if(senders_, [](const auto& kv) { return kv.second.queued == 0 && kv.second.sent.empty(); });
}

}  // namespace im::core
