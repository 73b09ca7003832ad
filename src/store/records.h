#pragma once
// The typed rows of the column families (docs/architecture.md, "Storage"):
// each record knows its own value format, and a fan-out key its own layout,
// so that nothing above src/store builds or parses a key or a row tag.
// Every decode checks sizes and never throws.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/im.pb.h"

namespace im::store {

// `history`: a serialized Message, or, for a message with a search text
// (PROTOCOL 8.6), 0x00, the text's length (LEB128), the text, then the
// Message. A Message never starts with 0x00 (there is no field 0), so the
// two are told apart by the first byte, and the text costs no row of its
// own on the send path. Readers above src/store see the Message only
// (Store::scan_history, get_history); the indexer asks for both.
struct HistoryValue {
  std::string_view message;
  std::string_view search_text;
};
std::string encode_history(std::string_view message, std::string_view search_text);
// A value that is not of this shape is taken as a Message (its parse fails
// later if it is none).
HistoryValue decode_history(std::string_view value);

// `inbox`: a serialized Message (the user's copy, with its inbox_seq), or a
// reference to the message's history row: 0x00, the conversation id's
// length (LEB128), the id, the conv_seq (LEB128). A reference is about 30
// bytes instead of the message's copy (bench/ANALYSIS.md, "Inbox rows by
// reference"). Store resolves it on every read (Store::scan_inbox), so
// readers above src/store see a Message either way.
struct InboxRef {
  std::string_view conv;
  std::uint64_t conv_seq = 0;
};
std::string encode_inbox_ref(std::string_view conv, std::uint64_t conv_seq);
// nullopt: the value is a Message (or not a well-formed reference).
std::optional<InboxRef> decode_inbox_ref(std::string_view value);
// Sets a serialized Message's inbox_seq by appending the field: a parser
// takes the last value of a field, and a history row has none.
void append_inbox_seq(std::string& message, std::uint64_t inbox_seq);

// `dedupe`: the ids a SEND got, and when (expired by compaction after
// storage.dedupe_window_s).
struct DedupeRecord {
  std::uint64_t msg_id = 0;
  std::uint64_t conv_seq = 0;
  std::uint64_t inbox_seq = 0;
  std::int64_t time_ms = 0;

  std::string encode() const;
  static std::optional<DedupeRecord> decode(std::string_view value);
  bool operator==(const DedupeRecord&) const = default;
};

// `groups`: a group's row. A dismissed group keeps its row (the gid is never
// reused).
struct GroupRecord {
  v1::Group info;
  bool dismissed = false;

  std::string encode() const;
  static std::optional<GroupRecord> decode(std::string_view value);
};

// `members`: one member of a group (a `user_groups` row goes with it).
struct MemberRecord {
  bool owner = false;
  std::int64_t joined_ms = 0;

  std::string encode() const;
  static std::optional<MemberRecord> decode(std::string_view value);
  bool operator==(const MemberRecord&) const = default;
};

// `cursors`: one device's cumulative ACK, and when the device last used it
// (the least recently used cursor goes when a user has too many). The key
// (after the uid) is the device type byte and the device_id.
struct CursorRecord {
  std::uint8_t device_type = 0;
  std::string device_id;
  std::uint64_t acked = 0;
  std::int64_t used_ms = 0;

  std::string encode() const;  // the value
  // From the key's part after the uid and the value; a value of 8 bytes
  // (written before `used_ms` existed) has used_ms 0.
  static std::optional<CursorRecord> decode(std::string_view key_rest, std::string_view value);
  bool operator==(const CursorRecord&) const = default;
};

// `convs`: one user's state of one conversation (PROTOCOL 8.1), derived
// from that user's inbox rows (core/conv_book.h) and written coalesced. The
// key (after the uid) is the conversation id.
struct ConvRecord {
  std::uint64_t last_conv_seq = 0;   // the newest message or event in the user's inbox
  std::uint64_t last_inbox_seq = 0;  // its row in the inbox
  std::int64_t activity_ms = 0;      // its server_time_ms
  std::uint64_t first_conv_seq = 0;  // the oldest one the user received
  std::uint64_t read_seq = 0;
  std::uint64_t peer_read_seq = 0;   // C2C: the peer's read receipt
  std::uint64_t cleared_seq = 0;     // DELETE up_to_seq
  std::uint64_t seen_inbox_seq = 0;  // the newest inbox row applied to this state
  bool muted = false;
  bool pinned = false;
  bool hidden = false;
  bool has_deletes = false;          // some conv_seqs above cleared_seq were deleted for the user
  // The countable messages above read_seq (from others, content_type below
  // 10000, not recalled nor deleted), as runs [first, last] of conv_seqs in
  // increasing order: unread_count is their total length.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> unread;

