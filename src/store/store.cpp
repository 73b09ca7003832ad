#include "store/store.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/private_dir.h"
#include "store/keys.h"
#include "store/memtable_rep.h"

namespace im::store {
namespace {

constexpr const char* kCfNames[kCfCount] = {"inbox",   "history",     "dedupe", "cursors", "groups",
                                            "members", "user_groups", "fanout", "outbox",  "meta",
                                            "convs",   "deletes",     "reads",  "changes"};

Error store_error(const rocksdb::Status& s) {
  return make_error(StatusCode::kInternal, "store: " + s.ToString());
}

// A read that failed: counted here, whoever asked, and logged at most once
// a second (a bad block fails every retry).
Error read_error(const rocksdb::Status& s) {
  metrics::get().store_read_errors.inc();
  static std::atomic<std::int64_t> last_log_ms{0};
  const std::int64_t now = wall_ms();
  std::int64_t last = last_log_ms.load(std::memory_order_relaxed);
  if (now - last >= 1000 && last_log_ms.compare_exchange_strong(last, now))
    spdlog::error("store: read failed (errors so far: {}): {}", metrics::get().store_read_errors.value(), s.ToString());
  return store_error(s);
}

// The `meta` family's merge: a value and its operands are 8-byte integers
// (two's complement), merged by adding them (kOutboxCountKey's deltas).
class AddMerge : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value, std::string* out,
             rocksdb::Logger*) const override {
    std::uint64_t sum = existing && existing->size() == 8 ? read_u64(std::string_view(existing->data(), 8)) : 0;
    if (value.size() == 8) sum += read_u64(std::string_view(value.data(), 8));
    out->clear();
    append_u64(*out, sum);
    return true;
  }
  const char* Name() const override { return "im.AddMerge"; }
};

// The `reads` family's merge: 8-byte positions, merged by keeping the
// largest (a member's public read position never moves back, whichever of
// a SEND and a CONV_READ is written last).
class MaxMerge : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value, std::string* out,
             rocksdb::Logger*) const override {
    std::uint64_t best = existing && existing->size() == 8 ? read_u64(std::string_view(existing->data(), 8)) : 0;
    if (value.size() == 8) best = std::max(best, read_u64(std::string_view(value.data(), 8)));
    out->clear();
    append_u64(*out, best);
    return true;
  }
  const char* Name() const override { return "im.MaxMerge"; }
};

rocksdb::Slice slice(std::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}

std::string_view view(const rocksdb::Slice& s) {
  return std::string_view(s.data(), s.size());
}

std::string encode_u64(std::uint64_t v) {
  std::string out;
  append_u64(out, v);
  return out;
}

// Above every outbox key (9 bytes: queue, id; 8 in the old format).
std::string outbox_end() {
  return std::string(kOutboxKeyBytes + 1, '\xFF');
}

// Above every key of one queue.
std::string outbox_queue_end(std::uint8_t queue) {
  return queue == 0xFF ? outbox_end() : std::string(1, static_cast<char>(queue + 1));
}

// Rows of one inbox or conversation are appended in seq order under one key
// prefix (the uid or conv key, then 0x00; ids never hold 0x00): RocksDB
// keeps a memtable insert position per prefix and walks from there, not
// from the skiplist's head. perf, W2 paced: without it a third of the
// server's CPU went to that walk (key comparisons missing the cache).
//
// RocksDB 7.8 keeps one position per prefix for both a memtable's tables,
// its rows and its range deletions: a range deletion starting inside a
// prefix would be inserted from a position of the other table and corrupt
// it. So a range deletion in these families starts at the bare id (no
// 0x00, outside every prefix; no key lies between it and the id's first
// row), and `hinted_range_ok` refuses any other.
class IdPrefix final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "im.IdPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), view(key).find('\0') + 1);
  }
  bool InDomain(const rocksdb::Slice& key) const override { return view(key).find('\0') != std::string_view::npos; }
};

bool insert_hinted(Cf cf) {
  return cf == Cf::kInbox || cf == Cf::kHistory;
}

bool hinted_range_ok(Cf cf, std::string_view lower) {
  return !insert_hinted(cf) || lower.find('\0') == std::string_view::npos;
}

Error range_refused() {
  return make_error(StatusCode::kInternal, "store: a range deletion in this family must start at a bare id");
}

// Drops dedupe rows older than the window as compaction meets them, so
// expiry never costs the message path anything (lookups check the time too).
class DedupeExpiry final : public rocksdb::CompactionFilter {
 public:
  explicit DedupeExpiry(std::uint32_t window_s) : window_ms_(std::int64_t{window_s} * 1000) {}
  bool Filter(int, const rocksdb::Slice&, const rocksdb::Slice& value, std::string*, bool*) const override {
    auto r = DedupeRecord::decode(view(value));
    return !r || r->time_ms < wall_ms() - window_ms_;
  }
  const char* Name() const override { return "im.DedupeExpiry"; }

 private:
  std::int64_t window_ms_;
};

}  // namespace

// ---------------------------------------------------------------- Batch

Batch::Batch(const Store& store) : store_(&store), batch_(std::make_unique<rocksdb::WriteBatch>()) {}
Batch::~Batch() = default;
Batch::Batch(Batch&&) noexcept = default;
Batch& Batch::operator=(Batch&&) noexcept = default;

void Batch::clear() {
  batch_->Clear();
  count_ = 0;
  refused_ = false;
  dedupe_ = false;
}

void Batch::put(Cf cf, std::string_view key, std::string_view value) {
  batch_->Put(store_->handle(cf), slice(key), slice(value));
  ++count_;
}

void Batch::del(Cf cf, std::string_view key) {
  batch_->Delete(store_->handle(cf), slice(key));
  ++count_;
}

void Batch::del_range(Cf cf, std::string_view lower, std::string_view upper) {
  if (!hinted_range_ok(cf, lower)) {  // never so today: only `deletes` and `fanout` call this
    refused_ = true;
    return;
  }
  batch_->DeleteRange(store_->handle(cf), slice(lower), slice(upper));
  ++count_;
}

Result<Ok> Batch::for_each_row(const std::function<void(const Row&)>& fn) const {
  struct Rows : rocksdb::WriteBatch::Handler {
    Rows(const Store& s, const std::function<void(const Row&)>& f) : store(s), fn(f) {}
    rocksdb::Status row(std::uint32_t id, RowOp op, const rocksdb::Slice& key, const rocksdb::Slice& value) {
      const auto cf = store.cf_of(id);
      if (!cf) return rocksdb::Status::Corruption("a row of an unknown column family");
      fn(Row{*cf, op, std::string_view(key.data(), key.size()), std::string_view(value.data(), value.size())});
      return rocksdb::Status::OK();
    }
    rocksdb::Status PutCF(std::uint32_t id, const rocksdb::Slice& key, const rocksdb::Slice& value) override {
      return row(id, RowOp::kPut, key, value);
    }
    rocksdb::Status DeleteCF(std::uint32_t id, const rocksdb::Slice& key) override {
      return row(id, RowOp::kDelete, key, rocksdb::Slice());
    }
    rocksdb::Status DeleteRangeCF(std::uint32_t id, const rocksdb::Slice& lower, const rocksdb::Slice& upper) override {
      return row(id, RowOp::kDeleteRange, lower, upper);
    }
    rocksdb::Status MergeCF(std::uint32_t id, const rocksdb::Slice& key, const rocksdb::Slice& value) override {
      return row(id, RowOp::kMerge, key, value);
    }
    const Store& store;
    const std::function<void(const Row&)>& fn;
  } rows(*store_, fn);
  // Handler's defaults refuse what we never write (single deletes, blobs, transactions).
  if (auto s = batch_->Iterate(&rows); !s.ok()) return store_error(s);
  return Ok{};
}

