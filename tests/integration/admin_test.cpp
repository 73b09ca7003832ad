// The admin HTTP API against the real binary: every endpoint, with missing
// and wrong keys, bad JSON and unknown ids; health and metrics.

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

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

const Overrides kAdmin = {{"admin.listen", "\"127.0.0.1:0\""},
                          {"admin.api_key", "\"admin-key-1\""},
                          {"limits.max_message_bytes", "1000"},
                          {"sharding.shards", "2"}};

void expect_error(const HttpReply& r, int http, const char* status) {
  INFO(r.text);
  CHECK(r.status == http);
  REQUIRE(r.body.is_object());
  CHECK(r.body["status"] == status);
  CHECK(r.body["error"].is_string());
}

}  // namespace

TEST_CASE("admin: health without a key, every /v1 call needs the key") {
  ServerProcess server(kAdmin);
  REQUIRE(server.admin_port() != 0);
  AdminClient admin(server.admin_port(), "admin-key-1");
  HttpReply h = admin.get("/healthz", false);
  CHECK(h.status == 200);
  CHECK(h.body == json{{"status", "ok"}});
  CHECK(admin.get("/metrics", false).status == 200);
  for (bool with_key : {false, true}) {
    AdminClient other(server.admin_port(), with_key ? "wrong-key" : "");
    expect_error(other.post("/v1/tokens", {{"uid", "alice"}}, with_key), 401, "UNAUTHENTICATED");
    expect_error(other.get("/v1/users/alice/presence", with_key), 401, "UNAUTHENTICATED");
    expect_error(other.del("/v1/groups/x", with_key), 401, "UNAUTHENTICATED");
  }
  AdminClient prefix(server.admin_port(), "admin-key-1-and-more");
  expect_error(prefix.post("/v1/tokens", {{"uid", "alice"}}), 401, "UNAUTHENTICATED");
  expect_error(admin.get("/v1/nothing-here"), 404, "NOT_FOUND");
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

TEST_CASE("admin: an empty api_key on a loopback listener makes a development key once, kept in the data dir") {
  ServerProcess server(Overrides{{"admin.listen", "\"127.0.0.1:0\""}});
  const std::string path = server.data_dir() + "/admin_api_key";
  std::string key = read_text(path);
  REQUIRE(key.size() == 65);  // 64 hex digits and a newline
  CHECK(key.back() == '\n');
  key.pop_back();
  CHECK(key.find_first_not_of("0123456789abcdef") == std::string::npos);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  // Shown once, at its making.
  CHECK(count_of(server.log(), key) == 1);

  // Without it (or with another key) nothing; with it, the API.
  for (const std::string& other : {std::string(), std::string("wrong-key"), key.substr(1)}) {
    AdminClient wrong(server.admin_port(), other);
    expect_error(wrong.post("/v1/tokens", {{"uid", "alice"}}, !other.empty()), 401, "UNAUTHENTICATED");
  }
  AdminClient admin(server.admin_port(), key);
  HttpReply t = admin.post("/v1/tokens", {{"uid", "alice"}});
  CHECK(t.status == 200);
  CHECK(admin.get("/healthz", false).status == 200);

  // The next start takes the same key and does not show it again.
  server.terminate();
  server.restart();
  CHECK(read_text(path) == key + "\n");
  CHECK(count_of(server.log(), key) == 1);
  CHECK(server.log().find("takes the development key kept in") != std::string::npos);
  AdminClient again(server.admin_port(), key);
  CHECK(again.post("/v1/tokens", {{"uid", "alice"}}).status == 200);
}

TEST_CASE("admin: a development key file that is not a key stops the start instead of being replaced") {
  const std::string dir = unique_temp_path("imserver-devkey");
  {
    std::filesystem::create_directories(dir + "/data");
    std::ofstream(dir + "/data/admin_api_key") << "not a key\n";
  }
  CHECK_THROWS(ServerProcess(Overrides{{"admin.listen", "\"127.0.0.1:0\""}}, dir + "/data"));
  CHECK(read_text(dir + "/data/admin_api_key") == "not a key\n");
  std::filesystem::remove_all(dir);
  // A temporary file a crash left while making the key is no obstacle.
  const std::string fresh = unique_temp_path("imserver-devkey-tmp");
  std::filesystem::create_directories(fresh);
  std::ofstream(fresh + "/admin_api_key.tmp") << "";
  {
    ServerProcess server(Overrides{{"admin.listen", "\"127.0.0.1:0\""}}, fresh);
    CHECK(read_text(fresh + "/admin_api_key").size() == 65);
    CHECK_FALSE(std::filesystem::exists(fresh + "/admin_api_key.tmp"));
  }
  std::filesystem::remove_all(fresh);
}

TEST_CASE("admin: bad JSON and wrong types are 400, never a crash") {
  ServerProcess server(kAdmin);
  AdminClient admin(server.admin_port(), "admin-key-1");
  expect_error(admin.post_raw("/v1/tokens", "{not json"), 400, "BAD_REQUEST");
  expect_error(admin.post_raw("/v1/tokens", "[1,2]"), 400, "BAD_REQUEST");
  expect_error(admin.post("/v1/tokens", {{"uid", 42}}), 400, "BAD_REQUEST");
  expect_error(admin.post("/v1/tokens", {{"uid", "bad uid"}}), 400, "BAD_REQUEST");
  expect_error(admin.post("/v1/tokens", {{"uid", "a"}, {"ttl_s", "long"}}), 400, "BAD_REQUEST");
  expect_error(admin.post("/v1/tokens", {{"uid", "a"}, {"ttl_s", -5}}), 400, "BAD_REQUEST");
  expect_error(admin.post("/v1/messages", {{"from", "a"}, {"conv_type", "fax"}, {"to", "b"}, {"client_msg_id", "x"}}),
               400, "BAD_REQUEST");
  expect_error(admin.post("/v1/messages",
                          {{"from", "a"}, {"conv_type", "c2c"}, {"to", "b"}, {"body", "%%%"}, {"client_msg_id", "x"}}),
               400, "BAD_REQUEST");
  expect_error(admin.post("/v1/push", {{"to", "a"}, {"persist", "yes"}}), 400, "BAD_REQUEST");
  expect_error(admin.post("/v1/groups", {{"name", "n"}, {"owner", "o"}, {"members", "notalist"}}), 400, "BAD_REQUEST");
  expect_error(admin.post("/v1/groups", {{"name", "n"}, {"owner", "o"}, {"members", {1, 2}}}), 400, "BAD_REQUEST");
  expect_error(admin.get("/v1/users/bad%20uid/presence"), 400, "BAD_REQUEST");
  HttpReply huge = admin.post_raw("/v1/tokens", std::string(2 << 20, ' '));
  CHECK(huge.status == 413);
  CHECK(admin.get("/healthz", false).status == 200);
}

TEST_CASE("admin: tokens log in") {
  ServerProcess server(kAdmin);
  AdminClient admin(server.admin_port(), "admin-key-1");
  HttpReply t = admin.post("/v1/tokens", {{"uid", "alice"}, {"ttl_s", 600}});
  REQUIRE(t.status == 200);
  const std::string token = t.body["token"];
  auto c = server.connect();
  Frame ok = must(c->call_raw(Cmd::kLogin, login_body("alice", token)));
  CHECK(ok.ok());
  auto other = server.connect();
  CHECK(must(other->call_raw(Cmd::kLogin, login_body("bob", token))).status() == StatusCode::kUnauthenticated);
}

TEST_CASE("admin: messages on behalf of a user, with dedupe, to every session of both") {
  ServerProcess server(kAdmin);
  AdminClient admin(server.admin_port(), "admin-key-1");
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  json req = {{"from", "alice"},
              {"conv_type", "c2c"},
              {"to", "bob"},
              {"content_type", 3},
              {"body", base64_encode("from the backend")},
              {"client_msg_id", "backend-1"}};
  HttpReply r = admin.post("/v1/messages", req);
  INFO(r.text);
  REQUIRE(r.status == 200);
  CHECK(r.body["msg_id"].is_string());
  CHECK(r.body["conv_seq"] == "1");
  CHECK(r.body["duplicate"] == false);
  for (SyncClient* c : {alice.get(), bob.get()}) {  // no sending session: the sender's sessions get it too
    auto got = next_push(*c);
    REQUIRE(got.size() == 1);
    CHECK(std::to_string(got[0].msg_id()) == r.body["msg_id"].get<std::string>());
    CHECK(got[0].body() == "from the backend");
    CHECK(got[0].content_type() == 3);
  }
  HttpReply again = admin.post("/v1/messages", req);
  CHECK(again.body["duplicate"] == true);
  CHECK(again.body["msg_id"] == r.body["msg_id"]);
  req["body"] = base64_encode(std::string(1001, 'x'));
  req["client_msg_id"] = "backend-2";
  expect_error(admin.post("/v1/messages", req), 400, "TOO_LARGE");
  req["body"] = base64_encode("x");
  req["conv_type"] = "group";
  req["to"] = "no-such-group";
  expect_error(admin.post("/v1/messages", req), 404, "NOT_FOUND");
  req.erase("client_msg_id");
  expect_error(admin.post("/v1/messages", req), 400, "BAD_REQUEST");
}

TEST_CASE("admin: push live to online sessions, or persisted as a SYSTEM message") {
  ServerProcess server(kAdmin);
  AdminClient admin(server.admin_port(), "admin-key-1");
  auto phone = server.login("alice", v1::IOS);
  auto pc = server.login("alice", v1::DESKTOP);
  HttpReply live = admin.post("/v1/push", {{"to", "alice"}, {"topic", "promo"}, {"payload", base64_encode("p1")}});
  REQUIRE(live.status == 200);
  CHECK(live.body["delivered_sessions"] == 2);
  CHECK(live.body["push_id"].is_string());
  for (SyncClient* c : {phone.get(), pc.get()}) {
    auto f = c->next_frame();
    REQUIRE(f);
    CHECK(f->header.cmd == Cmd::kServerPush);
    v1::ServerPush p;
    REQUIRE(f->parse(p));
    CHECK(p.topic() == "promo");
    CHECK(p.payload() == "p1");
    CHECK(std::to_string(p.push_id()) == live.body["push_id"].get<std::string>());
    CHECK(p.server_time_ms() > 0);
  }
  HttpReply nobody = admin.post("/v1/push", {{"to", "carol"}, {"topic", "t"}, {"payload", base64_encode("x")}});
  CHECK(nobody.body["delivered_sessions"] == 0);
  CHECK(pull_all(*phone).empty());  // live pushes are not stored

  HttpReply stored = admin.post(
      "/v1/push", {{"to", "carol"}, {"topic", "bill"}, {"payload", base64_encode("due")}, {"persist", true}});
  REQUIRE(stored.status == 200);
  auto carol = server.login("carol");
  auto rows = pull_all(*carol);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].conv_type() == v1::SYSTEM);
  CHECK(rows[0].content_type() == 10002);
  CHECK(rows[0].from().empty());
  CHECK(rows[0].to() == "carol");
  CHECK(rows[0].topic() == "bill");
  CHECK(rows[0].body() == "due");
  CHECK(std::to_string(rows[0].msg_id()) == stored.body["push_id"].get<std::string>());
  CHECK(history(*carol, v1::SYSTEM, "", 0).messages_size() == 1);
  // persisted pushes to an online user arrive by PUSH
  admin.post("/v1/push", {{"to", "alice"}, {"topic", "t"}, {"payload", base64_encode("kept")}, {"persist", true}});
  auto got = next_push(*phone);
  REQUIRE(got.size() == 1);
  CHECK(got[0].body() == "kept");
  expect_error(admin.post("/v1/push", {{"to", "bad uid"}}), 400, "BAD_REQUEST");
  expect_error(admin.post("/v1/push", {{"to", "a"}, {"payload", base64_encode(std::string(1001, 'x'))}}), 400,
               "TOO_LARGE");
}

