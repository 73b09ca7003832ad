#pragma once
// Key encodings of the column families (docs/architecture.md, "Storage").
// One user's or one conversation's rows are contiguous and ordered:
// integers are big-endian, fixed width, after a 0x00 separator (ids never
// contain 0x00).

#include <cstdint>
#include <string>
#include <string_view>

namespace im::store {

void append_u64(std::string& out, std::uint64_t v);
std::uint64_t read_u64(std::string_view eight_bytes);

// uid 0x00 — the prefix of a user's rows (inbox, cursors, dedupe).
std::string user_prefix(std::string_view uid);
// uid 0x00 seq
std::string inbox_key(std::string_view uid, std::uint64_t seq);
// conv 0x00 — the prefix of a conversation's history.
std::string conv_prefix(std::string_view conv);
// conv 0x00 conv_seq
std::string history_key(std::string_view conv, std::uint64_t conv_seq);
// uid 0x00 client_msg_id
std::string dedupe_key(std::string_view uid, std::string_view client_msg_id);
// uid 0x00 device_type(u8) device_id
std::string cursor_key(std::string_view uid, std::uint8_t device_type, std::string_view device_id);
// conv 0x00 conv_seq recipient: one inbox row not yet written
std::string fanout_key(std::string_view conv, std::uint64_t conv_seq, std::string_view recipient);
// seq
std::string outbox_key(std::uint64_t seq);

// The seq at the end of an inbox or history key.
std::uint64_t seq_of(std::string_view key);

// Conversation keys: c:<smaller uid>:<larger uid>, g:<gid>, s:<uid>.
std::string c2c_conv(std::string_view a, std::string_view b);
std::string group_conv(std::string_view gid);
std::string system_conv(std::string_view uid);

}  // namespace im::store