std::size_t Batch::bytes() const {
  return batch_->GetDataSize();
}

void Batch::add_row(const Row& row) {
  switch (row.op) {
    case RowOp::kPut:
      put(row.cf, row.key, row.value);
      if (row.cf == Cf::kDedupe) dedupe_ = true;
      return;
    case RowOp::kDelete: return del(row.cf, row.key);
    case RowOp::kDeleteRange: return del_range(row.cf, row.key, row.value);
    case RowOp::kMerge:
      batch_->Merge(store_->handle(row.cf), slice(row.key), slice(row.value));
      ++count_;
      return;
  }
}

void Batch::put_inbox(std::string_view uid, std::uint64_t inbox_seq, std::string_view message) {
  put(Cf::kInbox, inbox_key(uid, inbox_seq), message);
}

void Batch::put_inbox_ref(std::string_view uid, std::uint64_t inbox_seq, std::string_view conv,
                          std::uint64_t conv_seq) {
  put(Cf::kInbox, inbox_key(uid, inbox_seq), encode_inbox_ref(conv, conv_seq));
}

void Batch::put_history(std::string_view conv, std::uint64_t conv_seq, std::string_view message,
                        std::string_view search_text) {
  if (search_text.empty()) return put(Cf::kHistory, history_key(conv, conv_seq), message);
  put(Cf::kHistory, history_key(conv, conv_seq), encode_history(message, search_text));
}

void Batch::put_dedupe(std::string_view uid, std::string_view client_msg_id, const DedupeRecord& record) {
  put(Cf::kDedupe, dedupe_key(uid, client_msg_id), record.encode());
  dedupe_ = true;
}

void Batch::put_cursor(std::string_view uid, const CursorRecord& cursor) {
  put(Cf::kCursors, cursor_key(uid, cursor.device_type, cursor.device_id), cursor.encode());
}

void Batch::del_cursor(std::string_view uid, std::uint8_t device_type, std::string_view device_id) {
  del(Cf::kCursors, cursor_key(uid, device_type, device_id));
}

void Batch::put_conv(std::string_view uid, std::string_view conv, const ConvRecord& record) {
  put(Cf::kConvs, conv_key(uid, conv), record.encode());
}

void Batch::put_conv_applied(std::string_view uid, std::uint64_t inbox_seq) {
  put(Cf::kConvs, user_prefix(uid), encode_u64(inbox_seq));
}

void Batch::put_conv_settings(std::string_view uid, std::string_view conv, const ConvSettingsRecord& settings) {
  put(Cf::kConvs, conv_settings_key(uid, conv), settings.encode());
}

void Batch::put_deleted(std::string_view uid, std::string_view conv, std::uint64_t conv_seq) {
  put(Cf::kDeletes, deleted_key(uid, conv, conv_seq), {});
}

void Batch::put_cleared(std::string_view uid, std::string_view conv, std::uint64_t cleared_seq) {
  put(Cf::kDeletes, deleted_key(uid, conv, 0), encode_u64(cleared_seq));
}

void Batch::del_deleted_upto(std::string_view uid, std::string_view conv, std::uint64_t up_to) {
  if (up_to == 0) return;
  std::string end = deleted_key(uid, conv, up_to);
  end.push_back('\0');  // just past up_to's key
  del_range(Cf::kDeletes, deleted_key(uid, conv, 1), end);
}

void Batch::merge_read(std::string_view gid, std::string_view uid, std::uint64_t conv_seq) {
  batch_->Merge(store_->handle(Cf::kReads), slice(member_key(gid, uid)), slice(encode_u64(conv_seq)));
  ++count_;
}

void Batch::put_group(const GroupRecord& group) {
  put(Cf::kGroups, group.info.gid(), group.encode());
}

void Batch::put_member(std::string_view gid, std::string_view uid, const MemberRecord& member,
                       std::uint64_t joined_seq) {
  put(Cf::kMembers, member_key(gid, uid), member.encode());
  put(Cf::kUserGroups, member_key(uid, gid), joined_seq == 0 ? std::string() : encode_u64(joined_seq));
}

void Batch::del_member(std::string_view gid, std::string_view uid) {
  del(Cf::kMembers, member_key(gid, uid));
  del(Cf::kUserGroups, member_key(uid, gid));
  del(Cf::kReads, member_key(gid, uid));
}

void Batch::put_copy(const FanoutKey& key, const CopyRecord& record) {
  put(Cf::kFanout, fanout_key(key), record.encode());
}

void Batch::put_group_fanout(const FanoutKey& key, const GroupFanoutRecord& record) {
  put(Cf::kFanout, fanout_key(key), record.encode());
}

void Batch::put_fanout_progress(const FanoutKey& key, const FanoutProgress& progress) {
  std::string v;
  append_u64(v, progress.done);
  put(Cf::kFanout, progress_key(key, progress.chain), v);
}

void Batch::del_fanout(const FanoutKey& key) {
  const std::string k = fanout_key(key);
  del(Cf::kFanout, k);
  if (key.recipient.empty()) del_range(Cf::kFanout, progress_key(key, 0), prefix_end(k + '\0'));
}

void Batch::put_outbox(const OutboxEvent& event) {
  put(Cf::kOutbox, outbox_key(event.queue, event.id), event.body);
  batch_->Merge(store_->handle(Cf::kMeta), kOutboxCountKey, slice(encode_u64(1)));
}

void Batch::del_outbox(std::uint8_t queue, std::uint64_t id) {
  del(Cf::kOutbox, outbox_key(queue, id));
  batch_->Merge(store_->handle(Cf::kMeta), kOutboxCountKey, slice(encode_u64(~std::uint64_t{0})));  // -1
}

void Batch::put_outbox_failing(std::uint8_t queue, std::uint64_t id, std::int64_t since_ms) {
  put(Cf::kMeta, outbox_failing_key(queue, id), encode_u64(static_cast<std::uint64_t>(since_ms)));
}

void Batch::del_outbox_failing(std::uint8_t queue, std::uint64_t id) {
  del(Cf::kMeta, outbox_failing_key(queue, id));
}

void Batch::put_meta(std::string_view name, std::uint64_t value) {
  put(Cf::kMeta, name, encode_u64(value));
}

