#include "store/records.h"

#include <algorithm>

#include "store/keys.h"

namespace im::store {

namespace {

void put_leb128(std::string& out, std::uint64_t n) {
  for (;; n >>= 7) {
    const auto byte = static_cast<unsigned char>(n & 0x7F);
    if (n < 0x80) {
      out.push_back(static_cast<char>(byte));
      return;
    }
    out.push_back(static_cast<char>(byte | 0x80));
  }
}

// Reads a LEB128 number at `at` and moves past it; nullopt if it is cut
// short or longer than 64 bits.
std::optional<std::uint64_t> get_leb128(std::string_view in, std::size_t& at) {
  std::uint64_t n = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (at >= in.size()) return std::nullopt;
    const auto byte = static_cast<unsigned char>(in[at++]);
    n |= static_cast<std::uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return n;
  }
  return std::nullopt;
}

}  // namespace

std::string encode_history(std::string_view message, std::string_view search_text) {
  if (search_text.empty()) return std::string(message);
  std::string out(1, '\0');
  put_leb128(out, search_text.size());
  out.append(search_text);
  out.append(message);
  return out;
}

HistoryValue decode_history(std::string_view value) {
  if (value.empty() || value[0] != '\0') return {value, {}};
  std::size_t at = 1;
  const auto len = get_leb128(value, at);
  if (!len || *len > value.size() - at) return {value, {}};
  return {value.substr(at + *len), value.substr(at, *len)};
}

std::string encode_inbox_ref(std::string_view conv, std::uint64_t conv_seq) {
  std::string out(1, '\0');
  put_leb128(out, conv.size());
  out.append(conv);
  put_leb128(out, conv_seq);
  return out;
}

std::optional<InboxRef> decode_inbox_ref(std::string_view value) {
  if (value.empty() || value[0] != '\0') return std::nullopt;
  std::size_t at = 1;
  const auto len = get_leb128(value, at);
  if (!len || *len > value.size() - at) return std::nullopt;
  const std::string_view conv = value.substr(at, *len);
  at += *len;
  const auto conv_seq = get_leb128(value, at);
  if (!conv_seq || at != value.size() || conv.empty() || *conv_seq == 0) return std::nullopt;
  return InboxRef{conv, *conv_seq};
}

void append_inbox_seq(std::string& message, std::uint64_t inbox_seq) {
  constexpr char kInboxSeqTag = (v1::Message::kInboxSeqFieldNumber << 3) | 0;  // a varint
  message.push_back(kInboxSeqTag);
  put_leb128(message, inbox_seq);
}

namespace {

// Row tags: the first byte of a value says which shape follows.
constexpr char kGroupActive = 'A';
constexpr char kGroupDismissed = 'D';
constexpr char kMemberOwner = 'O';
constexpr char kMember = 'M';
constexpr char kCopySender = 'S';
constexpr char kCopyRecipient = 'R';
// A group fan-out record without a shard count (written before progress
// rows existed): recovery checks each member's inbox instead.
constexpr char kGroupFanoutV1 = 'G';
constexpr char kGroupFanout = 'H';

void append_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

std::uint32_t read_u32(std::string_view b) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(b[i]);
  return v;
}

template <class T>
bool parse_message(std::string_view bytes, T& out) {
  return out.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

}  // namespace

std::string DedupeRecord::encode() const {
  std::string v;
  append_u64(v, msg_id);
  append_u64(v, conv_seq);
  append_u64(v, inbox_seq);
  append_u64(v, static_cast<std::uint64_t>(time_ms));
  return v;
}

std::optional<DedupeRecord> DedupeRecord::decode(std::string_view v) {
  if (v.size() != 32) return std::nullopt;
  return DedupeRecord{read_u64(v), read_u64(v.substr(8)), read_u64(v.substr(16)),
                      static_cast<std::int64_t>(read_u64(v.substr(24)))};
}

std::string GroupRecord::encode() const {
  std::string v(1, dismissed ? kGroupDismissed : kGroupActive);
  info.AppendToString(&v);
  return v;
}

