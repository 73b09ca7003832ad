// POST /v1/backup (an online checkpoint under storage.backup_dir) and
// GET /v1/users/{uid}/export (NDJSON, streamed) against the real binary.

#include <catch2/catch.hpp>

#include <poll.h>
#include <unistd.h>

#include <exception>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http_helpers.h"
#include "im/frame_codec.h"
#include "messaging.h"
#include "server_process.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr const char* kKey = "admin-key-0123456789abcdef-0123456789";

Overrides backup_config(const std::string& backup_dir) {
  return fast_overrides({{"admin.listen", "\"127.0.0.1:0\""},
                         {"admin.api_key", std::string("\"") + kKey + "\""},
                         {"storage.backup_dir", "\"" + backup_dir + "\""},
                         {"limits.fanout_rows_per_second", "1000000"}});
}

// The first `n` bytes `fd` receives within `limit` (fewer if it closes).
std::string read_prefix(int fd, std::size_t n, std::chrono::milliseconds limit) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[64];
    const ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - got.size()));
    if (r <= 0) break;
    got.append(buf, static_cast<std::size_t>(r));
  }
  return got;
}

// Sends `n` messages from `c` to `to`, `window` in flight at a time
// (pipelined raw frames: their answers come back as unsolicited frames);
// the conv_seqs answered, in order of the answers. A missing or failed
// answer throws instead of a Catch2 assertion: a writer thread calls it
// too, and Catch2's assertions belong to the test's own thread.
std::vector<std::uint64_t> pipelined_sends(SyncClient& c, const std::string& to, int from, int n, int window = 256) {
  auto expect = [](bool holds, const char* what) {
    if (!holds) throw std::runtime_error(std::string("pipelined SEND: ") + what);
  };
  std::vector<std::uint64_t> answered;
  for (int sent = 0; sent < n;) {
    const int batch = std::min(window, n - sent);
    std::string frames;
    for (int i = 0; i < batch; ++i) {
      FrameHeader h;
      h.cmd = Cmd::kSend;
      h.seq = static_cast<std::uint32_t>(1'000'000 + from + sent + i);
      frames += encode_frame(h, send_req(to, "m" + std::to_string(from + sent + i), "body " + std::to_string(from + sent + i))
                                    .SerializeAsString());
    }
    c.send_raw(std::move(frames));
    for (int i = 0; i < batch; ++i) {
      auto f = c.next_frame(10s);
      expect(f.has_value(), "no answer within 10 s");
      expect(f->header.cmd == Cmd::kSend, "an answer that is not a SEND's");
      expect(f->ok(), "a SEND answered with an error");
      v1::SendResp r;
      expect(f->parse(r), "a SendResp that does not parse");
      answered.push_back(r.conv_seq());
    }
    sent += batch;
  }
  return answered;
}

}  // namespace

TEST_CASE("backup: DISABLED without storage.backup_dir, needs the key") {
  ServerProcess server(Overrides{{"admin.listen", "\"127.0.0.1:0\""}, {"admin.api_key", std::string("\"") + kKey + "\""}});
  AdminClient admin(server.admin_port(), kKey);
  HttpReply r = admin.post("/v1/backup", json::object());
  CHECK(r.status == 501);
  CHECK(r.body["status"] == "DISABLED");
  AdminClient wrong(server.admin_port(), "wrong");
  CHECK(wrong.post("/v1/backup", json::object()).status == 401);
}

