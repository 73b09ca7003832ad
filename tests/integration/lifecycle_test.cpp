// The binary's command line, config refusals, environment overrides,
// graceful shutdown, and the server embedded in-process through im::Server.

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "auth/jwt.h"
#include "im/frame_codec.h"
#include "im/server.h"
#include "im/version.h"
#include "proto/im.pb.h"
#include "server_process.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

// A config file, removed with the object: write_config("...").path lasts
// the full expression that names it.
struct ConfigFile {
  explicit ConfigFile(const std::string& text) : path(unique_temp_path("imserver-cli-test") + ".toml") {
    std::ofstream(path) << text;
  }
  ~ConfigFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  ConfigFile(const ConfigFile&) = delete;
  ConfigFile& operator=(const ConfigFile&) = delete;
  const std::string path;
};

ConfigFile write_config(const std::string& text) {
  return ConfigFile(text);
}

struct ThreadPolicy {
  pid_t tid;
  std::string name;
  int policy;
};

// Each of the process's threads: its name and scheduling policy.
std::vector<ThreadPolicy> thread_policies(pid_t pid) {
  std::vector<ThreadPolicy> threads;
  for (const auto& t : threads_of(pid)) {
    const int policy = sched_getscheduler(t.tid);
    if (policy >= 0) threads.push_back({t.tid, t.name, policy});  // else the thread ended
  }
  return threads;
}

// Whether `name` is an I/O loop's or a shard's thread.
bool busy_thread(const std::string& name) {
  return name.starts_with("im:io") || name.starts_with("im:shard");
}

// The threads' policies, for a failure's message.
std::string describe(const std::vector<ThreadPolicy>& threads) {
  std::string text;
  for (const auto& t : threads) text += fmt::format("{}/{}={} ", t.tid, t.name, t.policy);
  return text;
}

}  // namespace

TEST_CASE("the command line: version and help") {
  auto v = run_imserver("--version");
  CHECK(v.exit_code == 0);
  // The version of CMake's project(), the one place it is set.
  CHECK(v.output == std::string("imserver ") + im::kVersionString + "\n");
  CHECK(std::string(im::kVersionString).find('.') != std::string::npos);
  auto h = run_imserver("--help");
  CHECK(h.exit_code == 0);
  CHECK(h.output.find("--config") != std::string::npos);
  CHECK(h.output.find("--check-config") != std::string::npos);
}

TEST_CASE("check-config accepts a good config and the shipped one") {
  auto good = run_imserver("--check-config --config " + std::string(IM_SOURCE_DIR) + "/config/im.toml");
  CHECK(good.exit_code == 0);
  CHECK(good.output == "imserver: config OK\n");
}

TEST_CASE("a bad config stops start-up with one line naming the key") {
  auto unknown = run_imserver("--config " + write_config("[server]\nlisten_addr = \"127.0.0.1:0\"\n").path);
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.output == "imserver: config: server.listen_addr: unknown key\n");
  auto bad = run_imserver("--check-config --config " + write_config("[heartbeat]\ninterval_s = 0\n").path);
  CHECK(bad.exit_code == 2);
  CHECK(bad.output == "imserver: config: heartbeat.interval_s: must be between 1 and 3600\n");
  auto open =
      run_imserver("--config " + write_config("[auth]\nmode = \"insecure\"\n[server]\nlisten = \"0.0.0.0:0\"\n").path);
  CHECK(open.exit_code == 2);
  CHECK(open.output.find("imserver: config: auth.mode:") == 0);
  auto missing = run_imserver("--config /nonexistent/im.toml");
  CHECK(missing.exit_code == 2);
  auto env = run_imserver("--check-config --config " + write_config("").path + " IMSERVER_X=1");
  CHECK(env.exit_code != 0);
}

