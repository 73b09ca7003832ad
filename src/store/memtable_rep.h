#pragma once
// The memtable of every column family: a skip list of the same design as
// RocksDB's own (nodes and keys in the memtable's arena, one writer at a
// time, readers concurrent with it, nothing removed before the memtable
// is dropped), without its self-checks.
//
// Why: Debian's librocksdb 7.8.3 is built without NDEBUG, so its skip list
// re-verifies the whole insert position on every insert: four key
// comparisons per level. uprobes, W2 paced: about 29 comparisons per row,
// 84% of them that check; here 3.5 per insert. The memtable's share of the
// shard thread went from about 26% to 12% (bench/ANALYSIS.md, "The
// memtable's insert checks").
//
// Per-prefix insert hints (`memtable_insert_with_hint_prefix_extractor`)
// work as with RocksDB's: a row appended after its prefix's greatest one
// starts from there, not from the head.

#include <memory>

#include <rocksdb/memtablerep.h>

namespace im::store {

// RocksDB refuses `allow_concurrent_memtable_write` with it (one writer
// inserts a write group's batches in turn).
std::shared_ptr<rocksdb::MemTableRepFactory> make_memtable_factory();

// Iterators handed to RocksDB over these memtables and not yet destroyed,
// in this process (a test's check that none is leaked).
long memtable_iterators_alive();

}  // namespace im::store
