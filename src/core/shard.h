#pragma once
// A core shard: the state of the users whose uid hashes here (sessions and presence, inbox counters, device cursors),
// plus the conversations and groups that hash here. Every write to those inboxes, conversations and groups is made on
// this thread, gathered per turn into one batch (GroupCommit); answers and pushes go out only once it is durable. The
// concepts it uses each live in their own file: MsgIdClock, SendDedupe, ConvCounters, GroupCache and group_rules,
// fanout_plan, OfflinePushes, wire, outbox_events.
//
// Runs on a ShardLoop's thread (its own in embedded mode; shared with other
// partitions in cluster mode); every public method but start, request_stop
// and context runs only there (reach it with asio::post to context()). Failures come back as
// Result values; a read error is never taken for "no data".

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "common/clock.h"
#include "core/conv_book.h"
#include "core/conv_counters.h"
#include "core/core_env.h"
#include "core/group_cache.h"
#include "core/group_command.h"
#include "core/group_commit.h"
#include "core/lru_map.h"
#include "core/msg_id_clock.h"
#include "core/offline_pushes.h"
#include "core/presence_watch.h"
#include "core/recent_sends.h"
#include "core/send_dedupe.h"
#include "core/send_job.h"
#include "core/session_list.h"
#include "core/shard_loop.h"
#include "core/small_map.h"
#include "core/typing.h"
#include "im/result.h"
#include "net/connection.h"
#include "proto/im.pb.h"
#include "store/records.h"

namespace im::core {

// Start-up recovery's tally: how many replays are still running and how
// many failed. Thread safe.
struct RecoveryTally;
// One chain of a group fan-out on its way through the shards.
struct FanoutChain;

class Shard {
 public:
  // On `loop`, which outlives the shard, and is stopped before the shard
  // is destroyed.
  Shard(unsigned index, CoreEnv& env, ShardLoop& loop);
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // Reads what the shard needs before serving (the msg_id reservation);
  // throws std::runtime_error when that fails. Before its loop starts.
  void start();
  // Asks the shard to write what is pending (its cursors) in its loop's
  // last round, and returns (any thread, any number of times). Then
  // ShardLoop::stop() writes that round and ends the loop; so the shards
  // of every loop stop side by side: request_stop() on each shard, then
  // request_stop() and stop() on each loop.
  void request_stop();
  asio::io_context& context() { return loop_.context(); }
  // The answer to a request whose rows were not written: UNAVAILABLE (with
  // its retry_after_ms) when a partition log refused them, else INTERNAL.
  Error not_written(std::string_view what) const;
  // The shard's partition log in cluster mode (docs/cluster.md), else null.
  cluster::PartitionLog* log() const { return index_ < env_.logs.size() ? env_.logs[index_] : nullptr; }
  unsigned index() const { return index_; }

  // ---- sessions and presence
  struct LoginState {
    std::uint64_t inbox_max_seq = 0;
    std::uint64_t acked_seq = 0;
    std::optional<SessionRef> replaced;  // the session of the same device type, to be kicked
  };
  // The session's device (`device_type`, `device_id`) gets a cursor, which
  // remembers the session.
  Result<LoginState> add_session(const std::string& uid, SessionRef session, const std::string& device_id);
  // Forgets a session if it is still registered; the user's last_seen
  // becomes `now_ms` when it was the last one. Its cursor is written.
  void remove_session(const std::string& uid, std::uint64_t session_id, std::int64_t now_ms);
  // Forgets every session of the user and returns them (to be kicked).
  std::vector<SessionRef> take_sessions(const std::string& uid, std::int64_t now_ms);
  // `online`, `devices` and `last_seen_ms` of `p.uid()`.
  void fill_presence(v1::Presence& p) const;