void Batch::del_meta(std::string_view name) {
  del(Cf::kMeta, name);
}

void Batch::put_token_revocation(std::string_view uid, std::int64_t revoked_s) {
  put(Cf::kMeta, token_revocation_key(uid), encode_u64(static_cast<std::uint64_t>(revoked_s)));
}

void Batch::put_large_group(std::string_view gid, std::uint64_t large_from_seq) {
  put(Cf::kMeta, large_group_key(gid), encode_u64(large_from_seq));
}

void Batch::put_change(std::uint64_t msg_id, const ChangeRecord& change) {
  put(Cf::kChanges, encode_u64(msg_id), change.encode());
}

// ---------------------------------------------------------------- Store

namespace {

// Whether the data dir may hold a WAL file with records in it (RocksDB
// writes it there: `wal_dir` is not set). A dir that cannot be listed
// counts as holding one.
bool may_hold_wal(const std::string& dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (it->path().extension() != ".log") continue;
    std::error_code size_ec;
    const auto size = it->file_size(size_ec);
    if (size_ec || size > 0) return true;
  }
  return static_cast<bool>(ec);
}

// Builds before the insert hints started retention's range deletions
// inside an owner's prefix, and RocksDB replays the WAL through the hints
// (IdPrefix): such a deletion in the WAL would corrupt the memtable. So a
// store with a WAL is first opened without hints, its inbox and history
// memtables flushed (the next open skips their WAL records; RocksDB's
// recovery flushes them too, unless `avoid_flush_during_recovery`), and
// closed.
Result<Ok> settle_wal_without_hints(const rocksdb::DBOptions& db_options, const std::string& dir,
                                    std::vector<rocksdb::ColumnFamilyDescriptor> families) {
  for (auto& family : families) family.options.memtable_insert_with_hint_prefix_extractor = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, dir, families, &handles, &raw);
  if (!s.ok()) return store_error(s);
  std::unique_ptr<rocksdb::DB> db(raw);
  std::vector<rocksdb::ColumnFamilyHandle*> hinted;
  for (std::size_t i = 0; i < kCfCount; ++i)
    if (insert_hinted(static_cast<Cf>(i))) hinted.push_back(handles[i + 1]);
  s = db->Flush(rocksdb::FlushOptions(), hinted);
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  if (s.ok()) s = db->Close();
  if (!s.ok()) return store_error(s);
  return Ok{};
}

}  // namespace

Result<std::unique_ptr<Store>> Store::open(const StorageConfig& config, rocksdb::Env* env) {
  const std::error_code ec = make_private_dir(config.data_dir);
  if (ec)
    return make_error(StatusCode::kInternal,
                      "storage.data_dir: cannot create " + config.data_dir + ": " + ec.message());

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_open_files = 256;  // counted in the file-limit reserve (src/main.cpp)
  db_options.IncreaseParallelism(2);
  db_options.keep_log_file_num = 5;
  // Bounds on RocksDB's own memory and disk (docs/operations.md): with ten
  // families, a rarely written one would otherwise pin every WAL file since
  // its last flush, and each family's memtables grow on their own.
  db_options.max_total_wal_size = std::uint64_t{config.max_wal_mb} << 20;
  db_options.db_write_buffer_size = std::size_t{config.write_buffer_mb} << 20;
  // Our memtable (store/memtable_rep.h) takes one writer at a time.
  db_options.allow_concurrent_memtable_write = false;
  if (env) db_options.env = env;

  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  rocksdb::ColumnFamilyOptions base;
  base.level0_file_num_compaction_trigger = 8;  // +8-11% sustained writes here (BENCHMARKS.md)
  base.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Our memtable (store/memtable_rep.h); it gives a mempurge no samples,
  // so `experimental_mempurge_threshold` stays 0.
  base.memtable_factory = make_memtable_factory();

  static DedupeExpiry* expiry = nullptr;  // outlives the DB: one per process is enough
  if (!expiry) expiry = new DedupeExpiry(config.dedupe_window_s);

  const auto id_prefix = std::make_shared<IdPrefix>();
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, base);
  for (std::size_t i = 0; i < kCfCount; ++i) {
    const char* name = kCfNames[i];
    rocksdb::ColumnFamilyOptions cf = base;
    if (std::string_view(name) == "dedupe") {
      cf.compaction_filter = expiry;
      // Every SEND looks its client_msg_id up and almost never finds it: a
      // bloom filter over the memtable's keys answers most misses without a
      // skip-list search (the tables have theirs).
      cf.memtable_prefix_bloom_size_ratio = 0.02;
      cf.memtable_whole_key_filtering = true;
    }
    if (insert_hinted(static_cast<Cf>(i))) cf.memtable_insert_with_hint_prefix_extractor = id_prefix;
    if (std::string_view(name) == "meta") cf.merge_operator = std::make_shared<AddMerge>();
    if (std::string_view(name) == "reads") cf.merge_operator = std::make_shared<MaxMerge>();
    families.emplace_back(name, cf);
  }
  if (may_hold_wal(config.data_dir))
    if (auto settled = settle_wal_without_hints(db_options, config.data_dir, families); !settled)
      return settled.error();
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, config.data_dir, families, &handles, &db);
  if (!s.ok()) return store_error(s);
  std::unique_ptr<Store> store(new Store());
  store->db_.reset(db);
  store->fsync_ = config.fsync;
  db->DestroyColumnFamilyHandle(handles[0]);  // the default family is unused
  for (std::size_t i = 0; i < kCfCount; ++i) store->handles_[i] = handles[i + 1];
  if (auto schema = store->check_schema(); !schema) return schema.error();
  if (auto outbox = store->open_outbox(); !outbox) return outbox.error();
  std::unique_ptr<rocksdb::Iterator> dedupe(db->NewIterator(rocksdb::ReadOptions(), store->handle(Cf::kDedupe)));
  dedupe->SeekToFirst();
  if (!dedupe->status().ok()) return store_error(dedupe->status());
  store->dedupe_rows_.store(dedupe->Valid());
  return store;
}

Store::~Store() {
  if (!db_) return;
  // After a failed WAL write, RocksDB 7.8 (built with assertions in Debian)
  // aborts on a WAL sync: what was acknowledged is in the WAL already.
  if (!write_failed_.load()) db_->FlushWAL(true);
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
}

Result<Ok> Store::scan_family(Cf cf, const std::function<bool(std::string_view key, std::string_view value)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(cf)));
  for (it->SeekToFirst(); it->Valid(); it->Next())
    if (!fn(std::string_view(it->key().data(), it->key().size()),
            std::string_view(it->value().data(), it->value().size())))
      break;
  if (!it->status().ok()) return read_error(it->status());
  return Ok{};
}

