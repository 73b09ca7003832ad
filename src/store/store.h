#pragma once
// The embedded store: one RocksDB instance with the column families of
// docs/architecture.md, shared by the shards (RocksDB is thread safe).
// rocksdb::Status never leaves src/store: failures come back as Result, and
// every read reports its iterator's status, so a read error is never taken
// for "no rows". Keys are built and parsed only here (store/keys.h).
//
// Thread safe.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "im/config.h"
#include "im/result.h"
#include "store/records.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Env;
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
  kConvs,
  kDeletes,
  kReads,
  kChanges,
};
inline constexpr std::size_t kCfCount = 14;
// The layout this build writes (`meta` "schema_version"): 1 is the layout
// before PROTOCOL 8 (no such row), 2 adds `convs`, `deletes` and `reads`,
// 3 the settings rows in `convs` (Store::open writes them for a store of
// layout 2), 4 `changes` (written from the history rows for a store of
// layout 2 or 3), 5 history rows that may carry a search text
// (records.h, encode_history; nothing to move), 6 inbox rows by reference
// (records.h, InboxRef; nothing to move). A store written by a later
// layout is refused at open.
inline constexpr std::uint64_t kSchemaVersion = 6;
// The oldest layout whose rows this build reads as they are (a cluster
// snapshot of it can be restored: nothing to move since).
inline constexpr std::uint64_t kRowsReadableFrom = 5;

class Store;

// One row of a batch as cluster mode logs it (docs/cluster.md).
enum class RowOp : std::uint8_t { kPut, kDelete, kDeleteRange, kMerge };
struct Row {
  Cf cf = Cf::kMeta;
  RowOp op = RowOp::kPut;
  std::string_view key;    // kDeleteRange: the lower bound
  std::string_view value;  // kDeleteRange: the upper bound (excluded)
};

// A set of writes applied atomically by Store::write, built with typed
// operations. Not thread safe.
class Batch {
 public:
  explicit Batch(const Store& store);
  ~Batch();
  Batch(Batch&&) noexcept;
  Batch& operator=(Batch&&) noexcept;

  void put_inbox(std::string_view uid, std::uint64_t inbox_seq, std::string_view message);
  // An inbox row naming the message's history row instead of copying it
  // (records.h, InboxRef): only for a row that outlives this one.
  void put_inbox_ref(std::string_view uid, std::uint64_t inbox_seq, std::string_view conv, std::uint64_t conv_seq);
  // With the message's search text (PROTOCOL 8.6), if it has one.
  void put_history(std::string_view conv, std::uint64_t conv_seq, std::string_view message,
                   std::string_view search_text = {});
  void put_dedupe(std::string_view uid, std::string_view client_msg_id, const DedupeRecord& record);
  void put_cursor(std::string_view uid, const CursorRecord& cursor);
  void del_cursor(std::string_view uid, std::uint8_t device_type, std::string_view device_id);
  void put_group(const GroupRecord& group);
  // The `members` row and the member's `user_groups` row, which holds the
  // conv_seq of the event that added the member (0: not known).
  void put_member(std::string_view gid, std::string_view uid, const MemberRecord& member, std::uint64_t joined_seq = 0);
  // The `members` row, the `user_groups` row and the member's public read
  // position (`reads`): a former member's position is never read again.
  void del_member(std::string_view gid, std::string_view uid);
  void put_copy(const FanoutKey& key, const CopyRecord& record);
  void put_group_fanout(const FanoutKey& key, const GroupFanoutRecord& record);
  void put_fanout_progress(const FanoutKey& key, const FanoutProgress& progress);
  // A copy record, or a group record with its progress rows.
  void del_fanout(const FanoutKey& key);
  // The event in its queue (`event.queue`).
  void put_outbox(const OutboxEvent& event);
  void del_outbox(std::uint8_t queue, std::uint64_t id);
  // When the delivery of an event first failed (ms), in `meta`.
  void put_outbox_failing(std::uint8_t queue, std::uint64_t id, std::int64_t since_ms);
  void del_outbox_failing(std::uint8_t queue, std::uint64_t id);
  void put_meta(std::string_view name, std::uint64_t value);
  void del_meta(std::string_view name);
  // In `meta`: every token of `uid` issued at or before `revoked_s` (its
  // `iat`, seconds) is refused (PROTOCOL 6, kick with "revoke").
  void put_token_revocation(std::string_view uid, std::int64_t revoked_s);
  // In `meta`: the group reads its fan-out from `large_from_seq` on
  // (PROTOCOL 9), for good; start-up reads these rows, never every group.
  void put_large_group(std::string_view gid, std::uint64_t large_from_seq);