  // ---- inbox and history reads
  // Cumulative ACK of the session's device; BAD_REQUEST beyond the inbox.
  // Once the device has logged in again (a new session on the same
  // device), or its cursor was forgotten or read again from the store, an
  // ACK of the old session still on its way moves nothing: PROTOCOL 5 lets
  // `acked_seq` lag by lost ACKs.
  Result<Ok> ack(const std::string& uid, std::uint64_t session_id, std::uint64_t seq);
  // The PullResp body (also acknowledges `after_seq` for the session's
  // device, as ack does).
  Result<std::string> pull(const std::string& uid, std::uint64_t session_id, const v1::PullReq& req);
  // A PullResp (serialized) of `uid`'s inbox after `req.after_seq()`, as
  // PULL answers it, without acknowledging anything (the admin's export).
  Result<std::string> inbox_page(const std::string& uid, const v1::PullReq& req);

 private:
  Result<std::string> inbox_page(const std::string& uid, std::uint64_t committed, const v1::PullReq& req);

 public:
  // The HistoryResp body of a conversation owned here as `uid` sees it
  // (without what it deleted for itself); a group's needs `uid` to be a
  // current member. `after_seq` pages forward, else `before_seq` back.
  Result<std::string> history(const std::string& uid, const std::string& conv, const v1::HistoryReq& req);
  Result<std::string> group_history(const std::string& uid, const std::string& gid, const v1::HistoryReq& req);

  // ---- the send path (docs/architecture.md, "A SEND")
  // Adds `rows` to this turn's batch (another thread's writes that must go
  // through this shard's partition log); a failed batch is tried again
  // every 200 ms, `tries` times in all. `done` (may be empty) after
  // the last try, with whether the rows were written.
  static constexpr int kStageRowsTries = 50;
  void stage_rows(std::shared_ptr<const store::Batch> rows, std::function<void(bool)> done,
                  int tries = kStageRowsTries);
  // On the sender's shard: dedupe, msg_id, then on to the conversation's owner.
  void send(std::shared_ptr<SendJob> job);
  // On the sender's shard: answers the job and every retry that waited on it.
  void finish_send(const std::shared_ptr<SendJob>& job, const Result<v1::SendResp>& result);
  // On a participant's shard: writes a C2C copy whose record is durable, and
  // deletes the record in the same batch. `tally` is set at start-up (no
  // retries then: a failure is counted and the record kept). `job`, when
  // set, is answered once the copy is written: with the copy's inbox_seq
  // when it is the sender's copy, else with `resp`, the answer the
  // sender's copy (written by the conversation's owner) gave (PROTOCOL 3:
  // OK means the message is in every participant's inbox).
  void append_copy(store::FanoutKey key, store::CopyRecord record, std::shared_ptr<SendJob> job,
                   std::shared_ptr<RecoveryTally> tally, std::optional<v1::SendResp> resp = std::nullopt);
  // Writes the next slice of a group fan-out chain from `offset`.
  void append_group_slice(std::shared_ptr<FanoutChain> chain, std::size_t offset);
  // Start-up, for a fan-out record written before progress rows existed:
  // the row unless `uid`'s inbox holds that msg_id already.
  void replay_checked_row(std::string uid, v1::Message msg, std::shared_ptr<RecoveryTally> tally);

  // ---- groups, on the group's shard
  void group_command(std::shared_ptr<GroupCommand> cmd);
  // On the user's shard: the user's groups in gid order after `after_gid`,
  // as many as fit a frame; `more` is set when some were left for the next page.
  Result<v1::GroupListResp> groups_of(const std::string& uid, const std::string& after_gid = {}, bool* more = nullptr);

  // ---- business integration
  // SERVER_PUSH to the user's online sessions, or with `persist` a SYSTEM
  // message (content_type 10002) in the inbox. `done` gets (push_id,
  // sessions reached) once sent (persist: once durable).
  using PushDone = std::function<void(const Result<std::pair<std::uint64_t, std::uint32_t>>&)>;
  void server_push(const std::string& uid, const std::string& topic, const std::string& payload, bool persist,
                   PushDone done);
  // A `report` webhook event into the outbox; `done` once durable.
  void queue_report(const std::string& uid, std::uint8_t device_type, const v1::ReportReq& report,
                    std::function<void(const Result<Ok>&)> done);
  // Writes dirty cursors (and conversation states) in the next batch.
  void flush_cursors();

