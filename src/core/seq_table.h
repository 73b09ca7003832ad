#pragma once
// A hash -> inbox_seq table with open addressing (linear probing, deletion
// by backward shift): one cache line per lookup, no division, 16 bytes a
// slot at a load of 3/8 to 3/4. The keys are already well mixed
// (RecentSends' keyed hash), so the low bits pick the slot. A seq of 0
// marks an empty slot: inbox seqs start at 1.
//
// Not thread safe; used on one shard's thread.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace im::core {

class SeqTable {
 public:
  // The seq held for `hash`, or 0.
  std::uint64_t find(std::uint64_t hash) const {
    if (slots_.empty()) return 0;
    for (std::size_t i = hash & mask();; i = (i + 1) & mask()) {
      const Slot& s = slots_[i];
      if (s.seq == 0) return 0;
      if (s.hash == hash) return s.seq;
    }
  }
  // Inserts hash -> seq (seq > 0) and returns 0, or returns the seq already
  // held for `hash` and changes nothing.
  std::uint64_t insert(std::uint64_t hash, std::uint64_t seq);
  // Removes `hash` if held.
  void erase(std::uint64_t hash);
  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return slots_.size(); }

 private:
  struct Slot {
    std::uint64_t hash = 0;
    std::uint64_t seq = 0;  // 0: empty
  };
  std::size_t mask() const { return slots_.size() - 1; }
  void rehash(std::size_t slots);

  std::vector<Slot> slots_;  // a power of two, or none
  std::size_t size_ = 0;
};

}  // namespace im::core
