#include "core/service.h"

#include <chrono>
#include <future>
#include <random>
#include <stdexcept>
#include <thread>
#include "common/clock.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <asio/post.hpp>
#include <nlohmann/json.hpp>

#include "common/base64.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "core/ids.h"
#include "core/names.h"
#include "net/connection.h"
#include "net/io_loop.h"
#include "proto/im.pb.h"
#include "store/keys.h"

namespace im::core {
namespace {

using net::Connection;

constexpr std::size_t kMaxPresenceUids = 500;
constexpr std::size_t kMaxDeviceIdBytes = 64;
constexpr std::size_t kMaxClientVersionBytes = 128;
// KICKOUT SERVER_SHUTDOWN spreads reconnects over this window.
constexpr std::uint32_t kReconnectMinMs = 1000;
constexpr std::uint32_t kReconnectSpreadMs = 14000;

constexpr std::size_t kMaxTopicBytes = 256;
constexpr std::size_t kMaxGroupNameBytes = 256;
constexpr std::size_t kMaxAnnouncementBytes = 4096;

// What is wrong with the fields of a group request ("" when nothing).
template <class Uids>
std::string check_group_fields(const std::string* name, const std::string* announcement, const Uids& uids) {
  if (name && (name->empty() || name->size() > kMaxGroupNameBytes)) return "name must be 1 to 256 bytes";
  if (announcement && announcement->size() > kMaxAnnouncementBytes) return "announcement over 4096 bytes";
  for (const auto& uid : uids)
    if (!valid_id(uid)) return "bad uid: " + std::string(uid).substr(0, 64);
  return "";
}

template <class T>
bool parse(std::string_view body, T& msg) {
  return msg.ParseFromArray(body.data(), static_cast<int>(body.size()));
}

void reply(Connection& conn, const FrameHeader& h, const google::protobuf::MessageLite* body = nullptr) {
  conn.send(net::make_response(h, StatusCode::kOk, body));
}

void reply_error(Connection& conn, const FrameHeader& h, StatusCode code, std::string_view message,
                 std::uint32_t retry_after_ms = 0) {
  conn.send(net::make_error_response(h, code, message, retry_after_ms));
}

ClientContext& context_of(Connection& conn) {
  return static_cast<ClientContext&>(*conn.context());
}

// The session is over (closed, logged out, kicked): no more requests.
void end_phase(ClientContext& ctx) {
  if (ctx.phase == ClientContext::Phase::kLoggedIn) metrics::get().sessions.add(-1);
  ctx.phase = ClientContext::Phase::kEnded;
}

std::uint64_t random_u64() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

}  // namespace

Service::Service(const Config& config)
    : config_(config),
      verifier_(std::make_shared<const JwtVerifier>(config.auth.jwt_secret)),
      messages_per_second_(config.limits.messages_per_second),
      burst_(config.limits.burst) {
  auto route = [this](Cmd cmd, Handler handler) { routes_[static_cast<std::uint16_t>(cmd)] = handler; };
  route(Cmd::kHeartbeat, &Service::on_heartbeat);
  route(Cmd::kLogin, &Service::on_login);
  route(Cmd::kLogout, &Service::on_logout);
  route(Cmd::kPresence, &Service::on_presence);
  route(Cmd::kSend, &Service::on_send);
  route(Cmd::kAck, &Service::on_ack);
  route(Cmd::kPull, &Service::on_pull);
  route(Cmd::kHistory, &Service::on_history);
  for (Cmd cmd : {Cmd::kGroupCreate, Cmd::kGroupGet, Cmd::kGroupAddMembers, Cmd::kGroupRemoveMembers, Cmd::kGroupLeave,
                  Cmd::kGroupUpdate, Cmd::kGroupDismiss})
    route(cmd, &Service::on_group);
  route(Cmd::kGroupList, &Service::on_group_list);
  route(Cmd::kReport, &Service::on_report);
}

Service::~Service() {
  stop();
}

void Service::start() {
  auto opened = store::Store::open(config_.storage);
  if (!opened) throw std::runtime_error("storage: " + opened.error().message);
  store_ = std::move(opened.value());
  env_.reset(new CoreEnv{config_, *store_, shards_});
  std::int64_t queued = 0;
  store_->scan(store::Cf::kOutbox, "", std::string(9, '\xFF'), [&](std::string_view, std::string_view) {
    ++queued;
    return true;
  });
  metrics::get().outbox_depth.set(queued);
  unsigned n = config_.sharding.shards;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>(i, *env_));
  for (auto& s : shards_) s->start();
  recover_fanouts();
  retention_ = std::make_unique<Retention>(config_.storage, *store_);
}

