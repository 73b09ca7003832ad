#include "core/seq_table.h"

#include <utility>

namespace im::core {

namespace {
constexpr std::size_t kMinSlots = 8;
}  // namespace

std::uint64_t SeqTable::insert(std::uint64_t hash, std::uint64_t seq) {
  if ((size_ + 1) * 4 > slots_.size() * 3) rehash(slots_.empty() ? kMinSlots : slots_.size() * 2);
  for (std::size_t i = hash & mask();; i = (i + 1) & mask()) {
    Slot& s = slots_[i];
    if (s.seq == 0) {
      s = Slot{hash, seq};
      ++size_;
      return 0;
    }
    if (s.hash == hash) return s.seq;
  }
}

void SeqTable::erase(std::uint64_t hash) {
  if (slots_.empty()) return;
  std::size_t i = hash & mask();
  for (;; i = (i + 1) & mask()) {
    if (slots_[i].seq == 0) return;
    if (slots_[i].hash == hash) break;
  }
  // Backward shift: each later slot of the run moves into the hole unless
  // its home lies cyclically in (hole, slot].
  for (std::size_t j = i;;) {
    j = (j + 1) & mask();
    if (slots_[j].seq == 0) break;
    const std::size_t home = slots_[j].hash & mask();
    const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    slots_[i] = slots_[j];
    i = j;
  }
  slots_[i] = Slot{};
  --size_;
  if (slots_.size() > kMinSlots && size_ * 8 < slots_.size()) rehash(slots_.size() / 2);
}

void SeqTable::rehash(std::size_t slots) {
  std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(slots));
  size_ = 0;
  for (const Slot& s : old)
    if (s.seq != 0) insert(s.hash, s.seq);
}

}  // namespace im::core
