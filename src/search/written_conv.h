#pragma once
// What a shard hands its search indexer after each batch (ShardIndexer::
// notify): a conversation whose history rows are durable up to `seq`, and
// whether one of the rows written since the last notice has something to
// index (a text, a recall, an edit). When none has, the indexer moves its
// mark without reading the rows.

#include <cstdint>
#include <string>

namespace im::search {

struct WrittenConv {
  std::string conv;
  std::uint64_t seq = 0;
  bool searchable = false;
};

}  // namespace im::search