void Service::recover_fanouts() {
  // Every record is one inbox row a crash left unwritten; its shard writes
  // the row and deletes the record in one batch, so a replay never doubles.
  std::size_t pending = 0;
  std::vector<std::string> group_records;
  store_->scan(store::Cf::kFanout, "", std::string(1, '\xFF'), [&](std::string_view key, std::string_view value) {
    if (!value.empty() && value[0] == 'G') {
      // A group message: its members whose inbox lacks it get it now.
      v1::Message msg;
      std::vector<std::string> recipients;
      if (!decode_group_record(value, msg, recipients)) return true;
      for (const auto& uid : recipients) {
        Shard& shard = shard_for(uid);
        asio::post(shard.context(), [&shard, uid, msg] { shard.replay_group_row(uid, msg); });
        ++pending;
      }
      group_records.emplace_back(key);
      return true;
    }
    const auto sep = key.find('\0');
    if (sep == std::string_view::npos || key.size() < sep + 9 || value.empty()) return true;
    std::string recipient(key.substr(sep + 9));
    v1::Message msg;
    if (!msg.ParseFromArray(value.data() + 1, static_cast<int>(value.size() - 1))) return true;
    const bool is_sender = value[0] == 'S';
    Shard& shard = shard_for(recipient);
    asio::post(shard.context(), [&shard, recipient, msg, k = std::string(key), is_sender] {
      shard.append_pending(recipient, msg, k, is_sender, nullptr);
    });
    ++pending;
    return true;
  });
  if (pending == 0 && group_records.empty()) return;
  // Wait until every shard has written what was posted: a handler posted
  // from a handler runs after the commit the appends scheduled.
  for (auto& s : shards_) {
    std::promise<void> done;
    Shard& shard = *s;
    asio::post(shard.context(), [&] { asio::post(shard.context(), [&] { done.set_value(); }); });
    done.get_future().wait();
  }
  store::Batch done(*store_);
  for (const auto& key : group_records) done.del(store::Cf::kFanout, key);
  if (auto written = store_->write(done); !written)
    throw std::runtime_error("storage: cannot finish pending fan-outs: " + written.error().message);
  spdlog::info("start-up: finished {} pending fan-out rows ({} group messages)", pending, group_records.size());
}

void Service::stop() {
  // Work still queued on a shard may hold connections: destroy it now, while
  // the loops those connections belong to still exist. Shards write their
  // last batch (cursors) before they stop; then the store closes.
  retention_.reset();
  for (auto& s : shards_) s->stop();
  shards_.clear();
  env_.reset();
  store_.reset();
}

std::unique_ptr<net::ConnectionContext> Service::on_open(Connection&) {
  return std::make_unique<ClientContext>(burst_.load(std::memory_order_relaxed));
}