Result<Ok> Store::scan_snapshot(const CfVisitor& fn) {
  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  struct Release {
    rocksdb::DB* db;
    const rocksdb::Snapshot* snap;
    ~Release() { db->ReleaseSnapshot(snap); }
  } release{db_.get(), snap};
  rocksdb::ReadOptions options;
  options.snapshot = snap;
  options.fill_cache = false;  // a walk of everything once: keep the cache for the readers
  for (std::size_t i = 0; i < kCfCount; ++i) {
    const Cf cf = static_cast<Cf>(i);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, handle(cf)));
    for (it->SeekToFirst(); it->Valid(); it->Next())
      if (!fn(cf, view(it->key()), view(it->value()))) return Ok{};
    if (!it->status().ok()) return read_error(it->status());
  }
  return Ok{};
}

std::optional<Cf> Store::cf_of(std::uint32_t column_family_id) const {
  for (std::size_t i = 0; i < kCfCount; ++i)
    if (handles_[i] && handles_[i]->GetID() == column_family_id) return static_cast<Cf>(i);
  return std::nullopt;
}

Result<Ok> Store::write(Batch& batch) {
  if (batch.refused_) return range_refused();
  if (batch.empty()) return Ok{};
  // Set before the write: a reader that sees the row sees the flag.
  if (batch.dedupe_) dedupe_rows_.store(true, std::memory_order_release);
  rocksdb::WriteOptions options;
  options.sync = fsync_;
  rocksdb::Status s = db_->Write(options, batch.batch_.get());
  write_failed_.store(!s.ok(), std::memory_order_relaxed);
  if (!s.ok()) return store_error(s);
  return Ok{};
}

Result<std::optional<std::string>> Store::get(Cf cf, std::string_view key) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handle(cf), slice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return read_error(s);
  return std::optional<std::string>(std::move(value));
}

Result<Ok> Store::scan(Cf cf, std::string_view lower, std::string_view upper, const Visitor& fn, bool reverse) {
  rocksdb::Slice lo = slice(lower);
  rocksdb::Slice hi = slice(upper);
  rocksdb::ReadOptions options;
  options.iterate_lower_bound = &lo;
  options.iterate_upper_bound = &hi;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, handle(cf)));
  if (reverse) {
    for (it->SeekToLast(); it->Valid(); it->Prev())
      if (!fn(view(it->key()), view(it->value()))) return Ok{};
  } else {
    for (it->SeekToFirst(); it->Valid(); it->Next())
      if (!fn(view(it->key()), view(it->value()))) return Ok{};
  }
  // The loop ended because the range is exhausted, or because of an error.
  if (!it->status().ok()) return read_error(it->status());
  return Ok{};
}

Result<std::optional<std::string>> Store::edge_key(Cf cf, std::string_view prefix, bool last) {
  std::optional<std::string> out;
  auto scanned = scan(
      cf, prefix, prefix_end(prefix),
      [&](std::string_view key, std::string_view) {
        out = std::string(key);
        return false;
      },
      last);
  if (!scanned) return scanned.error();
  return out;
}

Result<std::uint64_t> Store::last_inbox_seq(std::string_view uid) {
  auto key = edge_key(Cf::kInbox, user_prefix(uid), true);
  if (!key) return key.error();
  return *key ? seq_of(**key) : 0;
}

Result<std::uint64_t> Store::first_inbox_seq(std::string_view uid) {
  auto key = edge_key(Cf::kInbox, user_prefix(uid), false);
  if (!key) return key.error();
  return *key ? seq_of(**key) : 0;
}

Result<std::uint64_t> Store::last_history_seq(std::string_view conv) {
  auto key = edge_key(Cf::kHistory, user_prefix(conv), true);
  if (!key) return key.error();
  return *key ? seq_of(**key) : 0;
}

Result<std::optional<std::string>> Store::get_history(std::string_view conv, std::uint64_t conv_seq) {
  auto row = get(Cf::kHistory, history_key(conv, conv_seq));
  if (!row || !*row) return row;
  const HistoryValue v = decode_history(**row);
  if (v.message.size() != (*row)->size()) return std::optional<std::string>(std::string(v.message));
  return row;
}

Result<std::optional<Store::HistoryRow>> Store::get_history_row(std::string_view conv, std::uint64_t conv_seq) {
  auto row = get(Cf::kHistory, history_key(conv, conv_seq));
  if (!row) return row.error();
  if (!*row) return std::optional<HistoryRow>();
  const HistoryValue v = decode_history(**row);
  return std::optional<HistoryRow>(HistoryRow{std::string(v.message), std::string(v.search_text)});
}

Result<Ok> Store::scan_history_rows(std::string_view conv, std::uint64_t from, std::uint64_t to,
                                    const TextRowVisitor& fn) {
  if (from >= to) return Ok{};
  return scan(Cf::kHistory, history_key(conv, from), history_key(conv, to),
              [&](std::string_view key, std::string_view value) {
                const HistoryValue v = decode_history(value);
                return fn(seq_of(key), v.message, v.search_text);
              });
}

Result<Ok> Store::scan_history_convs(const std::function<bool(std::string_view conv)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(Cf::kHistory)));
  for (it->SeekToFirst(); it->Valid();) {
    const std::string_view key = view(it->key());
    const auto sep = key.find('\0');
    if (sep == std::string_view::npos) {  // not a history row
      it->Next();
      continue;
    }
    const std::string conv(key.substr(0, sep));
    if (!fn(conv)) return Ok{};
    it->Seek(prefix_end(conv + '\0'));
  }
  if (!it->status().ok()) return read_error(it->status());
  return Ok{};
}

Result<Ok> Store::scan_convs(std::string_view uid,
                             const std::function<bool(std::string_view conv, ConvRecord&&)>& fn) {
  const std::string prefix = user_prefix(uid);
  bool unreadable = false;
  // From past the applied seq and the settings rows.
  auto scanned =
      scan(Cf::kConvs, conv_states_begin(uid), prefix_end(prefix), [&](std::string_view key, std::string_view value) {
        auto record = ConvRecord::decode(value);
        if (!record) {
          unreadable = true;
          return false;
        }
        return fn(key.substr(prefix.size()), std::move(*record));
      });
  if (!scanned) return scanned;
  if (unreadable) return make_error(StatusCode::kInternal, "store: unreadable conversation row of " + std::string(uid));
  return Ok{};
}

Result<std::uint64_t> Store::get_conv_applied(std::string_view uid) {
  auto row = get(Cf::kConvs, user_prefix(uid));
  if (!row) return row.error();
  if (!*row) return std::uint64_t{0};
  if ((*row)->size() != 8) return make_error(StatusCode::kInternal, "store: unreadable conversation row of " + std::string(uid));
  return read_u64(**row);
}

Result<std::optional<ConvRecord>> Store::get_conv(std::string_view uid, std::string_view conv) {
  auto row = get(Cf::kConvs, conv_key(uid, conv));
  if (!row) return row.error();
  if (!*row) return std::optional<ConvRecord>();
  auto record = ConvRecord::decode(**row);
  if (!record) return make_error(StatusCode::kInternal, "store: unreadable conversation row of " + std::string(uid));
  return std::optional<ConvRecord>(std::move(*record));
}

