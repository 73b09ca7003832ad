#include "core/service.h"

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <stdexcept>

#include <fmt/chrono.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <asio/post.hpp>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/private_dir.h"
#include "core/commands.h"
#include "core/fanout_plan.h"
#include "core/fanout_recovery.h"
#include "core/ids.h"
#include "core/message_search.h"
#include "core/msg_id_clock.h"
#include "core/requests.h"
#include "core/wire.h"
#include "net/connection.h"
#include "net/io_loop.h"
#include "search/search_index.h"
#include "store/conv_id.h"
#include "store/keys.h"

namespace im::core {

using net::Connection;

void end_phase(ClientContext& ctx) {
  if (ctx.phase == ClientContext::Phase::kLoggedIn) metrics::get().sessions.add(-1);
  ctx.phase = ClientContext::Phase::kEnded;
}

Service::Service(const Config& config)
    : config_(config),
      verifier_(std::make_shared<const JwtVerifier>(config.auth.jwt_secret)),
      messages_per_second_(config.limits.messages_per_second),
      burst_(config.limits.burst) {
  register_session_commands(dispatcher_, *this);
  register_message_commands(dispatcher_, *this);
  register_group_commands(dispatcher_, *this);
  register_presence_commands(dispatcher_, *this);
  register_report_commands(dispatcher_, *this);
  register_conv_commands(dispatcher_, *this);
  register_typing_commands(dispatcher_, *this);
}

Service::~Service() {
  stop();
}

void Service::start() {
  auto opened = store::Store::open(config_.storage);
  if (!opened) throw std::runtime_error("storage: " + opened.error().message);
  store_ = std::move(opened.value());
  if (config_.cluster.mode == "jetstream") {
    open_partition_logs();
    if (auto reloaded = store_->reload_outbox_depth(); !reloaded)
      throw std::runtime_error("storage: " + reloaded.error().message);
  }
  if (auto loaded = revocations_.load(*store_); !loaded)
    throw std::runtime_error("storage: cannot read the token revocations: " + loaded.error().message);
  if (revocations_.size() > 0) spdlog::info("{} users have revoked tokens", revocations_.size());
  env_.reset(new CoreEnv{config_, *store_, shards_});
  for (auto& log : logs_) env_->logs.push_back(log.get());
  if (auto loaded = env_->changes.load(); !loaded)
    throw std::runtime_error("storage: cannot read the changed messages: " + loaded.error().message);
  if (env_->changes.added() > 0) spdlog::info("{} recalled or edited messages", env_->changes.added());
  if (auto loaded = env_->large.load(*store_); !loaded)
    throw std::runtime_error("storage: cannot read the large groups: " + loaded.error().message);
  if (env_->large.size() > 0) spdlog::info("{} large groups (read fan-out)", env_->large.size());
  // Read before any shard opens its clock (which reserves anew).
  auto earlier = MsgIdClock::earlier_runs_below_ms(*store_);
  if (!earlier) throw std::runtime_error("storage: cannot read the msg_id reservations: " + earlier.error().message);
  env_->earlier_runs_below_ms = *earlier;
  const unsigned n = im::shard_count(config_);
  const unsigned threads = im::shard_thread_count(config_);
  spdlog::info("{} core shards on {} threads{}", n, threads,
               !logs_.empty()                 ? " (cluster mode: one shard per partition)"
               : config_.sharding.shards == 0 ? " (sharding.shards = 0: half the cores)"
                                              : "");
  for (unsigned t = 0; t < threads; ++t)
    loops_.push_back(std::make_unique<ShardLoop>(t, config_.server.batch_scheduling));
  for (unsigned i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>(i, *env_, *loops_[i % threads]));
  if (config_.search.enabled) {
    // Before the shards start: each batch they write is handed to the index.
    search_ = std::make_unique<search::SearchIndex>(
        config_, *store_, n, [n](std::string_view conv) { return static_cast<unsigned>(conv_owner_index(conv, n)); });
    env_->search = search_.get();
  }
  if (config_.storage.dedupe_memory_entries > 0 &&
      std::uint64_t{config_.storage.dedupe_window_s} > std::uint64_t{config_.storage.inbox_retention_days} * 86400)
    spdlog::warn(
        "storage.dedupe_window_s outlasts storage.inbox_retention_days: every SEND writes a dedupe row (the memory "
        "window's records are inbox rows)");
  for (auto& s : shards_) s->start();
  for (auto& l : loops_) l->start();
  recover_fanouts(*env_);
  if (search_) {
    if (auto started = search_->start(); !started) throw std::runtime_error(started.error().message);
  }
  retention_ = std::make_unique<Retention>(config_.storage, *store_, env_->changes);
  if (!logs_.empty()) {
    std::vector<const cluster::PartitionLog*> logs;
    for (auto& log : logs_) logs.push_back(log.get());
    trimmer_ = std::make_unique<cluster::Trimmer>(snap_nats_ ? *snap_nats_ : *nats_, *store_, std::move(logs),
                                                  snapshot_options(), config_.cluster.trim_at_percent,
                                                  std::chrono::seconds(config_.cluster.trim_check_s));
  }
}

cluster::SnapshotOptions Service::snapshot_options() const {
  const auto& c = config_.cluster;
  cluster::SnapshotOptions o;
  o.spec = cluster::snapshot_spec(c.stream_prefix);
  o.spec.stream.replicas = static_cast<int>(c.replicas);
  o.spec.stream.max_bytes = static_cast<std::int64_t>(c.snapshot_max_bytes);
  o.node = node_;
  // A chunk and its one row past the limit stay within the servers'
  // max_payload, which start-up checked against the largest batch.
  o.chunk_bytes = std::clamp<std::size_t>(static_cast<std::size_t>(std::max<std::int64_t>(0, nats_->max_payload())) / 2,
                                          64u << 10, 4u << 20);
  o.publish_wait = std::chrono::milliseconds(c.publish_timeout_ms);
  o.retry_for = std::chrono::milliseconds(c.unanswered_stop_ms);
  return o;
}

void Service::open_partition_logs() {
  const auto& c = config_.cluster;
  cluster::JetStream::Options options;
  options.urls = c.nats_urls;
  std::string node = c.node_name;
  if (node.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0 || !*host)
      throw std::runtime_error("cluster: no host name; set cluster.node_name");
    node = host;
  }
  node_ = node;
  options.name = "imserver " + node;
  auto connected = cluster::JetStream::connect(options);
  if (!connected) throw std::runtime_error("cluster: " + connected.error().message);
  nats_ = std::move(connected.value());
  if (c.trim_at_percent > 0) {
    options.name = "imserver " + node + " snapshots";
    auto snapshots = cluster::JetStream::connect(options);
    if (!snapshots) throw std::runtime_error("cluster: " + snapshots.error().message);
    snap_nats_ = std::move(snapshots.value());
  }
  // One batch is one NATS message: a group fan-out slice of full message
  // copies after a turn's other rows, or a C2C message's few rows.
  const std::uint64_t row = std::uint64_t{config_.limits.max_message_bytes} + 1024;
  const std::uint64_t needed =
      GroupCommit::kMaxLogBatchBytes + std::max<std::uint64_t>(kSliceRows * row, 4ull * config_.server.max_frame_bytes);
  if (static_cast<std::uint64_t>(std::max<std::int64_t>(0, nats_->max_payload())) < needed)
    throw std::runtime_error(fmt::format(
        "cluster: the NATS servers take messages of at most {} bytes (max_payload), and one batch may need {} "
        "(limits.max_message_bytes {}): set max_payload to at least that in nats-server's config (docs/cluster.md), "
        "or lower limits.max_message_bytes",
        nats_->max_payload(), needed, config_.limits.max_message_bytes));
  // The partition count is fixed with the data: another count would leave
  // users' rows in streams never read. An embedded data dir holds rows no
  // stream has: a node rebuilt later would lose them.
  auto recorded = store_->get_meta(store::kClusterPartitionsKey);
  if (!recorded) throw std::runtime_error("storage: " + recorded.error().message);
  if (!recorded->has_value()) {
    auto rows = store_->count_rows(store::Cf::kHistory, 1);
    if (!rows) throw std::runtime_error("storage: " + rows.error().message);
    if (*rows > 0)
      throw std::runtime_error(
          "cluster: storage.data_dir holds messages written in embedded mode, which no stream has; start cluster "
          "mode with an empty data dir (docs/cluster.md)");
  } else if (**recorded != c.partitions) {
    throw std::runtime_error(
        fmt::format("cluster: storage.data_dir was written with cluster.partitions = {}, not {}; "
                    "the partition count is fixed once data exists",
                    **recorded, c.partitions));
  }
  const auto started = std::chrono::steady_clock::now();
  auto clock = std::make_shared<std::atomic<std::uint64_t>>(0);
  const cluster::SnapshotOptions snapshots = snapshot_options();
  for (unsigned p = 0; p < c.partitions; ++p) {
    cluster::PartitionLog::Options o;
    o.partition = p;
    o.partitions = c.partitions;
    o.node = node;
    o.stream = cluster::partition_stream(c.stream_prefix, p);
    o.stream.replicas = static_cast<int>(c.replicas);
    o.stream.max_bytes = static_cast<std::int64_t>(c.stream_max_bytes);
    o.publish_wait = std::chrono::milliseconds(c.publish_timeout_ms);
    o.retry_for = std::chrono::milliseconds(c.unanswered_stop_ms);
    o.clock = clock;
    o.snapshots = snapshots.spec;
    logs_.push_back(std::make_unique<cluster::PartitionLog>(*nats_, *store_, std::move(o)));
  }
  std::vector<cluster::PartitionLog*> all;
  for (auto& log : logs_) all.push_back(log.get());
  auto first_writes = [&]() -> Result<Ok> {
    // The snapshots' stream is made (or its limits updated) now, after the
    // checks that only read and before any marker: servers that cannot
    // hold cluster.snapshot_max_bytes refuse the start instead of the
    // first snapshot, weeks later.
    if (c.trim_at_percent > 0) {
      if (auto snap = nats_->ensure_stream(snapshots.spec.stream); !snap)
        return make_error(snap.error().code, fmt::format("the snapshots' stream (cluster.snapshot_max_bytes {}): {}",
                                                         c.snapshot_max_bytes, snap.error().message));
    }
    // The count goes into the data dir once the streams agree with it, and
    // before the first row comes from them.
    if (recorded->has_value()) return Ok{};
    store::Batch batch(*store_);
    batch.put_meta(store::kClusterPartitionsKey, c.partitions);
    return store_->write(batch);
  };
  if (auto opened = cluster::PartitionLog::open_all(all, first_writes); !opened)
    throw std::runtime_error("cluster: " + opened.error().message);
  std::uint64_t caught_up = 0;
  for (auto& log : logs_) caught_up += log->caught_up();
  metrics::get().cluster_caught_up_entries.set(static_cast<std::int64_t>(caught_up));
  spdlog::info(
      "cluster: node {}, {} partitions on {}: {} log entries applied at start in {} ms", node, c.partitions,
      fmt::join(c.nats_urls, ","), caught_up,
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count());
}

