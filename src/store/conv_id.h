#pragma once
// Conversation ids (DESIGN.md, "Conv key"): c:<smaller uid>:<larger uid> for
// C2C, g:<gid> for a group, s:<uid> for a user's SYSTEM conversation. They
// name a conversation everywhere (the shards' maps, the history rows, the
// owner shard's hash), so they are public; row keys are not (store/keys.h).

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace im::store {

std::string c2c_conv(std::string_view a, std::string_view b);
// The two uids of a C2C conversation id (uids hold no ':'); none for
// another kind of id.
std::optional<std::pair<std::string_view, std::string_view>> c2c_users(std::string_view conv);
std::string group_conv(std::string_view gid);
std::string system_conv(std::string_view uid);

}  // namespace im::store