Result<std::optional<ConvSettingsRecord>> Store::get_conv_settings(std::string_view uid, std::string_view conv) {
  auto row = get(Cf::kConvs, conv_settings_key(uid, conv));
  if (!row) return row.error();
  if (!*row) return std::optional<ConvSettingsRecord>();
  auto record = ConvSettingsRecord::decode(**row);
  if (!record) return make_error(StatusCode::kInternal, "store: unreadable settings row of " + std::string(uid));
  return record;
}

Result<std::uint64_t> Store::get_cleared(std::string_view uid, std::string_view conv) {
  auto row = get(Cf::kDeletes, deleted_key(uid, conv, 0));
  if (!row) return row.error();
  if (!*row) return std::uint64_t{0};
  if ((*row)->size() != 8)
    return make_error(StatusCode::kInternal, "store: unreadable delete row of " + std::string(uid));
  return read_u64(**row);
}

Result<Ok> Store::scan_deleted(std::string_view uid, std::string_view conv, std::uint64_t from, std::uint64_t to,
                               bool reverse, const std::function<bool(std::uint64_t)>& fn) {
  from = std::max<std::uint64_t>(from, 1);  // seq 0 is cleared_seq's row
  if (from >= to) return Ok{};
  return scan(
      Cf::kDeletes, deleted_key(uid, conv, from), deleted_key(uid, conv, to),
      [&](std::string_view key, std::string_view) { return fn(seq_of(key)); }, reverse);
}

Result<Ok> Store::scan_reads(std::string_view gid, const std::function<bool(std::string_view, std::uint64_t)>& fn) {
  const std::string prefix = user_prefix(gid);
  return scan(Cf::kReads, prefix, prefix_end(prefix), [&](std::string_view key, std::string_view value) {
    return fn(key.substr(prefix.size()), value.size() == 8 ? read_u64(value) : 0);
  });
}

Result<Ok> Store::check_schema() {
  auto row = get(Cf::kMeta, kSchemaVersionKey);
  if (!row) return row.error();
  std::uint64_t version = 1;
  if (*row) {
    version = (*row)->size() == 8 ? read_u64(**row) : ~std::uint64_t{0};
    if (version > kSchemaVersion)
      return make_error(StatusCode::kInternal,
                        fmt::format("storage.data_dir holds data of a newer imserver (layout {}; this build "
                                    "reads up to {}): refusing to start",
                                    version, kSchemaVersion));
    if (version == kSchemaVersion) return Ok{};
  }
  // Layout 1 (no row) needs nothing moved: the conversation states are
  // derived from the inbox on each user's first use. Layout 2 has states
  // but no settings rows.
  if (version == 2) {
    if (auto added = add_settings_rows(); !added) return added;
  }
  if (version == 2 || version == 3) {
    if (auto added = add_change_rows(); !added) return added;
  }
  rocksdb::WriteOptions options;
  options.sync = true;
  rocksdb::Status s =
      db_->Put(options, handle(Cf::kMeta), slice(kSchemaVersionKey), slice(encode_u64(kSchemaVersion)));
  if (!s.ok()) return store_error(s);
  return Ok{};
}

Result<std::uint64_t> Store::derive_rows(Cf cf, const Deriver& derive) {
  Batch batch(*this);
  std::uint64_t added = 0;
  Result<Ok> written = Ok{};
  auto scanned = scan(cf, "", std::string(1, '\xFF'), [&](std::string_view key, std::string_view value) {
    derive(key, value, batch);
    if (batch.count() < 1024) return true;
    added += batch.count();
    written = write(batch);
    batch.clear();
    return written.ok();
  });
  if (!scanned) return scanned.error();
  added += batch.count();
  if (written) written = write(batch);
  if (!written) return written.error();
  return added;
}

Result<Ok> Store::add_settings_rows() {
  // From each state as last written (coalesced: a mark a crash kept out of
  // it is not in its row either; this only ever runs on stores of the
  // development layout 2).
  auto added = derive_rows(Cf::kConvs, [](std::string_view key, std::string_view value, Batch& batch) {
    const auto sep = key.find('\0');
    if (sep == std::string_view::npos || sep + 1 >= key.size() || key[sep + 1] == '\0') return;
    auto r = ConvRecord::decode(value);
    if (r && (r->muted || r->pinned || r->hidden))
      batch.put_conv_settings(key.substr(0, sep), key.substr(sep + 1), {r->muted, r->pinned, r->hidden});
  });
  if (!added) return added.error();
  if (*added > 0) spdlog::info("store: {} conversation settings rows written (layout 2 to 3)", *added);
  return Ok{};
}

Result<Ok> Store::add_change_rows() {
  v1::Message m;
  auto added = derive_rows(Cf::kHistory, [&m](std::string_view key, std::string_view value, Batch& batch) {
    const auto sep = key.find('\0');
    if (sep == std::string_view::npos || key.size() != sep + 9) return;
    const std::string_view message = decode_history(value).message;
    if (m.ParseFromArray(message.data(), static_cast<int>(message.size())) &&
        (m.content_type() == 10005 || m.edit_version() > 0))
      batch.put_change(m.msg_id(), {std::string(key.substr(0, sep)), m.conv_seq(), m.content_type() == 10005, {}});
  });
  if (!added) return added.error();
  if (*added > 0) spdlog::info("store: {} recalled or edited messages recorded in `changes` (layout 4)", *added);
  return Ok{};
}

Result<Ok> Store::scan_history(std::string_view conv, std::uint64_t from, std::uint64_t to, const RowVisitor& fn) {
  if (from >= to) return Ok{};
  return scan(
      Cf::kHistory, history_key(conv, from), history_key(conv, to),
      [&](std::string_view key, std::string_view value) { return fn(seq_of(key), decode_history(value).message); });
}

// Reads the history rows an inbox scan's references name. One inbox's
// references mostly name a few conversations, each at consecutive
// conv_seqs (a conversation's messages reach each participant's inbox in
// order): an iterator per conversation, stepped a row, costs a fraction of
// a Get per row (W4, a PULL of 100,000 rows: 1.27M rows/s with copies,
// 0.45-0.49M with a Get per reference). But an iterator cannot skip table
// files by their bloom filters as a Get does: a conversation's first row
// is a Get, its iterator opens at its second. Past kOpen conversations,
// Gets only.
class Store::HistoryReader {
 public:
  HistoryReader(Store& store, bool reverse) : store_(store), reverse_(reverse) {}

  // An inbox row as readers see it: `value` itself, or the Message its
  // reference names with `seq` as its inbox_seq (kept until the next call);
  // nullopt when that history row is gone.
  Result<std::optional<std::string_view>> inbox_row(std::uint64_t seq, std::string_view value) {
    const auto ref = decode_inbox_ref(value);
    if (!ref) return std::optional<std::string_view>(value);
    auto found = find(ref->conv, ref->conv_seq);
    if (!found) return found.error();
    if (!*found) {
      metrics::get().inbox_refs_expired.inc();
      return found;
    }
    row_.assign(**found);
    append_inbox_seq(row_, seq);
    return std::optional<std::string_view>(row_);
  }

