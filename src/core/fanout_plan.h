#pragma once
// How a group message reaches its recipients' inboxes: one chain per shard
// of the run that wrote the fan-out record, holding that shard's
// recipients in record order with the sender first (so a SendResp does not
// wait behind the whole group). A chain is written in slices of at most
// kSliceRows rows, each with a progress row in the same batch, so that
// start-up knows exactly which rows a crash left unwritten. Pure functions.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace im::core {

inline constexpr std::size_t kSliceRows = 256;

// The shard (of `shard_count`) that owns a user, a conversation or a group
// ("g:" + gid): FNV-1a of the key.
std::size_t shard_of(std::string_view key, std::size_t shard_count);

// chains[i]: the recipients owned by shard i of `shard_count`.
std::vector<std::vector<std::string>> fanout_chains(const std::vector<std::string>& recipients,
                                                    const std::string& sender, std::uint32_t shard_count);

// The end of the slice of `chain` that starts at `offset`: the run of
// recipients owned by that same shard (of `shard_count` now), at most
// kSliceRows long.
std::size_t slice_end(const std::vector<std::string>& chain, std::size_t offset, std::size_t shard_count);

}  // namespace im::core
