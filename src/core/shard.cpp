#include "core/shard.h"

#include <algorithm>

#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>

namespace im::core {

std::size_t shard_of(std::string_view key, std::size_t shard_count) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return static_cast<std::size_t>(h % shard_count);
}

Shard::Shard(unsigned index) : index_(index) {}

Shard::~Shard() {
  stop();
}

void Shard::start() {
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(context_);
    context_.run();
  });
}

void Shard::stop() {
  if (!thread_.joinable()) return;
  asio::post(context_, [this] { context_.stop(); });
  thread_.join();
}

std::optional<SessionRef> Shard::add_session(const std::string& uid, SessionRef session) {
  UserState& user = users_[uid];
  std::optional<SessionRef> replaced;
  for (auto it = user.sessions.begin(); it != user.sessions.end(); ++it) {
    if (it->device_type == session.device_type) {
      replaced = std::move(*it);
      user.sessions.erase(it);
      break;
    }
  }
  user.sessions.push_back(std::move(session));
  return replaced;
}

void Shard::remove_session(const std::string& uid, std::uint64_t session_id, std::int64_t now_ms) {
  auto it = users_.find(uid);
  if (it == users_.end()) return;
  auto& sessions = it->second.sessions;
  auto s =
      std::find_if(sessions.begin(), sessions.end(), [&](const SessionRef& r) { return r.session_id == session_id; });
  if (s == sessions.end()) return;
  sessions.erase(s);
  if (sessions.empty()) {
    it->second.last_seen_ms = now_ms;
    std::vector<SessionRef>().swap(sessions);
  }
}

PresenceInfo Shard::presence(const std::string& uid) const {
  PresenceInfo info;
  auto it = users_.find(uid);
  if (it == users_.end()) return info;
  info.online = !it->second.sessions.empty();
  info.last_seen_ms = it->second.last_seen_ms;
  for (const SessionRef& s : it->second.sessions) info.devices.push_back(s.device_type);
  std::sort(info.devices.begin(), info.devices.end());
  info.devices.erase(std::unique(info.devices.begin(), info.devices.end()), info.devices.end());
  return info;
}

std::vector<SessionRef> Shard::sessions(const std::string& uid) const {
  auto it = users_.find(uid);
  return it == users_.end() ? std::vector<SessionRef>{} : it->second.sessions;
}

}  // namespace im::core