// [embedded]: in cluster mode a backup is a copy of one node's view of its
// streams, and the suite gives a server on another data dir other streams.
TEST_CASE("backup: taken under pipelined SENDs, a server started on it has every message acknowledged before the call",
          "[embedded]") {
  const std::string backups = unique_temp_path("imbackups");
  std::string path;
  std::size_t acknowledged_before = 0;
  {
    ServerProcess server(backup_config(backups));
    AdminClient admin(server.admin_port(), kKey);
    auto alice = server.login("alice");
    auto bob = server.login("bob");  // online: the PUSHes go somewhere
    auto first = pipelined_sends(*alice, "bob", 0, 2000);
    acknowledged_before = first.size();
    // The backup while a second client keeps sending. A failed check in
    // the writer is carried out of its thread, and the thread is joined
    // whatever the backup's call does (a jthread).
    std::exception_ptr writer_failed;
    auto carol = server.login("carol");  // here: login's checks are Catch2 assertions
    std::jthread writer([&] {
      try {
        for (int i = 0; i < 20; ++i) (void)pipelined_sends(*carol, "bob", i * 100, 100, 100);
      } catch (...) {
        writer_failed = std::current_exception();
      }
    });
    HttpReply r = admin.post("/v1/backup", json::object());
    writer.join();
    if (writer_failed) std::rethrow_exception(writer_failed);
    REQUIRE(r.status == 200);
    path = r.body["path"].get<std::string>();
    CHECK(path.rfind(backups + "/imserver-", 0) == 0);
    CHECK(r.body["size_bytes"].get<std::uint64_t>() > 0);
    CHECK(r.body["time_ms"].get<std::int64_t>() > 0);
    CHECK(std::filesystem::is_directory(path));
    // Every message is in there: only the server's user may look.
    namespace fs = std::filesystem;
    CHECK(fs::status(backups).permissions() == fs::perms::owner_all);
    CHECK(fs::status(path).permissions() == fs::perms::owner_all);
    CHECK(fs::status(server.data_dir()).permissions() == fs::perms::owner_all);
    // A second one is a new folder.
    HttpReply again = admin.post("/v1/backup", json::object());
    REQUIRE(again.status == 200);
    CHECK(again.body["path"] != r.body["path"]);
  }
  // A server on the copy: alice's 2,000 are all there, bob's inbox is gapless.
  ServerProcess restored(fast_overrides(), path);
  auto bob = restored.login("bob");
  auto rows = pull_all(*bob);
  REQUIRE(rows.size() >= acknowledged_before);
  std::size_t from_alice = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i].inbox_seq() == i + 1);
    if (rows[i].from() == "alice") ++from_alice;
  }
  CHECK(from_alice == acknowledged_before);
  std::filesystem::remove_all(backups);
}

TEST_CASE("export: a user with 100,000 messages streams as NDJSON with flat memory") {
  constexpr int kMessages = kSanitized ? 10'000 : 100'000;  // RSS is checked by the plain build only
  ServerProcess server(backup_config(unique_temp_path("imbackups-unused")));
  auto alice = server.login("alice");
  auto answered = pipelined_sends(*alice, "bob", 0, kMessages, 512);
  REQUIRE(answered.size() == kMessages);
  v1::GroupCreateReq g;
  g.set_gid("team");
  g.set_name("team");
  g.add_members("bob");
  REQUIRE(must(alice->call(Cmd::kGroupCreate, &g)).ok());

  const long rss_before = server.rss_kb();
  httplib::Client http("127.0.0.1", server.admin_port());
  http.set_read_timeout(120, 0);
  std::string partial;
  std::size_t lines = 0, messages = 0, groups = 0, users = 0;
  std::uint64_t last_seq = 0;
  bool ordered = true;
  long rss_peak = rss_before;
  auto res = http.Get(
      "/v1/users/bob/export", httplib::Headers{{"Authorization", std::string("Bearer ") + kKey}},
      [&](const httplib::Response& r) { return r.status == 200; },
      [&](const char* data, std::size_t n) {
        partial.append(data, n);
        for (auto nl = partial.find('\n'); nl != std::string::npos; nl = partial.find('\n')) {
          auto line = json::parse(partial.substr(0, nl));
          partial.erase(0, nl + 1);
          ++lines;
          const std::string type = line["type"];
          if (type == "user") ++users;
          if (type == "group") ++groups;
          if (type == "message") {
            const auto seq = std::stoull(line["inbox_seq"].get<std::string>());
            ordered = ordered && seq == last_seq + 1;
            last_seq = seq;
            ++messages;
          }
        }
        if (lines % 20000 == 0) rss_peak = std::max(rss_peak, server.rss_kb());
        return true;
      });
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == "application/x-ndjson");
  CHECK(partial.empty());
  CHECK(users == 1);
  CHECK(messages == kMessages + 1);  // and the group's CREATED event
  CHECK(ordered);
  CHECK(groups == 1);
  rss_peak = std::max(rss_peak, server.rss_kb());
  INFO("RSS before " << rss_before << " kB, peak " << rss_peak << " kB");
  // About 15 MB of NDJSON went out: one held whole would show here. Under
  // ASan freed memory waits in its quarantine (256 MB) and the growth seen
  // there went from 14 to 33 MB between runs: it says nothing about what the
  // export holds, so the bound is checked by the plain build only.
