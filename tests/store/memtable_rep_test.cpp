// store/memtable_rep.h through a real RocksDB: every row stays in the
// memtable (a write buffer far larger than the rows), so each read below
// is answered by our skip list, compared with a std::map of what was written.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/db.h>
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

struct MemDb {
  explicit MemDb(bool hinted) {
    dir = (std::filesystem::temp_directory_path() / ("immemtable-" + std::to_string(std::random_device{}()))).string();
    options.create_if_missing = true;
    options.allow_concurrent_memtable_write = false;
    options.memtable_factory = im::store::make_memtable_factory();
    options.write_buffer_size = 512 << 20;  // nothing is flushed: every read is the memtable's
    // A reopen rebuilds the memtable from the WAL, through the same rep.
    options.avoid_flush_during_shutdown = true;
    options.avoid_flush_during_recovery = true;
    if (hinted) options.memtable_insert_with_hint_prefix_extractor = std::make_shared<ZeroPrefix>();
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
  MemDb m(hinted);
  std::mt19937 rng(hinted ? 7 : 11);
  Model model;
  std::vector<std::string> written;  // every key put, for overwrites and deletes anywhere
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
    written.push_back(key);
  }
  REQUIRE(snapshot);
  CHECK(active_entries(*m.db) > 20000);  // the reads below are the memtable's
  check_reads(*m.db, nullptr, model, rng);
  check_reads(*m.db, snapshot, *at_snapshot, rng);
  m.db->ReleaseSnapshot(snapshot);
  CHECK(im::store::memtable_iterators_alive() == 0);  // every Get's and scan's iterator is gone

  m.open();  // the WAL replayed into a new memtable
  CHECK(active_entries(*m.db) > 20000);
  check_reads(*m.db, nullptr, model, rng);
  REQUIRE(m.db->Flush(rocksdb::FlushOptions()).ok());  // the memtable written out as a table
  CHECK(active_entries(*m.db) == 0);
  check_reads(*m.db, nullptr, model, rng);
  CHECK(im::store::memtable_iterators_alive() == 0);
}

TEST_CASE("memtable: readers walking it while the writer appends see rows in order and never a torn one") {
  MemDb m(true);
  rocksdb::DB& db = *m.db;
  constexpr int kOwners = 30;
  constexpr int kPerOwner = 2000;
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::atomic<int> passes{0};
  auto reader = [&] {
    // Bounded: at most 2,000 passes, and it stops once the writer is done.
    for (int pass = 0; pass < 2000 && !done.load(); ++pass) {
      passes.fetch_add(1);
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
  };
  std::atomic<int> rounds{0};  // every owner's rows 1..rounds are written
  std::atomic<long> found{0};
  // Gets and seeks of rows already written: each is found, exactly.
  auto finder = [&] {
    std::mt19937 rng(3);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (int i = 0; i < 200000 && !done.load() && std::chrono::steady_clock::now() < until;) {
      const int upto = rounds.load();
      if (upto == 0) {  // nothing written yet
        std::this_thread::yield();
        continue;
      }
      ++i;
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
      found.fetch_add(1);
    }
  };
  std::jthread r1(reader), r2(reader), r3(finder);
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
    if (seq == kPerOwner / 2) {
      // Halfway, the readers are surely reading: the writer waits for
      // them (at most 30 s) before it writes the second half.
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while ((passes.load() < 4 || found.load() < 100) && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      REQUIRE(passes.load() >= 4);
      REQUIRE(found.load() >= 100);
    }
  }
  done = true;
  r1.join();
  r2.join();
  r3.join();
  CHECK(bad.load() == 0);
  const auto rows = scan(db, nullptr, false);
  REQUIRE(rows.size() == static_cast<std::size_t>(kOwners * kPerOwner));
  CHECK(std::is_sorted(rows.begin(), rows.end()));
}
