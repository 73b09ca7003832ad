#pragma once
// The embedded store: one RocksDB instance with the column families of
// docs/architecture.md, shared by the shards (RocksDB is thread safe).
// rocksdb::Status never leaves src/store: failures come back as Result.
//
// Thread safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "im/config.h"
#include "im/result.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace im::store {

enum class Cf : std::uint8_t {
  kInbox,
  kHistory,
  kDedupe,
  kCursors,
  kGroups,
  kMembers,
  kUserGroups,
  kFanout,
  kOutbox,
  kMeta,
};
inline constexpr std::size_t kCfCount = 10;

// A set of writes applied atomically by Store::write. Not thread safe.
class Store;

class Batch {
 public:
  explicit Batch(const Store& store);
  ~Batch();
  Batch(Batch&&) noexcept;
  Batch& operator=(Batch&&) noexcept;

  void put(Cf cf, std::string_view key, std::string_view value);
  void del(Cf cf, std::string_view key);
  std::size_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  void clear();

 private:
  friend class Store;
  const Store* store_;
  std::unique_ptr<rocksdb::WriteBatch> batch_;
  std::size_t count_ = 0;
};

// A dedupe row: the ids a SEND got, and when.
struct DedupeRecord {
  std::uint64_t msg_id = 0;
  std::uint64_t conv_seq = 0;
  std::uint64_t inbox_seq = 0;
  std::int64_t time_ms = 0;
  std::string encode() const;
  static std::optional<DedupeRecord> decode(std::string_view v);
};

class Store {
 public:
  friend class Batch;
  // Opens (creating what is missing) storage.data_dir.
  static Result<std::unique_ptr<Store>> open(const StorageConfig& config);
  ~Store();

  // Applies the batch atomically; it is in the WAL when this returns (and
  // fsynced when storage.fsync is true).
  Result<Ok> write(Batch& batch);
  Result<std::optional<std::string>> get(Cf cf, std::string_view key);
  // The last key that starts with `prefix`, if any.
  std::optional<std::string> last_key(Cf cf, std::string_view prefix);
  std::optional<std::string> first_key(Cf cf, std::string_view prefix);
  // Rows with lower <= key < upper, ascending (descending when `reverse`),
  // until `fn` returns false.
  using Visitor = std::function<bool(std::string_view key, std::string_view value)>;
  void scan(Cf cf, std::string_view lower, std::string_view upper, const Visitor& fn, bool reverse = false);
  // Deletes lower <= key < upper.
  Result<Ok> delete_range(Cf cf, std::string_view lower, std::string_view upper);
  // Retention: for each key prefix of `cf` (up to its first 0x00: one inbox
  // or one conversation), deletes the leading run of rows whose value
  // `expired` says is too old, but never the prefix's last row (counters
  // are recovered from it). Returns how many rows went.
  std::size_t expire_oldest(Cf cf, const std::function<bool(std::string_view value)>& expired);
  // RocksDB's own figures, for logs ("rocksdb.estimate-num-keys" per cf...).
  std::string stats();

 private:
  Store() = default;
  rocksdb::ColumnFamilyHandle* handle(Cf cf) const { return handles_[static_cast<std::size_t>(cf)]; }

  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* handles_[kCfCount] = {};
  bool fsync_ = false;
};

// The smallest key greater than every key that starts with `prefix`.
std::string prefix_end(std::string_view prefix);

}  // namespace im::store
