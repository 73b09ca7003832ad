#pragma once
// The protocol's business side: implements net::ServiceInterface, owns the
// store and the core shards, and routes each frame through one Dispatcher to
// the command families (core/commands.h). It is also the core facade of the
// admin API: a few calls with plain value types, answered by callbacks.
//
// Frame handlers run on the connection's loop thread; work on a user's state
// is posted to the user's shard, which answers from its own thread.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "auth/jwt.h"
#include "cluster/jetstream.h"
#include "cluster/partition_log.h"
#include "cluster/trimmer.h"
#include "core/client_context.h"
#include "core/core_env.h"
#include "core/dispatcher.h"
#include "core/group_command.h"
#include "core/message_search.h"
#include "core/retention.h"
#include "core/shard.h"
#include "core/token_revocations.h"
#include "im/config.h"
#include "im/result.h"
#include "net/frames.h"
#include "net/service_interface.h"
#include "proto/im.pb.h"
#include "store/outbox.h"

namespace im::search {
class SearchIndex;
}

namespace im::core {

class Service final : public net::ServiceInterface {
 public:
  explicit Service(const Config& config);
  ~Service() override;

  // Opens the store, starts the shards and finishes every fan-out a crash
  // left pending, before any traffic. Throws std::runtime_error.
  void start();
  void stop();  // after the loops have stopped, before they are destroyed

  std::unique_ptr<net::ConnectionContext> on_open(net::Connection& conn) override;
  void on_frame(net::Connection& conn, const FrameHeader& header, std::string_view body) override;
  void on_close(net::Connection& conn) override;
  // The session's token has expired (its `exp`, set as the connection's
  // deadline at LOGIN): KICKOUT TOKEN_EXPIRED, then close.
  void on_deadline(net::Connection& conn) override;
  // Loop thread: graceful shutdown of a connection (KICKOUT SERVER_SHUTDOWN
  // with a random reconnect_after_ms, then close).
  void drain(net::Connection& conn);
  // Takes what can change live from a new, validated config: the JWT
  // secret and the per-connection rate limit. Thread safe.
  void reload(const Config& fresh);

  // ---- the admin API's facade: any thread; `done` runs on a shard
  template <class T>
  using Done = std::function<void(const Result<T>&)>;
  // A SEND on behalf of `from`, PUSHed to every session of the sender too
  // (no session sent it).
  void send_as(const std::string& from, v1::SendReq req, Done<v1::SendResp> done);
  void server_push(const std::string& uid, const std::string& topic, const std::string& payload, bool persist,
                   Done<std::pair<std::uint64_t, std::uint32_t>> done);
  void presence(const std::string& uid, std::function<void(const v1::Presence&)> done);
  // KICKOUT ADMIN to every session of the user; `done(sessions kicked)`.
  // With `revoke`, every token of the user issued until now is refused
  // from then on (durable before the kick; INTERNAL when it cannot be
  // written, and then nobody is kicked).
  void kick_user(const std::string& uid, bool revoke, Done<std::uint32_t> done);
  // A RECALL on behalf of `from` with no window (PROTOCOL 6: a moderator's).
  void recall_as(const std::string& from, v1::RecallReq req, Done<v1::SendResp> done);
  // CONV_LIST as `uid` sees it (PROTOCOL 6, 8.1).
  void conversations(const std::string& uid, v1::ConvListReq req, Done<v1::ConvListResp> done);
  // SEARCH as `uid` (PROTOCOL 8.6): checked here, run on a search thread
  // (no shard is asked), `done` called there. With `per_user_limit` (a client's, not the admin's), at most
  // SearchSlots::kPerUser of the user's at once: RATE_LIMITED over it.
  void search(const std::string& uid, v1::SearchReq req, bool per_user_limit, Done<v1::SearchResp> done);
  // One page of a user's inbox as PULL answers it (a serialized PullResp),
  // acknowledging nothing; and the user's groups (the admin's export).
  void inbox_page(const std::string& uid, std::uint64_t after_seq, std::uint32_t limit, Done<std::string> done);
  // A page of the user's groups after `after_gid` (as many as fit a frame);
  // `more`: the next page starts after this one's last gid.
  struct GroupPage {
    v1::GroupListResp list;
    bool more = false;
  };
  void groups_page(const std::string& uid, const std::string& after_gid, Done<GroupPage> done);
  // POST /v1/backup: an online checkpoint in a new folder under
  // storage.backup_dir (DISABLED when that is ""). Blocks: the admin's thread.
  struct Backup {
    std::string path;
    std::uint64_t size_bytes = 0;
    std::int64_t time_ms = 0;
  };
  Result<Backup> backup();
  // The read count of one group message (PROTOCOL 6, 8.2), without membership.
  void receipts(const std::string& gid, std::uint64_t conv_seq, Done<v1::ReceiptsResp> done);
  // Group calls with the owner's rights.
  void group_create(const std::string& owner, v1::GroupCreateReq req, Done<GroupReply> done);
  void group_get(const std::string& gid, Done<GroupReply> done);
  // ADD_MEMBERS or REMOVE_MEMBERS.
  void group_members(Cmd cmd, const std::string& gid, std::vector<std::string> uids, Done<GroupReply> done);
  void group_dismiss(const std::string& gid, Done<GroupReply> done);
  // A token for `uid` valid for `ttl_s` seconds, with `iat` (dated after
  // the user's last revocation, TokenRevocations::issue_time).
  std::string mint_token(const std::string& uid, std::int64_t ttl_s) const;
  store::Store& store() { return *store_; }
  // How the webhook worker's outbox batches become durable: empty in
  // embedded mode; in cluster mode handed to the queue's shard, whose next
  // batch takes them through its partition log (the caller does not wait).
  store::Outbox::Writer outbox_writer();

