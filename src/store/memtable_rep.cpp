#include "store/memtable_rep.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <unordered_set>

#include <rocksdb/version.h>

namespace rocksdb {
// RocksDB's internal allocator interface (memory/allocator.h), which the
// public headers name but do not install: the memtable's arena, and the
// arena a caller may give an iterator (class Arena derives from it alone).
// Checked against 7.8.3 (its vtable in the library: two destructors,
// Allocate, AllocateAligned, BlockSize); another version is checked again.
static_assert(ROCKSDB_MAJOR == 7 && ROCKSDB_MINOR == 8,
              "check memory/allocator.h and db/lookup_key.h of this RocksDB against the declarations here");
class Allocator {
 public:
  virtual ~Allocator() {}
  virtual char* Allocate(size_t bytes) = 0;
  virtual char* AllocateAligned(size_t bytes, size_t huge_page_size = 0, Logger* logger = nullptr) = 0;
  virtual size_t BlockSize() const = 0;
};
}  // namespace rocksdb

namespace im::store {
namespace {

// RocksDB 7.8's LookupKey (db/lookup_key.h, not installed) begins with
// `start_`, its memtable key: the length-prefixed internal key.
const char* memtable_key_of(const rocksdb::LookupKey& k) {
  const char* start = nullptr;
  std::memcpy(&start, static_cast<const void*>(&k), sizeof start);
  return start;
}

std::atomic<long> iterators_alive{0};  // made by GetIterator only

constexpr int kMaxHeight = 12;  // as RocksDB's: 4^11 rows before the top level stops thinning

// A node's level 0 link is `next0`; the links of levels 1.. lie just below
// it (level i at &next0 - i), and its key (the memtable's entry) just
// above, so the key's address names the node.
struct Node {
  std::atomic<Node*> next0;

  std::atomic<Node*>& link(int level) { return *(&next0 - level); }
  Node* next(int level) { return link(level).load(std::memory_order_acquire); }
  const char* key() const { return reinterpret_cast<const char*>(this + 1); }
  static Node* of(const char* key) { return reinterpret_cast<Node*>(const_cast<char*>(key)) - 1; }
};

// A prefix's insert hint: `prev[0]` is its greatest row in this memtable,
// and each level's entry a node linked at that level at or before it (or
// the head); the closer, the cheaper the next append.
struct Splice {
  Node* prev[kMaxHeight];
};

class SkipList final : public rocksdb::MemTableRep {
 public:
  SkipList(const KeyComparator& compare, rocksdb::Allocator* allocator)
      : MemTableRep(allocator), compare_(compare), head_(new_node(kMaxHeight, 0)) {
    for (int level = 0; level < kMaxHeight; ++level) head_->link(level).store(nullptr, std::memory_order_relaxed);
  }

  rocksdb::KeyHandle Allocate(const size_t len, char** buf) override {
    const int height = random_height();
    Node* x = new_node(height, len);
    // The height waits in the level 0 link until the insert.
    x->next0.store(reinterpret_cast<Node*>(static_cast<std::uintptr_t>(height)), std::memory_order_relaxed);
    *buf = const_cast<char*>(x->key());
    return *buf;
  }

  void Insert(rocksdb::KeyHandle handle) override { insert(static_cast<const char*>(handle), nullptr); }

  void InsertWithHint(rocksdb::KeyHandle handle, void** hint) override {
    auto* splice = static_cast<Splice*>(*hint);
    if (!splice) {
      splice = new (allocator_->AllocateAligned(sizeof(Splice))) Splice{};  // lives as long as the arena
      *hint = splice;
    }
    insert(static_cast<const char*>(handle), splice);
  }

  bool Contains(const char* key) const override {
    const Decoded target = compare_.decode_key(key);
    Node* x = first_at_or_after(target);
    return x && compare_(x->key(), target) == 0;
  }