void Service::on_frame(Connection& conn, const FrameHeader& h, std::string_view body) {
  ClientContext& ctx = context_of(conn);
  // Only answers to a server HEARTBEAT may come back; the server sends none
  // that need tracking, so every client response is dropped.
  if (h.is_response() || ctx.phase == ClientContext::Phase::kEnded) return;
  if (h.seq == 0) {
    reply_error(conn, h, StatusCode::kBadRequest, "seq must not be 0");
    return;
  }
  if (h.cmd != Cmd::kHeartbeat && h.cmd != Cmd::kAck) {
    if (std::uint32_t wait_ms =
            ctx.bucket.take(conn.loop().now_ms(), messages_per_second_.load(std::memory_order_relaxed),
                            burst_.load(std::memory_order_relaxed))) {
      reply_error(conn, h, StatusCode::kRateLimited, "too many requests", wait_ms);
      return;
    }
  }
  if (ctx.phase != ClientContext::Phase::kLoggedIn && h.cmd != Cmd::kHeartbeat && h.cmd != Cmd::kLogin) {
    reply_error(conn, h, StatusCode::kUnauthenticated, "log in first");
    return;
  }
  const auto index = static_cast<std::uint16_t>(h.cmd);
  Handler handler = index < routes_.size() ? routes_[index] : nullptr;
  if (!handler) {
    reply_error(conn, h, StatusCode::kUnknownCommand, fmt::format("unknown command 0x{:04x}", index));
    return;
  }
  (this->*handler)(conn, ctx, h, body);
}

void Service::on_close(Connection& conn) {
  ClientContext& ctx = context_of(conn);
  if (ctx.phase == ClientContext::Phase::kLoggingIn || ctx.phase == ClientContext::Phase::kLoggedIn) end_session(ctx);
  end_phase(ctx);
}

void Service::end_session(ClientContext& ctx) {
  Shard& shard = shard_for(ctx.uid);
  asio::post(shard.context(),
             [&shard, uid = ctx.uid, id = ctx.session_id, now = wall_ms()] { shard.remove_session(uid, id, now); });
}

void Service::on_heartbeat(Connection& conn, ClientContext&, const FrameHeader& h, std::string_view) {
  reply(conn, h);
}

void Service::on_login(Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body) {
  if (ctx.phase != ClientContext::Phase::kAnonymous) {
    reply_error(conn, h, StatusCode::kBadRequest, "already logged in");
    return;
  }
  v1::LoginReq req;
  const char* bad = nullptr;
  if (!parse(body, req)) {
    bad = "LoginReq does not parse";
  } else if (!valid_id(req.uid())) {
    bad = "uid must be 1 to 64 bytes of A-Z a-z 0-9 . _ @ -";
  } else if (!v1::DeviceType_IsValid(req.device_type())) {
    bad = "unknown device_type";
  } else if (req.device_id().size() > kMaxDeviceIdBytes || req.client_version().size() > kMaxClientVersionBytes) {
    bad = "device_id or client_version too long";
  }
  if (bad) {
    metrics::get().logins_bad_request.inc();
    reply_error(conn, h, StatusCode::kBadRequest, bad);
    return;
  }
  if (!config_.auth.insecure()) {
    const auto now_s = wall_ms() / 1000;
    auto claims = verifier_.load()->verify(req.token(), req.uid(), now_s);
    if (!claims) {
      metrics::get().logins_unauthenticated.inc();
      reply_error(conn, h, StatusCode::kUnauthenticated, claims.error().message);
      return;
    }
  }
  ctx.phase = ClientContext::Phase::kLoggingIn;
  ctx.uid = req.uid();
  ctx.device_type = static_cast<std::uint8_t>(req.device_type());
  ctx.device_id = req.device_id();
  ctx.session_id = random_u64();
  // Requests behind LOGIN wait until it is answered, so they run logged in
  // and in the order sent.
  conn.pause_reading();
  SessionRef session{conn.shared_from_this(), ctx.session_id, ctx.device_type, ctx.device_id};
  Shard& shard = shard_for(ctx.uid);
  asio::post(shard.context(),
             [this, &shard, c = conn.shared_from_this(), h, s = std::move(session), uid = ctx.uid]() mutable {
               login_in_shard(shard, std::move(c), h, std::move(s), std::move(uid));
             });
}