  // PROTOCOL 8: a user's state of a conversation, and the inbox seq all
  // of that user's states reflect.
  void put_conv(std::string_view uid, std::string_view conv, const ConvRecord& record);
  void put_conv_applied(std::string_view uid, std::uint64_t inbox_seq);
  // The settings a CONV_UPDATE set, in the batch of its 10008 mark.
  void put_conv_settings(std::string_view uid, std::string_view conv, const ConvSettingsRecord& settings);
  // DELETE for one user: a hidden conv_seq, and everything up to cleared_seq.
  void put_deleted(std::string_view uid, std::string_view conv, std::uint64_t conv_seq);
  void put_cleared(std::string_view uid, std::string_view conv, std::uint64_t cleared_seq);
  // Drops the hidden conv_seqs 1..up_to (one range delete): cleared_seq
  // covers them once it reaches up_to.
  void del_deleted_upto(std::string_view uid, std::string_view conv, std::uint64_t up_to);
  // A group member's public read position (RECEIPTS): kept as the largest
  // ever merged, whatever the order of the writes.
  void merge_read(std::string_view gid, std::string_view uid, std::uint64_t conv_seq);
  // PROTOCOL 8.3: a recalled or edited message, by msg_id, so every inbox
  // copy is answered as its history row now is.
  void put_change(std::uint64_t msg_id, const ChangeRecord& change);

  std::size_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  // The batch's size in bytes (its rows, as RocksDB encodes them).
  std::size_t bytes() const;
  // A range deletion was refused: Store::write refuses the batch.
  bool refused() const { return refused_; }
  void clear();

  // Each row, in the order staged (cluster mode logs them); an error for a
  // row of a kind this build never writes.
  Result<Ok> for_each_row(const std::function<void(const Row&)>& fn) const;
  // Stages a row read back from the log.
  void add_row(const Row& row);

 private:
  friend class Store;
  void put(Cf cf, std::string_view key, std::string_view value);
  void del(Cf cf, std::string_view key);
  void del_range(Cf cf, std::string_view lower, std::string_view upper);

  const Store* store_;
  std::unique_ptr<rocksdb::WriteBatch> batch_;
  std::size_t count_ = 0;
  bool refused_ = false;  // a range deletion the memtable's insert hints cannot take: write() refuses the batch
  bool dedupe_ = false;   // holds a dedupe row
};

class Store {
 public:
  friend class Batch;
  // Opens (creating what is missing) storage.data_dir. `env` replaces
  // RocksDB's default environment (tests inject faults through it); it
  // must outlive the store.
  static Result<std::unique_ptr<Store>> open(const StorageConfig& config, rocksdb::Env* env = nullptr);
  ~Store();

  // Applies the batch atomically; it is in the WAL when this returns (and
  // fsynced when storage.fsync is true). After a failed write (a full
  // disk) RocksDB refuses every write until its own recovery sees free
  // space again (it polls every few seconds); reads keep working.
  Result<Ok> write(Batch& batch);