TEST_CASE("a listener that cannot bind stops start-up with a clear line") {
  ServerProcess first;
  // A data dir of its own: "./data" is shared by every test run from here.
  const std::string data_dir = unique_temp_path("imserver-bind-test");
  const ConfigFile config = write_config("[server]\nlisten = \"127.0.0.1:" + std::to_string(first.tcp_port()) +
                                         "\"\nws_listen = \"\"\n[admin]\nlisten = \"\"\n[auth]\njwt_secret = \"" +
                                         kTestSecret + "\"\n[storage]\ndata_dir = \"" + data_dir + "\"\n");
  auto r = run_imserver("--config " + config.path);
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("server.listen: cannot listen on") != std::string::npos);
  std::filesystem::remove_all(data_dir);
}

TEST_CASE("environment overrides reach the running server") {
  ::setenv("IMSERVER_SERVER__MAX_FRAME_BYTES", "6144", 1);
  ::setenv("IMSERVER_LIMITS__MAX_MESSAGE_BYTES", "1024", 1);
  ServerProcess server;
  ::unsetenv("IMSERVER_SERVER__MAX_FRAME_BYTES");
  ::unsetenv("IMSERVER_LIMITS__MAX_MESSAGE_BYTES");
  auto c = server.login("alice");
  FrameHeader h;
  h.cmd = Cmd::kHeartbeat;
  h.seq = 9;
  c->send_raw(encode_frame(h, std::string(7000, 'x')));
  auto f = c->next_frame();
  REQUIRE(f);
  CHECK(f->status() == StatusCode::kFrameTooLarge);
}

TEST_CASE("I/O loops and shards run under SCHED_BATCH unless server.batch_scheduling is false") {
  // The harness pins 2 loops and 2 shards; each thread's policy is set
  // before its start() returns, so before the server listens. Every other
  // thread (the main one, RocksDB's, the admin pool...) keeps the default;
  // io_uring's own workers ("iou-"), if any, take their loop's.
  for (const bool batch : {true, false}) {
    INFO("server.batch_scheduling = " << batch);
    ServerProcess server(Overrides{{"server.batch_scheduling", batch ? "true" : "false"}});
    CHECK((server.log().find("now run under SCHED_BATCH") != std::string::npos) == batch);
    const auto threads = thread_policies(server.pid());
    INFO(describe(threads));
    std::vector<std::string> busy;
    for (const auto& t : threads) {
      if (t.name.starts_with("iou-")) continue;
      if (busy_thread(t.name)) busy.push_back(t.name);
      CHECK(t.policy == (busy_thread(t.name) && batch ? SCHED_BATCH : SCHED_OTHER));
    }
    std::sort(busy.begin(), busy.end());
    CHECK(busy == std::vector<std::string>{"im:io0", "im:io1", "im:shard0", "im:shard1"});
    CHECK(std::any_of(threads.begin(), threads.end(), [&](const auto& t) { return t.tid == server.pid(); }));
  }
}

TEST_CASE("the start-up log names the version and the open-file limit") {
  ServerProcess server;
  const std::string log = server.log();
  CHECK(log.find(std::string("imserver ") + im::kVersionString + " starting with ") != std::string::npos);
  CHECK(log.find("open file limit") != std::string::npos);
}

#if IM_JEMALLOC
// jemalloc's own default is four arenas a CPU: "narenas 1" shows that the
// server's malloc_conf was read, "narenas 7" that MALLOC_CONF overrides it.
TEST_CASE("jemalloc runs one arena unless MALLOC_CONF says otherwise") {
  {
    ServerProcess server;
    INFO(server.log());
    CHECK(server.log().find("malloc: jemalloc ") != std::string::npos);
    CHECK(server.log().find(", narenas 1, percpu_arena disabled,") != std::string::npos);
  }
  REQUIRE(setenv("MALLOC_CONF", "narenas:7", 1) == 0);  // inherited by the server
  ServerProcess server;
  unsetenv("MALLOC_CONF");
  INFO(server.log());
  CHECK(server.log().find(", narenas 7, percpu_arena disabled,") != std::string::npos);
}
#else
TEST_CASE("malloc arenas are capped at loops + shards + 1 unless MALLOC_ARENA_MAX is set") {
  {
    ServerProcess server;  // the harness pins 2 loops and 2 shards
    CHECK(server.log().find("malloc arenas: at most 5 (I/O loops + shards + 1)") != std::string::npos);
  }
  REQUIRE(setenv("MALLOC_ARENA_MAX", "4", 1) == 0);  // inherited by the server
  ServerProcess server;
  unsetenv("MALLOC_ARENA_MAX");
  CHECK(server.log().find("malloc arenas: as the environment sets them") != std::string::npos);
}
#endif

