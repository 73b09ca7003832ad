// Token lifetimes against the real binary: KICKOUT TOKEN_EXPIRED when a
// session's token expires (PROTOCOL 5), POST /v1/tokens' maximum lifetime
// and `iat`, and POST /v1/users/{uid}/kick {"revoke": true}, which refuses
// every earlier token of the user, across a crash (PROTOCOL 6). Also the
// admin API's answer to Range headers.

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "auth/jwt.h"
#include "common/base64.h"
#include "http_helpers.h"
#include "messaging.h"
#include "server_process.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const Overrides kAdmin = {
    {"admin.listen", "\"127.0.0.1:0\""}, {"admin.api_key", "\"admin-key-1\""}, {"sharding.shards", "2"}};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A token from POST /v1/tokens.
std::string minted(AdminClient& admin, const std::string& uid, std::int64_t ttl_s = 600) {
  HttpReply t = admin.post("/v1/tokens", {{"uid", uid}, {"ttl_s", ttl_s}});
  INFO(t.text);
  REQUIRE(t.status == 200);
  return t.body["token"].get<std::string>();
}

// The claims of a token, unverified.
json claims_of(const std::string& token) {
  const auto dot1 = token.find('.');
  const auto dot2 = token.find('.', dot1 + 1);
  std::string payload;
  REQUIRE(base64url_decode(std::string_view(token).substr(dot1 + 1, dot2 - dot1 - 1), payload));
  return json::parse(payload);
}

// The answer to a LOGIN of `uid` with `token` on a new connection (kept in
// `conn` when given, so a session that logs in stays).
Frame login_with(const ServerProcess& server, const std::string& uid, const std::string& token,
                 int device_type = v1::IOS, std::unique_ptr<SyncClient>* conn = nullptr) {
  auto c = server.connect();
  Frame f = must(c->call_raw(Cmd::kLogin, login_body(uid, token, device_type)));
  if (conn) *conn = std::move(c);
  return f;
}

v1::KickReason kick_reason(SyncClient& c) {
  auto f = c.next_frame(10s);
  REQUIRE(f);
  REQUIRE(f->header.cmd == Cmd::kKickout);
  v1::Kickout ko;
  REQUIRE(f->parse(ko));
  return ko.reason();
}

}  // namespace

TEST_CASE("tokens: a session whose token expires gets KICKOUT TOKEN_EXPIRED, then is closed") {
  ServerProcess server;
  const std::int64_t exp_s = now_ms() / 1000 + 3;
  std::unique_ptr<SyncClient> c;
  REQUIRE(login_with(server, "alice", token_for("alice", exp_s), v1::IOS, &c).ok());
  auto forever = server.login("alice", v1::WEB);       // a token with no exp
  CHECK(must(c->call_raw(Cmd::kHeartbeat, "")).ok());  // served until exp
  REQUIRE(kick_reason(*c) == v1::TOKEN_EXPIRED);
  WARN("KICKOUT TOKEN_EXPIRED came " << now_ms() - exp_s * 1000 << " ms after exp");
  CHECK(c->wait_closed(3s));
  // the other session stays, and a new token logs in again
  CHECK(must(forever->call_raw(Cmd::kHeartbeat, "")).ok());
  CHECK(login_with(server, "alice", token_for("alice", now_ms() / 1000 + 60)).ok());
}