  // ---- typed reads; a missing row is a value (0 or nullopt), an I/O error an Error
  Result<std::uint64_t> last_inbox_seq(std::string_view uid);   // 0: empty inbox
  Result<std::uint64_t> first_inbox_seq(std::string_view uid);  // 0: empty inbox
  Result<std::uint64_t> last_history_seq(std::string_view conv);
  using RowVisitor = std::function<bool(std::uint64_t seq, std::string_view message)>;
  // Inbox rows with from <= seq < to, ascending, until `fn` returns false.
  // A row by reference comes as the Message of the history row it names,
  // with the row's inbox_seq; one whose history row is gone (retention) is
  // skipped.
  Result<Ok> scan_inbox(std::string_view uid, std::uint64_t from, std::uint64_t to, const RowVisitor& fn);
  // Inbox rows with seq < below, descending, until `fn` returns false.
  Result<Ok> scan_inbox_back(std::string_view uid, std::uint64_t below, const RowVisitor& fn);
  // History rows with from <= seq < to, ascending, until `fn` returns false.
  Result<Ok> scan_history(std::string_view conv, std::uint64_t from, std::uint64_t to, const RowVisitor& fn);
  // History rows with seq < below, descending, until `fn` returns false.
  Result<Ok> scan_history_back(std::string_view conv, std::uint64_t below, const RowVisitor& fn);
  Result<std::optional<DedupeRecord>> get_dedupe(std::string_view uid, std::string_view client_msg_id);
  // Every device cursor of a user (a bounded few: limits.devices_per_user).
  Result<Ok> scan_cursors(std::string_view uid, const std::function<bool(const CursorRecord&)>& fn);
  // One history row (a serialized Message), if it exists.
  Result<std::optional<std::string>> get_history(std::string_view conv, std::uint64_t conv_seq);
  // One history row with its search text ("" when none).
  struct HistoryRow {
    std::string message;
    std::string search_text;
  };
  Result<std::optional<HistoryRow>> get_history_row(std::string_view conv, std::uint64_t conv_seq);
  // History rows with from <= seq < to, ascending, with their search texts.
  using TextRowVisitor = std::function<bool(std::uint64_t seq, std::string_view message, std::string_view search_text)>;
  Result<Ok> scan_history_rows(std::string_view conv, std::uint64_t from, std::uint64_t to, const TextRowVisitor& fn);
  // Every conversation that has history rows, in id order, one seek each,
  // until `fn` returns false.
  Result<Ok> scan_history_convs(const std::function<bool(std::string_view conv)>& fn);
  // A user's conversation states, in conversation id order, and the inbox
  // seq they reflect (0 when none was written: an older store).
  Result<Ok> scan_convs(std::string_view uid,
                        const std::function<bool(std::string_view conv, ConvRecord&&)>& fn);
  Result<std::uint64_t> get_conv_applied(std::string_view uid);
  Result<std::optional<ConvRecord>> get_conv(std::string_view uid, std::string_view conv);
  // The settings the user last set for a conversation (none: never set).
  Result<std::optional<ConvSettingsRecord>> get_conv_settings(std::string_view uid, std::string_view conv);
  // What a user deleted for themself in a conversation: cleared_seq (0:
  // none), and the conv_seqs hidden above it with from <= seq < to,
  // ascending (descending when `reverse`) until `fn` returns false. A
  // reader asks for the range it shows, never for every row.
  Result<std::uint64_t> get_cleared(std::string_view uid, std::string_view conv);
  Result<Ok> scan_deleted(std::string_view uid, std::string_view conv, std::uint64_t from, std::uint64_t to,
                          bool reverse, const std::function<bool(std::uint64_t conv_seq)>& fn);
  // The public read positions of a group's readers, in uid order.
  Result<Ok> scan_reads(std::string_view gid, const std::function<bool(std::string_view uid, std::uint64_t)>& fn);
  // Where a recalled or edited message is (none: never changed).
  Result<std::optional<ChangeRecord>> get_change(std::uint64_t msg_id);
  // The msg_id of every change row, ascending (start-up).
  Result<Ok> scan_change_ids(const std::function<bool(std::uint64_t msg_id)>& fn);
  // Deletes the change rows of msg_ids below `msg_id` (one range delete:
  // msg_ids grow with time, so this is retention by time).
  Result<Ok> del_changes_below(std::uint64_t msg_id);
  // An online, consistent copy of the whole store in `dir` (which must not
  // exist): RocksDB's Checkpoint, hard links where `dir` is on the same
  // filesystem, copies elsewhere. Every write committed before the call is
  // in it. Returns the copy's size in bytes. Any thread.
  Result<std::uint64_t> checkpoint(const std::string& dir);
  Result<std::optional<GroupRecord>> get_group(std::string_view gid);
  // A group's members in uid order.
  Result<Ok> scan_members(std::string_view gid,
                          const std::function<bool(std::string_view uid, const MemberRecord&)>& fn);
  // The gids of a user's groups, in gid order.
  // The user's gids in order, from the first one after `after_gid` ("": from the start).
  Result<Ok> scan_user_groups(std::string_view uid, const std::function<bool(std::string_view gid)>& fn,
                              std::string_view after_gid = {});
  // Whether `uid` is a member of `gid` (its `user_groups` row): none when
  // not, else the conv_seq of the event that added it (0: not recorded).
  Result<std::optional<std::uint64_t>> in_group(std::string_view uid, std::string_view gid);
  Result<std::optional<std::uint64_t>> get_meta(std::string_view name);
  // Every token revocation (uid, revoked_s), in uid order (start-up).
  Result<Ok> scan_token_revocations(const std::function<bool(std::string_view uid, std::int64_t revoked_s)>& fn);
  // Every large group (gid, large_from_seq), in gid order (start-up).
  Result<Ok> scan_large_groups(const std::function<bool(std::string_view gid, std::uint64_t from_seq)>& fn);
  // Every shard index's msg_id reservation (ms since the id epoch), whatever
  // the shard count now.
  Result<Ok> scan_id_reservations(const std::function<bool(std::uint64_t reserved_ms)>& fn);
  // Every row of the `fanout` family (start-up recovery).
  Result<Ok> scan_fanout(const std::function<bool(const FanoutEntry&)>& fn);

