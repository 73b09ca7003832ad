#include "core/fanout_plan.h"

#include <algorithm>

namespace im::core {

std::size_t shard_of(std::string_view key, std::size_t shard_count) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return static_cast<std::size_t>(h % shard_count);
}

std::vector<std::vector<std::string>> fanout_chains(const std::vector<std::string>& recipients,
                                                    const std::string& sender, std::uint32_t shard_count) {
  std::vector<std::vector<std::string>> chains(std::max<std::uint32_t>(shard_count, 1));
  for (const auto& uid : recipients) {
    auto& chain = chains[shard_of(uid, chains.size())];
    if (uid == sender) {
      chain.insert(chain.begin(), uid);
    } else {
      chain.push_back(uid);
    }
  }
  return chains;
}

std::size_t slice_end(const std::vector<std::string>& chain, std::size_t offset, std::size_t shard_count) {
  if (offset >= chain.size()) return offset;
  const std::size_t owner = shard_of(chain[offset], shard_count);
  std::size_t end = offset + 1;
  while (end < chain.size() && end - offset < kSliceRows && shard_of(chain[end], shard_count) == owner) ++end;
  return end;
}

}  // namespace im::core