  // ---- for the command families (loop threads)
  const Config& config() const { return config_; }
  CoreEnv& env() { return *env_; }
  Shard& shard_for(std::string_view key) { return env_->shard_for(key); }
  std::size_t shard_count() const { return shards_.size(); }
  Shard& shard(std::size_t i) { return *shards_[i]; }
  std::shared_ptr<const JwtVerifier> verifier() const { return verifier_.load(); }
  const TokenRevocations& revocations() const { return revocations_; }
  // Validates and posts a group command to the group's shard.
  void run_group(std::shared_ptr<GroupCommand> cmd);
  // Any thread: sends KICKOUT to a session and closes it on its loop.
  void kick(const std::weak_ptr<net::Connection>& target, net::SharedFrame kickout);
  // Loop thread: the session is over; tells the user's shard, and the
  // watched users' shards (release_watches).
  void end_session(ClientContext& ctx);
  // Loop thread: drops every pair of the session's PRESENCE_WATCH list from
  // the watched users' shards (presence_commands.cpp).
  void release_watches(ClientContext& ctx);
  static ClientContext& context_of(net::Connection& conn) { return static_cast<ClientContext&>(*conn.context()); }

 private:
  // Cluster mode: connects to NATS, catches every partition up, fences earlier writers.
  void open_partition_logs();
  cluster::SnapshotOptions snapshot_options() const;
  std::string node_;  // cluster mode: cluster.node_name or the host name
  const Config& config_;
  std::mutex backup_mutex_;
  // What SIGHUP may change while running (Service::reload).
  std::atomic<std::shared_ptr<const JwtVerifier>> verifier_;
  std::atomic<std::uint32_t> messages_per_second_;
  std::atomic<std::uint32_t> burst_;
  std::unique_ptr<store::Store> store_;
  // Cluster mode (docs/cluster.md): the NATS connection and one log per
  // partition (= shard), caught up before anything reads the store.
  std::unique_ptr<cluster::JetStream> nats_;
  // The snapshots' own connection (trimming on): their chunks do not queue
  // ahead of the partitions' entries on one socket.
  std::unique_ptr<cluster::JetStream> snap_nats_;
  std::vector<std::unique_ptr<cluster::PartitionLog>> logs_;
  TokenRevocations revocations_;
  // The threads the shards run on (shard i on loop i mod loops_.size()),
  // and the shards.
  std::vector<std::unique_ptr<ShardLoop>> loops_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<CoreEnv> env_;
  std::unique_ptr<Retention> retention_;
  std::unique_ptr<cluster::Trimmer> trimmer_;    // cluster mode: snapshots, and the streams trimmed below them
  SearchSlots search_slots_;                     // outlives search_'s queued jobs, which hold slots
  std::unique_ptr<search::SearchIndex> search_;  // search.enabled only
  Dispatcher dispatcher_;
};

// The session is over (closed, logged out, kicked): no more requests.
void end_phase(ClientContext& ctx);

}  // namespace im::core