void Service::login_in_shard(Shard& shard, std::shared_ptr<Connection> conn, FrameHeader request, SessionRef session,
                             std::string uid) {
  const std::uint64_t session_id = session.session_id;
  const std::string by_device = session.device_id;
  Shard::LoginState state;
  if (auto replaced = shard.add_session(uid, std::move(session), state)) {
    v1::Kickout kickout;
    kickout.set_reason(v1::LOGIN_ELSEWHERE);
    kickout.set_by_device_id(by_device);
    kickout.set_message("logged in elsewhere with the same device type");
    FrameHeader kh;
    kh.cmd = Cmd::kKickout;
    kh.seq = env_->next_push_seq();
    kick(replaced->conn, net::make_frame(kh, &kickout));
  }
  v1::LoginResp resp;
  resp.set_server_time_ms(wall_ms());
  resp.set_heartbeat_interval_s(config_.heartbeat.interval_s);
  resp.set_inbox_max_seq(state.inbox_max_seq);
  resp.set_acked_seq(state.acked_seq);
  resp.set_session_id(fmt::format("{:016x}", session_id));
  auto frame = net::make_response(request, StatusCode::kOk, &resp);
  asio::post(conn->executor(), [conn, frame = std::move(frame), session_id] {
    ClientContext& ctx = context_of(*conn);
    if (!conn->is_open() || ctx.phase != ClientContext::Phase::kLoggingIn || ctx.session_id != session_id) return;
    ctx.phase = ClientContext::Phase::kLoggedIn;
    metrics::get().logins_ok.inc();
    metrics::get().sessions.add(1);
    conn->set_active();
    conn->send(frame);
    conn->resume_reading();
  });
}

void Service::kick(const std::weak_ptr<Connection>& target, net::SharedFrame kickout) {
  auto conn = target.lock();
  if (!conn) return;
  asio::post(conn->executor(), [conn, kickout = std::move(kickout)] {
    ClientContext& ctx = context_of(*conn);
    if (ctx.phase == ClientContext::Phase::kEnded) return;
    end_phase(ctx);  // the shard has forgotten it already
    conn->send(kickout);
    conn->close_after_flush();
  });
}

void Service::on_logout(Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view) {
  reply(conn, h);
  end_session(ctx);
  end_phase(ctx);
  conn.close_after_flush();
}

void Service::on_presence(Connection& conn, ClientContext&, const FrameHeader& h, std::string_view body) {
  v1::PresenceReq req;
  if (!parse(body, req)) {
    reply_error(conn, h, StatusCode::kBadRequest, "PresenceReq does not parse");
    return;
  }
  if (static_cast<std::size_t>(req.uids_size()) > kMaxPresenceUids) {
    reply_error(conn, h, StatusCode::kBadRequest, "at most 500 uids per PRESENCE");
    return;
  }
  for (const auto& uid : req.uids()) {
    if (!valid_id(uid)) {
      reply_error(conn, h, StatusCode::kBadRequest, "bad uid in PRESENCE");
      return;
    }
  }
  // Ask each shard for its users, gather the answers in request order; the
  // last shard to finish sends the response.
  struct Gather {
    std::shared_ptr<Connection> conn;
    FrameHeader request;
    v1::PresenceResp resp;
    std::atomic<std::size_t> remaining{0};
  };
  auto gather = std::make_shared<Gather>();
  gather->conn = conn.shared_from_this();
  gather->request = h;
  std::vector<std::vector<int>> by_shard(shards_.size());
  for (int i = 0; i < req.uids_size(); ++i) {
    gather->resp.add_presences()->set_uid(req.uids(i));
    by_shard[shard_of(req.uids(i), shards_.size())].push_back(i);
  }
  std::size_t busy = 0;
  for (const auto& indices : by_shard) busy += indices.empty() ? 0 : 1;
  if (busy == 0) {
    reply(conn, h, &gather->resp);
    return;
  }
  gather->remaining = busy;
  for (std::size_t s = 0; s < shards_.size(); ++s) {
    if (by_shard[s].empty()) continue;
    Shard& shard = *shards_[s];
    asio::post(shard.context(), [&shard, gather, indices = std::move(by_shard[s])] {
      for (int i : indices) {
        v1::Presence* p = gather->resp.mutable_presences(i);  // each shard writes its own slots
        PresenceInfo info = shard.presence(p->uid());
        p->set_online(info.online);
        p->set_last_seen_ms(info.last_seen_ms);
        for (std::uint8_t d : info.devices) p->add_devices(static_cast<v1::DeviceType>(d));
      }
      if (gather->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1)
        net::send_from_any_thread(gather->conn, net::make_response(gather->request, StatusCode::kOk, &gather->resp));
    });
  }
}