store::Outbox::Writer Service::outbox_writer() {
  if (logs_.empty()) return {};
  return [this](std::uint8_t queue, store::Batch batch, std::function<void(bool)> done) {
    // A queue is its writer's shard, which is its partition here.
    if (queue >= shards_.size()) {
      spdlog::error("webhook: outbox queue {} has no partition; its event is sent again after a restart", queue);
      if (done) done(false);
      return;
    }
    Shard& shard = *shards_[queue];
    asio::post(shard.context(), [&shard, rows = std::make_shared<const store::Batch>(std::move(batch)),
                                 done = std::move(done)] { shard.stage_rows(rows, done); });
  };
}

void Service::stop() {
  // Work still queued on a shard may hold connections: destroy it now, while
  // the loops those connections belong to still exist. Shards write their
  // last batch (cursors) before they stop; then the store closes.
  retention_.reset();
  trimmer_.reset();  // a snapshot under way stops at its next row
  // Side by side: in cluster mode with NATS unreachable, each loop's last
  // round may wait cluster.unanswered_stop_ms.
  for (auto& s : shards_) s->request_stop();
  for (auto& l : loops_) l->request_stop();
  for (auto& l : loops_) l->stop();
  shards_.clear();
  loops_.clear();  // after the shards, whose timers are on its loop
  logs_.clear();  // after the shards' last batches, which go through them
  snap_nats_.reset();
  nats_.reset();
  if (env_) env_->search = nullptr;  // SEARCH is UNAVAILABLE from here on
  search_.reset();                   // after the shards' last batches: their rows are indexed
  env_.reset();
  store_.reset();
}