  // ---- conversations (PROTOCOL 8.1-8.3), on the user's shard (shard_convs.cpp)
  // `session_id` is the asking session (0: the admin API), left out of the
  // PUSH of the mark its request writes.
  Result<v1::ConvListResp> conv_list(const std::string& uid, const v1::ConvListReq& req);
  void conv_read(const std::string& uid, const v1::ConvReadReq& req, std::uint64_t session_id,
                 std::function<void(const Result<v1::ConvReadResp>&)> done);
  void conv_update(const std::string& uid, const v1::ConvUpdateReq& req, std::uint64_t session_id,
                   std::function<void(const Result<v1::ConvUpdateResp>&)> done);
  void delete_for_me(const std::string& uid, const v1::DeleteReq& req, std::uint64_t session_id,
                     std::function<void(const Result<v1::DeleteResp>&)> done);
  // On the group's shard: a member's public read position moves (to at
  // least `conv_seq`); `done` once durable.
  void record_group_read(const std::string& gid, const std::string& uid, std::uint64_t conv_seq,
                         std::function<void(bool ok)> done);
  // On the group's shard: NOT_FOUND / FORBIDDEN unless `uid` is a member.
  Result<Ok> check_member(const std::string& uid, const std::string& gid);
  // On the group's shard: RECEIPTS (PROTOCOL 8.2); `uid` empty for the admin API.
  Result<v1::ReceiptsResp> receipts(const std::string& uid, const v1::ReceiptsReq& req);
  // ---- typing and presence watch (shard_live.cpp): in memory only
  // TYPING into a group, on the group's shard: NOT_FOUND, FORBIDDEN,
  // DISABLED (more members than limits.typing_max_members), or on to the
  // typer's shard with the members.
  void group_typing(std::shared_ptr<TypingJob> job);
  // TYPING on the typer's shard: the throttle, then one TypingPush posted
  // with per-shard uid lists to the recipients' shards.
  void typing(std::shared_ptr<TypingJob> job);
  // On a recipient's shard: `frame` to every online session of `uids`.
  void deliver_typing(const std::vector<std::string>& uids, const net::SharedFrame& frame);
  // PRESENCE_WATCH on the shard of the uids it names: drops the session's
  // pairs of `remove`, then adds a pair, muted by `request`, for the uid of
  // each presence of `resp` listed in `slots`, and fills that presence in
  // (each shard its own slots).
  void watch(const Watcher& session, std::uint32_t request, const std::vector<std::string>& remove,
             v1::PresenceResp& resp, const std::vector<int>& slots);
  // The answer to `request` has been sent: the session's pairs of `uids` get
  // pushes again.
  void activate_watches(std::uint64_t session_id, std::uint32_t request, const std::vector<std::string>& uids);
  // Drops the session's pairs of `uids` (the session ended).
  void unwatch(std::uint64_t session_id, const std::vector<std::string>& uids);

  // ---- large groups (PROTOCOL 9, shard_large.cpp)
  struct LargePush;
  // On every shard: a large group's PUSH to the sessions of its online
  // members indexed here, but the sending session and the named users.
  void deliver_large(const LargePush& push);
  // On the members' shard: `uids` joined (or left) the large group `gid`;
  // those online are indexed (or no longer).
  void large_members_changed(const std::string& gid, const std::vector<std::string>& uids, bool joined);
  // On every shard: the large group was dismissed.
  void large_group_dropped(const std::string& gid);