 private:
  static constexpr std::size_t kOpen = 8;

  // The history row's Message (kept until the next call), nullopt if it is
  // gone.
  Result<std::optional<std::string_view>> find(std::string_view conv, std::uint64_t conv_seq) {
    assign_history_key(key_, conv, conv_seq);
    const std::string_view key = key_;
    rocksdb::Iterator* it = iterator_for(conv);
    if (!it) {  // a conversation's first row, or too many conversations
      rocksdb::Status s = store_.db_->Get(rocksdb::ReadOptions(), store_.handle(Cf::kHistory), slice(key), &buf_);
      if (s.IsNotFound()) return std::optional<std::string_view>();
      if (!s.ok()) return read_error(s);
      return std::optional<std::string_view>(decode_history(buf_).message);
    }
    // The next row in the scan's direction is the usual one; else a seek.
    // `at` (the iterator's key against `key`) is read only while Valid().
    int at = it->Valid() ? view(it->key()).compare(key) : 0;
    if (it->Valid() && (reverse_ ? at > 0 : at < 0)) {
      reverse_ ? it->Prev() : it->Next();
      at = it->Valid() ? view(it->key()).compare(key) : 0;
    }
    if (!it->Valid() || at != 0) {
      it->Seek(slice(key));
      if (!it->status().ok()) return read_error(it->status());
      if (!it->Valid() || view(it->key()) != key) return std::optional<std::string_view>();
    }
    return std::optional<std::string_view>(decode_history(view(it->value())).message);
  }

  // The conversation's iterator from its second row on; nullptr for a Get.
  rocksdb::Iterator* iterator_for(std::string_view conv) {
    for (auto& [c, it] : open_) {
      if (c != conv) continue;
      if (!it) it.reset(store_.db_->NewIterator(rocksdb::ReadOptions(), store_.handle(Cf::kHistory)));
      return it.get();
    }
    if (open_.size() < kOpen) open_.emplace_back(std::string(conv), nullptr);
    return nullptr;
  }

  Store& store_;
  const bool reverse_;
  std::vector<std::pair<std::string, std::unique_ptr<rocksdb::Iterator>>> open_;
  std::string key_;  // the history row's key
  std::string buf_;  // a Get's value
  std::string row_;  // the row handed out
};

Result<Ok> Store::scan_inbox_rows(std::string_view lower, std::string_view upper, const RowVisitor& fn, bool reverse) {
  HistoryReader history(*this, reverse);
  Result<Ok> read = Ok{};
  auto scanned = scan(
      Cf::kInbox, lower, upper,
      [&](std::string_view key, std::string_view value) {
        const std::uint64_t seq = seq_of(key);
        auto row = history.inbox_row(seq, value);
        if (!row) {
          read = row.error();
          return false;
        }
        return !*row || fn(seq, **row);  // a reference whose row is gone is skipped
      },
      reverse);
  if (!scanned) return scanned;
  return read;
}

Result<Ok> Store::scan_inbox(std::string_view uid, std::uint64_t from, std::uint64_t to, const RowVisitor& fn) {
  if (from >= to) return Ok{};
  return scan_inbox_rows(inbox_key(uid, from), inbox_key(uid, to), fn, false);
}

Result<Ok> Store::scan_inbox_back(std::string_view uid, std::uint64_t below, const RowVisitor& fn) {
  return scan_inbox_rows(user_prefix(uid), inbox_key(uid, below), fn, true);
}

Result<Ok> Store::scan_history_back(std::string_view conv, std::uint64_t below, const RowVisitor& fn) {
  return scan(
      Cf::kHistory, user_prefix(conv), history_key(conv, below),
      [&](std::string_view key, std::string_view value) { return fn(seq_of(key), decode_history(value).message); },
      true);
}

Result<std::optional<DedupeRecord>> Store::get_dedupe(std::string_view uid, std::string_view client_msg_id) {
  if (!dedupe_rows_.load(std::memory_order_acquire)) return std::optional<DedupeRecord>();
  auto row = get(Cf::kDedupe, dedupe_key(uid, client_msg_id));
  if (!row) return row.error();
  if (!*row) return std::optional<DedupeRecord>();
  auto record = DedupeRecord::decode(**row);
  // An unreadable row is an error, not "no row": taking it for none would
  // store a retried message twice.
  if (!record) return make_error(StatusCode::kInternal, "store: unreadable dedupe row");
  return std::optional<DedupeRecord>(std::move(*record));
}

Result<Ok> Store::scan_cursors(std::string_view uid, const std::function<bool(const CursorRecord&)>& fn) {
  const std::string prefix = user_prefix(uid);
  bool unreadable = false;
  auto scanned = scan(Cf::kCursors, prefix, prefix_end(prefix), [&](std::string_view key, std::string_view value) {
    auto cursor = CursorRecord::decode(key.substr(prefix.size()), value);
    if (!cursor) {
      unreadable = true;
      return false;
    }
    return fn(*cursor);
  });
  if (!scanned) return scanned;
  if (unreadable) return make_error(StatusCode::kInternal, "store: unreadable cursor row of " + std::string(uid));
  return Ok{};
}

Result<std::optional<GroupRecord>> Store::get_group(std::string_view gid) {
  auto row = get(Cf::kGroups, gid);
  if (!row) return row.error();
  if (!*row) return std::optional<GroupRecord>();
  auto record = GroupRecord::decode(**row);
  if (!record) return make_error(StatusCode::kInternal, "store: unreadable group row " + std::string(gid));
  return record;
}

Result<Ok> Store::scan_members(std::string_view gid,
                               const std::function<bool(std::string_view, const MemberRecord&)>& fn) {
  const std::string prefix = user_prefix(gid);
  bool unreadable = false;
  auto scanned = scan(Cf::kMembers, prefix, prefix_end(prefix), [&](std::string_view key, std::string_view value) {
    auto member = MemberRecord::decode(value);
    if (!member) {
      unreadable = true;
      return false;
    }
    return fn(key.substr(prefix.size()), *member);
  });
  if (!scanned) return scanned;
  if (unreadable) return make_error(StatusCode::kInternal, "store: unreadable member row in " + std::string(gid));
  return Ok{};
}

Result<Ok> Store::scan_user_groups(std::string_view uid, const std::function<bool(std::string_view)>& fn,
                                   std::string_view after_gid) {
  const std::string prefix = user_prefix(uid);
  // The smallest key above prefix + after_gid.
  const std::string from = after_gid.empty() ? prefix : prefix + std::string(after_gid) + '\0';
  return scan(Cf::kUserGroups, from, prefix_end(prefix),
              [&](std::string_view key, std::string_view) { return fn(key.substr(prefix.size())); });
}