std::optional<GroupRecord> GroupRecord::decode(std::string_view v) {
  if (v.empty() || (v[0] != kGroupActive && v[0] != kGroupDismissed)) return std::nullopt;
  GroupRecord r;
  r.dismissed = v[0] == kGroupDismissed;
  if (!parse_message(v.substr(1), r.info)) return std::nullopt;
  return r;
}

std::string MemberRecord::encode() const {
  std::string v(1, owner ? kMemberOwner : kMember);
  append_u64(v, static_cast<std::uint64_t>(joined_ms));
  return v;
}

std::optional<MemberRecord> MemberRecord::decode(std::string_view v) {
  if (v.size() != 9 || (v[0] != kMemberOwner && v[0] != kMember)) return std::nullopt;
  return MemberRecord{v[0] == kMemberOwner, static_cast<std::int64_t>(read_u64(v.substr(1)))};
}

std::string CursorRecord::encode() const {
  std::string v;
  append_u64(v, acked);
  append_u64(v, static_cast<std::uint64_t>(used_ms));
  return v;
}

std::optional<CursorRecord> CursorRecord::decode(std::string_view key_rest, std::string_view v) {
  if (key_rest.empty() || (v.size() != 8 && v.size() != 16)) return std::nullopt;
  CursorRecord c;
  c.device_type = static_cast<std::uint8_t>(key_rest[0]);
  c.device_id = std::string(key_rest.substr(1));
  c.acked = read_u64(v);
  if (v.size() == 16) c.used_ms = static_cast<std::int64_t>(read_u64(v.substr(8)));
  return c;
}

std::string CopyRecord::encode() const {
  std::string v(1, is_sender ? kCopySender : kCopyRecipient);
  msg.AppendToString(&v);
  return v;
}

std::optional<CopyRecord> CopyRecord::decode(std::string_view v) {
  if (v.empty() || (v[0] != kCopySender && v[0] != kCopyRecipient)) return std::nullopt;
  CopyRecord r;
  r.is_sender = v[0] == kCopySender;
  if (!parse_message(v.substr(1), r.msg)) return std::nullopt;
  return r;
}

std::string GroupFanoutRecord::encode() const {
  std::string v(1, kGroupFanout);
  append_u32(v, shard_count);
  const std::string m = msg.SerializeAsString();
  append_u64(v, m.size());
  v += m;
  for (const auto& uid : recipients) {
    v.push_back(static_cast<char>(uid.size()));  // ids are 1 to 64 bytes
    v += uid;
  }
  return v;
}

std::optional<GroupFanoutRecord> GroupFanoutRecord::decode(std::string_view v) {
  GroupFanoutRecord r;
  std::size_t pos = 1;
  if (v.empty()) return std::nullopt;
  if (v[0] == kGroupFanout) {
    if (v.size() < 5) return std::nullopt;
    r.shard_count = read_u32(v.substr(1));
    pos = 5;
  } else if (v[0] == kGroupFanoutV1) {
    r.shard_count = 0;  // unknown: no chains, no progress rows
  } else {
    return std::nullopt;
  }
  if (v.size() < pos + 8) return std::nullopt;
  const std::uint64_t len = read_u64(v.substr(pos, 8));
  pos += 8;
  if (len > v.size() - pos || !parse_message(v.substr(pos, len), r.msg)) return std::nullopt;
  pos += len;
  while (pos < v.size()) {
    const std::size_t n = static_cast<unsigned char>(v[pos]);
    if (n == 0 || pos + 1 + n > v.size()) return std::nullopt;
    r.recipients.emplace_back(v.substr(pos + 1, n));
    pos += 1 + n;
  }
  return r;
}


namespace {
constexpr char kConvRecordV1 = 1;
constexpr char kConvSettingsV1 = 1;
constexpr char kChangeV1 = 1;
constexpr std::size_t kMaxEditSeqs = 65535;  // limits.max_edits is at most 1000
}  // namespace

