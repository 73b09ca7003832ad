#include "core/changed_messages.h"

#include <mutex>

#include "common/metrics.h"
#include "store/store.h"

namespace im::core {
namespace {

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

}  // namespace

ChangedMessages::ChangedMessages(store::Store& store)
    : store_(store), filter_(new std::atomic<std::uint64_t>[kFilterBits / 64]) {
  for (std::size_t i = 0; i < kFilterBits / 64; ++i) filter_[i].store(0, std::memory_order_relaxed);
}

ChangedMessages::~ChangedMessages() {
  metrics::get().changed_messages.add(-static_cast<std::int64_t>(size()));
}

std::size_t ChangedMessages::bit_of(std::uint64_t msg_id) {
  // splitmix64's finaliser: msg_ids are sequential, the bits must not be.
  std::uint64_t z = msg_id + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return static_cast<std::size_t>((z ^ (z >> 31)) & (kFilterBits - 1));
}

Result<Ok> ChangedMessages::load() {
  return store_.scan_changes([this](std::uint64_t msg_id, std::string_view) {
    add(msg_id);
    return true;
  });
}

void ChangedMessages::add(std::uint64_t msg_id) {
  {
    std::unique_lock lock(mutex_);
    if (ids_.insert(msg_id).second) {
      size_.fetch_add(1, std::memory_order_relaxed);
      metrics::get().changed_messages.add(1);
    }
  }
  const std::size_t bit = bit_of(msg_id);
  filter_[bit / 64].fetch_or(std::uint64_t{1} << (bit % 64), std::memory_order_release);
}

void ChangedMessages::remove(std::uint64_t msg_id) {
  std::unique_lock lock(mutex_);
  if (ids_.erase(msg_id) == 0) return;
  size_.fetch_sub(1, std::memory_order_relaxed);
  metrics::get().changed_messages.add(-1);
}

bool ChangedMessages::contains(std::uint64_t msg_id) const {
  if (size() == 0) return false;
  const std::size_t bit = bit_of(msg_id);
  if ((filter_[bit / 64].load(std::memory_order_acquire) & (std::uint64_t{1} << (bit % 64))) == 0) return false;
  std::shared_lock lock(mutex_);
  return ids_.count(msg_id) > 0;
}

Result<bool> ChangedMessages::apply(v1::Message& row) const {
  if (row.content_type() >= 10000 || !contains(row.msg_id())) return false;
  auto stored = store_.get_change(row.msg_id());
  if (!stored) return stored.error();
  if (!*stored) return false;  // not durable yet, or expired
  v1::Message now;
  if (!now.ParseFromString(**stored) || now.conv_seq() != row.conv_seq()) return false;
  row.set_content_type(now.content_type());
  row.set_body(now.body());
  row.set_edit_version(now.edit_version());
  row.set_edited_ms(now.edited_ms());
  return true;
}

Result<std::optional<std::string>> ChangedMessages::changed_row(std::string_view row) const {
  using Changed = std::optional<std::string>;
  if (size() == 0) return Changed();
  if (auto id = leading_msg_id(row); id && !contains(*id)) return Changed();
  v1::Message m;
  if (!m.ParseFromArray(row.data(), static_cast<int>(row.size()))) return Changed();
  auto changed = apply(m);
  if (!changed) return changed.error();
  if (!*changed) return Changed();
  return Changed(m.SerializeAsString());
}

}  // namespace im::core
