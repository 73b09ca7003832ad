#pragma once
// The search indexes of all shards (PROTOCOL 8.6): their indexers, and the
// queries, which run over every shard's database at once (Xapian combines
// them) on a small pool of search threads, never on a loop or a shard.
//
// Thread safe.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <asio/thread_pool.hpp>

#include "im/config.h"
#include "im/result.h"
#include "search/shard_indexer.h"

namespace Xapian {
class Database;
}

namespace im::search {

// `imserver --rebuild-search`: removes the indexes under storage.data_dir
// while holding the store (so no server runs on it meanwhile); the next
// start indexes the whole history again. Returns the bytes removed.
Result<std::uint64_t> remove_indexes(const Config& config);

class SearchIndex {
 public:
  // Queries waiting or running at once; past it SEARCH is UNAVAILABLE.
  static constexpr std::uint32_t kMaxQueued = 64;
  // Documents one query may examine; past it the page ends early, with
  // has_more and a cursor after the last one examined.
  static constexpr std::uint32_t kMaxExamined = 5000;

  SearchIndex(const Config& config, store::Store& store, unsigned shards, ShardIndexer::OwnerOf owner_of);
  ~SearchIndex();
  SearchIndex(const SearchIndex&) = delete;
  SearchIndex& operator=(const SearchIndex&) = delete;

  // Opens every shard's database under storage.data_dir/search (made anew
  // when the shard count changed) and starts the indexers.
  Result<Ok> start();
  void stop();
  ShardIndexer& shard(unsigned i) { return *indexers_[i]; }
  // Every indexer has read what was committed before it started.
  bool ready() const;
  std::uint64_t indexed() const;

  // Runs `job` on a search thread; false (and `job` dropped) when
  // kMaxQueued are waiting or running, or once stopping.
  bool submit(std::function<void()> job);

  struct Hit {
    DocRef ref;
    std::uint64_t msg_id = 0;
    // False when the document has no word starting with a prefix longer
    // than its index term (query_text.h): looked at, not a match.
    bool whole = true;
  };
  // The documents matching `query` that hold one of `filter_terms`
  // (conv_term, user_term), msg_id below `below_msg_id`
  // (0: any), highest msg_id first, until `fn` returns false or
  // kMaxExamined were handed over; at most two passes over the matches.
  // The caller checks each hit (`whole`, CJK runs side by side,
  // permissions). On a search thread.
  Result<Ok> find(std::string_view query, const std::vector<std::string>& filter_terms, std::uint64_t below_msg_id,
                  const std::function<bool(const Hit&)>& fn);

 private:
  std::unique_ptr<Xapian::Database> take_reader();
  void give_back(std::unique_ptr<Xapian::Database> reader);

  const unsigned shards_;
  const std::string root_;
  std::vector<std::unique_ptr<ShardIndexer>> indexers_;
  asio::thread_pool pool_{2};
  std::atomic<std::uint32_t> queued_{0};
  std::atomic<bool> stopping_{false};
  std::mutex readers_mutex_;
  std::vector<std::unique_ptr<Xapian::Database>> readers_;
};

}  // namespace im::search
