// What one logged-in client can make the server hold or write (issue 11):
// inbox rows per second (limits.fanout_rows_per_second), device cursors
// (limits.devices_per_user), the shards' caches (sharding.cache_entries)
// against made-up ids, and group events cut to fit a frame so PULL and
// HISTORY always make progress.

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "http_helpers.h"
#include "messaging.h"
#include "server_process.h"
#include "store/store.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kAdminKey = "bounds-admin-key";

Overrides with(Overrides base, const Overrides& more) {
  for (const auto& [k, v] : more) base[k] = v;
  return base;
}

const Overrides kFast = {{"limits.messages_per_second", "10000000"},
                         {"limits.burst", "10000000"},
                         {"sharding.shards", "2"},
                         {"admin.listen", "\"127.0.0.1:0\""},
                         {"admin.api_key", fmt::format("\"{}\"", kAdminKey)}};

std::string random_id(std::mt19937_64& rng, std::size_t len) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string id(len, 'a');
  for (char& c : id) c = kChars[rng() % (sizeof(kChars) - 1)];
  return id;
}

Frame group_create(SyncClient& c, const std::string& gid, const std::vector<std::string>& members,
                   const std::string& announcement = "") {
  v1::GroupCreateReq req;
  req.set_gid(gid);
  req.set_name("bounds");
  req.set_announcement(announcement);
  for (const auto& m : members) req.add_members(m);
  return must(c.call(Cmd::kGroupCreate, &req));
}

std::vector<std::string> uids(const std::string& stem, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(fmt::format("{}{}", stem, i));
  return out;
}

Frame send_to(SyncClient& c, v1::ConvType type, const std::string& to, const std::string& cmid) {
  v1::SendReq req = send_req(to, cmid);
  req.set_conv_type(type);
  return must(c.call(Cmd::kSend, &req));
}

// SENDs until one is answered OK (each refusal must be RATE_LIMITED with a
// retry_after_ms, honoured); at most 50 tries.
v1::SendResp send_when_allowed(SyncClient& c, v1::ConvType type, const std::string& to, const std::string& cmid) {
  for (int i = 0; i < 50; ++i) {
    Frame f = send_to(c, type, to, cmid);
    if (f.ok()) {
      v1::SendResp resp;
      REQUIRE(f.parse(resp));
      return resp;
    }
    REQUIRE(f.status() == StatusCode::kRateLimited);
    REQUIRE(f.retry_after_ms() > 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(f.retry_after_ms()));
  }
  FAIL("still RATE_LIMITED after 50 tries");
  return {};
}

}  // namespace

// ---------------------------------------------------------------- limits.fanout_rows_per_second

TEST_CASE("fan-out rows are limited per user before anything is written, the admin API is not") {
  ServerProcess server(with(kFast, {{"limits.fanout_rows_per_second", "20"}}));  // burst 40
  auto alice = server.login("alice");
  const auto members = uids("m", 29);  // + alice: 30 rows per event or message

  Frame first = group_create(*alice, "g1", members);
  INFO(first.error_message());
  REQUIRE(first.ok());

  INFO("a second group of 30 at once (10 rows left, 1 s to refill): refused, and nothing of it exists");
  Frame second = group_create(*alice, "g2", members);
  REQUIRE(second.status() == StatusCode::kRateLimited);
  CHECK(second.retry_after_ms() > 0);
  v1::GroupGetReq get;
  get.set_gid("g2");
  CHECK(must(alice->call(Cmd::kGroupGet, &get)).status() == StatusCode::kNotFound);

  INFO("a SEND to the 30 members: refused while over, then stored with the next conv_seq (none consumed)");
  Frame refused = send_to(*alice, v1::GROUP, "g1", "over-1");
  REQUIRE(refused.status() == StatusCode::kRateLimited);
  CHECK(refused.retry_after_ms() > 0);
  v1::SendResp sent = send_when_allowed(*alice, v1::GROUP, "g1", "over-1");
  CHECK(sent.conv_seq() == 2);  // CREATED is 1
  CHECK_FALSE(sent.duplicate());

  INFO("C2C costs 2 rows: a burst of SENDs is refused once the bucket is empty");
  auto bob = server.login("bob");
  int ok = 0;
  bool limited = false;
  for (int i = 0; i < 400 && !limited; ++i) {
    Frame f = send_to(*bob, v1::C2C, "carol", fmt::format("c{}", i));
    if (f.ok()) {
      ++ok;
    } else {
      REQUIRE(f.status() == StatusCode::kRateLimited);
      limited = true;
    }
  }
  CHECK(limited);
  CHECK(ok >= 20);
  auto carol = server.login("carol");
  auto rows = pull_all(*carol);
  CHECK(rows.size() == static_cast<std::size_t>(ok));  // nothing stored for the refused one

  INFO("one request larger than the burst passes on a full bucket and leaves a debt");
  auto dave = server.login("dave");
  Frame big = group_create(*dave, "g3", uids("d", 60));
  INFO(big.error_message());
  CHECK(big.ok());
  CHECK(send_to(*dave, v1::C2C, "alice", "after-debt").status() == StatusCode::kRateLimited);

  INFO("the admin API is not limited");
  AdminClient admin(server.admin_port(), kAdminKey);
  for (int i = 0; i < 5; ++i) {
    HttpReply r = admin.post("/v1/messages", {{"from", "alice"},
                                              {"conv_type", "group"},
                                              {"to", "g1"},
                                              {"content_type", 1},
                                              {"body", "aGk="},
                                              {"client_msg_id", fmt::format("admin-{}", i)}});
    INFO(r.text);
    CHECK(r.status == 200);
  }
  CHECK(admin.metric("imserver_fanout_rate_limited_total").value_or(0) >= 3);
}