TEST_CASE("admin: presence and kick") {
  ServerProcess server(kAdmin);
  AdminClient admin(server.admin_port(), "admin-key-1");
  auto phone = server.login("alice", v1::IOS);
  auto web = server.login("alice", v1::WEB);
  HttpReply p = admin.get("/v1/users/alice/presence");
  REQUIRE(p.status == 200);
  CHECK(p.body["uid"] == "alice");
  CHECK(p.body["online"] == true);
  CHECK(p.body["devices"] == json::array({"ios", "web"}));
  HttpReply k = admin.post("/v1/users/alice/kick", json::object());
  REQUIRE(k.status == 200);
  CHECK(k.body["kicked_sessions"] == 2);
  for (SyncClient* c : {phone.get(), web.get()}) {
    auto f = c->next_frame();
    REQUIRE(f);
    REQUIRE(f->header.cmd == Cmd::kKickout);
    v1::Kickout ko;
    REQUIRE(f->parse(ko));
    CHECK(ko.reason() == v1::ADMIN);
    CHECK(c->wait_closed(2s));
  }
  HttpReply after = admin.get("/v1/users/alice/presence");
  CHECK(after.body["online"] == false);
  CHECK(after.body["last_seen_ms"].get<std::int64_t>() > 0);
  CHECK(admin.post("/v1/users/nobody/kick", json::object()).body["kicked_sessions"] == 0);
}

