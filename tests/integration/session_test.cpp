// LOGIN, KICKOUT, LOGOUT, HEARTBEAT, timeouts, PRESENCE and the rate limit,
// against the real imserver binary.

#include <catch2/catch.hpp>

#include "auth/jwt.h"
#include "im/frame_codec.h"
#include "proto/im.pb.h"
#include "server_process.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

v1::Presence presence_of(SyncClient& c, const std::string& uid) {
  v1::PresenceReq req;
  req.add_uids(uid);
  auto r = c.call(Cmd::kPresence, &req);
  REQUIRE(r);
  REQUIRE(r->ok());
  v1::PresenceResp resp;
  REQUIRE(r->parse(resp));
  REQUIRE(resp.presences_size() == 1);
  return resp.presences(0);
}

}  // namespace

TEST_CASE("LOGIN with a valid token answers LoginResp") {
  ServerProcess server(Overrides{{"heartbeat.interval_s", "25"}, {"heartbeat.timeout_s", "80"}});
  Frame resp;
  auto c = server.login("alice", v1::IOS, "phone-1", &resp);
  v1::LoginResp login;
  REQUIRE(resp.parse(login));
  CHECK(login.heartbeat_interval_s() == 25);
  CHECK(login.server_time_ms() > 1'700'000'000'000);
  CHECK(login.session_id().size() == 16);
  // 56 random bits (the width the server keeps), never 0.
  CHECK(login.session_id().substr(0, 2) == "00");
  CHECK(login.session_id() != std::string(16, '0'));
  CHECK(resp.header.cmd == Cmd::kLogin);
  CHECK(resp.header.is_response());
}

TEST_CASE("LOGIN failures answer UNAUTHENTICATED or BAD_REQUEST and keep the connection") {
  ServerProcess server;
  auto c = server.connect();
  auto expect = [&](const std::string& body, StatusCode status) {
    auto r = c->call_raw(Cmd::kLogin, body);
    REQUIRE(r);
    CHECK(r->status() == status);
    CHECK_FALSE(r->error_message().empty());
  };
  expect(login_body("alice", "garbage"), StatusCode::kUnauthenticated);
  expect(login_body("alice", mint_jwt("wrong-secret-wrong-secret-wrong-secret", "alice", 0)),
         StatusCode::kUnauthenticated);
  expect(login_body("alice", token_for("bob")), StatusCode::kUnauthenticated);
  expect(login_body("alice", token_for("alice", 1000)), StatusCode::kUnauthenticated);  // expired in 1970
  expect(login_body("alice", ""), StatusCode::kUnauthenticated);
  expect(login_body("bad uid!", token_for("bad uid!")), StatusCode::kBadRequest);
  expect(login_body("alice", token_for("alice"), 99), StatusCode::kBadRequest);
  expect(login_body("alice", token_for("alice"), 1, std::string(65, 'd')), StatusCode::kBadRequest);
  expect("\xff\xff\xff", StatusCode::kBadRequest);
  // still open, and a good LOGIN still works on it
  auto ok = c->call_raw(Cmd::kLogin, login_body("alice", token_for("alice")));
  REQUIRE(ok);
  CHECK(ok->ok());
  auto again = c->call_raw(Cmd::kLogin, login_body("alice", token_for("alice")));
  REQUIRE(again);
  CHECK(again->status() == StatusCode::kBadRequest);
}

TEST_CASE("before LOGIN only HEARTBEAT and LOGIN are served") {
  ServerProcess server;
  auto c = server.connect();
  auto hb = c->call_raw(Cmd::kHeartbeat, "");
  REQUIRE(hb);
  CHECK(hb->ok());
  for (Cmd cmd : {Cmd::kPresence, Cmd::kSend, Cmd::kLogout, Cmd::kPull, static_cast<Cmd>(0x0999), Cmd::kKickout}) {
    auto r = c->call_raw(cmd, "");
    REQUIRE(r);
    CHECK(r->status() == StatusCode::kUnauthenticated);
  }
}

