#pragma once
// SEARCH (PROTOCOL 8.6) once the caller's conversations are known (its
// shard lists them, Shard::search_scope): the query over the search index,
// each hit checked against the message as HISTORY returns it now.
//
// Runs on a search thread (search::SearchIndex::submit): it reads the store
// and the index, never a shard's state.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "im/result.h"
#include "proto/im.pb.h"

namespace im::core {

struct CoreEnv;

struct SearchRequest {
  std::string uid;
  std::string query;
  std::vector<std::string> convs;  // the conversations searched
  std::uint64_t below_msg_id = 0;  // from the cursor (0: from the newest)
  std::uint32_t limit = 20;
  std::size_t frame_budget = 0;  // the answer's messages fit in it
};

// The page of hits: newest first, without recalled messages, messages the
// caller deleted for themself, and hits whose indexed text is not the
// message's latest (re-indexed within search.commit_interval_ms).
Result<v1::SearchResp> run_search(CoreEnv& env, const SearchRequest& req);

// SearchReq.cursor: "" (from the newest) or what run_search gave.
Result<std::uint64_t> decode_search_cursor(std::string_view cursor);

}  // namespace im::core
