#pragma once
// Row key encodings of the column families (docs/architecture.md,
// "Storage"). Private to src/store: the rest of the server speaks in typed
// operations (store/store.h). One user's or one conversation's rows are
// contiguous and ordered: integers are big-endian, fixed width, after a
// 0x00 separator (ids never contain 0x00).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "store/conv_id.h"
#include "store/records.h"

namespace im::store {

void append_u64(std::string& out, std::uint64_t v);
std::uint64_t read_u64(std::string_view eight_bytes);

// id 0x00 — the prefix of a user's or a conversation's rows.
std::string user_prefix(std::string_view uid);
// uid 0x00 seq
std::string inbox_key(std::string_view uid, std::uint64_t seq);
// conv 0x00 conv_seq
std::string history_key(std::string_view conv, std::uint64_t conv_seq);
// The same into `out`, reusing its buffer.
void assign_history_key(std::string& out, std::string_view conv, std::uint64_t conv_seq);
// uid 0x00 client_msg_id
std::string dedupe_key(std::string_view uid, std::string_view client_msg_id);
// `meta` rows of the shards' msg_id reservations (core/msg_id_clock.h): the
// prefix, then the shard index in decimal.
inline constexpr std::string_view kIdReservationPrefix = "msg_id_reserved:";
// uid 0x00 device_type(u8) device_id
std::string cursor_key(std::string_view uid, std::uint8_t device_type, std::string_view device_id);
// gid 0x00 uid (members), uid 0x00 gid (user_groups)
std::string member_key(std::string_view gid, std::string_view uid);
// conv 0x00 conv_seq [recipient]: a copy record names its recipient
std::string fanout_key(const FanoutKey& key);
// conv 0x00 conv_seq 0x00 chain(u32): a group fan-out's progress row
std::string progress_key(const FanoutKey& key, std::uint32_t chain);
// The parts of a `fanout` key; nullopt for a key of no known shape. `chain`
// is set for a progress row.
struct ParsedFanoutKey {
  FanoutKey key;
  std::optional<std::uint32_t> chain;
};
std::optional<ParsedFanoutKey> parse_fanout_key(std::string_view key);
// queue(u8) id(u64): a queue is the shard that wrote the event. (Before
// queues the key was the bare id; Store::open moves such keys to queue 0.)
std::string outbox_key(std::uint8_t queue, std::uint64_t id);
inline constexpr std::size_t kOutboxKeyBytes = 9;
inline constexpr std::size_t kLegacyOutboxKeyBytes = 8;
// "webhook_failing:" + outbox key, in `meta`: when an event's delivery first failed (ms)
std::string outbox_failing_key(std::uint8_t queue, std::uint64_t id);
// In `meta`: the number of events in the outbox, kept by a merge (+1 with
// each event written, -1 with each deleted, in the same batch).
inline constexpr const char* kOutboxCountKey = "outbox_count";
// "token_revoked:" uid, in `meta` (with "" the prefix of them all)
std::string token_revocation_key(std::string_view uid);
// "large_group:" gid, in `meta` (with "" the prefix of them all): a group
// that switched to read fan-out (PROTOCOL 9), valued its large_from_seq.
std::string large_group_key(std::string_view gid);

// uid 0x00 conv: a user's state of one conversation (`convs`); uid 0x00
// alone holds the inbox seq every state of the user reflects.
std::string conv_key(std::string_view uid, std::string_view conv);
// uid 0x00 0x00 conv (`convs`): the user's settings of that conversation
// (ConvSettingsRecord). A conversation id never starts with 0x00, so these
// sort after the applied seq and before every state of the user.
std::string conv_settings_key(std::string_view uid, std::string_view conv);
// The first key of a user's states, past the applied seq and the settings rows.
std::string conv_states_begin(std::string_view uid);
// uid 0x00 conv 0x00 conv_seq (`deletes`); conv_seq 0 holds cleared_seq.
std::string deleted_key(std::string_view uid, std::string_view conv, std::uint64_t conv_seq);
// In `meta`: the layout version of the store (Store::open).
inline constexpr const char* kSchemaVersionKey = "schema_version";
// Cluster mode: the partition count the data dir was written with.
inline constexpr const char* kClusterPartitionsKey = "cluster_partitions";
// Inbox rows by reference (records.h, InboxRef): kInboxRefsOn once a shard
// wrote one (in that batch), else the time (ms) a start found them
// switched off (core/retention.h). Absent: none is left in any inbox.
inline constexpr const char* kInboxRefsKey = "inbox_refs";
inline constexpr std::uint64_t kInboxRefsOn = ~std::uint64_t{0};

// The seq at the end of an inbox or history key.
std::uint64_t seq_of(std::string_view key);

// The smallest key greater than every key that starts with `prefix`.
std::string prefix_end(std::string_view prefix);

}  // namespace im::store