TEST_CASE("after LOGIN: unknown and server-only commands, seq 0, bad bodies") {
  ServerProcess server;
  auto c = server.login("alice");
  for (Cmd cmd :
       {static_cast<Cmd>(0x0999), static_cast<Cmd>(0x00FE), Cmd::kKickout, Cmd::kPush, Cmd::kServerPush, Cmd::kError}) {
    auto r = c->call_raw(cmd, "");
    REQUIRE(r);
    CHECK(r->status() == StatusCode::kUnknownCommand);
  }
  auto bad = c->call_raw(Cmd::kPresence, "\x0a\xff");
  REQUIRE(bad);
  CHECK(bad->status() == StatusCode::kBadRequest);
  // seq 0: answered BAD_REQUEST with seq 0
  FrameHeader h;
  h.cmd = Cmd::kHeartbeat;
  h.seq = 0;
  c->send_raw(encode_frame(h, ""));
  auto f = c->next_frame();
  REQUIRE(f);
  CHECK(f->header.seq == 0);
  CHECK(f->status() == StatusCode::kBadRequest);
  // a client frame with RESPONSE set is ignored; the connection stays
  h.seq = 5;
  h.flags = kFlagResponse;
  c->send_raw(encode_frame(h, ""));
  auto hb = c->call_raw(Cmd::kHeartbeat, "");
  REQUIRE(hb);
  CHECK(hb->ok());
}

TEST_CASE("a second LOGIN of the same device type kicks the first, other types stay") {
  ServerProcess server;
  auto phone1 = server.login("alice", v1::IOS, "phone-1");
  auto desktop = server.login("alice", v1::DESKTOP, "pc");
  auto phone2 = server.login("alice", v1::IOS, "phone-2");
  auto kick = phone1->next_frame();
  REQUIRE(kick);
  CHECK(kick->header.cmd == Cmd::kKickout);
  CHECK_FALSE(kick->header.is_response());
  CHECK(kick->header.seq != 0);
  v1::Kickout k;
  REQUIRE(kick->parse(k));
  CHECK(k.reason() == v1::LOGIN_ELSEWHERE);
  CHECK(k.by_device_id() == "phone-2");
  CHECK(phone1->wait_closed(2s));
  // the others are served
  for (SyncClient* c : {desktop.get(), phone2.get()}) {
    auto r = c->call_raw(Cmd::kHeartbeat, "");
    REQUIRE(r);
    CHECK(r->ok());
  }
  CHECK_FALSE(desktop->next_frame(200ms));
  auto observer = server.login("bob");
  auto p = presence_of(*observer, "alice");
  CHECK(p.online());
  REQUIRE(p.devices_size() == 2);
  CHECK(p.devices(0) == v1::IOS);
  CHECK(p.devices(1) == v1::DESKTOP);
}

TEST_CASE("LOGOUT answers, closes, and presence records last_seen") {
  ServerProcess server;
  auto observer = server.login("bob");
  auto never = presence_of(*observer, "carol");
  CHECK_FALSE(never.online());
  CHECK(never.last_seen_ms() == 0);
  CHECK(never.uid() == "carol");

  auto alice = server.login("alice", v1::ANDROID);
  CHECK(presence_of(*observer, "alice").online());
  auto r = alice->call_raw(Cmd::kLogout, "");
  REQUIRE(r);
  CHECK(r->ok());
  CHECK(alice->wait_closed(2s));
  CHECK(wait_until([&] { return !presence_of(*observer, "alice").online(); }));
  CHECK(presence_of(*observer, "alice").last_seen_ms() > 1'700'000'000'000);
  CHECK(presence_of(*observer, "alice").devices_size() == 0);
}

TEST_CASE("a disconnect takes the user offline") {
  ServerProcess server;
  auto observer = server.login("bob");
  {
    auto alice = server.login("alice");
    CHECK(presence_of(*observer, "alice").online());
  }
  CHECK(wait_until([&] { return !presence_of(*observer, "alice").online(); }));
}

TEST_CASE("PRESENCE: many uids in order, more than 500 refused, bad uids refused") {
  ServerProcess server;
  auto a = server.login("u1");
  auto b = server.login("u7", v1::WEB);
  auto c = server.login("viewer");
  v1::PresenceReq req;
  for (int i = 0; i < 500; ++i) req.add_uids("u" + std::to_string(i));
  auto r = c->call(Cmd::kPresence, &req);
  REQUIRE(r);
  REQUIRE(r->ok());
  v1::PresenceResp resp;
  REQUIRE(r->parse(resp));
  REQUIRE(resp.presences_size() == 500);
  for (int i = 0; i < 500; ++i) {
    CHECK(resp.presences(i).uid() == "u" + std::to_string(i));
    CHECK(resp.presences(i).online() == (i == 1 || i == 7));
  }
  CHECK(resp.presences(7).devices(0) == v1::WEB);
  req.add_uids("u500");
  auto too_many = c->call(Cmd::kPresence, &req);
  REQUIRE(too_many);
  CHECK(too_many->status() == StatusCode::kBadRequest);
  v1::PresenceReq bad;
  bad.add_uids("no spaces");
  auto refused = c->call(Cmd::kPresence, &bad);
  REQUIRE(refused);
  CHECK(refused->status() == StatusCode::kBadRequest);
  v1::PresenceReq empty;
  auto none = c->call(Cmd::kPresence, &empty);
  REQUIRE(none);
  CHECK(none->ok());
}

