// store/memtable_rep.h through a real RocksDB: every row stays in the
// memtable (a write buffer far larger than the rows), so each read below
// is answered by our skip list, compared with a std::map of what was written.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <latch>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <rocksdb/comparator.h>
#include <rocksdb/db.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/slice_transform.h>

#include "store/keys.h"
#include "store/memtable_rep.h"

namespace {

// As the store's hinted families: a row's prefix is its id and the 0x00.
class ZeroPrefix final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "test.ZeroPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), key.ToStringView().find('\0') + 1);
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return key.ToStringView().find('\0') != std::string_view::npos;
  }
};

// Bytewise, counting the comparisons the memtable makes.
class CountingComparator final : public rocksdb::Comparator {
 public:
  const char* Name() const override { return "test.Counting"; }
  int Compare(const rocksdb::Slice& a, const rocksdb::Slice& b) const override {
    calls.fetch_add(1, std::memory_order_relaxed);
    return a.compare(b);
  }
  void FindShortestSeparator(std::string*, const rocksdb::Slice&) const override {}
  void FindShortSuccessor(std::string*) const override {}
  mutable std::atomic<long> calls{0};
};

// A value and its merge operands, joined by commas.
class Concat final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value, std::string* out,
             rocksdb::Logger*) const override {
    *out = existing ? existing->ToString() + "," : "";
    out->append(value.data(), value.size());
    return true;
  }
  const char* Name() const override { return "test.Concat"; }
};

struct MemDb {
  explicit MemDb(bool hinted, const rocksdb::Comparator* comparator = nullptr,
                 std::shared_ptr<rocksdb::MergeOperator> merge = nullptr) {
    dir = (std::filesystem::temp_directory_path() / ("immemtable-" + std::to_string(std::random_device{}()))).string();
    options.create_if_missing = true;
    options.allow_concurrent_memtable_write = false;
    options.memtable_factory = im::store::make_memtable_factory();
    options.write_buffer_size = 512 << 20;  // nothing is flushed: every read is the memtable's
    // A reopen rebuilds the memtable from the WAL, through the same rep.
    options.avoid_flush_during_shutdown = true;
    options.avoid_flush_during_recovery = true;
    if (hinted) options.memtable_insert_with_hint_prefix_extractor = std::make_shared<ZeroPrefix>();
    if (comparator) options.comparator = comparator;
    options.merge_operator = std::move(merge);
    open();
  }
  ~MemDb() {
    db.reset();
    std::filesystem::remove_all(dir);
  }
  void open() {
    db.reset();
    rocksdb::DB* raw = nullptr;
    const rocksdb::Status s = rocksdb::DB::Open(options, dir, &raw);
    REQUIRE(s.ok());
    db.reset(raw);
  }

  rocksdb::Options options;
  std::string dir;
  std::unique_ptr<rocksdb::DB> db;
};

std::uint64_t active_entries(rocksdb::DB& db) {
  std::string n;
  REQUIRE(db.GetProperty("rocksdb.num-entries-active-mem-table", &n));
  return std::stoull(n);
}

using Model = std::map<std::string, std::string>;

std::string row_key(int owner, std::uint64_t seq) {
  std::string k = "u" + std::to_string(owner);
  k.push_back('\0');
  im::store::append_u64(k, seq);
  return k;
}

std::vector<std::pair<std::string, std::string>> scan(rocksdb::DB& db, const rocksdb::Snapshot* at, bool backward) {
  rocksdb::ReadOptions options;
  options.snapshot = at;
  std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(options));
  std::vector<std::pair<std::string, std::string>> rows;
  if (backward) {
    for (it->SeekToLast(); it->Valid(); it->Prev()) rows.emplace_back(it->key().ToString(), it->value().ToString());
    std::reverse(rows.begin(), rows.end());
  } else {
    for (it->SeekToFirst(); it->Valid(); it->Next()) rows.emplace_back(it->key().ToString(), it->value().ToString());
  }
  REQUIRE(it->status().ok());
  return rows;
}

std::vector<std::pair<std::string, std::string>> rows_of(const Model& model) {
  return {model.begin(), model.end()};
}

