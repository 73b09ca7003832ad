#include "search/shard_indexer.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <xapian.h>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/utf8.h"
#include "search/query_text.h"
#include "store/keys.h"
#include "store/store.h"

namespace im::search {

namespace {

constexpr std::uint32_t kRecall = 10003;
constexpr std::uint32_t kEdit = 10004;
constexpr std::uint32_t kTombstone = 10005;
// The start-up walk commits after this many changes, so that its memory
// stays bounded however much it has to read.
constexpr std::uint64_t kCatchUpCommitEvery = 10000;
// Marks kept in memory past a commit; beyond, they are read again from the
// database's metadata.
constexpr std::size_t kMarksKept = 65536;
// Retention's pace: passes an hour apart (each deletes in chunks of
// ShardIndexer::kPurgeChunk until nothing is left).
constexpr auto kPurgeEvery = std::chrono::hours(1);
constexpr auto kFirstPurge = std::chrono::minutes(1);
// The indexer thread's nice value (the loops and shards run at 0).
constexpr int kIndexerNice = 19;

// `tag` then `s`: a term or a metadata key of the index.
std::string tagged(char tag, std::string_view s) {
  std::string out(1, tag);
  out.append(s);
  return out;
}

std::string mark_key(std::string_view conv) {
  return tagged('m', conv);
}

}  // namespace

std::string encode_msg_id(std::uint64_t msg_id) {
  std::string out;
  store::append_u64(out, msg_id);
  return out;
}

std::uint64_t decode_msg_id(std::string_view value) {
  return value.size() == 8 ? store::read_u64(value) : 0;
}

std::string id_term(std::uint64_t msg_id) {
  return tagged('Q',
                std::to_string(msg_id));  // not "Q" + to_string(): GCC 12 warns there (-Wrestrict, a false positive)
}

std::string conv_term(std::string_view conv) {
  return tagged('C', conv);
}

std::string user_term(std::string_view uid) {
  return tagged('U', uid);
}

std::vector<std::string> scope_terms(std::string_view conv) {
  auto users = store::c2c_users(conv);
  if (!users) return {};
  return {user_term(users->first), user_term(users->second)};
}

std::string encode_doc(const DocRef& ref) {
  std::string out;
  store::append_u64(out, ref.conv_seq);
  // The edit version in 4 bytes: the low half of a u64's encoding.
  std::string version;
  store::append_u64(version, ref.edit_version);
  out.append(version, 4, 4);
  out.append(ref.conv);
  return out;
}

std::optional<DocRef> decode_doc(std::string_view data) {
  if (data.size() < 12) return std::nullopt;
  DocRef ref;
  ref.conv_seq = store::read_u64(data.substr(0, 8));
  ref.edit_version = static_cast<std::uint32_t>(store::read_u64(data.substr(8, 4)));  // reads the 4 it is given
  ref.conv = std::string(data.substr(12));
  return ref;
}

std::string_view indexed_text(const SearchConfig& config, const v1::Message& m, std::string_view search_text) {
  if (m.content_type() >= 10000) return {};
  if (!search_text.empty()) return search_text;
  const auto& types = config.text_content_types;
  if (std::find(types.begin(), types.end(), m.content_type()) != types.end() && valid_utf8(m.body())) return m.body();
  return {};
}

ShardIndexer::ShardIndexer(unsigned shard, std::string dir, const SearchConfig& config, std::uint32_t retention_days,
                           store::Store& store, OwnerOf owner_of)
    : shard_(shard),
      dir_(std::move(dir)),
      config_(config),
      retention_days_(retention_days),
      store_(store),
      owner_of_(std::move(owner_of)) {}

ShardIndexer::~ShardIndexer() {
  stop();
}

Result<Ok> ShardIndexer::start() {
  try {
    db_ = std::make_unique<Xapian::WritableDatabase>(dir_, Xapian::DB_CREATE_OR_OPEN);
  } catch (const Xapian::Error& e) {
    return make_error(StatusCode::kInternal, "search index " + dir_ + ": " + e.get_description());
  }
  terms_ = std::make_unique<Xapian::TermGenerator>();
  terms_->set_flags(Xapian::TermGenerator::FLAG_CJK_NGRAM);
  terms_->set_max_word_length(kMaxWordBytes);
  thread_ = std::thread([this] { run(); });
  return Ok{};
}

void ShardIndexer::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  db_.reset();
}

