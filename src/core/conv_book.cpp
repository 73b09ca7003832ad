#include "core/conv_book.h"

#include <algorithm>

#include "store/conv_id.h"

namespace im::core {
namespace {

constexpr std::uint32_t kRecall = 10003;
constexpr std::uint32_t kRecalled = 10005;  // the tombstone a recall leaves in the history
constexpr std::uint32_t kReadMark = 10006;
constexpr std::uint32_t kDeleteMark = 10007;
constexpr std::uint32_t kSettingsMark = 10008;

bool is_mark(std::uint32_t content_type) {
  return content_type == kReadMark || content_type == kDeleteMark || content_type == kSettingsMark;
}

}  // namespace

std::string conv_from_side(const std::string& me, v1::ConvType type, const std::string& peer) {
  switch (type) {
    case v1::C2C: return peer.empty() ? std::string() : store::c2c_conv(me, peer);
    case v1::GROUP: return peer.empty() ? std::string() : store::group_conv(peer);
    case v1::SYSTEM: return store::system_conv(me);
    default: return {};
  }
}

std::string conv_of_row(const std::string& me, const v1::Message& row) {
  if (row.conv_seq() == 0 && is_mark(row.content_type())) {
    // The marks name their conversation in the body (from `me`'s side).
    v1::ConvType type = v1::CONV_TYPE_UNSPECIFIED;
    std::string peer;
    if (row.content_type() == kReadMark) {
      v1::ReadMark m;
      if (!m.ParseFromString(row.body())) return {};
      type = m.conv_type();
      peer = m.peer();
    } else if (row.content_type() == kDeleteMark) {
      v1::MessageDelete m;
      if (!m.ParseFromString(row.body())) return {};
      type = m.conv_type();
      peer = m.peer();
    } else {
      v1::ConvSettings m;
      if (!m.ParseFromString(row.body())) return {};
      type = m.conv_type();
      peer = m.peer();
    }
    return conv_from_side(me, type, peer);
  }
  switch (row.conv_type()) {
    case v1::C2C: return store::c2c_conv(row.from(), row.to());
    case v1::GROUP: return store::group_conv(row.to());
    case v1::SYSTEM: return store::system_conv(me);
    default: return {};
  }
}

v1::ConvType conv_type_of_id(std::string_view conv) {
  if (conv.rfind("c:", 0) == 0) return v1::C2C;
  if (conv.rfind("g:", 0) == 0) return v1::GROUP;
  if (conv.rfind("s:", 0) == 0) return v1::SYSTEM;
  return v1::CONV_TYPE_UNSPECIFIED;
}

std::string peer_of(const std::string& me, std::string_view conv) {
  switch (conv_type_of_id(conv)) {
    case v1::C2C: {
      const std::string_view pair = conv.substr(2);
      const auto colon = pair.find(':');
      const std::string_view a = pair.substr(0, colon);
      const std::string_view b = colon == std::string_view::npos ? std::string_view() : pair.substr(colon + 1);
      return std::string(a == me ? b : a);
    }
    case v1::GROUP: return std::string(conv.substr(2));
    default: return {};
  }
}

ConvBook::Row ConvBook::row_of(const v1::Message& m) {
  Row r;
  r.inbox_seq = m.inbox_seq();
  r.conv_type = m.conv_type();
  r.from = m.from();
  r.to = m.to();
  r.conv_seq = m.conv_seq();
  r.content_type = m.content_type();
  r.time_ms = m.server_time_ms();
  if (m.content_type() >= kRecall && m.content_type() <= kSettingsMark) r.body = m.body();
  return r;
}

std::uint32_t ConvBook::unread_count(const store::ConvRecord& r) {
  std::uint64_t n = 0;
  for (const auto& [first, last] : r.unread) n += last - first + 1;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(n, UINT32_MAX));
}

void ConvBook::drop_unread_upto(store::ConvRecord& r, std::uint64_t seq) {
  auto& runs = r.unread;
  std::size_t keep = 0;
  while (keep < runs.size() && runs[keep].second <= seq) ++keep;
  runs.erase(runs.begin(), runs.begin() + static_cast<std::ptrdiff_t>(keep));
  if (!runs.empty() && runs.front().first <= seq) runs.front().first = seq + 1;
}

void ConvBook::drop_unread(store::ConvRecord& r, std::uint64_t seq) {
  auto& runs = r.unread;
  auto it = std::find_if(runs.begin(), runs.end(), [&](const auto& run) { return run.second >= seq; });
  if (it == runs.end() || it->first > seq) return;
  if (it->first == seq && it->second == seq) {
    runs.erase(it);
  } else if (it->first == seq) {
    ++it->first;
  } else if (it->second == seq) {
    --it->second;
  } else {
    const std::uint64_t last = it->second;
    it->second = seq - 1;
    runs.insert(it + 1, {seq + 1, last});
  }
}

void ConvBook::add_unread(store::ConvRecord& r, std::uint64_t seq) {
  auto& runs = r.unread;
  // Rows mostly come in conv_seq order: the last run first.
  if (runs.empty() || runs.back().second + 1 < seq) {
    runs.emplace_back(seq, seq);
    return;
  }
  if (runs.back().second + 1 == seq) {
    runs.back().second = seq;
    return;
  }
  auto it = std::find_if(runs.begin(), runs.end(), [&](const auto& run) { return run.second + 1 >= seq; });
  if (it == runs.end()) {
    runs.emplace_back(seq, seq);
    return;
  }
  if (it->first <= seq && seq <= it->second) return;  // counted already
  if (it->second + 1 == seq) {
    it->second = seq;
    auto next = it + 1;
    if (next != runs.end() && next->first == seq + 1) {
      it->second = next->second;
      runs.erase(next);
    }
    return;
  }
  // seq < it->first
  if (it->first == seq + 1) {
    it->first = seq;
    return;
  }
  runs.insert(it, {seq, seq});
}

