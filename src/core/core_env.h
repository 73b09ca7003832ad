#pragma once
// What every shard shares: the config, the store, the set of shards (to post
// to each other), two process-wide counters, the changed messages and the
// large groups. Built by Service.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "core/changed_messages.h"
#include "core/fanout_limiter.h"
#include "core/large_groups.h"
#include "im/config.h"
#include "store/store.h"

namespace im::search {
class SearchIndex;
}

namespace im::cluster {
class PartitionLog;
}

namespace im::core {

class Shard;

struct CoreEnv {
  const Config& config;
  store::Store& store;
  std::vector<std::unique_ptr<Shard>>& shards;
  std::atomic<std::uint32_t> push_seq{0};  // seq of server-started frames
  FanoutLimiter fanout{config.limits.fanout_rows_per_second};  // per user, all shards
  ChangedMessages changes{store};  // recalled and edited messages (PROTOCOL 8.3)
  LargeGroups large{};             // groups on read fan-out (PROTOCOL 9)
  // Rows earlier runs wrote have server_time_ms below this (Service sets it
  // from the msg_id reservations, MsgIdClock::earlier_runs_below_ms): the
  // dedupe window rebuilds only those (Shard::Rebuild).
  std::int64_t earlier_runs_below_ms = wall_ms();
  // The search indexes (PROTOCOL 8.6); nullptr when search.enabled is false.
  search::SearchIndex* search = nullptr;
  // Cluster mode (docs/cluster.md): shard i's partition log; empty in
  // embedded mode.
  std::vector<cluster::PartitionLog*> logs{};

  Shard& shard_for(std::string_view key);
  std::uint32_t next_push_seq();
  bool webhook_enabled() const { return !config.webhook.url.empty(); }
};

// The shard that owns a conversation: a C2C conversation belongs to the
// shard of its smaller uid (so a C2C send touches at most two shards), a
// group to the shard of "g:" + gid, the SYSTEM conversation of a user to the
// user's shard.
Shard& conversation_owner(CoreEnv& env, int conv_type, std::string_view from, std::string_view to);
// The index of the shard that owns a conversation id (store/conv_id.h), by
// the same rule.
std::size_t conv_owner_index(std::string_view conv, std::size_t shard_count);

}  // namespace im::core