// What is wrong with a SEND (kOk when nothing), the same rules for clients
// and the admin API.
std::pair<StatusCode, std::string> check_send(const v1::SendReq& req, std::uint32_t max_message_bytes) {
  if (!valid_client_id(req.client_msg_id()))
    return {StatusCode::kBadRequest, "client_msg_id must be 1 to 64 bytes of printable ASCII"};
  if (req.conv_type() != v1::C2C && req.conv_type() != v1::GROUP)
    return {StatusCode::kBadRequest, "conv_type must be C2C or GROUP"};
  if (!valid_id(req.to())) return {StatusCode::kBadRequest, "to must be a valid uid or gid"};
  if (req.content_type() >= 10000) return {StatusCode::kBadRequest, "content_type 10000 and above are the server's"};
  if (req.body().size() > max_message_bytes)
    return {StatusCode::kTooLarge, fmt::format("body over limits.max_message_bytes ({})", max_message_bytes)};
  return {StatusCode::kOk, ""};
}

std::shared_ptr<SendJob> make_send_job(const std::string& from, v1::SendReq& req) {
  auto job = std::make_shared<SendJob>();
  job->started = std::chrono::steady_clock::now();
  job->conv = req.conv_type() == v1::GROUP ? store::group_conv(req.to()) : store::c2c_conv(from, req.to());
  v1::Message& m = job->msg;
  m.set_conv_type(req.conv_type());
  m.set_from(from);
  m.set_to(req.to());
  m.set_client_msg_id(req.client_msg_id());
  m.set_content_type(req.content_type());
  m.set_body(std::move(*req.mutable_body()));
  return job;
}

void Service::on_send(Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body) {
  v1::SendReq req;
  if (!parse(body, req)) {
    reply_error(conn, h, StatusCode::kBadRequest, "SendReq does not parse");
    return;
  }
  if (auto [status, why] = check_send(req, config_.limits.max_message_bytes); status != StatusCode::kOk) {
    reply_error(conn, h, status, why);
    return;
  }
  auto job = make_send_job(ctx.uid, req);
  job->conn = conn.shared_from_this();
  job->session_id = ctx.session_id;
  job->request = h;
  Shard& shard = shard_for(ctx.uid);
  asio::post(shard.context(), [&shard, job = std::move(job)]() mutable { shard.send(std::move(job)); });
}

void Service::send_as(SendSpec spec, SendDone done) {
  v1::SendReq req;
  req.set_client_msg_id(spec.client_msg_id);
  req.set_conv_type(static_cast<v1::ConvType>(spec.conv_type));
  req.set_to(spec.to);
  req.set_content_type(spec.content_type);
  req.set_body(std::move(spec.body));
  if (!valid_id(spec.from)) {
    done(StatusCode::kBadRequest, "from must be a valid uid", {});
    return;
  }
  if (auto [status, why] = check_send(req, config_.limits.max_message_bytes); status != StatusCode::kOk) {
    done(status, why, {});
    return;
  }
  auto job = make_send_job(spec.from, req);
  job->on_done = [done = std::move(done)](StatusCode status, const v1::SendResp& resp) {
    const char* why = status == StatusCode::kOk          ? ""
                      : status == StatusCode::kNotFound  ? "no such group"
                      : status == StatusCode::kForbidden ? "not a member of the group"
                                                         : "the message could not be stored";
    done(status, why, resp);
  };
  Shard& shard = shard_for(spec.from);
  asio::post(shard.context(), [&shard, job = std::move(job)]() mutable { shard.send(std::move(job)); });
}