TEST_CASE("tokens: /v1/tokens mints with iat, for at most 30 days") {
  ServerProcess server(kAdmin);
  AdminClient admin(server.admin_port(), "admin-key-1");
  const std::int64_t before_s = now_ms() / 1000;
  const json month = claims_of(minted(admin, "alice", 30 * 86400));
  const std::int64_t after_s = now_ms() / 1000;
  CHECK(month["sub"] == "alice");
  REQUIRE(month["iat"].is_number_integer());
  CHECK(month["iat"].get<std::int64_t>() >= before_s);
  CHECK(month["iat"].get<std::int64_t>() <= after_s);
  CHECK(month["exp"].get<std::int64_t>() - month["iat"].get<std::int64_t>() == 30 * 86400);
  HttpReply day = admin.post("/v1/tokens", {{"uid", "alice"}});
  REQUIRE(day.status == 200);
  const json d = claims_of(day.body["token"].get<std::string>());
  CHECK(d["exp"].get<std::int64_t>() - d["iat"].get<std::int64_t>() == 86400);
  for (std::int64_t ttl : {30ll * 86400 + 1, 10ll * 365 * 86400}) {
    HttpReply r = admin.post("/v1/tokens", {{"uid", "alice"}, {"ttl_s", ttl}});
    INFO(r.text);
    CHECK(r.status == 400);
    CHECK(r.body["status"] == "BAD_REQUEST");
    CHECK(r.body["error"].get<std::string>().find("2592000") != std::string::npos);
  }
}

TEST_CASE("tokens: kick with revoke refuses every earlier token across a crash, and later tokens work") {
  ServerProcess server(kAdmin);
  auto admin = std::make_unique<AdminClient>(server.admin_port(), "admin-key-1");
  const std::string old_minted = minted(*admin, "alice");
  const std::string old_no_iat = token_for("alice");  // counts as issued at 0
  std::unique_ptr<SyncClient> phone;
  REQUIRE(login_with(server, "alice", old_minted, v1::IOS, &phone).ok());
  auto bob = server.login("bob");

  const std::int64_t before_s = now_ms() / 1000;
  HttpReply k = admin->post("/v1/users/alice/kick", {{"revoke", true}});
  const std::int64_t after_s = now_ms() / 1000;
  INFO(k.text);
  REQUIRE(k.status == 200);
  CHECK(k.body["kicked_sessions"] == 1);
  CHECK(kick_reason(*phone) == v1::ADMIN);
  CHECK(phone->wait_closed(3s));

  // Straight back in with the token it held: refused, and so is every
  // token issued in or before the second of the kick.
  auto check_refused = [&](const std::string& token) {
    Frame r = login_with(server, "alice", token);
    CHECK(r.status() == StatusCode::kUnauthenticated);
    CHECK(r.error_message() == "token revoked");
  };
  check_refused(old_minted);
  check_refused(old_no_iat);
  check_refused(mint_jwt(kTestSecret, "alice", 0, before_s));
  // Issued later: /v1/tokens at once (dated after the kick's second), and
  // the backend's own token dated after it.
  const std::string fresh = minted(*admin, "alice");
  CHECK(claims_of(fresh)["iat"].get<std::int64_t>() > before_s);
  std::unique_ptr<SyncClient> back;
  CHECK(login_with(server, "alice", fresh, v1::IOS, &back).ok());
  CHECK(login_with(server, "alice", mint_jwt(kTestSecret, "alice", 0, after_s + 1), v1::WEB).ok());
  // Nobody else is touched.
  CHECK(must(bob->call_raw(Cmd::kHeartbeat, "")).ok());
  CHECK(login_with(server, "bob", token_for("bob"), v1::WEB).ok());

  // Durable: still refused after kill -9 and a restart.
  back.reset();
  bob.reset();
  server.kill9();
  server.restart();
  admin = std::make_unique<AdminClient>(server.admin_port(), "admin-key-1");
  check_refused(old_minted);
  check_refused(old_no_iat);
  CHECK(login_with(server, "alice", fresh).ok());

  // A kick without revoke (no body, an empty object, "revoke": false)
  // leaves the tokens working.
  CHECK(admin->post_raw("/v1/users/alice/kick", "").status == 200);
  CHECK(admin->post("/v1/users/alice/kick", json::object()).status == 200);
  CHECK(admin->post("/v1/users/alice/kick", {{"revoke", false}}).status == 200);
  CHECK(login_with(server, "alice", fresh).ok());
  // A revoke of a user never seen counts no sessions, and still refuses.
  HttpReply never = admin->post("/v1/users/carol/kick", {{"revoke", true}});
  CHECK(never.body["kicked_sessions"] == 0);
  Frame carol = login_with(server, "carol", token_for("carol"));
  CHECK(carol.status() == StatusCode::kUnauthenticated);
  // Bad bodies are 400, and revoke nothing.
  for (const char* body : {R"({"revoke":"yes"})", "{not json", "[true]"}) {
    HttpReply r = admin->post_raw("/v1/users/dave/kick", body);
    INFO(body);
    CHECK(r.status == 400);
    CHECK(r.body["status"] == "BAD_REQUEST");
  }
  CHECK(login_with(server, "dave", token_for("dave")).ok());
}