 private:
  // A write that failed while its data is safe elsewhere (a durable record,
  // the caller's copy) runs `again` on this shard after 200 ms.
  void retry_later(std::function<void()> again);
  // One device's cumulative ACK. A user keeps at most
  // limits.devices_per_user of them; a new device beyond that forgets
  // (and deletes) the one used least recently.
  struct DeviceCursor {
    std::uint64_t acked = 0;
    std::int64_t used_ms = 0;  // last LOGIN, ACK or PULL of the device
    // The session that last logged in on the device (0: none since the
    // cursor was made or loaded). ACK and PULL find the cursor by it, so an
    // ACK still on its way from a session that was kicked, or replaced by
    // another device, moves its own device's cursor. The device has a live
    // session while that session is in UserState::sessions.
    std::uint64_t session_id : kSessionIdBits = 0;
    bool dirty : 1 = false;   // to be written
    bool stored : 1 = false;  // a row exists
  };
  static_assert(sizeof(void*) != 8 || sizeof(DeviceCursor) == 24);
  // A user's state. Kept in `users_` (bounded, least recently used first
  // to go) while the user has a session or work in flight; an idle one is
  // dropped and read again from RocksDB on its next use.
  struct UserState {
    SessionList sessions;
    // Keyed by the device type byte and the device_id; loaded whole on the
    // first use of any of them.
    SmallMap<DeviceCursor> cursors;
    std::uint64_t inbox_next = 0;       // last seq assigned
    std::uint64_t inbox_committed = 0;  // last seq durable (readers' bound)
    std::uint32_t offline_pending = 0;  // offline_push timers running for it
    bool cursors_loaded = false;
    bool cursors_dirty = false;  // listed in dirty_cursors_
    bool book_listed = false;    // listed in dirty_books_
    // The user's conversations, loaded on first need (shard_convs.cpp);
    // kept up to date with every committed inbox row while loaded.
    std::unique_ptr<ConvBook> book;
  };
  // An inbox row of the current batch, pushed once it is durable.
  struct Push {
    UserState* user;
    std::string row;  // the serialized Message, inbox_seq set
    // The SEND whose sender's copy this row is (null for every other row):
    // its session is left out of the PUSH only while the SendResp that
    // carries this inbox_seq is still to come (deliver_pushes).
    std::shared_ptr<const SendJob> sender_job;
  };
  struct GroupFanout;  // the progress of one group message's chains
  // An inbox row of the current batch for a user whose book is loaded,
  // applied to it once the batch is durable.
  struct BookRow {
    UserState* user;
    const std::string* uid;
    ConvBook::Row row;
  };

  // Loads the inbox counter on first use; a read error caches nothing.
  Result<UserState*> user(const std::string& uid);
  // The device's cursor, marked as used now; a new device may evict the
  // least recently used one.
  Result<DeviceCursor*> cursor(UserState& u, const std::string& uid, std::uint8_t device_type,
                               const std::string& device_id);
  Result<Ok> load_cursors(UserState& u, const std::string& uid);
  void forget_cursor(UserState& u, const std::string& uid, const std::string& key);
  // Forgets the least recently used cursors until `room` more fit under
  // limits.devices_per_user, sparing `keep` and devices with a session.
  void evict_cursors(UserState& u, const std::string& uid, const std::string& keep, std::size_t room);
  void mark_cursor(const std::string& uid, UserState& u, DeviceCursor& c, std::uint64_t seq);
  // The cursor of the device the session logged in on, marked as used
  // now; null when the device has logged in again since (or for 0).
  DeviceCursor* session_cursor(UserState& u, std::uint64_t session_id);
  void mark_dirty(const std::string& uid, UserState& u);
  // The highest ACK over the user's cursors (0 before they are loaded).
  static std::uint64_t max_acked(const UserState& u);
  // Drops idle users, conversations and groups beyond the caches' capacity;
  // only between batches (nothing staged holds a pointer then).
  void trim_caches();
  void schedule_trim();