TEST_CASE("admin: groups create, get, members, delete") {
  ServerProcess server(kAdmin);
  AdminClient admin(server.admin_port(), "admin-key-1");
  HttpReply c = admin.post(
      "/v1/groups",
      {{"gid", "team"}, {"name", "Team"}, {"owner", "boss"}, {"members", {"w1", "w2"}}, {"announcement", "hi"}});
  INFO(c.text);
  REQUIRE(c.status == 200);
  CHECK(c.body["group"]["gid"] == "team");
  CHECK(c.body["group"]["owner"] == "boss");
  CHECK(c.body["group"]["announcement"] == "hi");
  CHECK(c.body["group"]["member_count"] == 3);
  CHECK(c.body["members"] == json::array({"boss", "w1", "w2"}));
  expect_error(admin.post("/v1/groups", {{"gid", "team"}, {"name", "x"}, {"owner", "o"}}), 409, "CONFLICT");
  expect_error(admin.post("/v1/groups", {{"name", ""}, {"owner", "o"}}), 400, "BAD_REQUEST");
  HttpReply auto_gid = admin.post("/v1/groups", {{"name", "x"}, {"owner", "o"}});
  CHECK(auto_gid.status == 200);
  CHECK_FALSE(auto_gid.body["group"]["gid"].get<std::string>().empty());
  HttpReply g = admin.get("/v1/groups/team");
  REQUIRE(g.status == 200);
  CHECK(g.body["members"].size() == 3);
  expect_error(admin.get("/v1/groups/nope"), 404, "NOT_FOUND");
  HttpReply m = admin.post("/v1/groups/team/members", {{"add", {"w3", "w4"}}, {"remove", {"w1"}}});
  REQUIRE(m.status == 200);
  CHECK(m.body["member_count"] == 4);
  expect_error(admin.post("/v1/groups/team/members", {{"remove", {"boss"}}}), 400, "BAD_REQUEST");
  expect_error(admin.post("/v1/groups/nope/members", {{"add", {"x"}}}), 404, "NOT_FOUND");
  expect_error(admin.post("/v1/groups/team/members", json::object()), 400, "BAD_REQUEST");
  // the members see the events (w3 was added by the backend, in the owner's name)
  auto w3 = server.login("w3");
  auto rows = pull_until(*w3, [](const auto& r) {
    v1::GroupEvent last;
    return !r.empty() && last.ParseFromString(r.back().body()) && last.type() == v1::MEMBERS_REMOVED;
  });
  REQUIRE_FALSE(rows.empty());
  v1::GroupEvent e;
  REQUIRE(e.ParseFromString(rows.back().body()));
  CHECK(e.type() == v1::MEMBERS_REMOVED);
  CHECK(e.actor() == "boss");
  HttpReply d = admin.del("/v1/groups/team");
  REQUIRE(d.status == 200);
  CHECK(d.body == json::object());
  expect_error(admin.get("/v1/groups/team"), 404, "NOT_FOUND");
  expect_error(admin.del("/v1/groups/team"), 404, "NOT_FOUND");
}

