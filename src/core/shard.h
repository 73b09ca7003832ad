#pragma once
// A core shard: owns a disjoint set of users (by hash of uid) and
// conversations: the users' sessions and presence, inbox sequence counters,
// device cursors, in-flight dedupe, pending offline pushes; the
// conversations' sequence counters. Every write to those inboxes and
// conversations is made here, gathered per turn of the shard's loop into one
// WriteBatch (group commit), and only after that batch is durable are
// answers sent and messages pushed.
//
// Runs on its own thread; every public method but start/stop/context runs
// only there (reach it with asio::post to context()).

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "core/core_env.h"
#include "im/protocol.h"
#include "net/connection.h"
#include "proto/im.pb.h"
#include "store/store.h"

namespace im::core {

struct SessionRef {
  std::weak_ptr<net::Connection> conn;
  std::uint64_t session_id = 0;
  std::uint8_t device_type = 0;
  std::string device_id;
};

struct PresenceInfo {
  bool online = false;
  std::vector<std::uint8_t> devices;  // device types, ascending, distinct
  std::int64_t last_seen_ms = 0;
};

// A SEND on its way: the message (ids filled in as it goes) and whom to
// answer. Shared by the shards it passes through.
struct SendJob {
  std::weak_ptr<net::Connection> conn;  // the sending session (none for admin sends)
  std::uint64_t session_id = 0;         // excluded from the sender's PUSH
  FrameHeader request;
  v1::Message msg;
  std::string conv;
  std::chrono::steady_clock::time_point started;  // for the send latency metric
  // Set instead of `conn` by callers that want the answer as a value.
  std::function<void(StatusCode, const v1::SendResp&)> on_done;
};

// A group command (GROUP_* from a client, or the admin API) on its way to
// the group's shard, and how to answer it.
struct GroupCommand {
  struct Reply {
    StatusCode status = StatusCode::kOk;
    std::string error;
    v1::GroupResp group;           // CREATE, GET, UPDATE
    v1::GroupMembersResp members;  // ADD_MEMBERS, REMOVE_MEMBERS
  };
  Cmd cmd = Cmd::kGroupGet;
  std::string actor;   // the uid acting (the owner, for the admin API)
  bool admin = false;  // the admin API: the owner's rights whoever acts
  std::string gid;
  v1::GroupCreateReq create;
  v1::GroupGetReq get;
  v1::GroupMembersReq members;
  v1::GroupUpdateReq update;
  std::function<void(Reply&)> done;  // runs on the group's shard
};

// Who asked, for answers that go back to a connection.
struct Requester {
  std::shared_ptr<net::Connection> conn;
  FrameHeader request;
};

class Shard {
 public:
  // A batch is written early once it holds this many rows, at a message
  // boundary: past a few hundred messages a batch gains no throughput
  // (BENCHMARKS.md) and only delays the first answers.
  static constexpr std::size_t kMaxBatchRows = 2048;

  Shard(unsigned index, CoreEnv& env);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  void start();
  void stop();  // thread safe; joins
  asio::io_context& context() { return context_; }
  unsigned index() const { return index_; }

  // ---- sessions and presence ----
  struct LoginState {
    std::uint64_t inbox_max_seq = 0;
    std::uint64_t acked_seq = 0;
  };
  // Registers a session; returns the one of the same device type it
  // replaces (to be kicked), if any, and fills `state`.
  std::optional<SessionRef> add_session(const std::string& uid, SessionRef session, LoginState& state);
  // Forgets a session if it is still registered; the user's last_seen
  // becomes `now_ms` when it was the last one. Its cursor is persisted.
  void remove_session(const std::string& uid, std::uint64_t session_id, std::int64_t now_ms);
  PresenceInfo presence(const std::string& uid);
  std::vector<SessionRef> sessions(const std::string& uid);