std::unique_ptr<net::ConnectionContext> Service::on_open(Connection&) {
  return std::make_unique<ClientContext>(burst_.load(std::memory_order_relaxed));
}

void Service::on_frame(Connection& conn, const FrameHeader& h, std::string_view body) {
  ClientContext& ctx = context_of(conn);
  Call call{conn, ctx, h};
  // Only answers to a server HEARTBEAT may come back; the server sends none
  // that need tracking, so every client response is dropped.
  if (h.is_response() || ctx.phase == ClientContext::Phase::kEnded) return;
  if (h.seq == 0) return call.fail(StatusCode::kBadRequest, "seq must not be 0");
  // TYPING has its own cap (typing_commands.cpp).
  if (h.cmd != Cmd::kHeartbeat && h.cmd != Cmd::kAck && h.cmd != Cmd::kTyping) {
    if (std::uint32_t wait_ms =
            ctx.bucket.take(conn.loop().now_ms(), messages_per_second_.load(std::memory_order_relaxed),
                            burst_.load(std::memory_order_relaxed)))
      return call.fail(StatusCode::kRateLimited, {}, wait_ms);
  }
  if (ctx.phase != ClientContext::Phase::kLoggedIn && h.cmd != Cmd::kHeartbeat && h.cmd != Cmd::kLogin)
    return call.fail(StatusCode::kUnauthenticated);
  dispatcher_.dispatch(call, body);
}