std::int64_t ShardIndexer::merge_locked(std::unordered_map<std::string, Pending>& into, const std::string& conv,
                                        Pending p) {
  auto [it, added] = into.try_emplace(conv, p);
  if (!added) {
    it->second.seq = std::max(it->second.seq, p.seq);
    it->second.read = it->second.read || p.read;
  }
  return added ? 1 : 0;
}

void ShardIndexer::notify(std::vector<WrittenConv> written) {
  std::int64_t added_convs = 0;
  {
    std::lock_guard lock(mutex_);
    for (const auto& w : written) added_convs += merge_locked(pending_, w.conv, {w.seq, w.searchable});
  }
  metrics::get().search_pending.add(added_convs);
  wake_.notify_one();
}

void ShardIndexer::purge_soon() {
  {
    std::lock_guard lock(mutex_);
    purge_now_ = true;
  }
  wake_.notify_one();
}

void ShardIndexer::run() {
  using Clock = std::chrono::steady_clock;
  // Indexing is the background's work: at full load the loops and shards
  // get the cores first (bench/ANALYSIS.md, "Search": at the server's own
  // priority the indexer took a whole core from them and W2 halved), and
  // the index catches up when the load drops. A nice value only lowers this
  // thread (Linux: per thread), so no privilege is needed.
  // Named for top -H and perf (RocksDB names its threads the same way).
  pthread_setname_np(pthread_self(), fmt::format("im:index{}", shard_).c_str());
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kIndexerNice) != 0)
    spdlog::warn("search: shard {}'s indexer keeps the server's priority: {}", shard_, std::strerror(errno));
  const auto interval = std::chrono::milliseconds(config_.commit_interval_ms);
  auto stop_asked = [&] {
    std::lock_guard lock(mutex_);
    return stopping_;
  };
  // A failure (a read error, a Xapian error) is logged and the work tried
  // again a second later: what was not marked is read again.
  auto guarded = [&](const auto& work) {
    try {
      work();
      return true;
    } catch (const Xapian::Error& e) {
      spdlog::error("search: shard {}'s index: {}", shard_, e.get_description());
    } catch (const std::exception& e) {
      spdlog::error("search: shard {}'s index: {}", shard_, e.what());
    }
    // What the database's committed marks say is read again, for every
    // conversation read since the last commit (whatever Xapian kept of
    // that work, the same documents replace it).
    marks_.clear();
    dirty_marks_.clear();
    uncommitted_ = 0;
    {
      std::lock_guard lock(mutex_);
      std::int64_t again = 0;
      for (const auto& conv : since_commit_) again += merge_locked(pending_, conv, {UINT64_MAX - 1, true});
      metrics::get().search_pending.add(again);
    }
    since_commit_.clear();
    return false;
  };
  while (!guarded([&] { catch_up(); })) {
    std::unique_lock lock(mutex_);
    if (wake_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; })) return;
  }
  ready_.store(true, std::memory_order_release);
  auto next_commit = Clock::now() + interval;
  auto next_purge = Clock::now() + kFirstPurge;
  for (;;) {
    std::unordered_map<std::string, Pending> work;
    bool stop = false;
    {
      std::unique_lock lock(mutex_);
      auto woken = [&] { return stopping_ || purge_now_ || !pending_.empty(); };
      wake_.wait_until(lock, uncommitted_ > 0 ? std::min(next_commit, next_purge) : next_purge, woken);
      work.swap(pending_);
      stop = stopping_;
      if (purge_now_) next_purge = Clock::now();
      purge_now_ = false;
    }
    metrics::get().search_pending.add(-static_cast<std::int64_t>(work.size()));
    const bool done = guarded([&] {
      if (!stop && Clock::now() >= next_purge) {
        next_purge = Clock::now() + kPurgeEvery;
        // In chunks of kPurgeChunk, each committed, until none is left (or
        // the server stops): a backlog larger than a chunk is not carried
        // to the next hour.
        std::uint64_t purged = 0;
        for (std::uint64_t n = purge(wall_ms()); n > 0; n = stop_asked() || n < kPurgeChunk ? 0 : purge(wall_ms())) {
          purged += n;
          commit();
        }
        if (purged > 0)
          spdlog::info("search: shard {} dropped {} documents past storage.history_retention_days", shard_, purged);
      }
      for (const auto& [conv, p] : work) index_conv(conv, p.seq, p.read);
      if (uncommitted_ > 0 && (stop || Clock::now() >= next_commit)) {
        commit();
        next_commit = Clock::now() + interval;
      }
    });
    if (stop) return;
    if (!done) {
      {
        std::unique_lock lock(mutex_);
        // Read in full next time: the marks went back to the committed ones.
        std::int64_t again = 0;
        for (const auto& [conv, p] : work) again += merge_locked(pending_, conv, {p.seq, true});
        metrics::get().search_pending.add(again);
        if (wake_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; })) return;
      }
    }
  }
}

