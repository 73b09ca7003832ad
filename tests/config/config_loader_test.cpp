#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "config/config_loader.h"
#include "server_process.h"

using namespace im;

namespace {

const std::string kSecret = "0123456789abcdef0123456789abcdef";

// Writes `toml` to a temporary file and loads it with `env`.
Result<Config> load(const std::string& toml, std::map<std::string, std::string> env = {}) {
  const std::string path = im::test::unique_temp_path("imserver-config-test") + ".toml";
  std::ofstream(path) << toml;
  auto r = load_config(path, env);
  std::filesystem::remove(path);
  return r;
}

std::string with_secret(const std::string& rest = "") {
  return "[auth]\njwt_secret = \"" + kSecret + "\"\n" + rest;
}

// The error line of a config that must be refused.
std::string refusal(const std::string& toml, std::map<std::string, std::string> env = {}) {
  auto r = load(toml, std::move(env));
  REQUIRE_FALSE(r);
  return r.error().message;
}

}  // namespace

TEST_CASE("defaults are those of the design, and need only a secret") {
  auto r = load(with_secret());
  REQUIRE(r);
  const Config& c = *r;
  CHECK(c.server.listen == "0.0.0.0:9700");
  CHECK(c.server.ws_listen == "0.0.0.0:9701");
  CHECK(c.server.io_threads == 0);
  CHECK(c.server.io_uring);
  CHECK(c.server.batch_scheduling);
  CHECK(c.server.max_connections == 1000000);
  CHECK(c.server.max_frame_bytes == 65536);
  CHECK(c.server.max_pending_bytes == 1048576);
  CHECK(c.server.auth_timeout_ms == 10000);
  CHECK(c.server.ws_allowed_origins.empty());
  CHECK(c.tls.cert_file.empty());
  CHECK(c.heartbeat.interval_s == 60);
  CHECK(c.heartbeat.timeout_s == 180);
  CHECK(c.sharding.shards == 0);
  CHECK(c.storage.data_dir == "./data");
  CHECK_FALSE(c.storage.fsync);
  CHECK(c.storage.dedupe_window_s == 86400);
  CHECK(c.storage.dedupe_memory_entries == 2000000);
  CHECK(c.storage.inbox_retention_days == 30);
  CHECK(c.storage.history_retention_days == 365);
  CHECK(c.auth.mode == "jwt");
  CHECK(c.admin.listen == "127.0.0.1:9702");
  CHECK(c.admin.api_key.empty());
  CHECK(c.push.offline_delay_ms == 5000);
  CHECK(c.webhook.url.empty());
  CHECK(c.webhook.timeout_ms == 3000);
  CHECK(c.webhook.max_queued == 1000000);
  CHECK(c.webhook.max_retry_s == 86400);
  CHECK(c.webhook.concurrency == 8);
  CHECK(c.limits.max_message_bytes == 32768);
  CHECK(c.limits.max_group_members == 100000);
  CHECK(c.limits.write_fanout_max_members == 2000);
  CHECK(c.limits.messages_per_second == 100);
  CHECK(c.limits.burst == 200);
  CHECK(c.limits.accept_per_second == 20000);
  CHECK(c.limits.connections_per_ip == 0);
  CHECK(c.search.enabled);
  CHECK(c.search.text_content_types.empty());
  CHECK(c.search.commit_interval_ms == 1000);
  CHECK(c.log.level == "info");
  CHECK(c.log.format == "text");
  CHECK(c.shutdown.timeout_s == 10);
}

