#pragma once
// One user's conversations (PROTOCOL 8.1): for each, the newest message,
// the read position, the peer's receipt, the settings and what is unread.
// Every change is an inbox row of the user (a message or event, or one of
// the 10006/10007/10008 marks), so the book is derived from the inbox and
// nothing else: `apply` takes the rows in inbox order, each state records
// the newest row it took (applying a row again changes nothing), and the
// states are written coalesced with the inbox seq they all reflect, so a
// crash only means the rows above it are applied again (DESIGN.md,
// "Conversations, receipts, recall"). Unread counts are runs of conv_seqs,
// never a counter that a lost update could make drift.
//
// Pure state; its owner (the user's shard) runs it on one thread.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proto/im.pb.h"
#include "store/records.h"

namespace im::core {

// The conversation an inbox row of `me` belongs to ("" for none: a mark
// that names no valid conversation).
std::string conv_of_row(const std::string& me, const v1::Message& row);
// The conversation `peer` names from `me`'s side (PROTOCOL 8: the other uid
// for C2C, the gid for GROUP, empty for SYSTEM).
std::string conv_from_side(const std::string& me, v1::ConvType type, const std::string& peer);
// The other way round: the type and the peer of a conversation id.
v1::ConvType conv_type_of_id(std::string_view conv);
std::string peer_of(const std::string& me, std::string_view conv);

class ConvBook {
 public:
  struct Entry {
    store::ConvRecord rec;
    bool dirty = false;
  };

  // What an inbox row says to the book (the body only for the marks).
  struct Row {
    std::uint64_t inbox_seq = 0;
    v1::ConvType conv_type = v1::CONV_TYPE_UNSPECIFIED;
    std::string from;
    std::string to;
    std::uint64_t conv_seq = 0;
    std::uint32_t content_type = 0;
    std::int64_t time_ms = 0;
    std::string body;
  };
  static Row row_of(const v1::Message& m);

  // Takes one inbox row of `me` (rows come in inbox order; one at or below
  // a state's seen_inbox_seq changes nothing).
  void apply(const std::string& me, const Row& row);
  // Rows up to this seq are in every state (then written with them).
  std::uint64_t applied() const { return applied_; }
  void set_applied(std::uint64_t seq) { applied_ = seq; }
  // A state read from the store.
  void load(std::string conv, store::ConvRecord rec) { entries_[std::move(conv)].rec = std::move(rec); }

  const Entry* find(const std::string& conv) const;
  Entry* find_mut(const std::string& conv);
  const std::map<std::string, Entry>& entries() const { return entries_; }
  // The states changed since the last call, with the applied seq, to write.
  std::vector<std::pair<std::string, store::ConvRecord>> take_dirty();
  bool dirty() const { return dirty_; }
  void mark_all_dirty_again(const std::vector<std::string>& convs);
  std::size_t pinned_count() const;

  static std::uint32_t unread_count(const store::ConvRecord& r);
  // Drops the unread runs at or below `seq`.
  static void drop_unread_upto(store::ConvRecord& r, std::uint64_t seq);
  // Drops one conv_seq from the unread runs.
  static void drop_unread(store::ConvRecord& r, std::uint64_t seq);
  // Adds one conv_seq to the unread runs (kept sorted and merged).
  static void add_unread(store::ConvRecord& r, std::uint64_t seq);

  // Not the book's state but the shard's cache for listings of the user's
  // large groups (Shard::large_view), kept here because it lives exactly as
  // long as the book, and an idle user has neither. What a listing made of
  // one of them: the view, the history row it reached, and the book's
  // state it started from (a change of it, a read mark, a delete or a new
  // event, means reading again from the start); the next listing reads
  // only the rows above `top`.
  struct LargeSeen {
    store::ConvRecord view;
    std::uint64_t top = 0;
    std::uint64_t floor = 0;
    std::uint64_t seen_inbox_seq = 0;
    bool valid = false;
  };
  std::unordered_map<std::string, LargeSeen>& large_seen() {
    if (!large_seen_) large_seen_ = std::make_unique<std::unordered_map<std::string, LargeSeen>>();
    return *large_seen_;
  }

 private:
  Entry& touch(const std::string& conv, std::uint64_t inbox_seq, bool& fresh);

  std::map<std::string, Entry> entries_;
  std::uint64_t applied_ = 0;
  bool dirty_ = false;
  std::unique_ptr<std::unordered_map<std::string, LargeSeen>> large_seen_;  // for a user in a large group only
};

}  // namespace im::core