  // ---- RECALL and EDIT (shard_changes.cpp)
  // What a RECALL or EDIT writes besides its event: the target as it
  // becomes, its `changes` row, and for a recall the target's edit events
  // with their bodies emptied.
  struct ChangePlan {
    v1::Message target;
    store::ChangeRecord record;
    std::vector<v1::Message> emptied_edits;
  };
  // On the conversation's owner: the target's checks (PROTOCOL 8.3); fills
  // the event's body and reads what the change rewrites.
  Result<ChangePlan> check_change(SendJob& job, const GroupState* group);
  // The conv_seqs of the target's edit events, from the history after it.
  Result<std::vector<std::uint64_t>> edit_seqs_of(const std::string& conv, const v1::Message& target);
  // A second change of a target rewritten in the current batch writes the
  // batch first (the history row read must be the latest).
  void settle_target(const SendJob& job);
  // The plan's rows into the current batch; `event_seq` is the event's
  // conv_seq (an edit's is recorded).
  void stage_target(const SendJob& job, ChangePlan& plan, std::uint64_t event_seq);

  // Stages one inbox row of `msg` for `uid` (the sender's is its SEND's dedupe record)
  // and its push; returns the row's inbox_seq. `history_conv` names the
  // conversation whose history row at msg.conv_seq() holds `msg` (empty:
  // none), so the row can be a reference to it (store/records.h, InboxRef).
  Result<std::uint64_t> stage_inbox(const std::string& uid, const v1::Message& msg, std::string_view history_conv,
                                    bool is_sender, std::shared_ptr<const SendJob> sender_job);
  // On the conversation's owner: conv_seq, history row, the copies.
  void stage_conversation(std::shared_ptr<SendJob> job);
  void stage_c2c(const std::shared_ptr<SendJob>& job);
  // A group message (a SEND or an event): history row and fan-out record
  // in this batch; the chains start after the commit.
  // Returns the message's conv_seq.
  Result<std::uint64_t> stage_group_message(v1::Message msg, std::vector<std::string> recipients,
                                            std::shared_ptr<SendJob> job);
  Result<Ok> stage_group_events(const GroupPlan& plan);
  // A group message's conv_seq and history row, and for a SEND (`job`) the
  // search text and the sender's public read position in a group of at
  // most limits.receipts_max_members `members`.
  Result<Ok> stage_group_history(v1::Message& msg, const SendJob* job, std::size_t members);
  // What a sent message's history row keeps as its search text (PROTOCOL
  // 8.6): the sender's, while search is on; events have none.
  std::string_view search_text_of(const SendJob& job, const v1::Message& m) const;
  // Whether the search index has something to read in a history row: a
  // text (its own, or a listed content type's body) or a recall or edit.
  bool searchable(const v1::Message& m, std::string_view search_text) const;
  // A message of a large group (PROTOCOL 9), on its shard: the history row
  // (and a SEND's dedupe row) in this batch; once durable the sender's
  // answer (inbox_seq 0), inbox rows for `named` (the users an event adds
  // or removes) and one PUSH to every other online member. Returns the
  // conv_seq.
  Result<std::uint64_t> stage_large_message(v1::Message msg, std::vector<std::string> named,
                                            std::shared_ptr<SendJob> job, std::size_t members);
  void push_large(const v1::Message& msg, std::uint64_t except_session, std::vector<std::string> named);
  // Posts `uids` joining (or leaving) large group `gid` to their shards.
  void index_large_members(const std::string& gid, std::vector<std::string> uids, bool joined);
  // A user's first session: which of its groups are large; the last one ends.
  void index_large_groups(const std::string& uid);
  void unindex_large_groups(const std::string& uid);
  void unindex_large(const std::string& uid, const std::string& gid);
  // The inbox rows a plan causes, FANOUT_CHANGED's included.
  std::uint64_t rows_of(const GroupState* g, const GroupPlan& plan, const std::vector<EventSlice>& slices) const;
  // A large group's state as CONV_LIST shows it: the book's, with the
  // newest message, read position and unread conv_seqs taken from the
  // history above the read position (up to the event that removed a former
  // member), read incrementally from one listing to the next. None for any
  // other conversation.
  // `budget`: the history rows the caller may still read (CONV_LIST's,
  // shared by its entries); an entry that runs out is counted so far and
  // goes on from there at the next listing.
  Result<std::optional<store::ConvRecord>> large_view(UserState& u, const std::string& uid, const std::string& conv,
                                                      const store::ConvRecord& r, std::uint64_t* budget = nullptr);
  void start_group_fanout(store::FanoutKey key, std::shared_ptr<const v1::Message> msg,
                          const std::vector<std::string>& recipients, std::shared_ptr<SendJob> job);
  void chain_done(const std::shared_ptr<GroupFanout>& fanout);
  // Applies a plan to the group, its rows and events; nothing when it fails.
  Result<Ok> apply_group_plan(GroupState* g, const GroupPlan& plan, const std::vector<EventSlice>& slices);
  Result<GroupReply> run_group_command(GroupCommand& c);
  // Answers `job` on the sender's shard, from any shard.
  void answer_on_sender(const std::shared_ptr<SendJob>& job, const Result<v1::SendResp>& result);
  // Charges `rows` inbox rows to `uid` (limits.fanout_rows_per_second),
  // before anything is staged: RATE_LIMITED with retry_after_ms when over.
  Result<Ok> charge_rows(const std::string& uid, std::uint64_t rows);
  // The answer of an earlier SEND with the same client_msg_id, if any.
  Result<std::optional<v1::SendResp>> dedupe_hit(const SendJob& job);
  // A SEND past SendDedupe: it waits for its sender's window, or goes on.
  void send_admitted(std::shared_ptr<SendJob> job);
  // Its sender's window in memory: looked up, charged, staged.
  void store_send(std::shared_ptr<SendJob> job);
  // The sender's SENDs of the dedupe window are read back from its inbox
  // into recent_ before its first SEND since the start (or since it was
  // forgotten) is looked up. Rows come newest first, about in the order of
  // time (a copy written through another shard, or retried, may land after
  // newer ones), a slice a turn (kRebuildSlice rows), so that an inbox
  // others filled holds no shard for seconds; the read stops after kOldRun
  // rows in a row older than the window. Only rows of earlier runs are
  // taken: those of this one have their record already (an entry, or a
  // dedupe row in their own batch), and the sender's SENDs, which would add
  // some, wait in `waiting` until it ends.
  struct Rebuild {
    std::int64_t since_ms = 0;                // the window's start
    std::int64_t covered_ms = 0;              // rows from here on are this run's
    std::uint64_t below = ~std::uint64_t{0};  // the next slice reads seqs under this
    int old_run = 0;
    std::vector<std::shared_ptr<SendJob>> waiting;  // the sender's SENDs, in order
  };
  bool needs_rebuild(const std::string& uid);
  void wait_for_rebuild(std::shared_ptr<SendJob> job);
  void rebuild_step(const std::string& uid);
  // One slice; true once the window is read.
  Result<bool> rebuild_slice(const std::string& uid, Rebuild& r);
  // The sender's own inbox row at inbox_seq (nullopt: none, or not its own).
  Result<std::optional<v1::Message>> sender_row(const std::string& uid, std::uint64_t inbox_seq);