TEST_CASE("search: the keys, a list of content types from the file and the environment, bad values") {
  auto r = load(
      with_secret("[search]\nenabled = false\ntext_content_types = [1, 7, 4294967295]\ncommit_interval_ms = 250\n"));
  REQUIRE(r);
  CHECK_FALSE(r->search.enabled);
  CHECK(r->search.text_content_types == std::vector<std::uint32_t>{1, 7, 4294967295u});
  CHECK(r->search.commit_interval_ms == 250);
  auto e = load(with_secret(), {{"IMSERVER_SEARCH__TEXT_CONTENT_TYPES", "3,4"}});
  REQUIRE(e);
  CHECK(e->search.text_content_types == std::vector<std::uint32_t>{3, 4});
  auto none = load(with_secret("[search]\ntext_content_types = [5]\n"), {{"IMSERVER_SEARCH__TEXT_CONTENT_TYPES", ""}});
  REQUIRE(none);
  CHECK(none->search.text_content_types.empty());
  CHECK(refusal(with_secret("[search]\ntext_content_types = [\"1\"]\n")).find("search.text_content_types:") == 0);
  CHECK(refusal(with_secret("[search]\ntext_content_types = [-1]\n")).find("search.text_content_types:") == 0);
  CHECK(refusal(with_secret("[search]\ntext_content_types = [4294967296]\n")).find("search.text_content_types:") == 0);
  CHECK(refusal(with_secret("[search]\ntext_content_types = 1\n")).find("search.text_content_types:") == 0);
  CHECK(refusal(with_secret(), {{"IMSERVER_SEARCH__TEXT_CONTENT_TYPES", "1,x"}})
            .find("IMSERVER_SEARCH__TEXT_CONTENT_TYPES") == 0);
  CHECK(refusal(with_secret("[search]\ncommit_interval_ms = 5\n")).find("search.commit_interval_ms: must be between") ==
        0);
  CHECK(refusal(with_secret("[search]\nenabled = 1\n")).find("search.enabled:") == 0);
}

TEST_CASE("cluster: embedded by default, jetstream with its servers, and what jetstream refuses") {
  auto d = load(with_secret());
  REQUIRE(d);
  CHECK(d->cluster.mode == "embedded");
  CHECK(d->cluster.partitions == 64);
  CHECK(d->cluster.replicas == 3);
  CHECK(d->cluster.stream_max_bytes == 1ull << 30);
  CHECK(d->cluster.trim_at_percent == 50);
  CHECK(d->cluster.trim_check_s == 60);
  CHECK(d->cluster.snapshot_max_bytes == 16ull << 30);
  CHECK(shard_count(*d) == thread_count(d->sharding.shards));
  auto j =
      load(with_secret("[cluster]\nmode = \"jetstream\"\nnats_urls = [\"nats://10.0.0.1:4222\", "
                       "\"nats://10.0.0.2:4222\"]\nnode_name = \"im-1\"\npartitions = 8\nreplicas = 1\n"
                       "stream_max_bytes = 2097152\npublish_timeout_ms = 500\nunanswered_stop_ms = 5000\n"));
  REQUIRE(j);
  CHECK(j->cluster.nats_urls.size() == 2);
  CHECK(j->cluster.node_name == "im-1");
  CHECK(shard_count(*j) == 8);  // one shard per partition
  CHECK(j->cluster.publish_timeout_ms == 500);
  auto env = load(with_secret(), {{"IMSERVER_CLUSTER__MODE", "jetstream"},
                                  {"IMSERVER_CLUSTER__NATS_URLS", "nats://127.0.0.1:4222,nats://127.0.0.1:4223"}});
  REQUIRE(env);
  CHECK(env->cluster.nats_urls.size() == 2);
  const std::string js = "[cluster]\nmode = \"jetstream\"\nnats_urls = [\"nats://127.0.0.1:4222\"]\n";
  CHECK(refusal(with_secret("[cluster]\nmode = \"jetstream\"\n")).find("cluster.nats_urls: must name") == 0);
  CHECK(refusal(with_secret("[cluster]\nmode = \"raft\"\n")).find("cluster.mode: must be") == 0);
  CHECK(refusal(with_secret("[cluster]\nmode = \"jetstream\"\nnats_urls = [\"http://x:1\"]\n"))
            .find("cluster.nats_urls: each must start") == 0);
  CHECK(refusal(with_secret(js + "node_name = \"a:b\"\n")).find("cluster.node_name:") == 0);
  CHECK(d->cluster.stream_prefix == "IM");
  REQUIRE(load(with_secret(js + "stream_prefix = \"STAGING_2\"\n")));
  for (const char* bad :
       {"\"\"", "\"im\"", "\"A.B\"", "\"A*\"", "\"A>\"", "\"A B\"", "\"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456\""})
    CHECK(refusal(with_secret(js + "stream_prefix = " + bad + "\n")).find("cluster.stream_prefix:") == 0);
  CHECK(refusal(with_secret(js + "[storage]\nfsync = true\n")).find("storage.fsync: cannot be true in jetstream") == 0);
  CHECK(refusal(with_secret(js + "[server]\nmax_frame_bytes = 524288\n")).find("server.max_frame_bytes: at most") == 0);
  CHECK(refusal(with_secret(js + "publish_timeout_ms = 5000\nunanswered_stop_ms = 1000\n"))
            .find("cluster.unanswered_stop_ms:") == 0);
  CHECK(refusal(with_secret(js + "publish_timeout_ms = 10001\nunanswered_stop_ms = 100000\n"))
            .find("cluster.unanswered_stop_ms: with cluster.publish_timeout_ms at most 110000") == 0);
  CHECK(load(with_secret(js + "publish_timeout_ms = 10000\nunanswered_stop_ms = 100000\n")));
  CHECK(refusal(with_secret("[cluster]\npartitions = 0\n")).find("cluster.partitions: must be between") == 0);
  CHECK(refusal(with_secret("[cluster]\npartitions = 257\n")).find("cluster.partitions: must be between") == 0);
  CHECK(refusal(with_secret("[cluster]\nstream_max_bytes = 1000\n")).find("cluster.stream_max_bytes:") == 0);
  CHECK(refusal(with_secret("[cluster]\ntrim_at_percent = 91\n")).find("cluster.trim_at_percent: must be between") ==
        0);
  CHECK(refusal(with_secret("[cluster]\ntrim_check_s = 0\n")).find("cluster.trim_check_s: must be between") == 0);
  CHECK(refusal(with_secret("[cluster]\nsnapshot_max_bytes = 1048576\n")).find("cluster.snapshot_max_bytes:") == 0);
  auto never = load(with_secret("[cluster]\ntrim_at_percent = 0\ntrim_check_s = 5\nsnapshot_max_bytes = 16777216\n"));
  REQUIRE(never);
  CHECK(never->cluster.trim_at_percent == 0);
  CHECK(never->cluster.trim_check_s == 5);
  CHECK(never->cluster.snapshot_max_bytes == 16u << 20);
  // Embedded mode does not look at the cluster's servers, nor forbid fsync.
  CHECK(load(with_secret("[cluster]\nnats_urls = [\"x\"]\n[storage]\nfsync = true\n")));
}

