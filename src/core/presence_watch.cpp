#include "core/presence_watch.h"

#include <chrono>

#include "common/clock.h"
#include "common/metrics.h"

namespace im::core {

std::uint32_t presence_mask(const v1::Presence& p) {
  std::uint32_t mask = p.online() ? 1u : 0u;
  for (int d : p.devices())
    if (d >= 0 && d < 31) mask |= 2u << d;
  return mask;
}

bool PresenceWatch::watch(const std::string& uid, std::uint64_t session_id, std::weak_ptr<net::Connection> conn,
                          std::uint32_t request, std::uint32_t mask) {
  Entry& e = entries_[uid];
  auto [it, added] = e.sessions.try_emplace(session_id);
  Watcher& w = it->second;
  w.conn = std::move(conn);
  w.session_id = session_id;
  w.muted_by = request;
  w.answered = mask;
  if (added) {
    ++pairs_;
    metrics::get().presence_watches.add(1);
  }
  return added;
}

void PresenceWatch::activate(const std::string& uid, std::uint64_t session_id, std::uint32_t request,
                             std::uint32_t mask) {
  auto e = entries_.find(uid);
  if (e == entries_.end()) return;
  auto w = e->second.sessions.find(session_id);
  // Gone (removed, the session ended), or muted again by a later request.
  if (w == e->second.sessions.end() || w->second.muted_by != request) return;
  w->second.muted_by = 0;
  if (mask != w->second.answered) push_(uid, {&w->second});
}

bool PresenceWatch::unwatch(const std::string& uid, std::uint64_t session_id) {
  auto e = entries_.find(uid);
  if (e == entries_.end() || e->second.sessions.erase(session_id) == 0) return false;
  --pairs_;
  metrics::get().presence_watches.add(-1);
  if (e->second.sessions.empty()) entries_.erase(e);  // a merged push still due is skipped
  return true;
}

void PresenceWatch::changed(const std::string& uid, std::int64_t now_ms) {
  auto it = entries_.find(uid);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  if (e.merging) return;  // the push at the end of the interval carries it
  if (!e.pushed || now_ms - e.pushed_ms >= kPresenceMergeMs) return push_now(uid, e, now_ms);
  e.merging = true;
  e.due_ms = e.pushed_ms + kPresenceMergeMs;
  due_.emplace(e.due_ms, uid);
  arm();
}

void PresenceWatch::flush(std::int64_t now_ms) {
  while (!due_.empty() && due_.top().first <= now_ms) {
    auto [due_ms, uid] = due_.top();
    due_.pop();
    auto it = entries_.find(uid);
    if (it == entries_.end() || !it->second.merging || it->second.due_ms != due_ms) continue;
    it->second.merging = false;
    push_now(uid, it->second, now_ms);
  }
}

void PresenceWatch::push_now(const std::string& uid, Entry& e, std::int64_t now_ms) {
  e.pushed = true;
  e.pushed_ms = now_ms;
  std::vector<const Watcher*> to;
  to.reserve(e.sessions.size());
  for (const auto& [id, w] : e.sessions)
    if (w.muted_by == 0) to.push_back(&w);
  if (!to.empty()) push_(uid, to);
}

void PresenceWatch::arm() {
  if (due_.empty()) return;
  const std::int64_t next = due_.top().first;
  if (armed_ && next >= armed_at_) return;
  // Setting the expiry aborts a wait already armed for later (its handler
  // then sees an error and leaves `armed_` to this one).
  armed_ = true;
  armed_at_ = next;
  timer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::milliseconds(next)));
  timer_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    armed_ = false;
    flush(steady_ms());
    arm();
  });
}

}  // namespace im::core