  // A user's state of one conversation: the user, the loaded book, and the
  // conversation's entry (null when the user has none).
  struct ConvAt {
    UserState* user;
    ConvBook* book;
    const ConvBook::Entry* entry;
  };
  Result<ConvAt> conv_at(const std::string& uid, const std::string& conv);
  // The same, NOT_FOUND unless the user has that conversation (CONV_UPDATE,
  // DELETE).
  Result<ConvAt> existing_conv(const std::string& uid, const std::string& conv);
  // The user's book, loaded (and brought up to the committed inbox) on first use.
  Result<ConvBook*> book(const std::string& uid, UserState& u);
  void mark_book_dirty(const std::string& uid, UserState& u);
  void flush_books();
  // Stages a 10006/10007/10008 mark into `uid`'s own inbox; the session
  // `session_id` gets no PUSH of it. Returns its inbox_seq.
  Result<std::uint64_t> stage_mark(const std::string& uid, std::uint32_t content_type, std::string body,
                                   std::uint64_t session_id);
  // The Conversation of one book entry as `uid` sees it (last_message read
  // from the history, skipping what the user deleted).
  Result<v1::Conversation> conversation_of(const std::string& uid, const std::string& conv,
                                           const store::ConvRecord& r);

  void on_written(bool ok);
  void deliver_pushes(std::vector<Push>& pushes);
  void fire_offline(std::vector<OfflinePushes::Entry>& due);
  void arm_cursor_timer();
  void arm_overdue_timer();
  std::size_t frame_budget() const;
  // The largest stored row that fits any answer (group events are cut to it).
  std::size_t max_row_bytes() const;