void ShardIndexer::catch_up() {
  std::uint64_t convs = 0;
  const std::uint64_t before = indexed();
  auto scanned = store_.scan_history_convs([&](std::string_view conv) {
    if (owner_of_(conv) != shard_) return true;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return false;
    }
    const std::string name(conv);
    index_conv(name, UINT64_MAX);
    ++convs;
    // The walk's memory is what it changed, not every conversation it saw.
    if (dirty_marks_.count(name) == 0) marks_.erase(name);
    if (uncommitted_ >= kCatchUpCommitEvery) commit();
    return true;
  });
  if (!scanned) throw std::runtime_error("reading the history: " + scanned.error().message);
  if (uncommitted_ > 0) commit();
  if (indexed() > before)
    spdlog::info("search: shard {} indexed {} messages of {} conversations at start", shard_, indexed() - before,
                 convs);
}

std::uint64_t ShardIndexer::mark_of(const std::string& conv) {
  if (auto it = marks_.find(conv); it != marks_.end()) return it->second;
  const std::string value = db_->get_metadata(mark_key(conv));
  std::uint64_t mark = value.size() == 8 ? store::read_u64(value) : 0;
  if (mark > 0) {
    // Never past the history: after a power loss the store (fsync off)
    // can lose rows the index had read, and their conv_seqs are handed out
    // again to new messages, which must be read.
    auto last = store_.last_history_seq(conv);
    if (!last) throw std::runtime_error("reading " + conv + ": " + last.error().message);
    if (*last < mark) {
      // Written back with the next commit: the stored mark would otherwise
      // be clamped again later, against rows written since, and skip them.
      mark = *last;
      dirty_marks_[conv] = mark;
      since_commit_.insert(conv);
      ++uncommitted_;
    }
  }
  marks_.emplace(conv, mark);
  return mark;
}

void ShardIndexer::index_conv(const std::string& conv, std::uint64_t upto, bool read) {
  if (conv.starts_with("s:")) return;  // SYSTEM conversations are not searched
  if (!read) {
    // Every row up to `upto` that is not read was notified without
    // anything to index (notices of one conversation merge, and the start
    // read everything before): the mark moves, no row is read.
    const std::uint64_t mark = std::max(mark_of(conv), upto);
    marks_[conv] = mark;
    dirty_marks_[conv] = mark;
    since_commit_.insert(conv);
    ++uncommitted_;
    return;
  }
  const std::uint64_t from = mark_of(conv) + 1;
  if (from > upto) return;
  const std::uint64_t to = upto == UINT64_MAX ? UINT64_MAX : upto + 1;
  std::uint64_t last = 0;
  v1::Message row;
  auto scanned =
      store_.scan_history_rows(conv, from, to, [&](std::uint64_t seq, std::string_view bytes, std::string_view text) {
        if (row.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) apply(conv, row, text);
        last = seq;
        return true;
      });
  if (!scanned) throw std::runtime_error("reading " + conv + ": " + scanned.error().message);
  if (last == 0) return;
  since_commit_.insert(conv);
  marks_[conv] = last;
  dirty_marks_[conv] = last;
  ++uncommitted_;
}