  // RocksDB's default Get leaks the iterator it asks for (7.8 never
  // deletes it); this one lives on the stack, as in RocksDB's own rep.
  void Get(const rocksdb::LookupKey& k, void* callback_args,
           bool (*callback_func)(void* arg, const char* entry)) override {
    ListIterator it(*this, false);
    for (it.Seek({}, memtable_key_of(k)); it.Valid() && callback_func(callback_args, it.key()); it.Next()) {
    }
  }

  // Everything is in the arena, which the memtable counts itself.
  size_t ApproximateMemoryUsage() override { return 0; }

  // Only a mempurge samples (`experimental_mempurge_threshold`, off in the
  // store); the library's default asserts. No sample: no purge.
  void UniqueRandomSample(const uint64_t, const uint64_t, std::unordered_set<const char*>*) override {}

  Iterator* GetIterator(rocksdb::Arena* arena) override {
    if (!arena) return new ListIterator(*this, true);
    auto* from = reinterpret_cast<rocksdb::Allocator*>(arena);  // Arena's only base
    return new (from->AllocateAligned(sizeof(ListIterator))) ListIterator(*this, true);
  }

 private:
  using Decoded = KeyComparator::DecodedType;

  class ListIterator final : public Iterator {
   public:
    // `counted`: one handed to RocksDB, which must destroy it.
    ListIterator(const SkipList& list, bool counted) : list_(list), counted_(counted) {
      if (counted_) iterators_alive.fetch_add(1, std::memory_order_relaxed);
    }
    ~ListIterator() override {
      if (counted_) iterators_alive.fetch_sub(1, std::memory_order_relaxed);
    }
    ListIterator(const ListIterator&) = delete;
    ListIterator& operator=(const ListIterator&) = delete;
    bool Valid() const override { return node_ != nullptr; }
    const char* key() const override { return node_->key(); }
    void Next() override { node_ = node_->next(0); }
    void Prev() override { node_ = list_.last_before(list_.compare_.decode_key(node_->key())); }
    void Seek(const rocksdb::Slice& internal_key, const char* memtable_key) override {
      node_ = list_.first_at_or_after(target(internal_key, memtable_key));
    }
    void SeekForPrev(const rocksdb::Slice& internal_key, const char* memtable_key) override {
      const Decoded t = target(internal_key, memtable_key);
      Node* x = list_.first_at_or_after(t);
      node_ = x && list_.compare_(x->key(), t) == 0 ? x : list_.last_before(t);
    }
    void SeekToFirst() override { node_ = list_.head_->next(0); }
    void SeekToLast() override { node_ = list_.last(); }

   private:
    Decoded target(const rocksdb::Slice& internal_key, const char* memtable_key) const {
      return memtable_key ? list_.compare_.decode_key(memtable_key) : internal_key;
    }

    const SkipList& list_;
    const bool counted_;
    Node* node_ = nullptr;
  };

  Node* new_node(int height, std::size_t key_len) {
    const std::size_t below = sizeof(std::atomic<Node*>) * static_cast<std::size_t>(height - 1);
    char* raw = allocator_->AllocateAligned(below + sizeof(Node) + key_len);
    auto* x = reinterpret_cast<Node*>(raw + below);
    for (int level = 1; level < height; ++level) new (&x->link(level)) std::atomic<Node*>(nullptr);
    new (&x->next0) std::atomic<Node*>(nullptr);
    return x;
  }

  // Branching 4, as RocksDB's. Only the writer calls it.
  int random_height() {
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    std::uint64_t bits = rng_;
    int height = 1;
    while (height < kMaxHeight && (bits & 3) == 0) {
      ++height;
      bits >>= 2;
    }
    return height;
  }

  // The last node at `level`, from `from` on, whose key is below `key`
  // (`from` itself when none is).
  Node* last_below_at(Node* from, int level, const Decoded& key) const {
    for (Node* next = from->next(level); next && compare_(next->key(), key) < 0; next = from->next(level)) from = next;
    return from;
  }