  std::string encode() const;
  static std::optional<ConvRecord> decode(std::string_view value);
  bool operator==(const ConvRecord&) const = default;
};

// `convs`, a settings row: one user's settings of one conversation as the
// last CONV_UPDATE set them, written in the batch of its 10008 mark. A
// reader that needs one setting (an offline_push's `muted`) reads this row
// instead of loading the user's whole book. `hidden` is as it was set: a
// newer message undoes it in the ConvRecord, not here.
struct ConvSettingsRecord {
  bool muted = false;
  bool pinned = false;
  bool hidden = false;

  std::string encode() const;
  static std::optional<ConvSettingsRecord> decode(std::string_view value);
  bool operator==(const ConvSettingsRecord&) const = default;
};

// `changes` (by msg_id): where a recalled or edited message's history row
// is, whether it was recalled (said without that row, once history
// retention took it), and the conv_seqs of its edit events (at most
// limits.max_edits), whose bodies a recall empties too.
struct ChangeRecord {
  std::string conv;
  std::uint64_t conv_seq = 0;
  bool recalled = false;
  std::vector<std::uint64_t> edit_seqs;

  std::string encode() const;
  static std::optional<ChangeRecord> decode(std::string_view value);
  bool operator==(const ChangeRecord&) const = default;
};

// Which fan-out a `fanout` row belongs to: a conversation's message at
// `conv_seq`. A C2C copy record names the one recipient whose inbox row is
// pending; a group record names none.
struct FanoutKey {
  std::string conv;
  std::uint64_t conv_seq = 0;
  std::string recipient;  // C2C copy only

  bool operator==(const FanoutKey&) const = default;
};

// A C2C message's copy that another shard writes: durable with the history
// row, deleted in the batch that writes the inbox row.
struct CopyRecord {
  bool is_sender = false;
  v1::Message msg;

  std::string encode() const;
  static std::optional<CopyRecord> decode(std::string_view value);
};

// A group message (a SEND or an event) being fanned out: durable with the
// history row, deleted once every recipient's inbox row is written. The
// recipients are split into chains (core/fanout_plan.h) by the shard count of
// the run that wrote the record, so a replay rebuilds the same chains.
struct GroupFanoutRecord {
  v1::Message msg;
  std::vector<std::string> recipients;
  std::uint32_t shard_count = 1;

  std::string encode() const;
  static std::optional<GroupFanoutRecord> decode(std::string_view value);
};

// How far one chain of a group fan-out got: its first `done` recipients'
// rows are written (in the same batch as this row).
struct FanoutProgress {
  std::uint32_t chain = 0;
  std::uint32_t done = 0;
};

// One row of the `fanout` family, as start-up recovery reads it.
struct FanoutEntry {
  enum class Kind : std::uint8_t { kCopy, kGroup, kProgress, kUnreadable };
  Kind kind = Kind::kUnreadable;
  FanoutKey key;
  CopyRecord copy;          // kCopy
  GroupFanoutRecord group;  // kGroup
  FanoutProgress progress;  // kProgress
};

// An event waiting in the `outbox` for the webhook worker.
struct OutboxEvent {
  std::uint64_t id = 0;
  std::string body;        // the JSON POSTed
  std::uint8_t queue = 0;  // the shard that wrote it (store/outbox.h)
};

}  // namespace im::store
