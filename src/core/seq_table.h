#pragma once
// A hash -> inbox_seq table with open addressing (linear probing, deletion
// by backward shift): one cache line per lookup, no division, 16 bytes a
// slot at a load of 1/4 to 3/4 (1/8 before a shrink). The keys are
// already well mixed (RecentSends' keyed hash), so the low bits pick the
// slot. A seq of 0 marks an empty slot: inbox seqs start at 1.
//
// A resize does not stop the shard to move every entry at once: the table
// it replaces stays beside the new one and is moved 16 slots at each
// insert or erase, and lookups read both (two cache lines) until it is
// empty. The slots come from calloc, which leaves pages fresh from the
// kernel unwritten until used. And tables past 64 slots double at a load
// between 1/2 and 3/4 that depends on the table's first key: W2's
// senders, all sending at one pace, doubled their tables within the same
// few milliseconds, and moving (then first touching) the memory of about
// 150,000 entries at once held the shard for one of the paced run's worst
// windows (bench/ANALYSIS.md, "Hand-offs without preemption").
//
// The price: until its move ends, a table that doubled holds its old
// slots too, up to 96 bytes an entry instead of 43 just after a doubling;
// a sender that stops sending keeps both until its entries expire.
//
// Not thread safe; used on one shard's thread.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

namespace im::core {

class SeqTable {
 public:
  // The seq held for `hash`, or 0.
  std::uint64_t find(std::uint64_t hash) const {
    if (const std::uint64_t seq = table_.find(hash)) return seq;
    return moving_.find(hash);
  }
  // Inserts hash -> seq (seq > 0) and returns 0, or returns the seq already
  // held for `hash` and changes nothing.
  std::uint64_t insert(std::uint64_t hash, std::uint64_t seq);
  // Removes `hash` if held.
  void erase(std::uint64_t hash);
  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  // Slots of the current table (not counting one still being moved from).
  std::size_t capacity() const { return table_.size; }
  bool resizing() const { return moving_.size > 0; }

 private:
  struct Slot {
    std::uint64_t hash;
    std::uint64_t seq;  // 0: empty; kGone: erased from a table being moved from
  };
  static constexpr std::uint64_t kGone = ~std::uint64_t{0};
  struct Free {
    void operator()(Slot* p) const { std::free(p); }
  };
  struct Table {
    std::unique_ptr<Slot[], Free> slots;
    std::size_t size = 0;  // a power of two, or 0
    std::size_t mask() const { return size - 1; }
    // The slot holding `hash`, or the empty slot ending its run.
    Slot* slot_of(std::uint64_t hash) const;
    std::uint64_t find(std::uint64_t hash) const;
    void place(std::uint64_t hash, std::uint64_t seq) { *slot_of(hash) = Slot{hash, seq}; }
    bool erase(std::uint64_t hash);  // by backward shift; whether it was held
  };
  void resize(std::size_t slots);
  // Moves up to `slots` slots of moving_ into table_; frees moving_ once done.
  void move_some(std::size_t slots);

  Table table_;
  std::size_t grow_at_ = 0;  // entries that make table_ double
  std::uint64_t salt_ = 0;   // the first key held: picks the load at which a table doubles
  Table moving_;             // the table resized from, while its entries move: read-only but for kGone marks
  std::size_t moved_ = 0;    // moving_'s slots below this are in table_
  std::size_t size_ = 0;
};

}  // namespace im::core