TEST_CASE("0 loops or shards means half the cores, at least one") {
  const unsigned cores = std::thread::hardware_concurrency();
  CHECK(auto_thread_count() == std::max(1u, cores / 2));
  CHECK(auto_thread_count() >= 1);
}

TEST_CASE("every key is read from the file") {
  auto r = load(R"(
[server]
listen = "127.0.0.1:1"
ws_listen = ""
io_threads = 3
io_uring = false
batch_scheduling = false
max_connections = 500
max_frame_bytes = 131072
max_pending_bytes = 4194304
auth_timeout_ms = 2500
ws_allowed_origins = ["https://a.example", "https://b.example"]
[tls]
cert_file = ""
key_file = ""
[heartbeat]
interval_s = 20
timeout_s = 50
[sharding]
shards = 4
[storage]
data_dir = "/var/lib/im"
fsync = true
dedupe_window_s = 60
dedupe_memory_entries = 0
inbox_retention_days = 7
history_retention_days = 90
[auth]
mode = "insecure"
jwt_secret = ""
jwt_secret_file = ""
[admin]
listen = "127.0.0.1:0"
api_key = "k"
[push]
offline_delay_ms = 1500
[webhook]
url = "http://127.0.0.1:8080/hook"
secret = "webhook-secret-of-32-bytes-at-least"
timeout_ms = 900
max_queued = 77
max_retry_s = 60
concurrency = 3
[limits]
max_message_bytes = 1000
max_group_members = 50
messages_per_second = 7
burst = 9
accept_per_second = 11
connections_per_ip = 13
write_fanout_max_members = 40
[log]
level = "debug"
format = "json"
[shutdown]
timeout_s = 3
)");
  INFO((r ? "" : r.error().message));
  REQUIRE(r);
  const Config& c = *r;
  CHECK(c.server.listen == "127.0.0.1:1");
  CHECK(c.server.ws_listen.empty());
  CHECK(c.server.io_threads == 3);
  CHECK_FALSE(c.server.io_uring);
  CHECK_FALSE(c.server.batch_scheduling);
  CHECK(c.server.max_connections == 500);
  CHECK(c.server.max_frame_bytes == 131072);
  CHECK(c.server.max_pending_bytes == 4194304);
  CHECK(c.server.auth_timeout_ms == 2500);
  CHECK(c.server.ws_allowed_origins == std::vector<std::string>{"https://a.example", "https://b.example"});
  CHECK(c.heartbeat.interval_s == 20);
  CHECK(c.heartbeat.timeout_s == 50);
  CHECK(c.sharding.shards == 4);
  CHECK(c.storage.data_dir == "/var/lib/im");
  CHECK(c.storage.fsync);
  CHECK(c.storage.dedupe_window_s == 60);
  CHECK(c.storage.dedupe_memory_entries == 0);
  CHECK(c.storage.inbox_retention_days == 7);
  CHECK(c.storage.history_retention_days == 90);
  CHECK(c.auth.insecure());
  CHECK(c.admin.listen == "127.0.0.1:0");
  CHECK(c.admin.api_key == "k");
  CHECK(c.push.offline_delay_ms == 1500);
  CHECK(c.webhook.url == "http://127.0.0.1:8080/hook");
  CHECK(c.webhook.secret == "webhook-secret-of-32-bytes-at-least");
  CHECK(c.webhook.timeout_ms == 900);
  CHECK(c.webhook.max_queued == 77);
  CHECK(c.webhook.max_retry_s == 60);
  CHECK(c.webhook.concurrency == 3);
  CHECK(c.limits.max_message_bytes == 1000);
  CHECK(c.limits.max_group_members == 50);
  CHECK(c.limits.messages_per_second == 7);
  CHECK(c.limits.burst == 9);
  CHECK(c.limits.accept_per_second == 11);
  CHECK(c.limits.connections_per_ip == 13);
  CHECK(c.limits.write_fanout_max_members == 40);
  CHECK(c.log.level == "debug");
  CHECK(c.log.format == "json");
  CHECK(c.shutdown.timeout_s == 3);
}

