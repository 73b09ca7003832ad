#pragma once
// The conversations a shard owns: each one's conv_seq counter, recovered
// from its last history row on first use (never from a separate counter
// that could drift). `next` is the last seq handed out, `committed` the
// last one durable: readers never look past `committed`, so no gap is ever
// visible; a failed batch hands its seqs out again.
//
// Runs on its shard's thread only.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "im/result.h"
#include "store/store.h"

namespace im::core {

class ConvCounters {
 public:
  struct Counter {
    std::uint64_t next = 0;
    std::uint64_t committed = 0;
  };

  explicit ConvCounters(store::Store& store) : store_(store) {}

  // Loads on first use; a read error is returned and nothing is cached.
  Result<Counter*> get(const std::string& conv);
  // The next conv_seq of `c`, to be written in the current batch.
  std::uint64_t assign(Counter& c);
  // The current batch was written (or not).
  void on_written(bool ok);

 private:
  store::Store& store_;
  std::unordered_map<std::string, Counter> counters_;
  std::vector<Counter*> touched_;
};

}  // namespace im::core
