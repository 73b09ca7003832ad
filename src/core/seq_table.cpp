#include "core/seq_table.h"

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <new>
#include <utility>

namespace im::core {

namespace {
constexpr std::size_t kMinSlots = 8;
// Slots of the old table moved at each insert or erase (a scan of 256
// bytes). After a doubling at a load of 1/2 to 3/4, the move ends after
// 1/16 of the old size in operations, and the next resize needs at least
// 1/4 of it (in erases for a halving, in inserts for a doubling). After a
// halving, the move ends after 1/16 of the old size: exactly the erases
// that can make the next halving due. So a move always ends before the
// next resize.
constexpr std::size_t kMoveStep = 16;
// Tables up to this many slots move at once: two of them cost more than
// the move.
constexpr std::size_t kMoveAtOnce = 64;

// The entries at which a table of `slots` doubles: 3/4 of them for small
// tables, else 8/16 to 12/16, picked by the table's salt and size.
std::size_t grow_at(std::uint64_t salt, std::size_t slots) {
  if (slots <= kMoveAtOnce) return slots * 3 / 4;
  std::uint64_t x = salt ^ slots;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;  // splitmix64's finalizer
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return slots * (8 + (x ^ (x >> 31)) % 5) / 16;
}
}  // namespace

SeqTable::Slot* SeqTable::Table::slot_of(std::uint64_t hash) const {
  for (std::size_t i = hash & mask();; i = (i + 1) & mask()) {
    Slot& s = slots[i];
    if (s.seq == 0 || s.hash == hash) return &s;
  }
}

std::uint64_t SeqTable::Table::find(std::uint64_t hash) const {
  if (size == 0) return 0;
  const Slot* s = slot_of(hash);
  return s->seq == kGone ? 0 : s->seq;
}

bool SeqTable::Table::erase(std::uint64_t hash) {
  if (size == 0) return false;
  std::size_t i = static_cast<std::size_t>(slot_of(hash) - slots.get());
  if (slots[i].seq == 0) return false;
  // Backward shift: each later slot of the run moves into the hole unless
  // its home lies cyclically in (hole, slot].
  for (std::size_t j = i;;) {
    j = (j + 1) & mask();
    if (slots[j].seq == 0) break;
    const std::size_t home = slots[j].hash & mask();
    const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    slots[i] = slots[j];
    i = j;
  }
  slots[i] = Slot{0, 0};
  return true;
}

std::uint64_t SeqTable::insert(std::uint64_t hash, std::uint64_t seq) {
  assert(seq != 0 && seq != kGone);
  if (const std::uint64_t held = find(hash)) return held;
  if (table_.size == 0) salt_ = hash;
  move_some(kMoveStep);
  if (size_ + 1 > grow_at_) resize(table_.size == 0 ? kMinSlots : table_.size * 2);
  table_.place(hash, seq);
  ++size_;
  return 0;
}

void SeqTable::erase(std::uint64_t hash) {
  bool held = table_.erase(hash);
  // A moved entry is in both tables: its copy left behind must not answer.
  // Marked, not shifted: a shift could carry an entry below moved_.
  if (moving_.size > 0) {
    Slot* s = moving_.slot_of(hash);
    if (s->seq != 0 && s->seq != kGone) {
      s->seq = kGone;
      held = true;
    }
  }
  if (!held) return;
  --size_;
  move_some(kMoveStep);
  if (table_.size > kMinSlots && size_ * 8 < table_.size) resize(table_.size / 2);
}

void SeqTable::resize(std::size_t slots) {
  // A guard: by the steps above, a move has always ended before the next
  // resize is due.
  move_some(moving_.size);
  auto* memory = static_cast<Slot*>(std::calloc(slots, sizeof(Slot)));
  if (!memory) throw std::bad_alloc();
  moving_ = std::exchange(table_, Table{std::unique_ptr<Slot[], Free>(memory), slots});
  moved_ = 0;
  grow_at_ = grow_at(salt_, slots);
  if (moving_.size <= kMoveAtOnce) move_some(moving_.size);
}

void SeqTable::move_some(std::size_t slots) {
  if (moving_.size == 0) return;
  const std::size_t end = std::min(moving_.size, moved_ + slots);
  for (; moved_ < end; ++moved_) {
    const Slot& s = moving_.slots[moved_];
    if (s.seq != 0 && s.seq != kGone) table_.place(s.hash, s.seq);
  }
  if (moved_ == moving_.size) {
    moving_ = Table{};
    moved_ = 0;
  }
}

}  // namespace im::core