TEST_CASE("admin: /metrics is valid Prometheus exposition (promtool) with the design's metrics") {
  ServerProcess server(kAdmin);
  AdminClient admin(server.admin_port(), "admin-key-1");
  {
    auto a = server.login("alice");
    send_ok(*a, "bob", "m1");
    must(a->call_raw(Cmd::kLogin, login_body("x", "bad")));
  }
  HttpReply m = admin.get("/metrics", false);
  REQUIRE(m.status == 200);
  for (const char* name :
       {"imserver_connections", "imserver_sessions", "imserver_logins_total{result=\"ok\"}",
        "imserver_frames_in_total{cmd=\"SEND\"}", "imserver_bytes_out_total{cmd=\"SEND\"}",
        "imserver_messages_stored_total", "imserver_fanout_deliveries_total", "imserver_send_latency_seconds_bucket",
        "imserver_store_write_seconds_count", "imserver_outbox_depth", "imserver_webhook_failures_total"})
    CHECK(m.text.find(name) != std::string::npos);
  const std::string path = unique_temp_path("metrics") + ".txt";
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  std::fwrite(m.text.data(), 1, m.text.size(), f);
  std::fclose(f);
  const std::string cmd = "promtool check metrics < " + path + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = ::pclose(p);
  std::remove(path.c_str());
  INFO(out);
  CHECK(rc == 0);
}

TEST_CASE("admin: /healthz answers 503 while draining") {
  ServerProcess server(Overrides{{"admin.listen", "\"127.0.0.1:0\""}, {"shutdown.timeout_s", "3"}});
  AdminClient admin(server.admin_port(), "");
  CHECK(admin.get("/healthz", false).status == 200);
  // a session that never closes keeps the server draining for a moment
  int fd = connect_raw(server.tcp_port());
  REQUIRE(fd >= 0);
  FrameHeader h;
  h.cmd = Cmd::kLogin;
  h.seq = 1;
  const std::string login = encode_frame(h, login_body("slow", token_for("slow")));
  REQUIRE(::send(fd, login.data(), login.size(), MSG_NOSIGNAL) > 0);
  // its LOGIN is never read back: the session's count in /metrics says when it is in
  REQUIRE(wait_until([&] { return admin.metric("imserver_sessions") == 1.0; }));
  ::kill(server.pid(), SIGTERM);
  const bool saw_503 = wait_until([&] {
    httplib::Client cli("127.0.0.1", server.admin_port());
    auto r = cli.Get("/healthz");
    return r && r->status == 503;
  });
  ::close(fd);
  CHECK(saw_503);
}