// Every read the store makes, against the model: whole scans both ways,
// seeks (forward and for-prev) to present and absent keys, and gets.
void check_reads(rocksdb::DB& db, const rocksdb::Snapshot* at, const Model& model, std::mt19937& rng) {
  REQUIRE(scan(db, at, false) == rows_of(model));
  REQUIRE(scan(db, at, true) == rows_of(model));
  rocksdb::ReadOptions options;
  options.snapshot = at;
  std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(options));
  std::vector<std::string> keys;
  for (const auto& [k, v] : model) keys.push_back(k);
  for (int i = 0; i < 400; ++i) {
    std::string target = keys.empty() ? "x" : keys[rng() % keys.size()];
    if (i % 2) target.push_back('\x01');  // between rows
    const auto ge = model.lower_bound(target);
    it->Seek(target);
    if (ge == model.end()) {
      CHECK_FALSE(it->Valid());
    } else {
      REQUIRE(it->Valid());
      CHECK(it->key().ToString() == ge->first);
      it->Prev();  // one step back from a seek
      if (ge == model.begin()) {
        CHECK_FALSE(it->Valid());
      } else {
        REQUIRE(it->Valid());
        CHECK(it->key().ToString() == std::prev(ge)->first);
      }
    }
    auto le = model.upper_bound(target);
    it->SeekForPrev(target);
    if (le == model.begin()) {
      CHECK_FALSE(it->Valid());
    } else {
      --le;
      REQUIRE(it->Valid());
      CHECK(it->key().ToString() == le->first);
      CHECK(it->value().ToString() == le->second);
    }
    std::string value;
    const rocksdb::Status s = db.Get(options, target, &value);
    const auto found = model.find(target);
    if (found == model.end()) {
      CHECK(s.IsNotFound());
    } else {
      REQUIRE(s.ok());
      CHECK(value == found->second);
    }
  }
}

}  // namespace

TEST_CASE(
    "memtable: appends, rows out of order, overwrites and deletes read back as written, also at a snapshot, "
    "after a reopen from the WAL and after a flush") {
  const bool hinted = GENERATE(true, false);
  CAPTURE(hinted);
  const long alive_before = im::store::memtable_iterators_alive();
  MemDb m(hinted);
  std::mt19937 rng(hinted ? 7 : 11);
  Model model;
  std::vector<std::string> written;  // every key ever put, once: overwrites and deletes pick among them
  std::unordered_set<std::string> ever;
  std::vector<std::uint64_t> next_seq(40, 1);
  std::optional<Model> at_snapshot;
  const rocksdb::Snapshot* snapshot = nullptr;
  for (int i = 0; i < 30000; ++i) {
    if (i == 15000) {
      snapshot = m.db->GetSnapshot();
      at_snapshot = model;
    }
    const unsigned kind = rng() % 10;
    std::string key;
    if (kind < 6) {  // a prefix's append: the store's inbox and history rows
      const int owner = static_cast<int>(rng() % next_seq.size());
      key = row_key(owner, next_seq[owner]++);
    } else if (kind < 7) {  // a row below its prefix's newest (the hint does not hold)
      const int owner = static_cast<int>(rng() % next_seq.size());
      key = row_key(owner, rng() % next_seq[owner]);
    } else if (kind < 8) {  // outside every prefix
      key = "k" + std::to_string(rng() % 5000);
    } else if (!written.empty()) {  // an overwrite or a delete of any row written before
      key = written[rng() % written.size()];
      if (kind == 9) {
        REQUIRE(m.db->Delete(rocksdb::WriteOptions(), key).ok());
        model.erase(key);
        continue;
      }
    } else {
      continue;
    }
    const std::string value = "v" + std::to_string(i);
    REQUIRE(m.db->Put(rocksdb::WriteOptions(), key, value).ok());
    model[key] = value;
    if (ever.insert(key).second) written.push_back(key);
  }
  REQUIRE(snapshot);
  CHECK(active_entries(*m.db) > 20000);  // the reads below are the memtable's
  check_reads(*m.db, nullptr, model, rng);
  check_reads(*m.db, snapshot, *at_snapshot, rng);
  m.db->ReleaseSnapshot(snapshot);
  CHECK(im::store::memtable_iterators_alive() == alive_before);  // every iterator RocksDB was given is gone

  m.open();  // the WAL replayed into a new memtable
  CHECK(active_entries(*m.db) > 20000);
  check_reads(*m.db, nullptr, model, rng);
  REQUIRE(m.db->Flush(rocksdb::FlushOptions()).ok());  // the memtable written out as a table
  CHECK(active_entries(*m.db) == 0);
  check_reads(*m.db, nullptr, model, rng);
  CHECK(im::store::memtable_iterators_alive() == alive_before);
}

TEST_CASE("memtable: an append after a row below its prefix's greatest starts from the greatest, not behind it") {
  CountingComparator counting;
  MemDb m(true, &counting);
  for (std::uint64_t seq = 1; seq <= 10000; ++seq)
    REQUIRE(m.db->Put(rocksdb::WriteOptions(), row_key(1, seq), "v").ok());
  REQUIRE(m.db->Put(rocksdb::WriteOptions(), row_key(1, 0), "below").ok());  // not through the hint
  counting.calls = 0;
  for (std::uint64_t seq = 10001; seq <= 10100; ++seq)
    REQUIRE(m.db->Put(rocksdb::WriteOptions(), row_key(1, seq), "v").ok());
  // An append from the splice costs a few comparisons; one walking from
  // the low row would pass its 10,000 successors.
  CHECK(counting.calls.load() < 100 * 10);
  Model model;
  for (std::uint64_t seq = 0; seq <= 10100; ++seq) model[row_key(1, seq)] = seq == 0 ? "below" : "v";
  CHECK(scan(*m.db, nullptr, false) == rows_of(model));
}

