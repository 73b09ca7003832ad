#pragma once
// The conversations a shard owns: each one's conv_seq counter, recovered
// from its last history row on first use (never from a separate counter
// that could drift). `next` is the last seq handed out, `committed` the
// last one durable: readers never look past `committed`, so no gap is ever
// visible; a failed batch hands its seqs out again. Only conversations
// written to are kept, at most `capacity` of them past a trim (the least
// recently used go, and are read again on their next use); a read of a
// conversation that is not kept caches nothing, so made-up ids cost no
// memory.
//
// Runs on its shard's thread only.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/lru_map.h"
#include "im/result.h"
#include "search/written_conv.h"
#include "store/store.h"

namespace im::core {

class ConvCounters {
 public:
  struct Counter {
    std::uint64_t next = 0;
    std::uint64_t committed = 0;
    const std::string* conv = nullptr;  // the map's key
    bool searchable = false;            // a row of the current batch has something to index
  };
  // The conversations whose committed conv_seq moved in a batch: to what,
  // and whether one of the batch's rows has something for the search index.
  using Committed = std::vector<search::WrittenConv>;

  ConvCounters(store::Store& store, std::size_t capacity) : store_(store), counters_(capacity) {}

  // For a write: loads on first use; a read error is returned and nothing
  // is cached.
  Result<Counter*> get(const std::string& conv);
  // For a read: the last durable conv_seq, from the cache or the store
  // (caching nothing).
  Result<std::uint64_t> committed(const std::string& conv);
  // The next conv_seq of `c`, to be written in the current batch;
  // `searchable`: its row has something for the search index.
  std::uint64_t assign(Counter& c, bool searchable = false);
  // The current batch was written (or not); `committed`, when given, gets
  // each conversation the batch wrote to, once.
  void on_written(bool ok, Committed* committed = nullptr);
  // Drops the least recently used counters beyond the capacity; only
  // between batches (nothing staged).
  std::size_t trim();
  bool over() const { return counters_.over(); }

 private:
  store::Store& store_;
  LruMap<Counter> counters_;
  std::vector<Counter*> touched_;
};

}  // namespace im::core
