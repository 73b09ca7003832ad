#include "store/store.h"

#include <chrono>
#include <filesystem>
#include <vector>
#include "common/clock.h"

#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "store/keys.h"

namespace im::store {
namespace {

constexpr const char* kCfNames[kCfCount] = {"inbox",   "history",     "dedupe", "cursors", "groups",
                                            "members", "user_groups", "fanout", "outbox",  "meta"};

Error store_error(const rocksdb::Status& s) {
  return make_error(StatusCode::kInternal, "store: " + s.ToString());
}

// Drops dedupe rows older than the window as compaction meets them, so
// expiry never costs the message path anything (lookups check the time too).
class DedupeExpiry final : public rocksdb::CompactionFilter {
 public:
  explicit DedupeExpiry(std::uint32_t window_s) : window_ms_(std::int64_t{window_s} * 1000) {}
  bool Filter(int, const rocksdb::Slice&, const rocksdb::Slice& value, std::string*, bool*) const override {
    auto r = DedupeRecord::decode(std::string_view(value.data(), value.size()));
    return !r || r->time_ms < wall_ms() - window_ms_;
  }
  const char* Name() const override { return "im.DedupeExpiry"; }

 private:
  std::int64_t window_ms_;
};

}  // namespace

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(end.back());
    if (c != 0xFF) {
      ++c;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\xFF');  // unreachable for our keys, which never are all 0xFF
}

Batch::Batch(const Store& store) : store_(&store), batch_(std::make_unique<rocksdb::WriteBatch>()) {}
Batch::~Batch() = default;
Batch::Batch(Batch&&) noexcept = default;
Batch& Batch::operator=(Batch&&) noexcept = default;

void Batch::clear() {
  batch_->Clear();
  count_ = 0;
}

std::string DedupeRecord::encode() const {
  std::string v;
  append_u64(v, msg_id);
  append_u64(v, conv_seq);
  append_u64(v, inbox_seq);
  append_u64(v, static_cast<std::uint64_t>(time_ms));
  return v;
}

std::optional<DedupeRecord> DedupeRecord::decode(std::string_view v) {
  if (v.size() != 32) return std::nullopt;
  return DedupeRecord{read_u64(v), read_u64(v.substr(8)), read_u64(v.substr(16)),
                      static_cast<std::int64_t>(read_u64(v.substr(24)))};
}

Result<std::unique_ptr<Store>> Store::open(const StorageConfig& config) {
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec)
    return make_error(StatusCode::kInternal,
                      "storage.data_dir: cannot create " + config.data_dir + ": " + ec.message());

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_open_files = 256;  // counted in the file-limit reserve (src/main.cpp)
  db_options.IncreaseParallelism(2);
  db_options.keep_log_file_num = 5;

  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  rocksdb::ColumnFamilyOptions base;
  base.level0_file_num_compaction_trigger = 8;  // +8-11% sustained writes here (BENCHMARKS.md)
  base.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  static DedupeExpiry* expiry = nullptr;  // outlives the DB: one per process is enough
  if (!expiry) expiry = new DedupeExpiry(config.dedupe_window_s);

  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, base);
  for (const char* name : kCfNames) {
    rocksdb::ColumnFamilyOptions cf = base;
    if (std::string_view(name) == "dedupe") cf.compaction_filter = expiry;
    families.emplace_back(name, cf);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, config.data_dir, families, &handles, &db);
  if (!s.ok()) return store_error(s);
  std::unique_ptr<Store> store(new Store());
  store->db_.reset(db);
  store->fsync_ = config.fsync;
  db->DestroyColumnFamilyHandle(handles[0]);  // the default family is unused
  for (std::size_t i = 0; i < kCfCount; ++i) store->handles_[i] = handles[i + 1];
  return store;
}

Store::~Store() {
  if (!db_) return;
  db_->FlushWAL(true);
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
}

void Batch::put(Cf cf, std::string_view key, std::string_view value) {
  batch_->Put(store_->handle(cf), rocksdb::Slice(key.data(), key.size()), rocksdb::Slice(value.data(), value.size()));
  ++count_;
}