void ShardIndexer::apply(const std::string& conv, const v1::Message& row, std::string_view search_text) {
  const std::uint32_t type = row.content_type();
  if (type < 10000) return index_message(conv, row, search_text);
  if (type == kTombstone) {
    db_->delete_document(id_term(row.msg_id()));
    ++uncommitted_;
    return;
  }
  if (type == kRecall) {
    v1::MessageRecall recall;
    if (!recall.ParseFromString(row.body())) return;
    db_->delete_document(id_term(recall.target_msg_id()));
    ++uncommitted_;
    return;
  }
  if (type == kEdit) {
    // The target as it is now (its history row is rewritten by each edit):
    // indexed again with its latest text.
    v1::MessageEdit edit;
    if (!edit.ParseFromString(row.body())) return;
    auto target_row = store_.get_history_row(conv, edit.target_conv_seq());
    if (!target_row) throw std::runtime_error("reading " + conv + ": " + target_row.error().message);
    v1::Message target;
    if (!*target_row || !target.ParseFromString((*target_row)->message)) return;
    if (target.content_type() < 10000) return index_message(conv, target, (*target_row)->search_text);
    db_->delete_document(id_term(target.msg_id()));
    ++uncommitted_;
  }
}

void ShardIndexer::index_message(const std::string& conv, const v1::Message& m, std::string_view search_text) {
  const std::string_view text = indexed_text(config_, m, search_text);
  if (text.empty()) {
    // An edit may have taken the text away.
    if (m.edit_version() > 0) {
      db_->delete_document(id_term(m.msg_id()));
      ++uncommitted_;
    }
    return;
  }
  Xapian::Document doc;
  terms_->set_document(doc);
  terms_->index_text_without_positions(std::string(text));
  std::vector<std::string> prefixes;  // of the words (query_text.h): `word*` is one term
  for (auto it = doc.termlist_begin(); it != doc.termlist_end(); ++it)
    for (auto& p : prefix_terms(*it)) prefixes.push_back(std::move(p));
  for (const auto& p : prefixes) doc.add_boolean_term(p);
  const std::string id = id_term(m.msg_id());
  doc.add_boolean_term(id);
  doc.add_boolean_term(conv_term(conv));
  for (const auto& term : scope_terms(conv)) doc.add_boolean_term(term);
  doc.add_value(kMsgIdSlot, encode_msg_id(m.msg_id()));
  doc.add_value(kTimeSlot, encode_msg_id(static_cast<std::uint64_t>(std::max<std::int64_t>(0, m.server_time_ms()))));
  doc.set_data(encode_doc({conv, m.conv_seq(), m.edit_version()}));
  db_->replace_document(id, doc);
  indexed_.fetch_add(1, std::memory_order_relaxed);
  metrics::get().search_indexed.inc();
  ++uncommitted_;
}

std::uint64_t ShardIndexer::purge(std::int64_t now_ms) {
  const std::int64_t cutoff = now_ms - std::int64_t{retention_days_} * 86400 * 1000;
  if (cutoff <= 0) return 0;
  Xapian::Enquire old(*db_);
  old.set_query(
      Xapian::Query(Xapian::Query::OP_VALUE_LE, kTimeSlot, encode_msg_id(static_cast<std::uint64_t>(cutoff - 1))));
  old.set_weighting_scheme(Xapian::BoolWeight());
  std::vector<Xapian::docid> ids;
  Xapian::MSet found = old.get_mset(0, kPurgeChunk);
  for (auto it = found.begin(); it != found.end(); ++it) ids.push_back(*it);
  for (Xapian::docid id : ids) db_->delete_document(id);
  uncommitted_ += ids.size();
  return ids.size();
}

void ShardIndexer::commit() {
  for (const auto& [conv, seq] : dirty_marks_) {
    std::string value;
    store::append_u64(value, seq);
    db_->set_metadata(mark_key(conv), value);
  }
  db_->commit();
  metrics::get().search_commits.inc();
  dirty_marks_.clear();
  since_commit_.clear();
  uncommitted_ = 0;
  if (marks_.size() > kMarksKept) marks_.clear();
}

}  // namespace im::search