// ---------------------------------------------------------------- limits.devices_per_user

namespace {

std::vector<store::CursorRecord> stored_cursors(const std::string& data_dir, const std::string& uid) {
  StorageConfig sc;
  sc.data_dir = data_dir;
  auto store = store::Store::open(sc);
  REQUIRE(store);
  std::vector<store::CursorRecord> rows;
  REQUIRE((*store)->scan_cursors(uid, [&](const store::CursorRecord& r) {
    rows.push_back(r);
    return true;
  }));
  return rows;
}

// The LoginResp of a login of `uid` on that device (the session then ends).
// alice sends `n` messages to bob (m0, m1, ...), then logs out.
void send_to_bob(ServerProcess& server, int n) {
  auto alice = server.login("alice");
  for (int i = 0; i < n; ++i) send_ok(*alice, "bob", fmt::format("m{}", i));
}

v1::LoginResp login_resp(ServerProcess& server, const std::string& uid, v1::DeviceType type,
                         const std::string& device) {
  Frame login;
  (void)server.login(uid, type, device, &login);
  v1::LoginResp lr;
  REQUIRE(login.parse(lr));
  return lr;
}

}  // namespace

TEST_CASE("device cursors are bounded per user, the least recently used is forgotten, durably") {
  ServerProcess server(with(kFast, {{"limits.devices_per_user", "4"}}));
  send_to_bob(server, 10);
  // d0..d5 each acknowledge a different seq (PULL after N acknowledges N).
  for (int d = 0; d < 6; ++d) {
    auto bob = server.login("bob", v1::WEB, fmt::format("d{}", d));
    pull(*bob, static_cast<std::uint64_t>(d + 1));
  }
  // 300 more devices that never acknowledge: still at most 4 kept.
  for (int d = 100; d < 400; ++d) (void)server.login("bob", v1::IOS, fmt::format("x{}", d));
  for (int d = 0; d < 2; ++d) {
    auto bob = server.login("bob", v1::ANDROID, fmt::format("recent{}", d));
    pull(*bob, 9);
  }
  REQUIRE(server.terminate() == 0);
  CHECK(stored_cursors(server.data_dir(), "bob").size() <= 4);
  server.restart();
  CHECK(login_resp(server, "bob", v1::WEB, "d5").acked_seq() == 0);  // pushed out by the later devices
  const v1::LoginResp lr = login_resp(server, "bob", v1::ANDROID, "recent1");
  CHECK(lr.acked_seq() == 9);
  CHECK(lr.inbox_max_seq() == 10);
}

TEST_CASE("a new device is written by its first acknowledgement, not by its login") {
  ServerProcess server(kFast);
  send_to_bob(server, 3);
  for (int d = 0; d < 20; ++d) (void)server.login("bob", v1::IOS, fmt::format("idle{}", d));
  {
    auto bob = server.login("bob", v1::WEB, "reader");
    pull(*bob, 2);
  }
  REQUIRE(server.terminate() == 0);
  auto rows = stored_cursors(server.data_dir(), "bob");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].device_id == "reader");
  CHECK(rows[0].acked == 2);
  server.restart();
  CHECK(login_resp(server, "bob", v1::IOS, "idle3").acked_seq() == 0);
  CHECK(login_resp(server, "bob", v1::WEB, "reader").acked_seq() == 2);
}