#ifndef IM_SANITIZED
  CHECK(rss_peak - rss_before < 12 * 1024);
#endif
  // A made-up user: the user line and nothing else; a bad uid is 400.
  AdminClient admin(server.admin_port(), kKey);
  HttpReply none = admin.get("/v1/users/nobody/export");
  CHECK(none.status == 200);
  CHECK(none.text == "{\"type\":\"user\",\"uid\":\"nobody\"}\n");
  CHECK(admin.get("/v1/users/bad%20uid/export").status == 400);
}

TEST_CASE("export: every group of a user, also more than one frame of them, with their fields") {
  ServerProcess server(backup_config(unique_temp_path("imbackups-unused")));
  auto alice = server.login("alice");
  constexpr int kGroups = 24;  // 24 announcements of 4 KiB: more than a 64 KiB frame
  for (int i = 0; i < kGroups; ++i) {
    v1::GroupCreateReq g;
    g.set_gid(fmt::format("g{:02}", i));
    g.set_name("group " + std::to_string(i));
    g.set_announcement(std::string(4096, static_cast<char>('a' + i)));
    g.add_members("dora");
    REQUIRE(must(alice->call(Cmd::kGroupCreate, &g)).ok());
  }
  AdminClient admin(server.admin_port(), kKey);
  HttpReply r = admin.get("/v1/users/dora/export");
  REQUIRE(r.status == 200);
  std::istringstream lines(r.text);
  std::vector<json> groups;
  for (std::string line; std::getline(lines, line);) {
    auto j = json::parse(line);
    CHECK(j["type"] != "error");
    if (j["type"] == "group") groups.push_back(j);
  }
  REQUIRE(groups.size() == kGroups);
  for (int i = 0; i < kGroups; ++i) {
    CHECK(groups[i]["gid"] == fmt::format("g{:02}", i));  // in gid order, each once
    CHECK(groups[i]["name"] == "group " + std::to_string(i));
    CHECK(groups[i]["owner"] == "alice");
    CHECK(groups[i]["member_count"] == 2);
    CHECK(groups[i]["announcement"].get<std::string>().size() == 4096);
  }
}

TEST_CASE(
    "export: at most two at once, a third is 503 with Retry-After, health and metrics stay served, a slot comes back") {
  constexpr int kMessages = 50'000;  // about 7 MB of NDJSON: more than a socket holds
  ServerProcess server(backup_config(unique_temp_path("imbackups-unused")));
  auto alice = server.login("alice");
  REQUIRE(pipelined_sends(*alice, "bob", 0, kMessages, 512).size() == kMessages);
  // Two readers that ask and never read, with a small receive window: their
  // exports block writing and hold their slots.
  const std::string request =
      std::string("GET /v1/users/bob/export HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ") + kKey + "\r\n\r\n";
  std::vector<int> stalled;
  for (int i = 0; i < 2; ++i) {
    const int fd = connect_raw(server.admin_port(), 4096);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
    stalled.push_back(fd);
  }
  // Each holds its slot once its status line has come: a third asked before
  // that could take a slot and leave one of them refused.
  for (int fd : stalled) CHECK(read_prefix(fd, 12, 30s) == "HTTP/1.1 200");
  httplib::Client http("127.0.0.1", server.admin_port());
  http.set_read_timeout(60, 0);
  const httplib::Headers auth{{"Authorization", std::string("Bearer ") + kKey}};
  auto refused = http.Get("/v1/users/bob/export", auth);
  REQUIRE(refused);
  REQUIRE(refused->status == 503);
  CHECK(refused->get_header_value("Retry-After") == "5");
  CHECK(json::parse(refused->body)["status"] == "UNAVAILABLE");
  auto health = http.Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  auto metrics = http.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  // The readers go: their slots come back (at once, or at the write timeout).
  for (int fd : stalled) ::close(fd);
  REQUIRE(wait_until(
      [&] {
        auto r = http.Get("/v1/users/nobody/export", auth);
        return r && r->status == 200;
      },
      30s));
}