ConvBook::Entry& ConvBook::touch(const std::string& conv, std::uint64_t inbox_seq, bool& fresh) {
  Entry& e = entries_[conv];
  fresh = inbox_seq > e.rec.seen_inbox_seq;
  if (fresh) {
    e.rec.seen_inbox_seq = inbox_seq;
    e.dirty = true;
    dirty_ = true;
  }
  return e;
}

void ConvBook::apply(const std::string& me, const Row& row) {
  applied_ = std::max(applied_, row.inbox_seq);
  v1::Message probe;
  std::string conv;
  if (row.conv_seq == 0 && is_mark(row.content_type)) {
    probe.set_content_type(row.content_type);
    probe.set_body(row.body);
    conv = conv_of_row(me, probe);
  } else {
    probe.set_conv_type(row.conv_type);
    probe.set_from(row.from);
    probe.set_to(row.to);
    probe.set_conv_seq(row.conv_seq);
    conv = conv_of_row(me, probe);
  }
  if (conv.empty()) return;
  bool fresh = false;
  Entry& e = touch(conv, row.inbox_seq, fresh);
  if (!fresh) return;
  store::ConvRecord& r = e.rec;
  if (row.conv_seq == 0 && row.content_type == kReadMark) {
    v1::ReadMark m;
    m.ParseFromString(row.body);
    if (m.reader() == me) {
      r.read_seq = std::max(r.read_seq, m.read_seq());
      drop_unread_upto(r, r.read_seq);
    } else {
      r.peer_read_seq = std::max(r.peer_read_seq, m.read_seq());
    }
    return;
  }
  if (row.conv_seq == 0 && row.content_type == kDeleteMark) {
    v1::MessageDelete m;
    m.ParseFromString(row.body);
    for (std::uint64_t seq : m.conv_seqs()) drop_unread(r, seq);
    if (m.conv_seqs_size() > 0) r.has_deletes = true;
    if (m.up_to_seq() > r.cleared_seq) {
      r.cleared_seq = m.up_to_seq();
      drop_unread_upto(r, r.cleared_seq);
    }
    return;
  }
  if (row.conv_seq == 0 && row.content_type == kSettingsMark) {
    v1::ConvSettings m;
    m.ParseFromString(row.body);
    r.muted = m.muted();
    r.pinned = m.pinned();
    r.hidden = m.hidden();
    return;
  }
  if (row.conv_seq == 0) return;
  // A message or an event of the conversation.
  if (row.conv_seq > r.last_conv_seq) {
    r.last_conv_seq = row.conv_seq;
    r.last_inbox_seq = row.inbox_seq;
    r.activity_ms = row.time_ms;
  }
  if (r.first_conv_seq == 0 || row.conv_seq < r.first_conv_seq) r.first_conv_seq = row.conv_seq;
  r.hidden = false;  // a newer message or event unhides it
  if (row.content_type == kRecall) {
    v1::MessageRecall m;
    if (m.ParseFromString(row.body)) drop_unread(r, m.target_conv_seq());
  }
  // A recalled message's tombstone (what a row by reference reads once its
  // message is recalled) still moves the read positions, as the message
  // did; it never counts as unread.
  const bool tombstone = row.content_type == kRecalled;
  if ((row.content_type >= 10000 && !tombstone) || row.conv_type == v1::SYSTEM) return;
  if (row.from == me) {
    // Sending counts as reading.
    r.read_seq = std::max(r.read_seq, row.conv_seq);
    drop_unread_upto(r, r.read_seq);
    return;
  }
  // The peer's own message moves their public read position too (PROTOCOL
  // 8.1: sending counts as reading), as it does for a group's RECEIPTS.
  if (row.conv_type == v1::C2C) r.peer_read_seq = std::max(r.peer_read_seq, row.conv_seq);
  if (!tombstone && row.conv_seq > r.read_seq && row.conv_seq > r.cleared_seq) add_unread(r, row.conv_seq);
}

const ConvBook::Entry* ConvBook::find(const std::string& conv) const {
  auto it = entries_.find(conv);
  return it == entries_.end() ? nullptr : &it->second;
}

ConvBook::Entry* ConvBook::find_mut(const std::string& conv) {
  auto it = entries_.find(conv);
  return it == entries_.end() ? nullptr : &it->second;
}

std::vector<std::pair<std::string, store::ConvRecord>> ConvBook::take_dirty() {
  std::vector<std::pair<std::string, store::ConvRecord>> out;
  if (!dirty_) return out;
  for (auto& [conv, e] : entries_) {
    if (!e.dirty) continue;
    out.emplace_back(conv, e.rec);
    e.dirty = false;
  }
  dirty_ = false;
  return out;
}

void ConvBook::mark_all_dirty_again(const std::vector<std::string>& convs) {
  for (const auto& conv : convs) {
    if (Entry* e = find_mut(conv)) {
      e->dirty = true;
      dirty_ = true;
    }
  }
}

std::size_t ConvBook::pinned_count() const {
  return static_cast<std::size_t>(
      std::count_if(entries_.begin(), entries_.end(), [](const auto& kv) { return kv.second.rec.pinned; }));
}

}  // namespace im::core