  // ---- messages ----
  // Step 1, on the sender's shard: dedupe, msg_id, then on to the
  // conversation's owner.
  void send(std::shared_ptr<SendJob> job);
  // Cumulative ACK of one device. BAD_REQUEST when beyond the inbox.
  StatusCode ack(const std::string& uid, std::uint8_t device_type, const std::string& device_id, std::uint64_t seq);
  void pull(const std::string& uid, std::uint8_t device_type, const std::string& device_id, const v1::PullReq& req,
            Requester who);
  void history(const std::string& conv, const v1::HistoryReq& req, Requester who);
  // Appends a row whose fan-out record is durable (a remote participant's
  // copy, or one found at start-up). `job` is set for the sender's copy.
  void append_pending(std::string uid, v1::Message msg, std::string fanout_key, bool is_sender,
                      std::shared_ptr<SendJob> job);
  // Writes dirty cursors now (shutdown).
  void flush_cursors();

  // ---- business integration ----
  // SERVER_PUSH to the user's online sessions, or with `persist` a SYSTEM
  // message (content_type 10002) in the inbox. `done(push_id, sessions)`
  // runs on this shard once sent (persist: once durable; 0 sessions and
  // push_id 0 when the write failed).
  void server_push(const std::string& uid, const std::string& topic, const std::string& payload, bool persist,
                   std::function<void(std::uint64_t, std::uint32_t)> done);
  // Forgets every session of the user and returns them (to be kicked).
  std::vector<SessionRef> take_sessions(const std::string& uid, std::int64_t now_ms);
  // A webhook event into the outbox; `done(ok)` once durable.
  void queue_event(std::string json_without_id, std::function<void(bool)> done);

  // ---- groups: on the group's shard (that of "g:" + gid) ----
  void group_command(std::shared_ptr<GroupCommand> cmd);
  // HISTORY of a group: current members only.
  void group_history(const std::string& uid, const std::string& gid, const v1::HistoryReq& req, Requester who);
  // On any shard: the user's groups in gid order, as many as fit a frame.
  v1::GroupListResp groups_of(const std::string& uid);
  // On a member's shard: one slice (at most kSliceRows rows from `offset`)
  // of a group message's fan-out; chains to the next slice, and tells
  // `home` when the last is durable.
  struct FanoutProgress;
  void append_group_slice(std::shared_ptr<const v1::Message> msg, std::shared_ptr<const std::vector<std::string>> uids,
                          std::size_t offset, std::shared_ptr<FanoutProgress> progress, std::shared_ptr<SendJob> job);
  // On the group's shard: a slice chain finished.
  void group_fanout_done(const std::shared_ptr<FanoutProgress>& progress);
  // At start-up, on a member's shard: the row of a group fan-out found
  // pending, unless the inbox holds that message already.
  void replay_group_row(const std::string& uid, const v1::Message& msg);

 private:
  struct DeviceCursor {
    std::uint8_t device_type = 0;
    std::string device_id;
    std::uint64_t acked = 0;
    bool dirty = false;
  };
  struct UserState {
    std::vector<SessionRef> sessions;
    std::vector<DeviceCursor> cursors;
    std::int64_t last_seen_ms = 0;
    std::uint64_t inbox_next = 0;       // last seq assigned
    std::uint64_t inbox_committed = 0;  // last seq durable (readers' bound)
    std::uint64_t max_acked = 0;        // over all devices, this process's life
    bool loaded = false;
    bool cursors_dirty = false;  // listed in dirty_cursors_
  };
  struct ConvState {
    std::uint64_t next = 0;
    std::uint64_t committed = 0;
  };
  struct GroupState {
    bool loaded = false;
    bool exists = false;
    bool dismissed = false;
    v1::Group info;
    std::map<std::string, bool> members;  // uid -> is owner; uid order for listings
  };
  struct Push {
    UserState* user;
    std::string row;  // the serialized Message, inbox_seq set
    std::uint64_t exclude_session;
  };
  struct OfflineTimer {
    std::chrono::steady_clock::time_point due;
    std::string uid;
    std::uint64_t inbox_seq;
    v1::Message msg;  // body cut to the preview
  };
  using AfterCommit = std::function<void(bool ok)>;

  UserState& user(const std::string& uid);  // loads the counters on first use
  ConvState& conversation(const std::string& conv);
  DeviceCursor& cursor(UserState& u, const std::string& uid, std::uint8_t device_type, const std::string& device_id);
  std::uint64_t next_msg_id();
  void reserve_msg_ids(std::uint64_t from_ms);