  // The last node whose key is below `key`, or the head.
  Node* last_below(const Decoded& key) const {
    Node* x = head_;
    for (int level = max_height_.load(std::memory_order_relaxed) - 1; level >= 0; --level)
      x = last_below_at(x, level, key);
    return x;
  }

  Node* first_at_or_after(const Decoded& key) const { return last_below(key)->next(0); }

  Node* last_before(const Decoded& key) const {
    Node* x = last_below(key);
    return x == head_ ? nullptr : x;
  }

  Node* last() const {
    Node* x = head_;
    for (int level = max_height_.load(std::memory_order_relaxed) - 1; level >= 0; --level)
      for (Node* next = x->next(level); next; next = x->next(level)) x = next;
    return x == head_ ? nullptr : x;
  }

  // The single writer's insert. With a splice whose row is below the new
  // one (a prefix's append), each level's search starts at the splice's
  // node of the new node's top level and goes down from there; otherwise
  // from the head. Each level's link is published with a release store
  // after the new node's own link is set, so a reader sees it whole.
  void insert(const char* key, Splice* splice) {
    Node* x = Node::of(key);
    const int height = static_cast<int>(reinterpret_cast<std::uintptr_t>(x->next0.load(std::memory_order_relaxed)));
    x->next0.store(nullptr, std::memory_order_relaxed);
    const Decoded target = compare_.decode_key(key);
    const int top = max_height_.load(std::memory_order_relaxed);
    Node* prev[kMaxHeight];
    // A splice is fresh (all null) until its first insert fills every level.
    const bool hinted = splice && splice->prev[0] && compare_(splice->prev[0]->key(), target) < 0;
    int searched;  // levels 0..searched-1 of prev[] are found
    if (hinted) {
      Node* from = splice->prev[height - 1];
      for (int level = height - 1; level >= 0; --level) prev[level] = from = last_below_at(from, level, target);
      searched = height;
    } else {
      Node* from = head_;
      searched = std::max(top, height);
      for (int level = searched - 1; level >= 0; --level) prev[level] = from = last_below_at(from, level, target);
    }
    if (height > top) max_height_.store(height, std::memory_order_relaxed);
    for (int level = 0; level < height; ++level) {
      x->link(level).store(prev[level]->next(level), std::memory_order_relaxed);
      prev[level]->link(level).store(x, std::memory_order_release);
    }
    // A row below its prefix's greatest leaves the splice there: the next
    // append starts from it, not behind every row after this one.
    if (!splice || (!hinted && splice->prev[0])) return;
    // Every splice node stays at or before x: x below its height, the
    // nodes just found above it, and an append's older ones (before its
    // previous row) elsewhere.
    for (int level = 0; level < height; ++level) splice->prev[level] = x;
    for (int level = height; level < searched; ++level) splice->prev[level] = prev[level];
    if (!hinted)
      for (int level = searched; level < kMaxHeight; ++level) splice->prev[level] = head_;
  }

  const KeyComparator& compare_;
  Node* const head_;
  std::atomic<int> max_height_{1};
  std::uint64_t rng_ = 0x9e3779b97f4a7c15ULL;
};

class Factory final : public rocksdb::MemTableRepFactory {
 public:
  using MemTableRepFactory::CreateMemTableRep;  // the overload with a column family id calls this one
  rocksdb::MemTableRep* CreateMemTableRep(const rocksdb::MemTableRep::KeyComparator& compare,
                                          rocksdb::Allocator* allocator, const rocksdb::SliceTransform*,
                                          rocksdb::Logger*) override {
    return new SkipList(compare, allocator);
  }
  const char* Name() const override { return "im.SkipList"; }
};

}  // namespace

std::shared_ptr<rocksdb::MemTableRepFactory> make_memtable_factory() {
  return std::make_shared<Factory>();
}

long memtable_iterators_alive() {
  return iterators_alive.load(std::memory_order_relaxed);
}

}  // namespace im::store