void Service::server_push(const std::string& uid, const std::string& topic, const std::string& payload, bool persist,
                          std::function<void(std::uint64_t, std::uint32_t)> done) {
  Shard& shard = shard_for(uid);
  asio::post(shard.context(), [&shard, uid, topic, payload, persist, done = std::move(done)]() mutable {
    shard.server_push(uid, topic, payload, persist, std::move(done));
  });
}

void Service::presence(const std::string& uid, std::function<void(const PresenceInfo&)> done) {
  Shard& shard = shard_for(uid);
  asio::post(shard.context(), [&shard, uid, done = std::move(done)] { done(shard.presence(uid)); });
}

void Service::kick_user(const std::string& uid, std::function<void(std::uint32_t)> done) {
  Shard& shard = shard_for(uid);
  asio::post(shard.context(), [this, &shard, uid, done = std::move(done)] {
    auto sessions = shard.take_sessions(uid, wall_ms());
    for (const SessionRef& s : sessions) {
      v1::Kickout kickout;
      kickout.set_reason(v1::ADMIN);
      kickout.set_message("signed out by the service");
      FrameHeader kh;
      kh.cmd = Cmd::kKickout;
      kh.seq = env_->next_push_seq();
      kick(s.conn, net::make_frame(kh, &kickout));
    }
    done(static_cast<std::uint32_t>(sessions.size()));
  });
}

void Service::group_command(std::shared_ptr<GroupCommand> cmd) {
  Shard& owner = shard_for(store::group_conv(cmd->gid));
  asio::post(owner.context(), [&owner, cmd] { owner.group_command(cmd); });
}

std::string Service::mint_token(const std::string& uid, std::int64_t ttl_s) const {
  return verifier_.load()->mint(uid, wall_ms() / 1000 + ttl_s);
}

void Service::reload(const Config& fresh) {
  verifier_.store(std::make_shared<const JwtVerifier>(fresh.auth.jwt_secret));
  messages_per_second_.store(fresh.limits.messages_per_second);
  burst_.store(fresh.limits.burst);
}

void Service::on_report(Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body) {
  v1::ReportReq req;
  if (!parse(body, req)) {
    reply_error(conn, h, StatusCode::kBadRequest, "ReportReq does not parse");
    return;
  }
  if (!valid_client_id(req.report_id())) {
    reply_error(conn, h, StatusCode::kBadRequest, "report_id must be 1 to 64 bytes of printable ASCII");
    return;
  }
  if (req.topic().size() > kMaxTopicBytes) {
    reply_error(conn, h, StatusCode::kBadRequest, "topic over 256 bytes");
    return;
  }
  if (req.payload().size() > config_.limits.max_message_bytes) {
    reply_error(conn, h, StatusCode::kTooLarge, "payload over limits.max_message_bytes");
    return;
  }
  nlohmann::json event = {
      {"event", "report"},
      {"time_ms", wall_ms()},
      {"uid", ctx.uid},
      {"device_type", device_type_name(ctx.device_type)},
      {"report_id", req.report_id()},
      {"topic", req.topic()},
      {"payload", base64_encode(req.payload())},
  };
  Shard& shard = shard_for(ctx.uid);
  asio::post(shard.context(), [&shard, json = event.dump(), c = conn.shared_from_this(), h] {
    shard.queue_event(json, [c, h](bool ok) {
      if (ok) metrics::get().reports_queued.inc();
      net::send_from_any_thread(c, ok ? net::make_response(h, StatusCode::kOk, nullptr)
                                      : net::make_error_response(h, StatusCode::kInternal, "not queued"));
    });
  });
}