  void stage_conversation(std::shared_ptr<SendJob> job);
  GroupState& group(const std::string& gid);  // loads on first use
  // Stages a group message (a SEND or an event): history row and the
  // fan-out record in this batch; the slices start after the commit.
  void stage_group_message(v1::Message msg, std::vector<std::string> recipients, std::shared_ptr<SendJob> job);
  void stage_group_event(GroupState& g, int type, const std::string& actor, const std::vector<std::string>& uids,
                         const std::vector<std::string>& recipients);
  void stage_group_row(const GroupState& g);
  void start_group_fanout(std::string record_key, std::shared_ptr<const v1::Message> msg,
                          const std::vector<std::string>& recipients, std::shared_ptr<SendJob> job);
  void fill_group_resp(const GroupState& g, const std::string& after, std::uint32_t limit, v1::GroupResp& out);
  void group_create(GroupCommand& c, GroupCommand::Reply& r);
  void group_change(GroupCommand& c, GroupState& g, GroupCommand::Reply& r);
  // Puts one inbox row (and the sender's dedupe row) into this turn's
  // batch; after the commit the sender's copy answers the SendJob. `queued`:
  // the message is already durable elsewhere, so a failed write is retried
  // by the caller instead of failing the SEND.
  void stage_inbox(const std::string& uid, const v1::Message& msg, const std::string& fanout_key, bool is_sender,
                   std::shared_ptr<SendJob> job, bool queued);
  // On the sender's shard: answers the job and every retry that waited on it.
  void finish_send(const std::shared_ptr<SendJob>& job, StatusCode status, const v1::SendResp& resp);
  void after_commit(AfterCommit fn);
  void schedule_commit();
  void commit();
  void deliver_pushes(std::vector<Push>& pushes);
  std::vector<net::SharedFrame> push_frames(const std::vector<const Push*>& rows);
  void arm_offline_timer();
  void fire_offline_timers();
  void arm_cursor_timer();

  const unsigned index_;
  CoreEnv& env_;
  asio::io_context context_{1};
  asio::steady_timer offline_timer_{context_};
  asio::steady_timer cursor_timer_{context_};
  std::unordered_map<std::string, UserState> users_;
  std::unordered_map<std::string, ConvState> convs_;
  std::unordered_map<std::string, GroupState> groups_;
  // Users with a cursor to write (flush_cursors visits only these; entries
  // of users_ are never erased, so the pointers stay valid).
  std::vector<std::pair<const std::string*, UserState*>> dirty_cursors_;
  // (from 0x00 client_msg_id) of SENDs under way -> retries waiting on them.
  std::unordered_map<std::string, std::vector<std::shared_ptr<SendJob>>> inflight_;
  std::deque<OfflineTimer> offline_;
  bool offline_armed_ = false;
  bool cursor_timer_armed_ = false;

  // The batch being gathered this turn, and what to do once it is durable.
  store::Batch batch_;
  std::vector<AfterCommit> after_commit_;
  std::vector<UserState*> touched_users_;
  std::vector<ConvState*> touched_convs_;
  std::vector<Push> pushes_;
  std::vector<OfflineTimer> new_offline_;
  std::uint64_t staged_history_rows_ = 0;
  std::uint64_t staged_inbox_rows_ = 0;
  std::uint64_t staged_outbox_events_ = 0;
  bool commit_posted_ = false;

  // Group-commit figures, logged when the shard stops.
  std::uint64_t commits_ = 0;
  std::uint64_t committed_ops_ = 0;
  std::uint64_t largest_batch_ = 0;

  std::uint64_t msg_id_last_ms_ = 0;
  std::uint64_t msg_id_counter_ = 0;
  std::uint64_t msg_id_reserved_ms_ = 0;
  std::thread thread_;
};

std::size_t shard_of(std::string_view key, std::size_t shard_count);

// The fan-out record of a group message: the message and its recipients.
std::string encode_group_record(const v1::Message& msg, const std::vector<std::string>& recipients);
bool decode_group_record(std::string_view value, v1::Message& msg, std::vector<std::string>& recipients);
// A fresh gid for a GROUP_CREATE that leaves it empty.
std::string new_group_id();

// Appends a length-delimited field (tag, varint length, bytes) to `out`.
void append_bytes_field(std::string& out, int field, std::string_view bytes);

}  // namespace im::core