void Service::on_close(Connection& conn) {
  ClientContext& ctx = context_of(conn);
  if (ctx.phase == ClientContext::Phase::kLoggingIn || ctx.phase == ClientContext::Phase::kLoggedIn) end_session(ctx);
  end_phase(ctx);
}

void Service::on_deadline(Connection& conn) {
  ClientContext& ctx = context_of(conn);
  if (ctx.phase != ClientContext::Phase::kLoggedIn || conn.phase() == Connection::Phase::kClosing) return;
  end_session(ctx);
  end_phase(ctx);
  conn.send(net::make_kickout(env_->next_push_seq(), v1::TOKEN_EXPIRED, "token expired"));
  conn.close_after_flush();
}

void Service::end_session(ClientContext& ctx) {
  release_watches(ctx);
  Shard& shard = shard_for(ctx.uid);
  asio::post(shard.context(),
             [&shard, uid = ctx.uid, id = ctx.session_id, now = wall_ms()] { shard.remove_session(uid, id, now); });
}

void Service::kick(const std::weak_ptr<Connection>& target, net::SharedFrame kickout) {
  auto conn = target.lock();
  if (!conn) return;
  asio::post(conn->executor(), [this, conn, kickout = std::move(kickout)] {
    ClientContext& ctx = context_of(*conn);
    if (ctx.phase == ClientContext::Phase::kEnded) return;
    release_watches(ctx);
    end_phase(ctx);  // the shard has forgotten it already
    conn->send(kickout);
    conn->close_after_flush();
  });
}