  const unsigned index_;
  CoreEnv& env_;
  ShardLoop& loop_;
  std::optional<MsgIdClock> clock_;
  GroupCommit commit_;
  ConvCounters convs_;
  GroupCache groups_;
  SendDedupe dedupe_;
  RecentSends recent_;
  std::unordered_map<std::string, std::unique_ptr<Rebuild>> rebuilds_;  // senders whose window is being read
  OfflinePushes offline_;
  asio::steady_timer cursor_timer_{loop_.context()};
  asio::steady_timer overdue_timer_{loop_.context()};
  bool cursor_timer_armed_ = false;
  bool overdue_timer_armed_ = false;
  LruMap<UserState> users_;
  // When each user that has had a session here last had one (PRESENCE's
  // last_seen_ms); kept apart from users_ so it outlives a dropped entry.
  std::unordered_map<std::string, std::int64_t> last_seen_;
  // Large groups (shard_large.cpp): gid -> the online users of this shard
  // among its members (a user with a session is never dropped from users_,
  // so the pointers stay valid while indexed), and each such user's gids.
  std::unordered_map<std::string, std::unordered_map<std::string, UserState*>> large_online_;
  std::unordered_map<std::string, std::vector<std::string>> large_of_;
  // Users with a cursor to write (flush_cursors visits only these; such a
  // user is never dropped from users_, so the pointers stay valid).
  std::vector<std::pair<const std::string*, UserState*>> dirty_cursors_;
  // Users whose book has states to write (as dirty_cursors_).
  std::vector<std::pair<const std::string*, UserState*>> dirty_books_;
  bool trim_posted_ = false;
  // Whether a batch of this run wrote `meta` "inbox_refs" with its first
  // inbox reference (or one such batch is being written).
  bool refs_recorded_ = false;
  // Set while a caller holds a UserState* across a commit it forces (a
  // book's load): the commit's idle hook must not drop that user.
  bool hold_users_ = false;

  // What the current batch holds beyond its rows.
  std::vector<UserState*> touched_users_;
  std::vector<Push> pushes_;
  std::vector<BookRow> book_rows_;
  // The sender's rows of the batch, for recent_ once durable.
  struct NewSend {
    const std::string* uid;  // the key in users_ (a touched user stays)
    std::uint64_t hash;      // of the client_msg_id
    std::uint64_t inbox_seq;
    std::int64_t time_ms;
  };
  std::vector<NewSend> new_sends_;
  // Their hashes, each mixed with its sender's key address: a second id of
  // one sender with a hash of the batch gets a dedupe row in the same batch.
  std::unordered_set<std::uint64_t> new_send_hashes_;
  // History rows of targets rewritten in the current batch ("conv\0seq"):
  // a second change of one waits for the batch.
  std::unordered_set<std::string> rewritten_in_batch_;
  std::vector<OfflinePushes::Entry> new_offline_;

  // Typing and presence watch (shard_live.cpp).
  // A session came or went: the user's online state or device set changed.
  void presence_changed(const std::string& uid);
  void push_presence(const std::string& uid, const std::vector<const Watcher*>& to);
  TypingThrottle typing_;
  PresenceWatch watches_;

  std::atomic<bool> stop_requested_{false};
};

}  // namespace im::core