void Service::on_ack(Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body) {
  v1::AckReq req;
  if (!parse(body, req)) {
    reply_error(conn, h, StatusCode::kBadRequest, "AckReq does not parse");
    return;
  }
  Shard& shard = shard_for(ctx.uid);
  asio::post(shard.context(), [&shard, c = conn.shared_from_this(), h, uid = ctx.uid, dt = ctx.device_type,
                               device = ctx.device_id, seq = req.inbox_seq()] {
    if (shard.ack(uid, dt, device, seq) != StatusCode::kOk)
      net::send_from_any_thread(c,
                                net::make_error_response(h, StatusCode::kBadRequest, "inbox_seq is beyond the inbox"));
  });
}

void Service::on_pull(Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body) {
  v1::PullReq req;
  if (!parse(body, req)) {
    reply_error(conn, h, StatusCode::kBadRequest, "PullReq does not parse");
    return;
  }
  Shard& shard = shard_for(ctx.uid);
  asio::post(shard.context(), [&shard, who = Requester{conn.shared_from_this(), h}, uid = ctx.uid, dt = ctx.device_type,
                               device = ctx.device_id, req] { shard.pull(uid, dt, device, req, who); });
}

void Service::on_history(Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body) {
  v1::HistoryReq req;
  if (!parse(body, req)) {
    reply_error(conn, h, StatusCode::kBadRequest, "HistoryReq does not parse");
    return;
  }
  std::string conv;
  if (req.conv_type() == v1::C2C) {
    if (!valid_id(req.peer())) {
      reply_error(conn, h, StatusCode::kBadRequest, "peer must be a valid uid");
      return;
    }
    conv = store::c2c_conv(ctx.uid, req.peer());
  } else if (req.conv_type() == v1::SYSTEM) {
    conv = store::system_conv(ctx.uid);
  } else if (req.conv_type() == v1::GROUP) {
    if (!valid_id(req.peer())) {
      reply_error(conn, h, StatusCode::kBadRequest, "peer must be a valid gid");
      return;
    }
    Shard& owner = shard_for(store::group_conv(req.peer()));
    asio::post(owner.context(), [&owner, who = Requester{conn.shared_from_this(), h}, uid = ctx.uid, req] {
      owner.group_history(uid, req.peer(), req, who);
    });
    return;
  } else {
    reply_error(conn, h, StatusCode::kBadRequest, "conv_type must be C2C, GROUP or SYSTEM");
    return;
  }
  Shard& owner = conversation_owner(*env_, req.conv_type(), ctx.uid, req.conv_type() == v1::C2C ? req.peer() : ctx.uid);
  asio::post(owner.context(), [&owner, who = Requester{conn.shared_from_this(), h}, conv = std::move(conv), req] {
    owner.history(conv, req, who);
  });
}

std::pair<StatusCode, std::string> check_group_request(const GroupCommand& cmd, std::uint32_t max_group_members) {
  auto bad = [](std::string why) { return std::pair{StatusCode::kBadRequest, std::move(why)}; };
  if (!valid_id(cmd.gid)) return bad("gid must be 1 to 64 bytes of A-Z a-z 0-9 . _ @ -");
  std::string why;
  switch (cmd.cmd) {
    case Cmd::kGroupCreate:
      if (!valid_id(cmd.actor)) return bad("owner must be a valid uid");
      why = check_group_fields(&cmd.create.name(), &cmd.create.announcement(), cmd.create.members());
      if (why.empty() && static_cast<std::size_t>(cmd.create.members_size()) > max_group_members + 1u)
        return {StatusCode::kTooLarge, "more members than limits.max_group_members"};
      break;
    case Cmd::kGroupAddMembers:
    case Cmd::kGroupRemoveMembers:
      why = cmd.members.uids_size() == 0 ? "uids must not be empty"
                                         : check_group_fields(nullptr, nullptr, cmd.members.uids());
      if (why.empty() && static_cast<std::size_t>(cmd.members.uids_size()) > max_group_members)
        return {StatusCode::kTooLarge, "more uids than limits.max_group_members"};
      break;
    case Cmd::kGroupUpdate:
      why = check_group_fields(cmd.update.has_name() ? &cmd.update.name() : nullptr,
                               cmd.update.has_announcement() ? &cmd.update.announcement() : nullptr,
                               std::vector<std::string>{});
      break;
    default: break;
  }
  if (!why.empty()) return bad(why);
  return {StatusCode::kOk, ""};
}