void Service::reload(const Config& fresh) {
  verifier_.store(std::make_shared<const JwtVerifier>(fresh.auth.jwt_secret));
  messages_per_second_.store(fresh.limits.messages_per_second);
  burst_.store(fresh.limits.burst);
  if (env_) env_->fanout.set_rate(fresh.limits.fanout_rows_per_second);
}

// ---------------------------------------------------------------- the admin API's facade

void Service::send_as(const std::string& from, v1::SendReq req, Done<v1::SendResp> done) {
  if (auto ok = check_send(from, req, config_.limits); !ok) return done(ok.error());
  auto job = make_send_job(from, req);
  job->done = std::move(done);
  Shard& shard = shard_for(from);
  asio::post(shard.context(), [&shard, job = std::move(job)]() mutable { shard.send(std::move(job)); });
}

void Service::server_push(const std::string& uid, const std::string& topic, const std::string& payload, bool persist,
                          Done<std::pair<std::uint64_t, std::uint32_t>> done) {
  if (auto ok = check_push(uid, topic, payload, config_.limits); !ok) return done(ok.error());
  Shard& shard = shard_for(uid);
  asio::post(shard.context(), [&shard, uid, topic, payload, persist, done = std::move(done)]() mutable {
    shard.server_push(uid, topic, payload, persist, std::move(done));
  });
}

void Service::presence(const std::string& uid, std::function<void(const v1::Presence&)> done) {
  Shard& shard = shard_for(uid);
  asio::post(shard.context(), [&shard, uid, done = std::move(done)] {
    v1::Presence p;
    p.set_uid(uid);
    shard.fill_presence(p);
    done(p);
  });
}

void Service::recall_as(const std::string& from, v1::RecallReq req, Done<v1::SendResp> done) {
  if (!valid_id(from)) return done(make_error(StatusCode::kBadRequest, "from must be a valid uid"));
  if (auto ok = check_change(req.client_msg_id(), req.conv_type(), req.peer(), req.conv_seq()); !ok)
    return done(ok.error());
  auto job = make_change_job(from, req.conv_type(), req.peer(), req.client_msg_id(), 10003, req.conv_seq(), {});
  job->moderator = true;
  job->done = std::move(done);
  Shard& shard = shard_for(from);
  asio::post(shard.context(), [&shard, job = std::move(job)]() mutable { shard.send(std::move(job)); });
}

void Service::conversations(const std::string& uid, v1::ConvListReq req, Done<v1::ConvListResp> done) {
  Shard& shard = shard_for(uid);
  asio::post(shard.context(), [&shard, uid, req = std::move(req), done = std::move(done)] {
    done(shard.conv_list(uid, req));
  });
}

namespace {

// UNAVAILABLE, to be tried again a second later.
Error busy(std::string text) {
  Error e = make_error(StatusCode::kUnavailable, std::move(text));
  e.retry_after_ms = 1000;
  return e;
}

}  // namespace