TEST_CASE("tokens: a kick with revoke also ends a LOGIN that was under way") {
  // LOGINs and the kick meet on the user's shard: whichever comes first,
  // no session with an old token survives the kick's answer.
  ServerProcess server(kAdmin);
  AdminClient admin(server.admin_port(), "admin-key-1");
  const std::string token = minted(admin, "alice");
  std::vector<std::unique_ptr<SyncClient>> clients;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(server.connect());
    FrameHeader h;
    h.cmd = Cmd::kLogin;
    h.seq = 1;
    clients.back()->send_raw(encode_frame(h, login_body("alice", token, 1 + i % 4)));
  }
  REQUIRE(admin.post("/v1/users/alice/kick", {{"revoke", true}}).status == 200);
  // Every connection was either refused, kicked, or replaced by a newer
  // login of its device type: none stays logged in.
  CHECK(wait_until([&] {
    HttpReply p = admin.get("/v1/users/alice/presence");
    return p.body["online"] == false;
  }));
  CHECK(login_with(server, "alice", token).status() == StatusCode::kUnauthenticated);
}

TEST_CASE("admin: Range headers are ignored, so 2,500 ranges cannot multiply an answer") {
  ServerProcess server(kAdmin);
  httplib::Client cli("127.0.0.1", server.admin_port());
  cli.set_read_timeout(15, 0);
  std::string many = "bytes=0-";
  for (int i = 1; i < 2500; ++i) many += ",0-";
  auto whole = cli.Get("/metrics");
  REQUIRE(whole);
  const std::size_t size = whole->body.size();
  for (const std::string& range : {many, std::string("bytes=0-10")}) {
    for (const char* path : {"/metrics", "/healthz"}) {
      auto r = cli.Get(path, {{"Range", range}});
      REQUIRE(r);
      INFO(path << " " << r->body.size() << " bytes");
      CHECK(r->status == 200);
      CHECK(r->get_header_value("Content-Type").find("multipart") == std::string::npos);
      CHECK(r->body.size() < size + 4096);
      CHECK(r->body.size() > (std::string(path) == "/healthz" ? 10 : size / 2));
    }
  }
  // The /v1 routes and httplib's own errors answer whole too.
  httplib::Headers headers = {{"Authorization", "Bearer admin-key-1"}, {"Range", many}};
  auto token = cli.Post("/v1/tokens", headers, R"({"uid":"alice"})", "application/json");
  REQUIRE(token);
  CHECK(token->status == 200);
  CHECK(json::parse(token->body, nullptr, false)["token"].is_string());
  auto missing = cli.Get("/v1/nothing-here", headers);
  REQUIRE(missing);
  CHECK(missing->status == 404);
  CHECK(json::parse(missing->body, nullptr, false)["status"] == "NOT_FOUND");
  // A Range header httplib cannot satisfy is its 416, small.
  auto bad = cli.Get("/metrics", {{"Range", many + ",5-1"}});
  REQUIRE(bad);
  CHECK(bad->status == 416);
  CHECK(bad->body.size() < 4096);
  CHECK(json::parse(bad->body, nullptr, false).is_object());
}
