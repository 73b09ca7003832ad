#pragma once
// A core shard: owns a disjoint set of users (by hash of uid), their
// sessions and presence. Runs on its own thread; every method marked
// "shard thread" runs only there, reached by asio::post to context().

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <asio/io_context.hpp>

#include "net/connection.h"

namespace im::core {

struct SessionRef {
  std::weak_ptr<net::Connection> conn;
  std::uint64_t session_id = 0;
  std::uint8_t device_type = 0;
  std::string device_id;
};

struct PresenceInfo {
  bool online = false;
  std::vector<std::uint8_t> devices;  // device types, ascending, distinct
  std::int64_t last_seen_ms = 0;
};

class Shard {
 public:
  explicit Shard(unsigned index);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  void start();
  void stop();  // thread safe; runs what is queued, then joins
  asio::io_context& context() { return context_; }
  unsigned index() const { return index_; }

  // Shard thread. Registers a session; returns the one of the same device
  // type it replaces (to be kicked), if any.
  std::optional<SessionRef> add_session(const std::string& uid, SessionRef session);
  // Shard thread. Forgets a session if it is still registered; the user's
  // last_seen becomes `now_ms` when it was the last one.
  void remove_session(const std::string& uid, std::uint64_t session_id, std::int64_t now_ms);
  // Shard thread.
  PresenceInfo presence(const std::string& uid) const;
  // Shard thread. Every session of `uid` (all of them when `device_type` is 0).
  std::vector<SessionRef> sessions(const std::string& uid) const;

 private:
  struct UserState {
    std::vector<SessionRef> sessions;
    std::int64_t last_seen_ms = 0;
  };

  const unsigned index_;
  asio::io_context context_{1};
  std::unordered_map<std::string, UserState> users_;
  std::thread thread_;
};

// The shard index of a key (a uid, or a conversation key): FNV-1a, so it is
// the same on every build and platform.
std::size_t shard_of(std::string_view key, std::size_t shard_count);

}  // namespace im::core