  // ---- the outbox (store/outbox.h wraps these)
  // The first event of `queue` with an id >= `from`, if any. A seek: the
  // deleted events below `from` are not walked.
  Result<std::optional<OutboxEvent>> first_event(std::uint8_t queue, std::uint64_t from);
  // The events of `queue` with from <= id < to, in id order, while `fn`
  // returns true (one seek, then a walk).
  Result<Ok> scan_queue(std::uint8_t queue, std::uint64_t from, std::uint64_t to,
                        const std::function<bool(OutboxEvent&&)>& fn);
  // The highest id in `queue`, if it holds any event.
  Result<std::optional<std::uint64_t>> last_event_id(std::uint8_t queue);
  // The lowest queue >= `from` holding an event, if any (start-up: it walks
  // what was deleted before the first live event).
  Result<std::optional<std::uint8_t>> next_event_queue(unsigned from);
  Result<std::optional<std::int64_t>> outbox_failing_since(std::uint8_t queue, std::uint64_t id);
  // Every event, queue after queue, each in id order, until `fn` returns false.
  Result<Ok> scan_events(const std::function<bool(const OutboxEvent&)>& fn);
  // Events counted by reading them all (tests; see outbox_depth()).
  Result<std::uint64_t> count_events();
  // Events queued: counted at open, then kept by the two calls below, so a
  // restart finds the right count. Also the imserver_outbox_depth gauge.
  std::uint64_t outbox_depth() const { return outbox_depth_.load(std::memory_order_relaxed); }
  // Takes room for one event unless `max` are queued already: false then.
  bool reserve_outbox(std::uint64_t max);
  // Gives room back: events deleted, or reserved for a batch that failed.
  void release_outbox(std::uint64_t n);