TEST_CASE("a known device's login is its latest use, across a restart too") {
  ServerProcess server(with(kFast, {{"limits.devices_per_user", "3"}}));
  send_to_bob(server, 5);
  // d0, d1, d2 acknowledge in that order; then d0 logs in again without
  // acknowledging anything: d1 is now the least recently used.
  for (int d = 0; d < 3; ++d) {
    auto bob = server.login("bob", v1::WEB, fmt::format("d{}", d));
    pull(*bob, static_cast<std::uint64_t>(d + 1));
    std::this_thread::sleep_for(5ms);  // distinct last uses (ms)
  }
  (void)server.login("bob", v1::WEB, "d0");
  REQUIRE(server.terminate() == 0);
  server.restart();
  {
    auto bob = server.login("bob", v1::WEB, "d3");
    pull(*bob, 4);
  }
  REQUIRE(server.terminate() == 0);
  std::map<std::string, std::uint64_t> acked;
  for (const auto& r : stored_cursors(server.data_dir(), "bob")) acked[r.device_id] = r.acked;
  CHECK(acked == std::map<std::string, std::uint64_t>{{"d0", 1}, {"d2", 3}, {"d3", 4}});
}

TEST_CASE("a device with a live session keeps its cursor, however many other devices come") {
  ServerProcess server(with(kFast, {{"limits.devices_per_user", "2"}}));
  send_to_bob(server, 5);
  auto web = server.login("bob", v1::WEB, "laptop");
  pull(*web, 3);
  for (int d = 0; d < 6; ++d) {
    auto phone = server.login("bob", v1::IOS, fmt::format("phone{}", d));
    pull(*phone, 1);
  }
  Frame login;
  auto again = server.login("bob", v1::WEB, "laptop", &login);  // replaces the live session
  v1::LoginResp lr;
  REQUIRE(login.parse(lr));
  CHECK(lr.acked_seq() == 3);
}

TEST_CASE("a replaced session's device is no longer spared: it may be forgotten") {
  ServerProcess server(with(kFast, {{"limits.devices_per_user", "2"}}));
  send_to_bob(server, 3);
  auto web = server.login("bob", v1::WEB, "laptop");
  pull(*web, 3);
  // Each phone replaces the one before (the same device type) while its
  // connection is still open: the kick, not a disconnect, ends it.
  auto a = server.login("bob", v1::IOS, "phoneA");
  pull(*a, 1);
  auto b = server.login("bob", v1::IOS, "phoneB");
  auto c = server.login("bob", v1::IOS, "phoneC");  // room for it: phoneA goes (phoneB is still live)
  CHECK(login_resp(server, "bob", v1::IOS, "phoneA").acked_seq() == 0);
  CHECK(login_resp(server, "bob", v1::WEB, "laptop").acked_seq() == 3);
}

TEST_CASE("a device that logged in again on its own session is still spared") {
  ServerProcess server(with(kFast, {{"limits.devices_per_user", "2"}}));
  send_to_bob(server, 3);
  auto web = server.login("bob", v1::WEB, "laptop");
  pull(*web, 3);
  auto again = server.login("bob", v1::WEB, "laptop");  // replaces its own session
  for (int d = 0; d < 3; ++d) {
    auto phone = server.login("bob", v1::IOS, fmt::format("phone{}", d));
    pull(*phone, 1);
  }
  CHECK(login_resp(server, "bob", v1::WEB, "laptop").acked_seq() == 3);
}

TEST_CASE("after an admin kick the user's devices are no longer spared") {
  ServerProcess server(with(kFast, {{"limits.devices_per_user", "2"}}));
  AdminClient admin(server.admin_port(), kAdminKey);
  send_to_bob(server, 3);
  auto web = server.login("bob", v1::WEB, "laptop");
  pull(*web, 3);
  REQUIRE(admin.post("/v1/users/bob/kick", nlohmann::json::object()).body["kicked_sessions"] == 1);
  auto first = server.login("bob", v1::IOS, "phone0");
  pull(*first, 1);
  auto second = server.login("bob", v1::IOS, "phone1");  // room for it: the laptop goes, phone0 is live
  CHECK(login_resp(server, "bob", v1::WEB, "laptop").acked_seq() == 0);
}

// ---------------------------------------------------------------- sharding.cache_entries