TEST_CASE("unknown keys and sections are refused, naming them") {
  CHECK(refusal(with_secret("[server]\nlisten_port = 1\n")) == "server.listen_port: unknown key");
  CHECK(refusal(with_secret("[serverz]\nlisten = \"x\"\n")) == "serverz: unknown section");
  CHECK(refusal("top = 1\n" + with_secret()) == "top: unknown section");
}

TEST_CASE("wrong types are refused, naming the key") {
  CHECK(refusal(with_secret("[server]\nmax_frame_bytes = \"big\"\n")) == "server.max_frame_bytes: expected an integer");
  CHECK(refusal(with_secret("[storage]\nfsync = 1\n")) == "storage.fsync: expected true or false");
  CHECK(refusal(with_secret("[server]\nlisten = 9700\n")) == "server.listen: expected a string");
  CHECK(refusal(with_secret("[server]\nws_allowed_origins = \"x\"\n")) ==
        "server.ws_allowed_origins: expected an array of strings");
  CHECK(refusal(with_secret("[server]\nio_threads = 1.5\n")) == "server.io_threads: expected an integer");
  CHECK(refusal(with_secret("[server]\nio_uring = \"yes\"\n")) == "server.io_uring: expected true or false");
  CHECK(refusal(with_secret("[server]\nbatch_scheduling = 1\n")) == "server.batch_scheduling: expected true or false");
}