Result<std::optional<std::uint64_t>> Store::in_group(std::string_view uid, std::string_view gid) {
  auto row = get(Cf::kUserGroups, member_key(uid, gid));
  if (!row) return row.error();
  if (!*row) return std::optional<std::uint64_t>();
  // An empty value: written before the join was recorded.
  return std::optional<std::uint64_t>((*row)->size() == 8 ? read_u64(**row) : 0);
}

Result<std::optional<std::uint64_t>> Store::get_meta(std::string_view name) {
  auto row = get(Cf::kMeta, name);
  if (!row) return row.error();
  if (!*row) return std::optional<std::uint64_t>();
  return std::optional<std::uint64_t>(read_u64(**row));
}

Result<std::optional<ChangeRecord>> Store::get_change(std::uint64_t msg_id) {
  auto row = get(Cf::kChanges, encode_u64(msg_id));
  if (!row) return row.error();
  if (!*row) return std::optional<ChangeRecord>();
  auto change = ChangeRecord::decode(**row);
  if (!change) return make_error(StatusCode::kInternal, "store: unreadable change row of message " + std::to_string(msg_id));
  return change;
}

Result<Ok> Store::scan_change_ids(const std::function<bool(std::uint64_t msg_id)>& fn) {
  return scan(Cf::kChanges, "", std::string(9, '\xFF'), [&](std::string_view key, std::string_view) {
    return key.size() != 8 || fn(read_u64(key));
  });
}

Result<Ok> Store::del_changes_below(std::uint64_t msg_id) {
  return delete_range(Cf::kChanges, "", encode_u64(msg_id));
}

Result<Ok> Store::sync_wal() {
  if (auto st = db_->SyncWAL(); !st.ok()) return store_error(st);
  return Ok{};
}

Result<std::uint64_t> Store::checkpoint(const std::string& dir) {
  rocksdb::Checkpoint* raw = nullptr;
  if (auto st = rocksdb::Checkpoint::Create(db_.get(), &raw); !st.ok()) return store_error(st);
  std::unique_ptr<rocksdb::Checkpoint> cp(raw);
  // log_size_for_flush 0: the memtables are flushed first, so the copy is
  // SST files (hard links) plus the WAL written since; nothing committed is left out.
  if (auto st = cp->CreateCheckpoint(dir, 0); !st.ok()) return store_error(st);
  std::uint64_t bytes = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir, ec))
    if (entry.is_regular_file(ec)) bytes += entry.file_size(ec);
  return bytes;
}

Result<Ok> Store::scan_meta_u64(std::string_view prefix, std::string_view what,
                                const std::function<bool(std::string_view name, std::uint64_t value)>& fn) {
  bool unreadable = false;
  auto scanned = scan(Cf::kMeta, prefix, prefix_end(prefix), [&](std::string_view key, std::string_view value) {
    if (value.size() != 8 || key.size() == prefix.size()) {
      unreadable = true;
      return false;
    }
    return fn(key.substr(prefix.size()), read_u64(value));
  });
  if (!scanned) return scanned;
  if (unreadable) return make_error(StatusCode::kInternal, "store: unreadable " + std::string(what) + " row");
  return Ok{};
}

Result<Ok> Store::scan_token_revocations(const std::function<bool(std::string_view uid, std::int64_t revoked_s)>& fn) {
  return scan_meta_u64(token_revocation_key(""), "token revocation",
                       [&](std::string_view uid, std::uint64_t v) { return fn(uid, static_cast<std::int64_t>(v)); });
}

Result<Ok> Store::scan_large_groups(const std::function<bool(std::string_view gid, std::uint64_t from_seq)>& fn) {
  return scan_meta_u64(large_group_key(""), "large group", fn);
}

Result<Ok> Store::scan_id_reservations(const std::function<bool(std::uint64_t reserved_ms)>& fn) {
  return scan_meta_u64(kIdReservationPrefix, "msg_id reservation",
                       [&](std::string_view, std::uint64_t reserved_ms) { return fn(reserved_ms); });
}

Result<Ok> Store::scan_fanout(const std::function<bool(const FanoutEntry&)>& fn) {
  return scan(Cf::kFanout, "", std::string(1, '\xFF'), [&](std::string_view key, std::string_view value) {
    FanoutEntry e;
    auto parsed = parse_fanout_key(key);
    if (parsed) e.key = std::move(parsed->key);
    if (!parsed) {
      e.kind = FanoutEntry::Kind::kUnreadable;
    } else if (parsed->chain) {
      e.kind = FanoutEntry::Kind::kProgress;
      e.progress = {*parsed->chain, static_cast<std::uint32_t>(read_u64(value))};
    } else if (e.key.recipient.empty()) {
      auto record = GroupFanoutRecord::decode(value);
      e.kind = record ? FanoutEntry::Kind::kGroup : FanoutEntry::Kind::kUnreadable;
      if (record) e.group = std::move(*record);
    } else {
      auto record = CopyRecord::decode(value);
      e.kind = record ? FanoutEntry::Kind::kCopy : FanoutEntry::Kind::kUnreadable;
      if (record) e.copy = std::move(*record);
    }
    return fn(e);
  });
}

Result<Ok> Store::open_outbox() {
  // The count kept in `meta` with every event written and deleted: a start
  // does not read the queue. Without it (a store written before the count
  // was kept) the queue is read once, counted and the count written; then
  // events whose key was a bare id (before queues) move to queue 0 (their
  // ids are below any id written since, and the worker delivers the events
  // present at start lowest id first, so they still go first).
  auto kept = get(Cf::kMeta, kOutboxCountKey);
  if (!kept) return kept.error();
  std::uint64_t events = 0;
  const auto kept_n = *kept && (*kept)->size() == 8 ? static_cast<std::int64_t>(read_u64(**kept)) : -1;
  if (kept_n >= 0) {
    events = static_cast<std::uint64_t>(kept_n);
  } else {  // none, or below 0 (only a second delete of one event could do that): counted afresh
    std::uint64_t moved = 0;
    Batch batch(*this);
    Result<Ok> written = Ok{};
    auto scanned = scan(Cf::kOutbox, "", outbox_end(), [&](std::string_view key, std::string_view value) {
      ++events;
      if (key.size() != kLegacyOutboxKeyBytes) return true;
      batch.put(Cf::kOutbox, outbox_key(0, read_u64(key)), value);
      batch.del(Cf::kOutbox, key);
      ++moved;
      if (batch.count() < 1024) return true;
      written = write(batch);
      batch.clear();
      return written.ok();
    });
    if (!scanned) return scanned;
    if (written) {
      batch.put(Cf::kMeta, kOutboxCountKey, encode_u64(events));
      written = write(batch);
    }
    if (!written) return written;
    if (moved > 0) spdlog::info("store: {} webhook events moved to queue 0 (the outbox key format changed)", moved);
  }
  outbox_depth_.store(events, std::memory_order_relaxed);
  metrics::get().outbox_depth.set(static_cast<std::int64_t>(events));
  return Ok{};
}