TEST_CASE("a silent session is closed after heartbeat.timeout_s, a beating one stays") {
  constexpr auto kTimeout = 2s;  // heartbeat.timeout_s
  ServerProcess server(Overrides{{"heartbeat.interval_s", "1"}, {"heartbeat.timeout_s", "2"}});
  auto silent = server.login("silent");
  auto beating = server.login("beating");
  // One HEARTBEAT every half heartbeat.interval_s, as a client sends them;
  // the polling interval of the waits below is what paces it.
  auto beat = [&] {
    auto r = beating->call_raw(Cmd::kHeartbeat, "");
    REQUIRE(r);
    CHECK(r->ok());
  };
  constexpr auto kBeatEvery = 500ms;
  CHECK(wait_until(
      [&] {
        beat();
        return silent->is_closed();
      },
      2 * kTimeout + 5s, kBeatEvery));
  // Absence: the silent one was closed once it had been quiet for
  // heartbeat.timeout_s, so the beating one, logged in at the same moment, is
  // past that age too; beating on for one more heartbeat.timeout_s, it must
  // never be closed.
  CHECK_FALSE(wait_until(
      [&] {
        beat();
        return beating->is_closed();
      },
      kTimeout, kBeatEvery));
}

TEST_CASE("a connection that does not log in is closed after auth_timeout_ms, heartbeats or not") {
  ServerProcess server(Overrides{{"server.auth_timeout_ms", "400"}});
  auto idle = server.connect();
  auto beating = server.connect();
  // HEARTBEATs every 100 ms until the server closes it: they must not extend
  // the auth timeout.
  CHECK(wait_until(
      [&] {
        beating->call_raw(Cmd::kHeartbeat, "", 100ms);
        return beating->is_closed();
      },
      5s + 300ms, 100ms));
  CHECK(idle->wait_closed(5s));
  // logging in in time stops the clock. Absence: server.auth_timeout_ms (400
  // here) names when a connection that has not logged in is closed; waiting
  // two and a half times that for a close (which would end the wait at once),
  // none may come.
  auto user = server.login("alice");
  CHECK_FALSE(user->wait_closed(1s));
  auto r = user->call_raw(Cmd::kHeartbeat, "");
  REQUIRE(r);
  CHECK(r->ok());
}

TEST_CASE("the rate limit answers RATE_LIMITED with retry_after_ms, HEARTBEAT is not counted") {
  ServerProcess server(Overrides{{"limits.messages_per_second", "1"}, {"limits.burst", "3"}});
  auto c = server.connect();
  // LOGIN is the first of the three
  REQUIRE(must(c->call_raw(Cmd::kLogin, login_body("alice", token_for("alice")))).ok());
  v1::PresenceReq req;
  req.add_uids("alice");
  CHECK(must(c->call(Cmd::kPresence, &req)).ok());
  CHECK(must(c->call(Cmd::kPresence, &req)).ok());
  auto limited = c->call(Cmd::kPresence, &req);
  REQUIRE(limited);
  CHECK(limited->status() == StatusCode::kRateLimited);
  CHECK(limited->retry_after_ms() > 0);
  CHECK(limited->retry_after_ms() <= 1000);
  for (int i = 0; i < 20; ++i) CHECK(must(c->call_raw(Cmd::kHeartbeat, "")).ok());
}

TEST_CASE("requests pipelined behind LOGIN are served after it, in order") {
  ServerProcess server;
  auto c = server.connect();
  FrameHeader h;
  h.cmd = Cmd::kLogin;
  h.seq = 1;
  std::string bytes = encode_frame(h, login_body("alice", token_for("alice")));
  v1::PresenceReq req;
  req.add_uids("alice");
  h.cmd = Cmd::kPresence;
  h.seq = 2;
  bytes += encode_frame(h, req.SerializeAsString());
  c->send_raw(bytes);
  // Responses to raw frames arrive as unmatched frames.
  auto login = c->next_frame();
  REQUIRE(login);
  CHECK(login->header.cmd == Cmd::kLogin);
  CHECK(login->ok());
  auto presence = c->next_frame();
  REQUIRE(presence);
  REQUIRE(presence->header.cmd == Cmd::kPresence);
  REQUIRE(presence->ok());
  v1::PresenceResp resp;
  REQUIRE(presence->parse(resp));
  CHECK(resp.presences(0).online());
}