void Batch::del(Cf cf, std::string_view key) {
  batch_->Delete(store_->handle(cf), rocksdb::Slice(key.data(), key.size()));
  ++count_;
}

Result<Ok> Store::write(Batch& batch) {
  if (batch.empty()) return Ok{};
  rocksdb::WriteOptions options;
  options.sync = fsync_;
  rocksdb::Status s = db_->Write(options, batch.batch_.get());
  if (!s.ok()) return store_error(s);
  return Ok{};
}

Result<std::optional<std::string>> Store::get(Cf cf, std::string_view key) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handle(cf), rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return store_error(s);
  return std::optional<std::string>(std::move(value));
}

std::optional<std::string> Store::last_key(Cf cf, std::string_view prefix) {
  std::optional<std::string> out;
  scan(
      cf, prefix, prefix_end(prefix),
      [&](std::string_view key, std::string_view) {
        out = std::string(key);
        return false;
      },
      true);
  return out;
}

std::optional<std::string> Store::first_key(Cf cf, std::string_view prefix) {
  std::optional<std::string> out;
  scan(cf, prefix, prefix_end(prefix), [&](std::string_view key, std::string_view) {
    out = std::string(key);
    return false;
  });
  return out;
}

void Store::scan(Cf cf, std::string_view lower, std::string_view upper, const Visitor& fn, bool reverse) {
  rocksdb::Slice lo(lower.data(), lower.size());
  rocksdb::Slice hi(upper.data(), upper.size());
  rocksdb::ReadOptions options;
  options.iterate_lower_bound = &lo;
  options.iterate_upper_bound = &hi;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, handle(cf)));
  if (reverse) {
    for (it->SeekToLast(); it->Valid(); it->Prev())
      if (!fn(std::string_view(it->key().data(), it->key().size()),
              std::string_view(it->value().data(), it->value().size())))
        break;
  } else {
    for (it->SeekToFirst(); it->Valid(); it->Next())
      if (!fn(std::string_view(it->key().data(), it->key().size()),
              std::string_view(it->value().data(), it->value().size())))
        break;
  }
}

Result<Ok> Store::delete_range(Cf cf, std::string_view lower, std::string_view upper) {
  rocksdb::WriteOptions options;
  options.sync = fsync_;
  rocksdb::Status s = db_->DeleteRange(options, handle(cf), rocksdb::Slice(lower.data(), lower.size()),
                                       rocksdb::Slice(upper.data(), upper.size()));
  if (!s.ok()) return store_error(s);
  return Ok{};
}

std::size_t Store::expire_oldest(Cf cf, const std::function<bool(std::string_view value)>& expired) {
  std::size_t removed = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(cf)));
  it->SeekToFirst();
  while (it->Valid()) {
    const std::string first = it->key().ToString();
    const auto sep = first.find('\0');
    if (sep == std::string::npos) {  // not ours: skip the key
      it->Next();
      continue;
    }
    const std::string prefix = first.substr(0, sep + 1);
    std::string last_expired;
    std::size_t run = 0;
    while (it->Valid() && it->key().starts_with(prefix) &&
           expired(std::string_view(it->value().data(), it->value().size()))) {
      last_expired = it->key().ToString();
      ++run;
      it->Next();
    }
    const bool reached_end = !it->Valid() || !it->key().starts_with(prefix);
    // Everything before the first kept row goes; when every row expired,
    // the last one stays.
    const std::string stop = reached_end ? last_expired : it->key().ToString();
    const std::size_t count = reached_end ? (run > 0 ? run - 1 : 0) : run;
    if (count > 0 && delete_range(cf, first, stop).ok()) removed += count;
    it->Seek(prefix_end(prefix));
  }
  return removed;
}

std::string Store::stats() {
  std::string out;
  for (std::size_t i = 0; i < kCfCount; ++i) {
    std::string keys;
    db_->GetProperty(handles_[i], "rocksdb.estimate-num-keys", &keys);
    out += std::string(kCfNames[i]) + "=" + keys + " ";
  }
  return out;
}

}  // namespace im::store