TEST_CASE("made-up ids cost no memory: RSS stays flat across 200k HISTORY and GROUP_GET requests") {
  ServerProcess server(kFast);
  auto run = [&](int total, std::uint64_t seed) {
    constexpr int kThreads = 4;
    // Logged in here: Catch's assertions (login has some) are not thread
    // safe; the threads below use none.
    std::vector<std::unique_ptr<SyncClient>> clients;
    for (int t = 0; t < kThreads; ++t) clients.push_back(server.login(fmt::format("prober{}", t)));
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(seed * 100 + t);
        SyncClient* c = clients[static_cast<std::size_t>(t)].get();
        for (int i = 0; i < total / kThreads; ++i) {
          std::optional<Frame> f;
          if (i % 2 == 0) {
            v1::HistoryReq req;
            req.set_conv_type(v1::C2C);
            req.set_peer(random_id(rng, 60));
            f = c->call(Cmd::kHistory, &req);
            if (!f || !f->ok()) ++failures;
          } else {
            v1::GroupGetReq req;
            req.set_gid(random_id(rng, 60));
            f = c->call(Cmd::kGroupGet, &req);
            if (!f || f->status() != StatusCode::kNotFound) ++failures;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    REQUIRE(failures == 0);
  };
  const int scale = kSanitized ? 10 : 1;  // RSS is checked by the plain build only
  run(40000 / scale, 1);                  // warm-up: the allocator's arenas, RocksDB's readers
  const long before = server.rss_kb();
  run(200000 / scale, 2);
  const long after = server.rss_kb();
  INFO("RSS before " << before << " kB, after " << after << " kB");
#ifndef IM_SANITIZED  // ASan's quarantine keeps freed memory: RSS says nothing there
  CHECK(after - before < 6 * 1024);
#endif
}

TEST_CASE("with a tiny cache, users, conversations and groups dropped and reloaded keep every seq right") {
  ServerProcess server(with(kFast, {{"sharding.cache_entries", "100"}}));
  auto alice = server.login("alice");
  const auto people = uids("p", 400);
  for (int round = 0; round < 2; ++round)
    for (const auto& p : people) send_ok(*alice, p, fmt::format("{}-{}", p, round));
  REQUIRE(group_create(*alice, "big", std::vector<std::string>(people.begin(), people.begin() + 150)).ok());
  for (int i = 0; i < 3; ++i) (void)send_when_allowed(*alice, v1::GROUP, "big", fmt::format("g{}", i));
  // A user who logged out long ago still has a last_seen.
  {
    auto p399 = server.login("p399");
  }
  for (const auto& p : people) send_ok(*alice, p, p + "-last");
  for (int i : {0, 1, 149, 150, 399}) {
    auto c = server.login(people[i]);
    const std::size_t expected = i < 150 ? 2 + 1 + 3 + 1 : 2 + 1;  // c2c x2, CREATED, 3 group, last
    auto rows = pull_until(*c, [&](const auto& r) { return r.size() >= expected; });
    REQUIRE(rows.size() == expected);
    for (std::size_t k = 0; k < rows.size(); ++k) CHECK(rows[k].inbox_seq() == k + 1);
    auto conv = history_all(*c, v1::C2C, "alice");
    REQUIRE(conv.size() == 3);
    for (std::size_t k = 0; k < conv.size(); ++k) CHECK(conv[k].conv_seq() == k + 1);
  }
  auto g = history_all(*alice, v1::GROUP, "big");
  REQUIRE(g.size() == 4);
  for (std::size_t k = 0; k < g.size(); ++k) CHECK(g[k].conv_seq() == k + 1);
  v1::PresenceReq presence;
  presence.add_uids("p399");
  v1::PresenceResp pr;
  REQUIRE(must(alice->call(Cmd::kPresence, &presence)).parse(pr));
  REQUIRE(pr.presences_size() == 1);
  CHECK(pr.presences(0).last_seen_ms() > 0);
  AdminClient admin(server.admin_port(), kAdminKey);
  CHECK(admin.metric("imserver_cache_evictions_total").value_or(0) > 0);
}

// ---------------------------------------------------------------- events within a frame

TEST_CASE("group events are cut to fit a frame: PUSH, PULL and HISTORY always make progress") {
  ServerProcess server(with(kFast, {{"server.max_frame_bytes", "8192"}, {"limits.max_message_bytes", "7000"}}));
  std::mt19937_64 rng(11);
  std::vector<std::string> members;
  for (int i = 0; i < 60; ++i) members.push_back(random_id(rng, 64));
  auto owner = server.login("owner");
  auto watcher = server.login(members[0]);
  const std::string announcement(4096, 'a');
  Frame created = group_create(*owner, "wide", members, announcement);
  INFO(created.error_message());
  REQUIRE(created.ok());
  std::vector<std::string> more;
  for (int i = 0; i < 60; ++i) more.push_back(random_id(rng, 64));
  v1::GroupMembersReq add;
  add.set_gid("wide");
  for (const auto& m : more) add.add_uids(m);
  REQUIRE(must(owner->call(Cmd::kGroupAddMembers, &add)).ok());

  INFO("every PUSH the member got fits the frame limit");
  std::vector<v1::Message> pushed_rows;
  for (int i = 0; i < 100 && pushed_rows.size() < 3; ++i) {
    auto f = watcher->next_frame(2s);
    if (!f) break;
    CHECK(f->body.size() <= 8192);
    if (f->header.cmd != Cmd::kPush) continue;
    v1::MessagePush push;
    REQUIRE(f->parse(push));
    for (const auto& m : push.messages()) pushed_rows.push_back(m);
  }
  CHECK(pushed_rows.size() >= 3);

  INFO("PULL from 0, one page at a time: each page brings at least one row");
  std::vector<v1::Message> rows;
  std::uint64_t after = 0;
  for (int page = 0; page < 100; ++page) {
    v1::PullResp p = pull(*watcher, after, 1000);
    if (p.has_more()) REQUIRE(p.messages_size() > 0);
    for (const auto& m : p.messages()) rows.push_back(m);
    if (p.messages_size() > 0) after = p.messages(p.messages_size() - 1).inbox_seq();
    if (!p.has_more()) break;
  }
  REQUIRE(rows.size() >= 3);
  std::set<std::string> named;
  std::vector<v1::GroupEventType> types;
  for (const auto& m : rows) {
    v1::GroupEvent e;
    REQUIRE(e.ParseFromString(m.body()));
    types.push_back(e.type());
    for (const auto& u : e.uids()) named.insert(u);
  }
  CHECK(types.front() == v1::CREATED);
  for (std::size_t i = 1; i < types.size(); ++i) CHECK(types[i] == v1::MEMBERS_ADDED);
  for (const auto& m : members) CHECK(named.count(m) == 1);
  for (const auto& m : more) CHECK(named.count(m) == 1);
  CHECK(named.count("owner") == 1);

  INFO("HISTORY backwards makes progress on every page");
  std::uint64_t before = 0;
  std::size_t seen = 0;
  for (int page = 0; page < 100; ++page) {
    v1::HistoryResp h = history(*owner, v1::GROUP, "wide", before, 500);
    if (h.has_more()) REQUIRE(h.messages_size() > 0);
    seen += static_cast<std::size_t>(h.messages_size());
    if (!h.has_more() || h.messages_size() == 0) break;
    before = h.messages(0).conv_seq();
  }
  CHECK(seen == rows.size());
}

TEST_CASE("rows stored under a larger frame limit never stall PULL or HISTORY") {
  {
    ServerProcess big(with(kFast, {{"limits.max_message_bytes", "60000"}}));
    auto alice = big.login("alice");
    send_ok(*alice, "bob", "small-1");
    send_ok(*alice, "bob", "huge", std::string(50000, 'x'));
    send_ok(*alice, "bob", "small-2");
    REQUIRE(big.terminate() == 0);
    // the same data dir under a smaller frame limit
    ServerProcess small(with(kFast, {{"server.max_frame_bytes", "8192"}, {"limits.max_message_bytes", "7000"}}),
                        big.data_dir());
    auto bob = small.login("bob");
    std::vector<std::string> bodies;
    std::uint64_t after = 0;
    for (int page = 0; page < 10; ++page) {
      v1::PullResp p = pull(*bob, after, 1);
      for (const auto& m : p.messages()) bodies.push_back(m.client_msg_id());
      if (p.messages_size() > 0) after = p.messages(p.messages_size() - 1).inbox_seq();
      if (!p.has_more()) break;
    }
    CHECK(bodies == std::vector<std::string>{"small-1", "small-2"});
    auto conv = history_all(*bob, v1::C2C, "alice");
    REQUIRE(conv.size() == 2);
    CHECK(conv[0].client_msg_id() == "small-1");
    CHECK(conv[1].client_msg_id() == "small-2");
  }
}