TEST_CASE("SIGTERM: every session gets KICKOUT SERVER_SHUTDOWN with a reconnect delay, exit 0") {
  ServerProcess server;
  auto a = server.login("alice");
  auto b = server.login("bob");
  auto anonymous = server.connect();
  CHECK(server.terminate() == 0);
  std::vector<std::uint32_t> delays;
  for (SyncClient* c : {a.get(), b.get()}) {
    auto f = c->next_frame();
    REQUIRE(f);
    CHECK(f->header.cmd == Cmd::kKickout);
    v1::Kickout k;
    REQUIRE(f->parse(k));
    CHECK(k.reason() == v1::SERVER_SHUTDOWN);
    CHECK(k.reconnect_after_ms() >= 1000);
    delays.push_back(k.reconnect_after_ms());
    CHECK(c->wait_closed(2s));
  }
  CHECK(anonymous->wait_closed(2s));
  CHECK(server.log().find("stopped") != std::string::npos);
}

TEST_CASE("the server embeds in-process: start, bound addresses, serve, stop") {
  Config config;
  config.server.listen = "127.0.0.1:0";
  config.server.ws_listen = "";
  config.admin.listen = "";
  config.auth.mode = "insecure";
  config.server.io_threads = 1;
  config.sharding.shards = 1;
  config.storage.data_dir = unique_temp_path("imserver-embedded-test");
  Server server(config);
  server.start();
  auto listeners = server.listeners();
  REQUIRE(listeners.size() == 1);
  CHECK(listeners[0].kind == "tcp");
  CHECK(listeners[0].host == "127.0.0.1");
  REQUIRE(listeners[0].port != 0);
  {
    SyncClient c;
    REQUIRE(c.connect("127.0.0.1", listeners[0].port));
    auto r = c.call_raw(Cmd::kLogin, login_body("alice", "anything goes in insecure mode"));
    REQUIRE(r);
    CHECK(r->ok());
    CHECK(server.connection_count() == 1);
  }
  server.stop();
  std::filesystem::remove_all(config.storage.data_dir);
}

TEST_CASE("SIGHUP rotates the JWT secret live and keeps the old config when the new one is bad") {
  ServerProcess server;
  const std::string path = server.dir() + "/im.toml";
  auto rewrite = [&](const std::string& from, const std::string& to) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    std::string text = s.str();
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    std::ofstream(path) << text;
  };
  auto login_with = [&](const std::string& secret) {
    auto c = server.connect();
    return must(c->call_raw(Cmd::kLogin, login_body("alice", mint_jwt(secret, "alice", 0)))).status();
  };
  const std::string next_secret = "a-brand-new-secret-of-more-than-32-bytes";
  CHECK(login_with(kTestSecret) == StatusCode::kOk);
  // a bad config: ignored, the old secret still works
  rewrite("[log]", "[log]\nbogus = 1");
  ::kill(server.pid(), SIGHUP);
  // the refusal is logged once the reload was tried: only then is the old
  // secret still working a result
  auto refused = [&] { return server.log().find("SIGHUP: config not reloaded") != std::string::npos; };
  (void)wait_until(refused);
  CHECK(login_with(kTestSecret) == StatusCode::kOk);
  CHECK(refused());
  rewrite("bogus = 1", "");
  rewrite(kTestSecret, next_secret);
  ::kill(server.pid(), SIGHUP);
  CHECK(wait_until([&] { return login_with(next_secret) == StatusCode::kOk; }, kWaitTimeout, 20ms));
  CHECK(login_with(kTestSecret) == StatusCode::kUnauthenticated);
}