// v1: flags (1 recalled), conv_seq, edit count (u16), the edit seqs, conv.
std::string ChangeRecord::encode() const {
  std::string v(1, kChangeV1);
  v.push_back(static_cast<char>(recalled ? 1 : 0));
  append_u64(v, conv_seq);
  const std::size_t n = std::min(edit_seqs.size(), kMaxEditSeqs);
  v.push_back(static_cast<char>(n >> 8));
  v.push_back(static_cast<char>(n & 0xFF));
  for (std::size_t i = 0; i < n; ++i) append_u64(v, edit_seqs[i]);
  v.append(conv);
  return v;
}

std::optional<ChangeRecord> ChangeRecord::decode(std::string_view v) {
  constexpr std::size_t kHead = 12;
  if (v.size() < kHead || v[0] != kChangeV1) return std::nullopt;
  ChangeRecord r;
  r.recalled = (static_cast<std::uint8_t>(v[1]) & 1) != 0;
  r.conv_seq = read_u64(v.substr(2, 8));
  const std::size_t n = (std::size_t{static_cast<std::uint8_t>(v[10])} << 8) | static_cast<std::uint8_t>(v[11]);
  if (v.size() < kHead + 8 * n) return std::nullopt;
  for (std::size_t i = 0; i < n; ++i) r.edit_seqs.push_back(read_u64(v.substr(kHead + 8 * i, 8)));
  r.conv = std::string(v.substr(kHead + 8 * n));
  if (r.conv.empty()) return std::nullopt;
  return r;
}

std::string ConvSettingsRecord::encode() const {
  std::string v(1, kConvSettingsV1);
  v.push_back(static_cast<char>((muted ? 1 : 0) | (pinned ? 2 : 0) | (hidden ? 4 : 0)));
  return v;
}

std::optional<ConvSettingsRecord> ConvSettingsRecord::decode(std::string_view v) {
  if (v.size() != 2 || v[0] != kConvSettingsV1) return std::nullopt;
  const auto flags = static_cast<std::uint8_t>(v[1]);
  return ConvSettingsRecord{(flags & 1) != 0, (flags & 2) != 0, (flags & 4) != 0};
}

std::string ConvRecord::encode() const {
  std::string v(1, kConvRecordV1);
  for (std::uint64_t x : {last_conv_seq, last_inbox_seq, static_cast<std::uint64_t>(activity_ms), first_conv_seq,
                          read_seq, peer_read_seq, cleared_seq, seen_inbox_seq})
    append_u64(v, x);
  v.push_back(static_cast<char>((muted ? 1 : 0) | (pinned ? 2 : 0) | (hidden ? 4 : 0) | (has_deletes ? 8 : 0)));
  append_u64(v, unread.size());
  for (const auto& [first, last] : unread) {
    append_u64(v, first);
    append_u64(v, last);
  }
  return v;
}

std::optional<ConvRecord> ConvRecord::decode(std::string_view v) {
  constexpr std::size_t kFixed = 1 + 8 * 8 + 1 + 8;
  if (v.size() < kFixed || v[0] != kConvRecordV1) return std::nullopt;
  ConvRecord r;
  std::size_t at = 1;
  auto next = [&] {
    std::uint64_t x = read_u64(v.substr(at, 8));
    at += 8;
    return x;
  };
  r.last_conv_seq = next();
  r.last_inbox_seq = next();
  r.activity_ms = static_cast<std::int64_t>(next());
  r.first_conv_seq = next();
  r.read_seq = next();
  r.peer_read_seq = next();
  r.cleared_seq = next();
  r.seen_inbox_seq = next();
  const auto flags = static_cast<std::uint8_t>(v[at++]);
  r.muted = flags & 1;
  r.pinned = flags & 2;
  r.hidden = flags & 4;
  r.has_deletes = flags & 8;
  const std::uint64_t runs = next();
  if (runs > (v.size() - at) / 16 || v.size() - at != runs * 16) return std::nullopt;
  r.unread.reserve(runs);
  for (std::uint64_t i = 0; i < runs; ++i) {
    const std::uint64_t first = next();
    const std::uint64_t last = next();
    if (first > last) return std::nullopt;
    r.unread.emplace_back(first, last);
  }
  return r;
}

}  // namespace im::store
