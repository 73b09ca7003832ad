#include "search/search_index.h"

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <xapian.h>
#include <asio/post.hpp>

#include "common/private_dir.h"
#include "search/query_text.h"
#include "store/store.h"

namespace im::search {

namespace {

// The indexes are laid out for one shard count (a conversation's documents
// are in its owner's database) and one document format. This file records
// both ("<format> <shards>"); another at start makes the indexes again.
constexpr const char* kLayoutFile = "shards";
// 3: prefix terms, user terms (query_text.h, scope_terms), words up to
// kMaxWordBytes; 2 (never released) had a term for every group's document
// and words up to 64 bytes; 1 (the file held the shard count alone) had
// neither prefix nor user terms.
constexpr int kDocFormat = 3;

std::string index_root(const Config& config) {
  return config.storage.data_dir + "/search";
}

}  // namespace

Result<std::uint64_t> remove_indexes(const Config& config) {
  namespace fs = std::filesystem;
  auto store = store::Store::open(config.storage);
  if (!store) return make_error(StatusCode::kInternal, "storage: " + store.error().message + " (is imserver running?)");
  const std::string root = index_root(config);
  std::uint64_t bytes = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file(ec)) bytes += it->file_size(ec);
  ec.clear();
  fs::remove_all(root, ec);
  if (ec) return make_error(StatusCode::kInternal, "cannot remove " + root + ": " + ec.message());
  return bytes;
}

SearchIndex::SearchIndex(const Config& config, store::Store& store, unsigned shards, ShardIndexer::OwnerOf owner_of)
    : shards_(shards), root_(index_root(config)) {
  for (unsigned i = 0; i < shards; ++i)
    indexers_.push_back(std::make_unique<ShardIndexer>(i, fmt::format("{}/shard-{}", root_, i), config.search,
                                                       config.storage.history_retention_days, store, owner_of));
}

SearchIndex::~SearchIndex() {
  stop();
}

Result<Ok> SearchIndex::start() {
  namespace fs = std::filesystem;
  const std::string layout = root_ + "/" + kLayoutFile;
  std::string recorded;
  if (std::ifstream in(layout); in) std::getline(in, recorded);
  const std::string layout_now = fmt::format("{} {}", kDocFormat, shards_);
  if (!recorded.empty() && recorded != layout_now) {
    // The conversations' owners moved, or the documents changed: the
    // indexes are made again from the history (in the background; SEARCH
    // waits for them).
    spdlog::warn("search: the indexes were made as \"{}\" (format, shards), now \"{}\": indexing the history again",
                 recorded, layout_now);
    std::error_code ec;
    fs::remove_all(root_, ec);
    if (ec) return make_error(StatusCode::kInternal, "search: cannot remove " + root_ + ": " + ec.message());
  }
  if (auto ec = make_private_dir(root_))
    return make_error(StatusCode::kInternal, "search: cannot create " + root_ + ": " + ec.message());
  {
    std::ofstream out(layout, std::ios::trunc);
    out << layout_now << "\n";
    if (!out.flush()) return make_error(StatusCode::kInternal, "search: cannot write " + layout);
  }
  for (auto& indexer : indexers_)
    if (auto started = indexer->start(); !started) return started;
  return Ok{};
}

void SearchIndex::stop() {
  stopping_.store(true, std::memory_order_release);
  pool_.stop();  // queued queries are dropped, not run (the server is going away)
  pool_.join();
  for (auto& indexer : indexers_) indexer->stop();
  std::lock_guard lock(readers_mutex_);
  readers_.clear();
}

bool SearchIndex::ready() const {
  for (const auto& indexer : indexers_)
    if (!indexer->ready()) return false;
  return true;
}

std::uint64_t SearchIndex::indexed() const {
  std::uint64_t n = 0;
  for (const auto& indexer : indexers_) n += indexer->indexed();
  return n;
}

bool SearchIndex::submit(std::function<void()> job) {
  if (stopping_.load(std::memory_order_acquire)) return false;
  if (queued_.fetch_add(1, std::memory_order_acq_rel) >= kMaxQueued) {
    queued_.fetch_sub(1, std::memory_order_acq_rel);
    return false;
  }
  asio::post(pool_, [this, job = std::move(job)] {
    try {
      job();
    } catch (const std::exception& e) {
      spdlog::error("search: a query failed: {}", e.what());  // its answer is lost; the client's call times out
    } catch (...) {
      spdlog::error("search: a query failed");  // a Xapian::Error is no std::exception
    }
    queued_.fetch_sub(1, std::memory_order_acq_rel);
  });
  return true;
}

std::unique_ptr<Xapian::Database> SearchIndex::take_reader() {
  {
    std::lock_guard lock(readers_mutex_);
    if (!readers_.empty()) {
      auto reader = std::move(readers_.back());
      readers_.pop_back();
      reader->reopen();
      return reader;
    }
  }
  auto reader = std::make_unique<Xapian::Database>();
  for (const auto& indexer : indexers_) reader->add_database(Xapian::Database(indexer->dir()));
  return reader;
}

void SearchIndex::give_back(std::unique_ptr<Xapian::Database> reader) {
  std::lock_guard lock(readers_mutex_);
  readers_.push_back(std::move(reader));
}

namespace {

// Whether `doc` has, for each prefix longer than its index term, a word
// of its own starting with it (its terms are TermGenerator's words).
bool holds_long_prefixes(const Xapian::Document& doc, const std::vector<std::string>& prefixes) {
  for (const auto& prefix : prefixes) {
    if (!is_long_prefix(prefix)) continue;
    auto t = doc.termlist_begin();
    t.skip_to(prefix);
    if (t == doc.termlist_end() || !std::string_view(*t).starts_with(prefix)) return false;
  }
  return true;
}

}  // namespace

