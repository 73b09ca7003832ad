// HEARTBEAT, LOGIN, LOGOUT, and the end of sessions (drain).

#include <random>

#include <fmt/format.h>
#include <asio/post.hpp>

#include "common/clock.h"
#include "common/metrics.h"
#include "core/commands.h"
#include "core/errors.h"
#include "core/requests.h"
#include "core/service.h"

namespace im::core {
namespace {

// KICKOUT SERVER_SHUTDOWN spreads reconnects over this window.
constexpr std::uint32_t kReconnectMinMs = 1000;
constexpr std::uint32_t kReconnectSpreadMs = 14000;

std::uint64_t random_u64() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

// What LOGIN learnt from the token (nothing in insecure mode).
struct TokenTimes {
  bool checked = false;
  std::int64_t iat = 0;  // 0: absent
  std::int64_t exp = 0;  // 0: no expiry
};

// The one compression the server knows (PROTOCOL 1).
constexpr std::string_view kZstd = "zstd";

// Shard thread: refuses a revoked token (here, where the kick that revokes
// it runs too), registers the session, kicks the one it replaces, answers
// on the connection's loop.
void login_in_shard(Service& s, Shard& shard, std::shared_ptr<net::Connection> conn, FrameHeader request,
                    SessionRef session, std::string uid, std::string device_id, TokenTimes token, bool zstd) {
  const std::uint64_t session_id = session.session_id;
  Result<Shard::LoginState> state = make_error(StatusCode::kUnauthenticated, "token revoked");
  if (token.checked && s.revocations().revoked(uid, token.iat)) {
    metrics::get().logins_unauthenticated.inc();
  } else {
    state = shard.add_session(uid, std::move(session), device_id);
  }
  if (state && state->replaced)
    s.kick(state->replaced->conn, net::make_kickout(s.env().next_push_seq(), v1::LOGIN_ELSEWHERE,
                                                    "logged in elsewhere with the same device type", device_id));
  v1::LoginResp resp;
  if (state) {
    resp.set_server_time_ms(wall_ms());
    resp.set_heartbeat_interval_s(s.config().heartbeat.interval_s);
    resp.set_inbox_max_seq(state->inbox_max_seq);
    resp.set_acked_seq(state->acked_seq);
    resp.set_session_id(fmt::format("{:016x}", session_id));
    if (zstd) resp.set_compression(std::string(kZstd));
  }
  auto frame = state ? net::make_response(request, StatusCode::kOk, &resp)
                     : net::make_error_response(request, state.error().code, client_text(state.error()));
  asio::post(conn->executor(), [conn, frame = std::move(frame), session_id, ok = state.ok(), exp = token.exp, zstd] {
    ClientContext& ctx = Service::context_of(*conn);
    if (!conn->is_open() || ctx.phase != ClientContext::Phase::kLoggingIn || ctx.session_id != session_id) return;
    if (ok) {
      ctx.phase = ClientContext::Phase::kLoggedIn;
      metrics::get().logins_ok.inc();
      metrics::get().sessions.add(1);
      conn->set_active();
      // KICKOUT TOKEN_EXPIRED when it passes (Service::on_deadline).
      if (exp != 0) conn->set_deadline(exp);
      // From the LoginResp on.
      if (zstd) conn->set_compression();
    } else {
      // A LOGIN that fails leaves the connection open (the auth timeout still runs).
      ctx.phase = ClientContext::Phase::kAnonymous;
    }
    conn->send(frame);
    conn->resume_reading();
  });
}

void on_login(Service& s, Call& call, v1::LoginReq& req) {
  ClientContext& ctx = call.ctx;
  if (ctx.phase != ClientContext::Phase::kAnonymous) return call.fail(StatusCode::kBadRequest, "already logged in");
  if (auto ok = check_login(req); !ok) {
    metrics::get().logins_bad_request.inc();
    return call.fail(ok.error());
  }
  TokenTimes token;
  if (!s.config().auth.insecure()) {
    auto claims = s.verifier()->verify(req.token(), req.uid(), wall_ms() / 1000);
    if (!claims) {
      metrics::get().logins_unauthenticated.inc();
      return call.fail(StatusCode::kUnauthenticated, claims.error().message);
    }
    token = TokenTimes{true, claims->iat, claims->exp};
  }
  ctx.phase = ClientContext::Phase::kLoggingIn;
  ctx.uid = req.uid();
  ctx.device_type = static_cast<std::uint8_t>(req.device_type());
  // As wide as SessionRef keeps it: a wider one would be cut there, and
  // the session never found again by its id.
  ctx.session_id = std::max<std::uint64_t>(random_u64() >> (64 - kSessionIdBits), 1);
  // Requests behind LOGIN wait until it is answered, so they run logged in
  // and in the order sent.
  call.conn.pause_reading();
  SessionRef session{call.conn.shared_from_this(), ctx.session_id, ctx.device_type};
  Shard& shard = s.shard_for(ctx.uid);
  asio::post(shard.context(), [&s, &shard, c = call.conn.shared_from_this(), h = call.header,
                               session = std::move(session), uid = ctx.uid, device_id = req.device_id(), token,
                               zstd = req.compression() == kZstd]() mutable {
    login_in_shard(s, shard, std::move(c), h, std::move(session), std::move(uid), std::move(device_id), token, zstd);
  });
}

}  // namespace

void register_session_commands(Dispatcher& d, Service& s) {
  d.add_empty(Cmd::kHeartbeat, [](Call& call) { call.reply(); });
  d.add<v1::LoginReq>(Cmd::kLogin, [&s](Call& call, v1::LoginReq& req) { on_login(s, call, req); });
  d.add_empty(Cmd::kLogout, [&s](Call& call) {
    call.reply();
    s.end_session(call.ctx);
    end_phase(call.ctx);
    call.conn.close_after_flush();
  });
}

void Service::drain(net::Connection& conn) {
  ClientContext& ctx = context_of(conn);
  // Already closing (logged out, kicked): let its last frame leave.
  if (conn.phase() == net::Connection::Phase::kClosing) return;
  if (ctx.phase != ClientContext::Phase::kLoggedIn) return conn.close();
  const auto reconnect_ms = kReconnectMinMs + static_cast<std::uint32_t>(random_u64() % kReconnectSpreadMs);
  end_session(ctx);
  end_phase(ctx);
  conn.send(net::make_kickout(env_->next_push_seq(), v1::SERVER_SHUTDOWN, "server shutting down", {}, reconnect_ms));
  conn.close_after_flush(ws::kCloseGoingAway);
}

}  // namespace im::core