void Service::search(const std::string& uid, v1::SearchReq req, bool per_user_limit, Done<v1::SearchResp> done) {
  search::SearchIndex* index = env_->search;
  if (!index) return done(make_error(StatusCode::kDisabled, "search is off (search.enabled = false)"));
  if (auto ok = check_search(req); !ok) return done(ok.error());
  auto below = decode_search_cursor(req.cursor());
  if (!below) return done(below.error());
  // Start-up indexes what earlier runs stored before any SEARCH is answered.
  if (!index->ready()) return done(busy("the search index is being brought up to date"));
  std::shared_ptr<void> slot;
  if (per_user_limit) {
    slot = search_slots_.take(uid);
    if (!slot) {
      Error e = make_error(StatusCode::kRateLimited,
                           fmt::format("too many searches of this user at once (at most {}): wait for an answer",
                                       SearchSlots::kPerUser));
      e.retry_after_ms = 200;
      return done(e);
    }
  }
  SearchRequest search{uid,
                       std::move(*req.mutable_query()),
                       req.conv_type(),
                       std::move(*req.mutable_peer()),
                       *below,
                       req.limit() == 0 ? kSearchDefault : std::min(req.limit(), kSearchMax),
                       config_.server.max_frame_bytes - wire::kFrameSlack};
  // On a search thread: the scope from the store, the query, the hits. The
  // latency counts the wait in the queue.
  const auto queued = std::chrono::steady_clock::now();
  auto job = [this, index, search = std::move(search), done, slot = std::move(slot), queued]() mutable {
    Result<v1::SearchResp> result = make_error(StatusCode::kInternal, "the search failed");
    try {
      result = run_search(*env_, *index, search);
    } catch (const std::exception& e) {
      spdlog::error("search: a query of {} failed: {}", search.uid, e.what());
    } catch (...) {
      spdlog::error("search: a query of {} failed", search.uid);
    }
    metrics::get().search_latency.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - queued).count());
    slot.reset();  // before the answer: the client's next SEARCH may follow it at once
    done(result);
  };
  if (!index->submit(std::move(job))) done(busy("too many searches at once"));
}

void Service::inbox_page(const std::string& uid, std::uint64_t after_seq, std::uint32_t limit,
                         Done<std::string> done) {
  v1::PullReq req;
  req.set_after_seq(after_seq);
  req.set_limit(limit);
  Shard& shard = shard_for(uid);
  asio::post(shard.context(), [&shard, uid, req, done = std::move(done)] { done(shard.inbox_page(uid, req)); });
}

void Service::groups_page(const std::string& uid, const std::string& after_gid, Done<GroupPage> done) {
  Shard& shard = shard_for(uid);
  asio::post(shard.context(), [&shard, uid, after_gid, done = std::move(done)] {
    GroupPage page;
    auto list = shard.groups_of(uid, after_gid, &page.more);
    if (!list) return done(list.error());
    page.list = std::move(*list);
    done(std::move(page));
  });
}

Result<Service::Backup> Service::backup() {
  std::lock_guard lock(backup_mutex_);  // one at a time
  const std::string& root = config_.storage.backup_dir;
  if (root.empty()) return make_error(StatusCode::kDisabled, "storage.backup_dir is empty: backups are off");
  std::error_code ec = make_private_dir(root);
  if (ec) return make_error(StatusCode::kInternal, fmt::format("cannot make {}: {}", root, ec.message()));
  Backup b;
  b.time_ms = wall_ms();
  // A new folder each time, named by the time (and a counter when two fall
  // in the same millisecond).
  for (int n = 0;; ++n) {
    b.path = (std::filesystem::path(root) /
              fmt::format("imserver-{:%Y%m%dT%H%M%S}-{:03}{}", fmt::gmtime(static_cast<std::time_t>(b.time_ms / 1000)),
                          b.time_ms % 1000, n == 0 ? std::string() : fmt::format("-{}", n)))
                 .string();
    if (!std::filesystem::exists(b.path, ec)) break;
    if (n > 100) return make_error(StatusCode::kInternal, "no free backup folder name");
  }
  auto size = store_->checkpoint(b.path);
  if (!size) return size.error();
  // Every message is in it: for this user only, even under a shared backup_dir.
  std::filesystem::permissions(b.path, std::filesystem::perms::owner_all, std::filesystem::perm_options::replace, ec);
  if (ec) spdlog::warn("backup: cannot make {} private: {}", b.path, ec.message());
  b.size_bytes = *size;
  spdlog::info("backup: {} ({} bytes) in {} ms", b.path, b.size_bytes, wall_ms() - b.time_ms);
  return b;
}