void Service::on_group(Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body) {
  auto cmd = std::make_shared<GroupCommand>();
  cmd->cmd = h.cmd;
  cmd->actor = ctx.uid;
  bool parsed = false;
  switch (h.cmd) {
    case Cmd::kGroupCreate:
      parsed = parse(body, cmd->create);
      if (parsed && cmd->create.gid().empty()) cmd->create.set_gid(new_group_id());
      cmd->gid = cmd->create.gid();
      break;
    case Cmd::kGroupGet:
      parsed = parse(body, cmd->get);
      cmd->gid = cmd->get.gid();
      break;
    case Cmd::kGroupAddMembers:
    case Cmd::kGroupRemoveMembers:
      parsed = parse(body, cmd->members);
      cmd->gid = cmd->members.gid();
      break;
    case Cmd::kGroupUpdate:
      parsed = parse(body, cmd->update);
      cmd->gid = cmd->update.gid();
      break;
    default: {  // LEAVE, DISMISS
      v1::GroupIdReq req;
      parsed = parse(body, req);
      cmd->gid = req.gid();
    }
  }
  if (!parsed) {
    reply_error(conn, h, StatusCode::kBadRequest, "the request body does not parse");
    return;
  }
  if (auto [status, why] = check_group_request(*cmd, config_.limits.max_group_members); status != StatusCode::kOk) {
    reply_error(conn, h, status, why);
    return;
  }
  cmd->done = [c = conn.shared_from_this(), h](GroupCommand::Reply& r) {
    if (r.status != StatusCode::kOk) {
      net::send_from_any_thread(c, net::make_error_response(h, r.status, r.error));
      return;
    }
    const google::protobuf::MessageLite* answer = nullptr;
    if (h.cmd == Cmd::kGroupCreate || h.cmd == Cmd::kGroupGet || h.cmd == Cmd::kGroupUpdate) answer = &r.group;
    if (h.cmd == Cmd::kGroupAddMembers || h.cmd == Cmd::kGroupRemoveMembers) answer = &r.members;
    net::send_from_any_thread(c, net::make_response(h, StatusCode::kOk, answer));
  };
  Shard& owner = shard_for(store::group_conv(cmd->gid));
  asio::post(owner.context(), [&owner, cmd] { owner.group_command(cmd); });
}

void Service::on_group_list(Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view) {
  Shard& shard = shard_for(ctx.uid);
  asio::post(shard.context(), [&shard, c = conn.shared_from_this(), h, uid = ctx.uid] {
    v1::GroupListResp resp = shard.groups_of(uid);
    net::send_from_any_thread(c, net::make_response(h, StatusCode::kOk, &resp));
  });
}

void Service::drain(Connection& conn) {
  ClientContext& ctx = context_of(conn);
  // Already closing (logged out, kicked): let its last frame leave.
  if (conn.phase() == Connection::Phase::kClosing) return;
  if (ctx.phase != ClientContext::Phase::kLoggedIn) {
    conn.close();
    return;
  }
  v1::Kickout kickout;
  kickout.set_reason(v1::SERVER_SHUTDOWN);
  kickout.set_message("server shutting down");
  kickout.set_reconnect_after_ms(kReconnectMinMs + static_cast<std::uint32_t>(random_u64() % kReconnectSpreadMs));
  FrameHeader kh;
  kh.cmd = Cmd::kKickout;
  kh.seq = env_->next_push_seq();
  end_session(ctx);
  end_phase(ctx);
  conn.send(net::make_frame(kh, &kickout));
  conn.close_after_flush();
}

}  // namespace im::core