Result<Ok> SearchIndex::find(std::string_view query, const std::vector<std::string>& filter_terms,
                             std::uint64_t below_msg_id, const std::function<bool(const Hit&)>& fn) {
  if (filter_terms.empty()) return Ok{};
  constexpr Xapian::doccount kPage = 100;
  const QueryParts parts = split_query(query);
  // A writer's commit can outdate what a reader holds mid-query
  // (DatabaseModifiedError): the query starts again on a reopened reader,
  // after the last hit already handed over.
  std::uint64_t below = below_msg_id;
  std::uint32_t examined = 0;
  int corrupt = 0;  // attempts that ended in DatabaseCorruptError
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      auto reader = take_reader();
      Xapian::QueryParser parser;
      parser.set_database(*reader);
      parser.set_default_op(Xapian::Query::OP_AND);
      // User text is never boolean or phrase syntax; prefixes are terms of
      // their own (query_text.h), not Xapian's wildcards.
      std::vector<Xapian::Query> required;
      if (Xapian::Query words = parser.parse_query(parts.words, Xapian::QueryParser::FLAG_CJK_NGRAM); !words.empty())
        required.push_back(std::move(words));
      for (const auto& term : parts.terms) required.emplace_back(term);
      for (const auto& prefix : parts.prefixes) required.emplace_back(prefix_term(prefix));
      if (required.empty()) {
        give_back(std::move(reader));
        return Ok{};
      }
      Xapian::Query q(Xapian::Query::OP_AND, required.begin(), required.end());
      std::vector<Xapian::Query> filters(filter_terms.begin(), filter_terms.end());
      q = Xapian::Query(Xapian::Query::OP_FILTER, q,
                        Xapian::Query(Xapian::Query::OP_OR, filters.begin(), filters.end()));
      if (below > 0)
        q = Xapian::Query(Xapian::Query::OP_FILTER, q,
                          Xapian::Query(Xapian::Query::OP_VALUE_LE, kMsgIdSlot, encode_msg_id(below - 1)));
      Xapian::Enquire enquire(*reader);
      enquire.set_query(q);
      enquire.set_weighting_scheme(Xapian::BoolWeight());
      enquire.set_sort_by_value(kMsgIdSlot, true);
      // Sorted by value, every match is looked at by each get_mset: the
      // first asks for one page, which most queries need alone; the second,
      // only when `fn` wants more, for the rest of kMaxExamined. So a query
      // costs at most two passes over its matches.
      const Xapian::doccount budget = kMaxExamined - examined;
      const Xapian::doccount first = std::min<Xapian::doccount>(kPage, budget);
      std::vector<Hit> hits;
      for (Xapian::doccount offset = 0; offset < budget;) {
        Xapian::MSet mset = enquire.get_mset(offset, offset == 0 ? first : budget - offset);
        // Handed over in pages read out of Xapian first: `fn` reads the
        // store, and a commit meanwhile must not outdate what it walks.
        for (auto it = mset.begin(); it != mset.end();) {
          hits.clear();
          for (Xapian::doccount n = 0; n < kPage && it != mset.end(); ++n, ++it) {
            Xapian::Document doc = it.get_document();
            auto ref = decode_doc(doc.get_data());
            const std::uint64_t msg_id = decode_msg_id(doc.get_value(kMsgIdSlot));
            if (!ref || msg_id == 0) continue;
            hits.push_back(Hit{std::move(*ref), msg_id, holds_long_prefixes(doc, parts.prefixes)});
          }
          for (const Hit& hit : hits) {
            below = hit.msg_id;
            if (!fn(hit) || ++examined >= kMaxExamined) {
              give_back(std::move(reader));
              return Ok{};
            }
          }
        }
        if (mset.size() < (offset == 0 ? first : budget - offset)) break;  // no more matches
        offset += mset.size();
      }
      give_back(std::move(reader));
      return Ok{};
    } catch (const Xapian::DatabaseModifiedError&) {
      continue;  // the reader is dropped; a new one opens
    } catch (const Xapian::DatabaseCorruptError& e) {
      // What a reader can see when two commits reused the blocks of the
      // revision it holds (Xapian 1.4 does not always say
      // DatabaseModifiedError then; seen while retention commits its chunks
      // one after another): a new reader reads the new revision. When it
      // does not go away, the log says so (a damaged index is made again
      // by `imserver --rebuild-search`).
      spdlog::warn("search: {} (a reader outdated by the indexer's commits, or a damaged index)", e.get_description());
      ++corrupt;
      continue;
    } catch (const Xapian::QueryParserError& e) {
      return make_error(StatusCode::kBadRequest, std::string("query: ") + e.get_msg());
    } catch (const Xapian::Error& e) {
      spdlog::error("search: {}", e.get_description());
      return make_error(StatusCode::kInternal, "the search index could not be read");
    }
  }
  // Commits outdated three readers in a row mid-query (retention deleting
  // in quick chunks, say): asked again a little later, it goes through.
  if (corrupt == 3)
    spdlog::error(
        "search: three readers in a row found the index damaged; if it lasts, stop the server and run "
        "`imserver --rebuild-search`");
  Error busy = make_error(StatusCode::kUnavailable, "the search index is busy; try again");
  busy.retry_after_ms = 100;
  return busy;
}

}  // namespace im::search
