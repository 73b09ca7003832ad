#include "core/service.h"

#include <chrono>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <asio/post.hpp>

#include "core/ids.h"
#include "net/connection.h"
#include "net/io_loop.h"
#include "proto/im.pb.h"

namespace im::core {
namespace {

using net::Connection;

constexpr std::size_t kMaxPresenceUids = 500;
constexpr std::size_t kMaxDeviceIdBytes = 64;
constexpr std::size_t kMaxClientVersionBytes = 128;
// KICKOUT SERVER_SHUTDOWN spreads reconnects over this window.
constexpr std::uint32_t kReconnectMinMs = 1000;
constexpr std::uint32_t kReconnectSpreadMs = 14000;

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

std::uint64_t random_u64() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

// Posts `frame` to a connection's loop and sends it there.
void deliver(const std::shared_ptr<Connection>& conn, net::SharedFrame frame) {
  asio::post(conn->executor(), [conn, frame = std::move(frame)]() mutable { conn->send(std::move(frame)); });
}

}  // namespace

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Service::Service(const Config& config) : config_(config), verifier_(config.auth.jwt_secret) {
  unsigned n = config.sharding.shards;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>(i));
  auto route = [this](Cmd cmd, Handler handler) { routes_[static_cast<std::uint16_t>(cmd)] = handler; };
  route(Cmd::kHeartbeat, &Service::on_heartbeat);
  route(Cmd::kLogin, &Service::on_login);
  route(Cmd::kLogout, &Service::on_logout);
  route(Cmd::kPresence, &Service::on_presence);
}

Service::~Service() {
  stop();
}

void Service::start() {
  for (auto& s : shards_) s->start();
}

void Service::stop() {
  // Work still queued on a shard may hold connections: destroy it now, while
  // the loops those connections belong to still exist.
  for (auto& s : shards_) s->stop();
  shards_.clear();
}

std::uint32_t Service::next_push_seq() {
  std::uint32_t seq = push_seq_.fetch_add(1, std::memory_order_relaxed) + 1;
  return seq == 0 ? next_push_seq() : seq;
}

std::unique_ptr<net::ConnectionContext> Service::on_open(Connection&) {
  return std::make_unique<ClientContext>(config_.limits.burst);
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
            ctx.bucket.take(conn.loop().now_ms(), config_.limits.messages_per_second, config_.limits.burst)) {
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
  ctx.phase = ClientContext::Phase::kEnded;
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
  if (!parse(body, req)) {
    reply_error(conn, h, StatusCode::kBadRequest, "LoginReq does not parse");
    return;
  }
  if (!valid_id(req.uid())) {
    reply_error(conn, h, StatusCode::kBadRequest, "uid must be 1 to 64 bytes of A-Z a-z 0-9 . _ @ -");
    return;
  }
  if (!v1::DeviceType_IsValid(req.device_type())) {
    reply_error(conn, h, StatusCode::kBadRequest, "unknown device_type");
    return;
  }
  if (req.device_id().size() > kMaxDeviceIdBytes || req.client_version().size() > kMaxClientVersionBytes) {
    reply_error(conn, h, StatusCode::kBadRequest, "device_id or client_version too long");
    return;
  }
  if (!config_.auth.insecure()) {
    const auto now_s = wall_ms() / 1000;
    auto claims = verifier_.verify(req.token(), req.uid(), now_s);
    if (!claims) {
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
  if (auto replaced = shard.add_session(uid, std::move(session))) {
    v1::Kickout kickout;
    kickout.set_reason(v1::LOGIN_ELSEWHERE);
    kickout.set_by_device_id(by_device);
    kickout.set_message("logged in elsewhere with the same device type");
    FrameHeader kh;
    kh.cmd = Cmd::kKickout;
    kh.seq = next_push_seq();
    kick(replaced->conn, net::make_frame(kh, &kickout));
  }
  v1::LoginResp resp;
  resp.set_server_time_ms(wall_ms());
  resp.set_heartbeat_interval_s(config_.heartbeat.interval_s);
  resp.set_session_id(fmt::format("{:016x}", session_id));
  auto frame = net::make_response(request, StatusCode::kOk, &resp);
  asio::post(conn->executor(), [conn, frame = std::move(frame), session_id] {
    ClientContext& ctx = context_of(*conn);
    if (!conn->is_open() || ctx.phase != ClientContext::Phase::kLoggingIn || ctx.session_id != session_id) return;
    ctx.phase = ClientContext::Phase::kLoggedIn;
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
    ctx.phase = ClientContext::Phase::kEnded;  // the shard has forgotten it already
    conn->send(kickout);
    conn->close_after_flush();
  });
}

void Service::on_logout(Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view) {
  reply(conn, h);
  end_session(ctx);
  ctx.phase = ClientContext::Phase::kEnded;
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
        deliver(gather->conn, net::make_response(gather->request, StatusCode::kOk, &gather->resp));
    });
  }
}

void Service::drain(Connection& conn) {
  ClientContext& ctx = context_of(conn);
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
  kh.seq = next_push_seq();
  end_session(ctx);
  ctx.phase = ClientContext::Phase::kEnded;
  conn.send(net::make_frame(kh, &kickout));
  conn.close_after_flush();
}

}  // namespace im::core
