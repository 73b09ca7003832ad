#pragma once
// SEARCH (PROTOCOL 8.6) on a search thread (search::SearchIndex::submit):
// the caller's scope read from the store (the groups it is in, a named
// group's membership; its C2C conversations are one term of the index),
// the query over the search index, each hit checked against the message
// as HISTORY returns it now. It reads the store and the index, never a
// shard's state.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "im/result.h"
#include "proto/im.pb.h"

namespace im::search {
class SearchIndex;
}

namespace im::core {

struct CoreEnv;

struct SearchRequest {
  std::string uid;
  std::string query;
  v1::ConvType conv_type = v1::CONV_TYPE_UNSPECIFIED;  // with peer: the one conversation searched
  std::string peer;
  std::uint64_t below_msg_id = 0;  // from the cursor (0: from the newest)
  std::uint32_t limit = 20;
  std::size_t frame_budget = 0;  // the answer's messages fit in it
};

// The page of hits: newest first, without recalled messages, messages the
// caller deleted for themself, and hits whose indexed text is not the
// message's latest (re-indexed within search.commit_interval_ms).
Result<v1::SearchResp> run_search(CoreEnv& env, search::SearchIndex& index, const SearchRequest& req);

// The groups an unscoped SEARCH looks in, one filter term each (about 8 us
// a term on this machine): a member of more is TOO_LARGE and searches one
// conversation at a time.
inline constexpr std::size_t kSearchMaxGroups = 5000;

// A user's SEARCHes queued or running at once: at most kPerUser, fewer
// than the search threads, so one client (all its sessions) can neither
// fill their queue (SearchIndex::kMaxQueued) nor hold every thread. Any
// thread.
class SearchSlots {
 public:
  static constexpr std::uint32_t kPerUser = 1;
  // A slot of `uid`'s, given back when the last copy of it goes; null when
  // `uid` holds kPerUser already.
  std::shared_ptr<void> take(const std::string& uid);

 private:
  void give_back(const std::string& uid);

  std::mutex mutex_;
  std::unordered_map<std::string, std::uint32_t> held_;
};

// SearchReq.cursor: "" (from the newest) or what run_search gave.
Result<std::uint64_t> decode_search_cursor(std::string_view cursor);

}  // namespace im::core
