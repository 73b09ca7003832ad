#pragma once
// One shard's search index (PROTOCOL 8.6, DESIGN.md "Search"): a Xapian
// database under storage.data_dir, written only by this indexer's thread,
// from history rows after they commit (never on the send path).
//
// A document per message, keyed by its msg_id; its terms are the message's
// text (CJK as characters and pairs, other scripts as lowercased words and
// their prefixes, query_text.h), filter terms of its conversation and, for
// C2C, of its two users, the msg_id as the sort value. Recall and
// edit events (10003, 10004) are history rows too: reached in conv_seq
// order, they delete or replace their target's document.
//
// What is indexed is recorded per conversation (the highest conv_seq read)
// in the database's metadata, committed with the documents: after a crash
// the indexer reads again from there, and nothing findable is lost. At
// start the thread walks every conversation of its shard and indexes what
// lies above its mark before ready() (SEARCH waits for it).
//
// Thread safe: notify, ready and stop may be called from any thread.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "im/config.h"
#include "im/result.h"
#include "proto/im.pb.h"
#include "search/written_conv.h"

namespace Xapian {
class WritableDatabase;
class TermGenerator;
}  // namespace Xapian

namespace im::store {
class Store;
}

namespace im::search {

// The Xapian value slot holding a document's msg_id (8 bytes, big-endian:
// string order is numeric order).
inline constexpr unsigned kMsgIdSlot = 0;
// The slot of its server_time_ms (8 bytes, big-endian), for retention.
inline constexpr unsigned kTimeSlot = 1;
// A document's id term and conversation filter term.
std::string id_term(std::uint64_t msg_id);
std::string conv_term(std::string_view conv);
// The terms SEARCH's scope filters on beside the conversation's: a C2C
// document has its two users' ("U" + uid), so that all of a user's C2C
// conversations are one term however many there are.
std::string user_term(std::string_view uid);
std::vector<std::string> scope_terms(std::string_view conv);
std::string encode_msg_id(std::uint64_t msg_id);
// The other way; 0 for a value of another size.
std::uint64_t decode_msg_id(std::string_view value);

// What a document's data holds: where its message is and which edit of it
// was indexed.
struct DocRef {
  std::string conv;
  std::uint64_t conv_seq = 0;
  std::uint32_t edit_version = 0;
};
std::string encode_doc(const DocRef& ref);
std::optional<DocRef> decode_doc(std::string_view data);

// What a message is found by: the search text its history row keeps
// (SendReq's, then EditReq's), else its body when its content_type is in
// search.text_content_types and the body is UTF-8; "" when nothing.
// Recalled messages and events: "".
std::string_view indexed_text(const SearchConfig& config, const v1::Message& m, std::string_view search_text);

class ShardIndexer {
 public:
  // Documents one retention chunk deletes before it commits.
  static constexpr std::uint32_t kPurgeChunk = 10000;
  // The shard that owns a conversation id.
  using OwnerOf = std::function<unsigned(std::string_view conv)>;

  // Documents of messages older than `retention_days` are deleted an hour
  // apart (the first time a minute after start), as retention deletes
  // their history rows.
  ShardIndexer(unsigned shard, std::string dir, const SearchConfig& config, std::uint32_t retention_days,
               store::Store& store, OwnerOf owner_of);
  ~ShardIndexer();
  ShardIndexer(const ShardIndexer&) = delete;
  ShardIndexer& operator=(const ShardIndexer&) = delete;

  // Opens (creating) the database, then starts the thread.
  Result<Ok> start();
  // Commits what is indexed and joins.
  void stop();
  const std::string& dir() const { return dir_; }
  // History rows of these conversations up to these conv_seqs are durable.
  void notify(std::vector<WrittenConv> written);
  // The start-up walk is done: every row committed before start() is
  // indexed (in memory; committed within commit_interval_ms).
  bool ready() const { return ready_.load(std::memory_order_acquire); }

  // Runs the retention pass now instead of at its hour (tests).
  void purge_soon();
  // Messages indexed since start (the log, tests).
  std::uint64_t indexed() const { return indexed_.load(std::memory_order_relaxed); }

 private:
  void run();
  void catch_up();
  // Reads `conv`'s history rows above its mark, up to `upto`; or, when
  // none of them has anything to index (`read` false), moves the mark.
  void index_conv(const std::string& conv, std::uint64_t upto, bool read = true);
  void apply(const std::string& conv, const v1::Message& row, std::string_view search_text);
  void index_message(const std::string& conv, const v1::Message& m, std::string_view search_text);
  std::uint64_t mark_of(const std::string& conv);
  void commit();
  // Deletes the documents of messages older than the retention, at most
  // kPurgeChunk a call; how many went.
  std::uint64_t purge(std::int64_t now_ms);

  const unsigned shard_;
  const std::string dir_;
  const SearchConfig& config_;
  const std::uint32_t retention_days_;
  store::Store& store_;
  OwnerOf owner_of_;
  std::unique_ptr<Xapian::WritableDatabase> db_;
  std::unique_ptr<Xapian::TermGenerator> terms_;

  std::mutex mutex_;
  std::condition_variable wake_;
  struct Pending {
    std::uint64_t seq = 0;
    bool read = false;
  };
  std::unordered_map<std::string, Pending> pending_;  // guarded by mutex_
  // Merges notices into pending_ (under mutex_); how many conversations were new.
  std::int64_t merge_locked(std::unordered_map<std::string, Pending>& into, const std::string& conv, Pending p);
  bool stopping_ = false;   // guarded by mutex_
  bool purge_now_ = false;  // guarded by mutex_
  std::thread thread_;
  std::atomic<bool> ready_{false};
  std::atomic<std::uint64_t> indexed_{0};

  // The indexer thread's own: marks read or advanced since the last commit.
  std::unordered_map<std::string, std::uint64_t> marks_;
  std::unordered_map<std::string, std::uint64_t> dirty_marks_;
  std::unordered_set<std::string> since_commit_;  // conversations read since the last commit
  std::uint64_t uncommitted_ = 0;
};

}  // namespace im::search