TEST_CASE("bad values are refused with the reason") {
  CHECK(refusal(with_secret("[server]\nmax_frame_bytes = 10\n")).find("server.max_frame_bytes: must be between") == 0);
  CHECK(refusal(with_secret("[server]\nio_threads = -1\n")) == "server.io_threads: must not be negative");
  CHECK(refusal(with_secret("[server]\nlisten = \"nohost\"\n")).find("server.listen:") == 0);
  CHECK(refusal(with_secret("[server]\nlisten = \"127.0.0.1:70000\"\n")).find("server.listen: port") == 0);
  CHECK(refusal(with_secret("[server]\nlisten = \"example.com:80\"\n")).find("server.listen: host") == 0);
  CHECK(refusal(with_secret("[server]\nws_listen = \"x:1\"\n")).find("server.ws_listen:") == 0);
  CHECK(refusal(with_secret("[admin]\nlisten = \"1.2.3\"\n")).find("admin.listen:") == 0);
  CHECK(refusal(with_secret("[server]\nmax_pending_bytes = 4096\n")).find("server.max_pending_bytes:") == 0);
  CHECK(refusal(with_secret("[server]\nws_allowed_origins = [\"\"]\n")).find("server.ws_allowed_origins:") == 0);
  CHECK(refusal(with_secret("[tls]\ncert_file = \"/x.pem\"\n")).find("tls.key_file: set both") == 0);
  CHECK(refusal(with_secret("[tls]\ncert_file = \"/nonexistent.pem\"\nkey_file = \"/nonexistent.key\"\n"))
            .find("tls.cert_file: cannot read") == 0);
  CHECK(refusal(with_secret("[heartbeat]\ninterval_s = 60\ntimeout_s = 60\n")).find("heartbeat.timeout_s:") == 0);
  CHECK(refusal(with_secret("[storage]\ndata_dir = \"\"\n")).find("storage.data_dir:") == 0);
  CHECK(refusal(with_secret("[storage]\ninbox_retention_days = 0\n")).find("storage.inbox_retention_days:") == 0);
  CHECK(refusal(with_secret("[storage]\ndedupe_memory_entries = 100000001\n"))
            .find("storage.dedupe_memory_entries: must be between") == 0);
  CHECK(refusal(with_secret("[push]\noffline_delay_ms = 0\n")).find("push.offline_delay_ms:") == 0);
  CHECK(refusal(with_secret("[webhook]\nurl = \"ftp://x\"\n")).find("webhook.url:") == 0);
  CHECK(refusal(with_secret("[webhook]\nmax_queued = 0\n")).find("webhook.max_queued: must be between") == 0);
  CHECK(refusal(with_secret("[webhook]\nmax_retry_s = 0\n")).find("webhook.max_retry_s: must be between") == 0);
  CHECK(refusal(with_secret("[webhook]\nconcurrency = 0\n")).find("webhook.concurrency: must be between") == 0);
  CHECK(refusal(with_secret("[webhook]\nconcurrency = 257\n")).find("webhook.concurrency: must be between") == 0);
  CHECK(refusal(with_secret("[limits]\nmax_message_bytes = 65000\n")).find("limits.max_message_bytes:") == 0);
  CHECK(refusal(with_secret("[limits]\nburst = 0\n")).find("limits.burst:") == 0);
  CHECK(refusal(with_secret("[limits]\nmax_group_members = 1\n")).find("limits.max_group_members:") == 0);
  CHECK(refusal(with_secret("[limits]\nwrite_fanout_max_members = 0\n")).find("limits.write_fanout_max_members:") == 0);
  CHECK(refusal(with_secret("[log]\nlevel = \"loud\"\n")).find("log.level:") == 0);
  CHECK(refusal(with_secret("[log]\nformat = \"xml\"\n")).find("log.format:") == 0);
  CHECK(refusal(with_secret("[shutdown]\ntimeout_s = 0\n")).find("shutdown.timeout_s:") == 0);
  CHECK(refusal(with_secret("[sharding]\nshards = 100000\n")).find("sharding.shards:") == 0);
}

TEST_CASE("auth: a short secret, an unknown mode, insecure off loopback are refused") {
  CHECK(refusal("[auth]\njwt_secret = \"short\"\n").find("auth.jwt_secret: must be at least 32 bytes") == 0);
  CHECK(refusal("[auth]\nmode = \"open\"\n").find("auth.mode:") == 0);
  CHECK(refusal("[auth]\nmode = \"insecure\"\n").find("auth.mode: \"insecure\" is allowed only") == 0);
  auto ok = load(
      "[auth]\nmode = \"insecure\"\n[server]\nlisten = \"127.0.0.1:0\"\nws_listen = \"[::1]:0\"\n"
      "[admin]\nlisten = \"localhost:0\"\n");
  CHECK(ok);
  CHECK(refusal("[auth]\nmode = \"insecure\"\n[server]\nlisten = \"127.0.0.1:0\"\nws_listen = \"\"\n"
                "[admin]\nlisten = \"0.0.0.0:9702\"\n")
            .find("auth.mode:") == 0);
}