void Service::receipts(const std::string& gid, std::uint64_t conv_seq, Done<v1::ReceiptsResp> done) {
  v1::ReceiptsReq req;
  req.set_gid(gid);
  req.add_conv_seqs(conv_seq);
  Shard& shard = shard_for(store::group_conv(gid));
  asio::post(shard.context(), [&shard, req = std::move(req), done = std::move(done)] {
    done(shard.receipts("", req));  // "" is the admin: any group, no membership
  });
}

void Service::kick_user(const std::string& uid, bool revoke, Done<std::uint32_t> done) {
  // Durable and in memory before the kick is posted to the user's shard,
  // where LOGIN checks it (token_revocations.h says why that is enough).
  // In cluster mode the row goes through the uid's partition log, on its
  // shard, before the kick there: the same order.
  Shard& shard = shard_for(uid);
  if (revoke && !shard.log()) {
    if (auto revoked = revocations_.revoke(*store_, uid, wall_ms() / 1000); !revoked) return done(revoked.error());
  }
  asio::post(shard.context(), [this, &shard, uid, revoke_here = revoke && shard.log(), done = std::move(done)] {
    if (revoke_here) {
      if (auto revoked = revocations_.revoke(*store_, uid, wall_ms() / 1000, shard.log()); !revoked)
        return done(revoked.error());
    }
    auto sessions = shard.take_sessions(uid, wall_ms());
    for (const SessionRef& s : sessions)
      kick(s.conn, net::make_kickout(env_->next_push_seq(), v1::ADMIN, "signed out by the service"));
    done(static_cast<std::uint32_t>(sessions.size()));
  });
}

void Service::run_group(std::shared_ptr<GroupCommand> cmd) {
  if (auto ok = check_group(*cmd, config_.limits); !ok) return cmd->done(ok.error());
  Shard& owner = shard_for(store::group_conv(cmd->gid));
  asio::post(owner.context(), [&owner, cmd] { owner.group_command(cmd); });
}

namespace {

// A group command of the admin API, which acts with the owner's rights.
std::shared_ptr<GroupCommand> admin_command(Cmd cmd, const std::string& gid, Service::Done<GroupReply> done) {
  auto c = std::make_shared<GroupCommand>();
  c->cmd = cmd;
  c->actor.admin = true;
  c->gid = gid;
  c->done = std::move(done);
  return c;
}

}  // namespace

void Service::group_create(const std::string& owner, v1::GroupCreateReq req, Done<GroupReply> done) {
  if (req.gid().empty()) req.set_gid(new_group_id());
  auto cmd = admin_command(Cmd::kGroupCreate, req.gid(), std::move(done));
  cmd->actor.uid = owner;
  cmd->create = std::move(req);
  run_group(std::move(cmd));
}

void Service::group_get(const std::string& gid, Done<GroupReply> done) {
  auto cmd = admin_command(Cmd::kGroupGet, gid, std::move(done));
  cmd->get.set_gid(gid);
  cmd->get.set_with_members(true);
  run_group(std::move(cmd));
}

void Service::group_members(Cmd which, const std::string& gid, std::vector<std::string> uids, Done<GroupReply> done) {
  if (which != Cmd::kGroupAddMembers && which != Cmd::kGroupRemoveMembers)
    return done(make_error(StatusCode::kBadRequest, "not a member change"));
  auto cmd = admin_command(which, gid, std::move(done));
  cmd->members.set_gid(gid);
  for (auto& uid : uids) cmd->members.add_uids(std::move(uid));
  run_group(std::move(cmd));
}

void Service::group_dismiss(const std::string& gid, Done<GroupReply> done) {
  run_group(admin_command(Cmd::kGroupDismiss, gid, std::move(done)));
}

std::string Service::mint_token(const std::string& uid, std::int64_t ttl_s) const {
  const std::int64_t now_s = wall_ms() / 1000;
  return verifier_.load()->mint(uid, now_s + ttl_s, revocations_.issue_time(uid, now_s));
}

}  // namespace im::core