TEST_CASE("memtable: merge operands and keys longer than a lookup's inline buffer read back whole") {
  MemDb m(true, nullptr, std::make_shared<Concat>());
  rocksdb::DB& db = *m.db;
  const std::string longer = row_key(1, 7) + std::string(300, 'x');  // over LookupKey's 200 inline bytes
  for (const std::string& key : {row_key(1, 1), longer}) {
    REQUIRE(db.Put(rocksdb::WriteOptions(), key, "base").ok());
    for (int i = 1; i <= 5; ++i) REQUIRE(db.Merge(rocksdb::WriteOptions(), key, "m" + std::to_string(i)).ok());
    std::string value;
    REQUIRE(db.Get(rocksdb::ReadOptions(), key, &value).ok());
    CHECK(value == "base,m1,m2,m3,m4,m5");
    std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(rocksdb::ReadOptions()));
    it->Seek(key);
    REQUIRE(it->Valid());
    CHECK(it->key().ToString() == key);
    CHECK(it->value().ToString() == "base,m1,m2,m3,m4,m5");
  }
  CHECK(active_entries(db) == 12);  // all in the memtable
}

TEST_CASE("memtable: readers walking it while the writer appends see rows in order and never a torn one") {
  MemDb m(true);
  rocksdb::DB& db = *m.db;
  constexpr int kOwners = 30;
  constexpr int kPerOwner = 2000;
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  // Each reader counts down after its first pass, the finder after its
  // 100th find (each also on leaving early): the writer waits for all of
  // them halfway, so they surely read while it writes the second half.
  std::latch reading(3);
  auto reader = [&] {
    bool counted = false;
    // Bounded: at most 2,000 passes, and it stops once the writer is done.
    for (int pass = 0; pass < 2000 && !done.load(); ++pass) {
      if (pass == 1) {
        reading.count_down();
        counted = true;
      }
      std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(rocksdb::ReadOptions()));
      std::string last;
      int steps = 0;  // more than every row: the list is broken
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        if (++steps > kOwners * kPerOwner) {
          bad.fetch_add(1);
          break;
        }
        const std::string k = it->key().ToString();
        const std::string v = it->value().ToString();
        if (!last.empty() && k <= last) bad.fetch_add(1);
        if (v != "row-" + k.substr(0, k.find('\0'))) bad.fetch_add(1);
        last = k;
      }
      if (!it->status().ok()) bad.fetch_add(1);
    }
    if (!counted) reading.count_down();
  };
  std::atomic<int> rounds{0};  // every owner's rows 1..rounds are written
  std::atomic<long> found{0};
  // Gets and seeks of rows already written: each is found, exactly.
  auto finder = [&] {
    std::mt19937 rng(3);
    bool counted = false;
    for (int i = 0; i < 200000 && !done.load(); ++i) {
      const int upto = rounds.load();  // at least 1: started after the first round
      const int owner = static_cast<int>(rng() % kOwners);
      const std::string key = row_key(owner, 1 + rng() % static_cast<unsigned>(upto));
      std::string value;
      if (!db.Get(rocksdb::ReadOptions(), key, &value).ok() || value != "row-u" + std::to_string(owner))
        bad.fetch_add(1);
      std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(rocksdb::ReadOptions()));  // sees the row
      it->Seek(key);
      if (!it->Valid() || it->key().ToString() != key) bad.fetch_add(1);
      it->SeekForPrev(key);
      if (!it->Valid() || it->key().ToString() != key) bad.fetch_add(1);
      if (found.fetch_add(1) + 1 == 100) {
        reading.count_down();
        counted = true;
      }
    }
    if (!counted) reading.count_down();
  };
  std::jthread r1(reader), r2(reader), r3;
  struct Stop {  // destroyed before the threads: a failed REQUIRE also stops and joins them
    std::atomic<bool>& done;
    ~Stop() { done = true; }
  } stop{done};
  for (int seq = 1; seq <= kPerOwner; ++seq) {
    for (int owner = 0; owner < kOwners; ++owner) {
      const std::string key = row_key(owner, static_cast<std::uint64_t>(seq));
      REQUIRE(db.Put(rocksdb::WriteOptions(), key, "row-u" + std::to_string(owner)).ok());
    }
    rounds = seq;
    if (seq == 1) r3 = std::jthread(finder);
    if (seq == kPerOwner / 2) reading.wait();
  }
  done = true;
  r1.join();
  r2.join();
  r3.join();
  CHECK(found.load() >= 100);
  CHECK(bad.load() == 0);
  const auto rows = scan(db, nullptr, false);
  REQUIRE(rows.size() == static_cast<std::size_t>(kOwners * kPerOwner));
  CHECK(std::is_sorted(rows.begin(), rows.end()));
}
