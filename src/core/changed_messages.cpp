#include "core/changed_messages.h"

#include <utility>

#include "common/metrics.h"
#include "store/store.h"

namespace im::core {
namespace {

constexpr std::uint32_t kEdit = 10004;
constexpr std::uint32_t kRecalled = 10005;

// The msg_id of a stored Message without parsing it: field 1 (a varint) is
// written first. nullopt for a row of another shape (then parsed).
std::optional<std::uint64_t> leading_msg_id(std::string_view row) {
  if (row.empty() || row[0] != 0x08) return std::nullopt;
  std::uint64_t v = 0;
  for (std::size_t i = 1; i < row.size() && i <= 10; ++i) {
    const auto byte = static_cast<std::uint8_t>(row[i]);
    v |= std::uint64_t{byte & 0x7Fu} << (7 * (i - 1));
    if ((byte & 0x80u) == 0) return v;
  }
  return std::nullopt;
}

// splitmix64's finaliser: msg_ids are sequential, the bits must not be.
std::uint64_t mix(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The rows a change applies to: messages, and edit events (a recall
// empties their bodies).
bool changeable(std::uint32_t content_type) {
  return content_type < 10000 || content_type == kEdit;
}

}  // namespace

ChangedMessages::ChangedMessages(store::Store& store) : store_(store) {
  for (Filter& f : filters_) {
    f.reset(new std::atomic<std::uint64_t>[kFilterBits / 64]);
    for (std::size_t i = 0; i < kFilterBits / 64; ++i) f[i].store(0, std::memory_order_relaxed);
  }
}

ChangedMessages::~ChangedMessages() {
  metrics::get().changed_messages.add(-static_cast<std::int64_t>(added()));
}

void ChangedMessages::set_bits(const Filter& f, std::uint64_t msg_id) {
  const std::uint64_t h = mix(msg_id);
  for (std::uint64_t bit : {h & (kFilterBits - 1), (h >> 32) & (kFilterBits - 1)})
    f[bit / 64].fetch_or(std::uint64_t{1} << (bit % 64), std::memory_order_release);
}

void ChangedMessages::count(std::int64_t delta) {
  added_.fetch_add(static_cast<std::uint64_t>(delta), std::memory_order_relaxed);
  metrics::get().changed_messages.add(delta);
}

Result<Ok> ChangedMessages::load() {
  return store_.scan_change_ids([this](std::uint64_t msg_id) {
    add(msg_id);
    return true;
  });
}

Result<Ok> ChangedMessages::rebuild() {
  const unsigned next = 1 - active_.load(std::memory_order_acquire);
  const Filter& f = filters_[next];
  for (std::size_t i = 0; i < kFilterBits / 64; ++i) f[i].store(0, std::memory_order_relaxed);
  {
    std::lock_guard lock(mutex_);
    rebuilding_ = true;  // from now on add() sets both filters
  }
  std::int64_t ids = 0;
  auto scanned = store_.scan_change_ids([&](std::uint64_t msg_id) {
    set_bits(f, msg_id);
    ++ids;
    return true;
  });
  std::lock_guard lock(mutex_);
  rebuilding_ = false;
  if (!scanned) {
    added_while_rebuilding_ = 0;
    return scanned.error();
  }
  for (std::uint64_t id : recent_)
    if (id != 0) set_bits(f, id);
  active_.store(next, std::memory_order_release);
  count(ids + std::exchange(added_while_rebuilding_, 0) - static_cast<std::int64_t>(added()));
  return Ok{};
}

void ChangedMessages::add(std::uint64_t msg_id) {
  std::lock_guard lock(mutex_);
  set_bits(filters_[active_.load(std::memory_order_relaxed)], msg_id);
  if (rebuilding_) {
    set_bits(filters_[1 - active_.load(std::memory_order_relaxed)], msg_id);
    ++added_while_rebuilding_;
  }
  recent_[recent_next_++ % kRecent] = msg_id;
  any_.store(true, std::memory_order_release);
  count(1);
}

bool ChangedMessages::may_contain(std::uint64_t msg_id) const {
  if (!any_.load(std::memory_order_acquire)) return false;
  const Filter& f = filters_[active_.load(std::memory_order_acquire)];
  const std::uint64_t h = mix(msg_id);
  for (std::uint64_t bit : {h & (kFilterBits - 1), (h >> 32) & (kFilterBits - 1)})
    if ((f[bit / 64].load(std::memory_order_acquire) & (std::uint64_t{1} << (bit % 64))) == 0) return false;
  return true;
}

Result<bool> ChangedMessages::apply(v1::Message& row) const {
  if (!changeable(row.content_type()) || !may_contain(row.msg_id())) return false;
  auto change = store_.get_change(row.msg_id());
  if (!change) return change.error();
  if (!*change) return false;  // a false hit, not durable yet, or expired
  auto stored = store_.get_history((*change)->conv, (*change)->conv_seq);
  if (!stored) return stored.error();
  v1::Message now;
  if (*stored) {
    if (!now.ParseFromString(**stored) || now.msg_id() != row.msg_id()) return false;
  } else if (row.content_type() == kEdit) {
    // History retention took the row of an edit event a recall emptied
    // (only a recall records one): emptied here.
    v1::MessageEdit edit;
    if (!edit.ParseFromString(row.body())) return false;
    edit.clear_body();
    now = row;
    now.set_body(edit.SerializeAsString());
  } else {
    // History retention took the row: a recall is still said.
    if (!(*change)->recalled) return false;
    v1::MessageRecall recall;
    recall.set_target_conv_seq(row.conv_seq());
    recall.set_target_msg_id(row.msg_id());
    now.set_content_type(kRecalled);
    now.set_body(recall.SerializeAsString());
  }
  row.set_content_type(now.content_type());
  row.set_body(now.body());
  row.set_edit_version(now.edit_version());
  row.set_edited_ms(now.edited_ms());
  return true;
}

Result<std::optional<std::string>> ChangedMessages::changed_row(std::string_view row) const {
  using Changed = std::optional<std::string>;
  if (!any_.load(std::memory_order_acquire)) return Changed();
  if (auto id = leading_msg_id(row); id && !may_contain(*id)) return Changed();
  v1::Message m;
  if (!m.ParseFromArray(row.data(), static_cast<int>(row.size()))) return Changed();
  auto changed = apply(m);
  if (!changed) return changed.error();
  if (!*changed) return Changed();
  return Changed(m.SerializeAsString());
}

}  // namespace im::core