TEST_CASE("webhook: a url needs a secret of at least 32 bytes, from the file or the environment") {
  const std::string url = "[webhook]\nurl = \"http://127.0.0.1:8080/hook\"\n";
  CHECK(refusal(with_secret(url)) == "webhook.secret: must be at least 32 bytes when webhook.url is set");
  CHECK(refusal(with_secret(url + "secret = \"0123456789abcdef0123456789abcde\"\n")) ==  // 31 bytes
        "webhook.secret: must be at least 32 bytes when webhook.url is set");
  CHECK(load(with_secret(url + "secret = \"0123456789abcdef0123456789abcdef\"\n")));
  CHECK(load(with_secret(url), {{"IMSERVER_WEBHOOK__SECRET", "0123456789abcdef0123456789abcdef"}}));
  CHECK(load(with_secret("[webhook]\nsecret = \"\"\n")));  // no url: no secret needed
}

TEST_CASE("the secret can come from a file, not together with jwt_secret") {
  const std::filesystem::path path = im::test::unique_temp_path("imserver-secret-test");
  std::ofstream(path) << kSecret << "\n";
  auto r = load("[auth]\njwt_secret_file = \"" + path.string() + "\"\n");
  REQUIRE(r);
  CHECK(r->auth.jwt_secret == kSecret);
  CHECK(refusal(with_secret("jwt_secret_file = \"" + path.string() + "\"\n")).find("auth.jwt_secret_file:") == 0);
  std::filesystem::remove(path);
  CHECK(refusal("[auth]\njwt_secret_file = \"" + path.string() + "\"\n").find("auth.jwt_secret_file: cannot read") ==
        0);
}

TEST_CASE("the environment overrides the file, for every kind of value") {
  auto r = load(with_secret("[server]\nmax_frame_bytes = 100000\n"),
                {{"IMSERVER_SERVER__MAX_FRAME_BYTES", "200000"},
                 {"IMSERVER_STORAGE__FSYNC", "true"},
                 {"IMSERVER_LOG__LEVEL", "warn"},
                 {"IMSERVER_SERVER__WS_ALLOWED_ORIGINS", "https://a,https://b"},
                 {"IMSERVER_AUTH__JWT_SECRET", kSecret + "-from-env"},
                 {"PATH", "/usr/bin"}});
  REQUIRE(r);
  CHECK(r->server.max_frame_bytes == 200000);
  CHECK(r->storage.fsync);
  CHECK(r->log.level == "warn");
  CHECK(r->server.ws_allowed_origins == std::vector<std::string>{"https://a", "https://b"});
  CHECK(r->auth.jwt_secret == kSecret + "-from-env");
}

TEST_CASE("bad environment overrides are refused, naming the variable") {
  CHECK(refusal(with_secret(), {{"IMSERVER_SERVER__NOPE", "1"}}).find("IMSERVER_SERVER__NOPE: unknown key") == 0);
  CHECK(refusal(with_secret(), {{"IMSERVER_SERVER", "1"}}).find("IMSERVER_SERVER:") == 0);
  CHECK(refusal(with_secret(), {{"IMSERVER_SERVER__IO_THREADS", "two"}}).find("IMSERVER_SERVER__IO_THREADS") == 0);
  CHECK(refusal(with_secret(), {{"IMSERVER_STORAGE__FSYNC", "yes"}}).find("IMSERVER_STORAGE__FSYNC") == 0);
}

TEST_CASE("no file at all: defaults and the environment") {
  auto r = load_config("", {{"IMSERVER_AUTH__JWT_SECRET", kSecret}});
  REQUIRE(r);
  CHECK(r->server.listen == "0.0.0.0:9700");
}

TEST_CASE("a file that is not TOML is refused with its position") {
  CHECK(refusal("[server\nlisten = 1").find(".toml:1:") != std::string::npos);
  CHECK_FALSE(load_config("/nonexistent/im.toml", {}));
}

TEST_CASE("the shipped config/im.toml is valid as is") {
  auto r = load_config(IM_SOURCE_DIR "/config/im.toml", {});
  INFO((r ? "" : r.error().message));
  REQUIRE(r);
  CHECK(is_loopback_host(parse_host_port(r->server.listen)->host));
}

TEST_CASE("host:port parsing") {
  CHECK(parse_host_port("127.0.0.1:0")->port == 0);
  CHECK(parse_host_port("[::1]:9700")->host == "::1");
  CHECK(parse_host_port("localhost:5")->host == "127.0.0.1");
  CHECK_FALSE(parse_host_port("[::1]9700"));
  CHECK_FALSE(parse_host_port("127.0.0.1:"));
  CHECK(is_loopback_host("127.5.5.5"));
  CHECK_FALSE(is_loopback_host("0.0.0.0"));
}