bool Store::reserve_outbox(std::uint64_t max) {
  std::uint64_t n = outbox_depth_.load(std::memory_order_relaxed);
  do {
    if (n >= max) return false;
  } while (!outbox_depth_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  metrics::get().outbox_depth.add(1);
  return true;
}

void Store::release_outbox(std::uint64_t n) {
  std::uint64_t depth = outbox_depth_.load(std::memory_order_relaxed);
  std::uint64_t next = 0;
  do {
    next = depth > n ? depth - n : 0;
  } while (!outbox_depth_.compare_exchange_weak(depth, next, std::memory_order_relaxed));
  metrics::get().outbox_depth.add(-static_cast<std::int64_t>(depth - next));
}

Result<std::optional<OutboxEvent>> Store::first_event(std::uint8_t queue, std::uint64_t from) {
  std::optional<OutboxEvent> out;
  auto scanned = scan_queue(queue, from, UINT64_MAX, [&](OutboxEvent&& e) {
    out = std::move(e);
    return false;
  });
  if (!scanned) return scanned.error();
  return out;
}

Result<Ok> Store::scan_queue(std::uint8_t queue, std::uint64_t from, std::uint64_t to,
                             const std::function<bool(OutboxEvent&&)>& fn) {
  if (from >= to) return Ok{};
  const std::string upper = to == UINT64_MAX ? outbox_queue_end(queue) : outbox_key(queue, to);
  return scan(Cf::kOutbox, outbox_key(queue, from), upper, [&](std::string_view key, std::string_view v) {
    if (key.size() != kOutboxKeyBytes) return true;  // not an event key: never written so
    return fn(OutboxEvent{read_u64(key.substr(1)), std::string(v), queue});
  });
}

Result<std::optional<std::uint64_t>> Store::last_event_id(std::uint8_t queue) {
  std::optional<std::uint64_t> out;
  auto scanned = scan(
      Cf::kOutbox, outbox_key(queue, 0), outbox_queue_end(queue),
      [&](std::string_view key, std::string_view) {
        if (key.size() != kOutboxKeyBytes) return true;
        out = read_u64(key.substr(1));
        return false;
      },
      true);
  if (!scanned) return scanned.error();
  return out;
}

Result<std::optional<std::uint8_t>> Store::next_event_queue(unsigned from) {
  std::optional<std::uint8_t> out;
  if (from > 0xFF) return out;
  auto scanned = scan(Cf::kOutbox, std::string(1, static_cast<char>(from)), outbox_end(),
                      [&](std::string_view key, std::string_view) {
                        if (key.size() != kOutboxKeyBytes) return true;
                        out = static_cast<std::uint8_t>(key[0]);
                        return false;
                      });
  if (!scanned) return scanned.error();
  return out;
}

Result<std::optional<std::int64_t>> Store::outbox_failing_since(std::uint8_t queue, std::uint64_t id) {
  auto row = get(Cf::kMeta, outbox_failing_key(queue, id));
  if (!row) return row.error();
  if (!*row || (*row)->size() != 8) return std::optional<std::int64_t>();
  return std::optional<std::int64_t>(static_cast<std::int64_t>(read_u64(**row)));
}

Result<Ok> Store::scan_events(const std::function<bool(const OutboxEvent&)>& fn) {
  return scan(Cf::kOutbox, "", outbox_end(), [&](std::string_view key, std::string_view value) {
    if (key.size() != kOutboxKeyBytes) return true;
    return fn(OutboxEvent{read_u64(key.substr(1)), std::string(value), static_cast<std::uint8_t>(key[0])});
  });
}

Result<std::uint64_t> Store::count_events() {
  std::uint64_t n = 0;
  auto scanned = scan(Cf::kOutbox, "", outbox_end(), [&](std::string_view, std::string_view) {
    ++n;
    return true;
  });
  if (!scanned) return scanned.error();
  return n;
}

Result<std::uint64_t> Store::count_rows(Cf cf, std::uint64_t at_most) {
  std::uint64_t n = 0;
  auto scanned =
      scan(cf, "", std::string(1, '\xFF'), [&](std::string_view, std::string_view) { return ++n < at_most; });
  if (!scanned) return scanned.error();
  return n;
}

Result<Ok> Store::flush() {
  std::vector<rocksdb::ColumnFamilyHandle*> all(std::begin(handles_), std::end(handles_));
  rocksdb::Status s = db_->Flush(rocksdb::FlushOptions(), all);
  if (!s.ok()) return store_error(s);
  return Ok{};
}

Result<Ok> Store::delete_range(Cf cf, std::string_view lower, std::string_view upper) {
  if (!hinted_range_ok(cf, lower)) return range_refused();
  rocksdb::WriteOptions options;
  options.sync = fsync_;
  rocksdb::Status s = db_->DeleteRange(options, handle(cf), slice(lower), slice(upper));
  if (!s.ok()) return store_error(s);
  return Ok{};
}

std::size_t Store::expire_oldest(Cf cf, const std::function<bool(std::string_view value)>& expired,
                                 const Rewrite& rewrite_kept) {
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
    std::string last_value;
    bool last_is_ref = false;
    std::size_t run = 0;
    HistoryReader history(*this, false);  // this inbox's references
    // Whether the row at `it` expired, judged on the Message it holds: a
    // history row's without its search text, an inbox reference's from its
    // history row. A reference whose row is gone has expired with it; one
    // that cannot be read now is kept.
    auto expired_now = [&] {
      std::string_view value = view(it->value());
      if (cf == Cf::kHistory) value = decode_history(value).message;
      if (cf == Cf::kInbox) {
        auto row = history.inbox_row(seq_of(view(it->key())), value);
        if (!row) return false;
        if (!*row) {
          last_value.clear();
          return true;
        }
        value = **row;
      }
      if (!expired(value)) return false;
      if (rewrite_kept) last_value = value;
      return true;
    };
    while (it->Valid() && it->key().starts_with(prefix) && expired_now()) {
      last_expired = it->key().ToString();
      last_is_ref = cf == Cf::kInbox && decode_inbox_ref(view(it->value())).has_value();
      ++run;
      it->Next();
    }
    const bool reached_end = !it->Valid() || !it->key().starts_with(prefix);
    if (reached_end && run > 0 && rewrite_kept && !last_value.empty()) {
      // A kept reference becomes the copy it names: history retention may
      // take that row later.
      auto now = rewrite_kept(last_value);
      if (!now && last_is_ref) now = last_value;
      if (now) {
        Batch batch(*this);
        batch.put(cf, last_expired, *now);
        (void)write(batch);  // best effort, as the deletes: the next pass tries again
      }
    }
    // Everything before the first kept row goes; when every row expired,
    // the last one stays.
    const std::string stop = reached_end ? last_expired : it->key().ToString();
    const std::size_t count = reached_end ? (run > 0 ? run - 1 : 0) : run;
    // From the bare id, not `first`: the same rows (`first` is the id's
    // first row), and a start outside the memtable's insert hints (IdPrefix).
    if (count > 0 && delete_range(cf, std::string_view(prefix).substr(0, sep), stop).ok()) removed += count;
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
