#include "core/core_env.h"

#include "core/fanout_plan.h"
#include "core/shard.h"
#include "proto/im.pb.h"
#include "store/conv_id.h"

namespace im::core {

Shard& CoreEnv::shard_for(std::string_view key) {
  return *shards[shard_of(key, shards.size())];
}

std::uint32_t CoreEnv::next_push_seq() {
  for (;;) {
    const std::uint32_t seq = push_seq.fetch_add(1, std::memory_order_relaxed) + 1;
    if (seq != 0) return seq;
  }
}

Shard& conversation_owner(CoreEnv& env, int conv_type, std::string_view from, std::string_view to) {
  if (conv_type == v1::C2C) return env.shard_for(from < to ? from : to);
  if (conv_type == v1::GROUP) return env.shard_for(store::group_conv(to));
  return env.shard_for(to);
}

std::size_t conv_owner_index(std::string_view conv, std::size_t shard_count) {
  if (conv.starts_with("c:")) {
    // c:<smaller uid>:<larger uid> (uids hold no ':').
    const std::string_view pair = conv.substr(2);
    return shard_of(pair.substr(0, pair.find(':')), shard_count);
  }
  if (conv.starts_with("s:")) return shard_of(conv.substr(2), shard_count);
  return shard_of(conv, shard_count);
}

}  // namespace im::core