  // ---- maintenance (generic: the retention thread)
  // For each key prefix of `cf` (one inbox or one conversation), deletes
  // the leading run of rows whose Message (a history row's without its
  // text, an inbox reference's as scan_inbox gives it) `expired` says is
  // too old, or whose referenced history row is gone, but never the
  // prefix's last row (counters are recovered from it). Returns how many
  // rows went.
  // `rewrite_kept`, when given, may replace the value of a kept last row
  // that expired (nullopt: left as it is); a kept reference is replaced by
  // the copy it names in any case.
  using Rewrite = std::function<std::optional<std::string>(std::string_view value)>;
  std::size_t expire_oldest(Cf cf, const std::function<bool(std::string_view value)>& expired,
                            const Rewrite& rewrite_kept = nullptr);
  // Syncs the write-ahead log: every write applied so far survives a power
  // loss (cluster mode's snapshots, before the streams are trimmed).
  Result<Ok> sync_wal();
  // Writes every memtable to table files (tests, and before a checkpoint).
  Result<Ok> flush();
  // Reads the webhook queue's depth again, after rows were written from
  // cluster mode's log at start (docs/cluster.md).
  Result<Ok> reload_outbox_depth() { return open_outbox(); }
  // Every row of `cf` in key order, until `fn` returns false (tools and tests).
  Result<Ok> scan_family(Cf cf, const std::function<bool(std::string_view key, std::string_view value)>& fn);
  // Every row of every family as of one moment (a RocksDB snapshot: no
  // batch half seen), family after family in key order, merge rows read
  // merged, until `fn` returns false. Writes go on meanwhile. Any thread.
  using CfVisitor = std::function<bool(Cf cf, std::string_view key, std::string_view value)>;
  Result<Ok> scan_snapshot(const CfVisitor& fn);
  // The rows of `cf`, counted up to `at_most` (tools and benches).
  Result<std::uint64_t> count_rows(Cf cf, std::uint64_t at_most);
  // RocksDB's own figures, for logs ("rocksdb.estimate-num-keys" per cf...).
  std::string stats();

 private:
  Store() = default;
  rocksdb::ColumnFamilyHandle* handle(Cf cf) const { return handles_[static_cast<std::size_t>(cf)]; }
  Result<std::optional<std::string>> get(Cf cf, std::string_view key);
  // The `meta` rows under `prefix` holding one u64, by the rest of their key.
  Result<Ok> scan_meta_u64(std::string_view prefix, std::string_view what,
                           const std::function<bool(std::string_view name, std::uint64_t value)>& fn);
  // Rows with lower <= key < upper, ascending (descending when `reverse`),
  // until `fn` returns false; an iterator error is the result.
  using Visitor = std::function<bool(std::string_view key, std::string_view value)>;
  Result<Ok> scan(Cf cf, std::string_view lower, std::string_view upper, const Visitor& fn, bool reverse = false);
  // Resolves the references of an inbox scan (store.cpp).
  class HistoryReader;
  Result<Ok> scan_inbox_rows(std::string_view lower, std::string_view upper, const RowVisitor& fn, bool reverse);
  // The last (or first) key of `prefix`, if any.
  Result<std::optional<std::string>> edge_key(Cf cf, std::string_view prefix, bool last);
  Result<Ok> delete_range(Cf cf, std::string_view lower, std::string_view upper);
  // At open: moves the events of the bare-id key format to queue 0, and
  // counts the events (outbox_depth_).
  Result<Ok> open_outbox();
  // At open: refuses a store of a later layout, records this one's.
  Result<Ok> check_schema();
  // Layout 2 to 3: a settings row for every conversation state with a setting.
  // Scans all of `cf`, `derive` adding rows to a batch for some; written
  // 1024 rows at a time (a migration at open). Returns the rows written.
  using Deriver = std::function<void(std::string_view key, std::string_view value, Batch& batch)>;
  Result<std::uint64_t> derive_rows(Cf cf, const Deriver& derive);
  Result<Ok> add_settings_rows();
  // Layout 2 or 3 to 4: a `changes` row for every history row that is a
  // recall's tombstone or an edited message.
  Result<Ok> add_change_rows();

  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* handles_[kCfCount] = {};
  // The family of a RocksDB column family id (ids differ between data dirs).
  std::optional<Cf> cf_of(std::uint32_t column_family_id) const;
  bool fsync_ = false;
  std::atomic<bool> write_failed_{false};
  std::atomic<std::uint64_t> outbox_depth_{0};
  // The dedupe family may hold a row (it did at open, or one was written
  // since): until then a lookup is answered without reading (most SENDs'
  // records are their inbox rows, core/recent_sends.h).
  std::atomic<bool> dedupe_rows_{false};
};

}  // namespace im::store
