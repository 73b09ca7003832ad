#include "config/config_loader.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>

#include <toml++/toml.h>
#include <asio/ip/address.hpp>

extern char** environ;

namespace im {
namespace {

// A value for one key: from the TOML file (`node`) or from the environment
// (`text`). Exactly one is set.
struct RawValue {
  const toml::node* node = nullptr;
  std::optional<std::string> text;
};

// Assigns a raw value to its place in Config, or says why it cannot.
using Assign = std::function<std::optional<std::string>(Config&, const RawValue&)>;

struct KeySpec {
  std::string_view section;
  std::string_view name;
  Assign assign;
};

template <class Int>
KeySpec uint_key(std::string_view section, std::string_view name, Int& (*field)(Config&), std::uint64_t lo,
                 std::uint64_t hi) {
  return {section, name, [=](Config& c, const RawValue& v) -> std::optional<std::string> {
            std::uint64_t x = 0;
            if (v.node) {
              auto i = v.node->value_exact<std::int64_t>();
              if (!i) return "expected an integer";
              if (*i < 0) return "must not be negative";
              x = static_cast<std::uint64_t>(*i);
            } else {
              const std::string& s = *v.text;
              auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
              if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return "expected an integer";
            }
            if (x < lo || x > hi) return "must be between " + std::to_string(lo) + " and " + std::to_string(hi);
            field(c) = static_cast<Int>(x);
            return std::nullopt;
          }};
}

KeySpec bool_key(std::string_view section, std::string_view name, bool& (*field)(Config&)) {
  return {section, name, [=](Config& c, const RawValue& v) -> std::optional<std::string> {
            if (v.node) {
              auto b = v.node->value_exact<bool>();
              if (!b) return "expected true or false";
              field(c) = *b;
            } else if (*v.text == "true" || *v.text == "1") {
              field(c) = true;
            } else if (*v.text == "false" || *v.text == "0") {
              field(c) = false;
            } else {
              return "expected true or false";
            }
            return std::nullopt;
          }};
}

KeySpec string_key(std::string_view section, std::string_view name, std::string& (*field)(Config&)) {
  return {section, name, [=](Config& c, const RawValue& v) -> std::optional<std::string> {
            if (v.node) {
              auto s = v.node->value_exact<std::string>();
              if (!s) return "expected a string";
              field(c) = *s;
            } else {
              field(c) = *v.text;
            }
            return std::nullopt;
          }};
}

// In the environment a list is comma-separated ("a,b"); "" is the empty list.
KeySpec string_list_key(std::string_view section, std::string_view name, std::vector<std::string>& (*field)(Config&)) {
  return {section, name, [=](Config& c, const RawValue& v) -> std::optional<std::string> {
            std::vector<std::string> out;
            if (v.node) {
              const toml::array* arr = v.node->as_array();
              if (!arr) return "expected an array of strings";
              for (const toml::node& e : *arr) {
                auto s = e.value_exact<std::string>();
                if (!s) return "expected an array of strings";
                out.push_back(*s);
              }
            } else {
              std::stringstream in(*v.text);
              for (std::string item; std::getline(in, item, ',');) out.push_back(item);
            }
            field(c) = std::move(out);
            return std::nullopt;
          }};
}

constexpr std::uint64_t kMax32 = 0xFFFFFFFFu;

// A list of unsigned integers, each within [lo, hi]; in the environment
// comma-separated ("1,2"), "" being the empty list.
KeySpec uint_list_key(std::string_view section, std::string_view name, std::vector<std::uint32_t>& (*field)(Config&),
                      std::uint64_t lo, std::uint64_t hi) {
  return {section, name, [=](Config& c, const RawValue& v) -> std::optional<std::string> {
            std::vector<std::uint32_t> out;
            auto take = [&](std::uint64_t x) -> std::optional<std::string> {
              if (x < lo || x > hi) return "each must be between " + std::to_string(lo) + " and " + std::to_string(hi);
              out.push_back(static_cast<std::uint32_t>(x));
              return std::nullopt;
            };
            if (v.node) {
              const toml::array* arr = v.node->as_array();
              if (!arr) return "expected an array of integers";
              for (const toml::node& e : *arr) {
                auto i = e.value_exact<std::int64_t>();
                if (!i || *i < 0) return "expected an array of non-negative integers";
                if (auto bad = take(static_cast<std::uint64_t>(*i))) return bad;
              }
            } else {
              std::stringstream in(*v.text);
              for (std::string item; std::getline(in, item, ',');) {
                std::uint64_t x = 0;
                auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), x);
                if (ec != std::errc{} || p != item.data() + item.size() || item.empty())
                  return "expected comma-separated integers";
                if (auto bad = take(x)) return bad;
              }
            }
            field(c) = std::move(out);
            return std::nullopt;
          }};
}

const std::vector<KeySpec>& schema() {
  static const std::vector<KeySpec> keys = {
      string_key(
          "server", "listen", +[](Config & c) -> auto& { return c.server.listen; }),
      string_key(
          "server", "ws_listen", +[](Config & c) -> auto& { return c.server.ws_listen; }),
      uint_key(
          "server", "io_threads", +[](Config & c) -> auto& { return c.server.io_threads; }, 0, 256),
      uint_key(
          "server", "max_connections", +[](Config & c) -> auto& { return c.server.max_connections; }, 1, 100000000),
      uint_key(
          "server", "max_frame_bytes", +[](Config & c) -> auto& { return c.server.max_frame_bytes; }, kMinFrameBytes,
          16777216),
      uint_key(
          "server", "max_pending_bytes", +[](Config & c) -> auto& { return c.server.max_pending_bytes; }, 4096,
          1ull << 30),
      uint_key(
          "server", "auth_timeout_ms", +[](Config & c) -> auto& { return c.server.auth_timeout_ms; }, 100, 3600000),
      string_list_key(
          "server", "ws_allowed_origins", +[](Config & c) -> auto& { return c.server.ws_allowed_origins; }),
      string_key(
          "server", "web_root", +[](Config & c) -> auto& { return c.server.web_root; }),
      bool_key(
          "server", "io_uring", +[](Config & c) -> auto& { return c.server.io_uring; }),
      bool_key(
          "server", "batch_scheduling", +[](Config & c) -> auto& { return c.server.batch_scheduling; }),
      string_key(
          "tls", "cert_file", +[](Config & c) -> auto& { return c.tls.cert_file; }),
      string_key(
          "tls", "key_file", +[](Config & c) -> auto& { return c.tls.key_file; }),
      uint_key(
          "heartbeat", "interval_s", +[](Config & c) -> auto& { return c.heartbeat.interval_s; }, 1, 3600),
      uint_key(
          "heartbeat", "timeout_s", +[](Config & c) -> auto& { return c.heartbeat.timeout_s; }, 2, 86400),
      uint_key(
          "sharding", "shards", +[](Config & c) -> auto& { return c.sharding.shards; }, 0, 256),
      uint_key(
          "sharding", "cache_entries", +[](Config & c) -> auto& { return c.sharding.cache_entries; }, 100, 100000000),
      string_key(
          "storage", "data_dir", +[](Config & c) -> auto& { return c.storage.data_dir; }),
      string_key(
          "storage", "backup_dir", +[](Config & c) -> auto& { return c.storage.backup_dir; }),
      bool_key(
          "storage", "fsync", +[](Config & c) -> auto& { return c.storage.fsync; }),
      uint_key(
          "storage", "dedupe_window_s", +[](Config & c) -> auto& { return c.storage.dedupe_window_s; }, 0,
          365u * 86400u),
      uint_key(
          "storage", "dedupe_memory_entries", +[](Config & c) -> auto& { return c.storage.dedupe_memory_entries; }, 0,
          100000000),
      uint_key(
          "storage", "inbox_retention_days", +[](Config & c) -> auto& { return c.storage.inbox_retention_days; }, 1,
          36500),
      uint_key(
          "storage", "history_retention_days", +[](Config & c) -> auto& { return c.storage.history_retention_days; }, 1,
          36500),
      uint_key(
          "storage", "max_wal_mb", +[](Config & c) -> auto& { return c.storage.max_wal_mb; }, 16, 65536),
      uint_key(
          "storage", "write_buffer_mb", +[](Config & c) -> auto& { return c.storage.write_buffer_mb; }, 16, 65536),
      string_key(
          "auth", "mode", +[](Config & c) -> auto& { return c.auth.mode; }),
      string_key(
          "auth", "jwt_secret", +[](Config & c) -> auto& { return c.auth.jwt_secret; }),
      string_key(
          "auth", "jwt_secret_file", +[](Config & c) -> auto& { return c.auth.jwt_secret_file; }),
      string_key(
          "admin", "listen", +[](Config & c) -> auto& { return c.admin.listen; }),
      string_key(
          "admin", "api_key", +[](Config & c) -> auto& { return c.admin.api_key; }),
      uint_key(
          "push", "offline_delay_ms", +[](Config & c) -> auto& { return c.push.offline_delay_ms; }, 100, 86400000),
      string_key(
          "webhook", "url", +[](Config & c) -> auto& { return c.webhook.url; }),
      string_key(
          "webhook", "secret", +[](Config & c) -> auto& { return c.webhook.secret; }),
      uint_key(
          "webhook", "timeout_ms", +[](Config & c) -> auto& { return c.webhook.timeout_ms; }, 100, 600000),
      uint_key(
          "webhook", "max_queued", +[](Config & c) -> auto& { return c.webhook.max_queued; }, 1, 1000000000),
      uint_key(
          "webhook", "max_retry_s", +[](Config & c) -> auto& { return c.webhook.max_retry_s; }, 1, 365u * 86400u),
      uint_key(
          "webhook", "concurrency", +[](Config & c) -> auto& { return c.webhook.concurrency; }, 1, 256),
      uint_key(
          "limits", "max_message_bytes", +[](Config & c) -> auto& { return c.limits.max_message_bytes; }, 1, 16777216),
      uint_key(
          "limits", "max_group_members", +[](Config & c) -> auto& { return c.limits.max_group_members; }, 2, 100000),
      uint_key(
          "limits", "messages_per_second", +[](Config & c) -> auto& { return c.limits.messages_per_second; }, 1,
          10000000),
      uint_key(
          "limits", "burst", +[](Config & c) -> auto& { return c.limits.burst; }, 1, 10000000),
      uint_key(
          "limits", "accept_per_second", +[](Config & c) -> auto& { return c.limits.accept_per_second; }, 1, 10000000),
      uint_key(
          "limits", "connections_per_ip", +[](Config & c) -> auto& { return c.limits.connections_per_ip; }, 0, kMax32),
      uint_key(
          "limits", "fanout_rows_per_second", +[](Config & c) -> auto& { return c.limits.fanout_rows_per_second; }, 1,
          100000000),
      uint_key(
          "limits", "devices_per_user", +[](Config & c) -> auto& { return c.limits.devices_per_user; }, 1, 1024),
      uint_key(
          "limits", "recall_window_s", +[](Config & c) -> auto& { return c.limits.recall_window_s; }, 0, 31536000),
      uint_key(
          "limits", "edit_window_s", +[](Config & c) -> auto& { return c.limits.edit_window_s; }, 0, 31536000),
      uint_key(
          "limits", "max_edits", +[](Config & c) -> auto& { return c.limits.max_edits; }, 0, 1000),
      uint_key(
          "limits", "max_pinned", +[](Config & c) -> auto& { return c.limits.max_pinned; }, 0, 1000),
      uint_key(
          "limits", "receipts_max_members", +[](Config & c) -> auto& { return c.limits.receipts_max_members; }, 0,
          100000),
      uint_key(
          "limits", "typing_max_members", +[](Config & c) -> auto& { return c.limits.typing_max_members; }, 0, 100000),
      uint_key(
          "limits", "max_presence_watch", +[](Config & c) -> auto& { return c.limits.max_presence_watch; }, 0, 100000),
      uint_key(
          "limits", "write_fanout_max_members", +[](Config & c) -> auto& { return c.limits.write_fanout_max_members; },
          1, 100000),
      bool_key(
          "search", "enabled", +[](Config & c) -> auto& { return c.search.enabled; }),
      uint_list_key(
          "search", "text_content_types", +[](Config & c) -> auto& { return c.search.text_content_types; }, 0, kMax32),
      uint_key(
          "search", "commit_interval_ms", +[](Config & c) -> auto& { return c.search.commit_interval_ms; }, 10, 600000),
      string_key(
          "cluster", "mode", +[](Config & c) -> auto& { return c.cluster.mode; }),
      string_list_key(
          "cluster", "nats_urls", +[](Config & c) -> auto& { return c.cluster.nats_urls; }),
      string_key(
          "cluster", "node_name", +[](Config & c) -> auto& { return c.cluster.node_name; }),
      string_key(
          "cluster", "stream_prefix", +[](Config & c) -> auto& { return c.cluster.stream_prefix; }),
      uint_key(
          "cluster", "partitions", +[](Config & c) -> auto& { return c.cluster.partitions; }, 1, 256),
      uint_key(
          "cluster", "replicas", +[](Config & c) -> auto& { return c.cluster.replicas; }, 1, 5),
      uint_key(
          "cluster", "stream_max_bytes", +[](Config & c) -> auto& { return c.cluster.stream_max_bytes; }, 1ull << 20,
          1ull << 50),
      uint_key(
          "cluster", "publish_timeout_ms", +[](Config & c) -> auto& { return c.cluster.publish_timeout_ms; }, 100,
          60000),
      uint_key(
          "cluster", "unanswered_stop_ms", +[](Config & c) -> auto& { return c.cluster.unanswered_stop_ms; }, 1000,
          3600000),
      uint_key(
          "cluster", "trim_at_percent", +[](Config & c) -> auto& { return c.cluster.trim_at_percent; }, 0, 90),
      uint_key(
          "cluster", "trim_check_s", +[](Config & c) -> auto& { return c.cluster.trim_check_s; }, 1, 3600),
      uint_key(
          "cluster", "snapshot_max_bytes", +[](Config & c) -> auto& { return c.cluster.snapshot_max_bytes; },
          16ull << 20, 1ull << 50),
      string_key(
          "log", "level", +[](Config & c) -> auto& { return c.log.level; }),
      string_key(
          "log", "format", +[](Config & c) -> auto& { return c.log.format; }),
      uint_key(
          "shutdown", "timeout_s", +[](Config & c) -> auto& { return c.shutdown.timeout_s; }, 1, 3600),
  };
  return keys;
}

const KeySpec* find_key(std::string_view section, std::string_view name) {
  for (const KeySpec& k : schema())
    if (k.section == section && k.name == name) return &k;
  return nullptr;
}

Error config_error(std::string_view key, std::string_view reason) {
  return make_error(StatusCode::kBadRequest, std::string(key) + ": " + std::string(reason));
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return s;
}

// A listener address that may be "" (disabled) when `may_be_empty`.
std::optional<std::string> check_listen(const std::string& value, bool may_be_empty) {
  if (value.empty()) return may_be_empty ? std::nullopt : std::optional<std::string>("must not be empty");
  auto hp = parse_host_port(value);
  if (!hp) return hp.error().message;
  return std::nullopt;
}

bool file_readable(const std::string& path) {
  return std::ifstream(path).good();
}

}  // namespace

unsigned auto_thread_count() {
  return std::max(1u, std::thread::hardware_concurrency() / 2);
}

Result<HostPort> parse_host_port(const std::string& text) {
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return make_error(StatusCode::kBadRequest, "expected [ipv6]:port");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return make_error(StatusCode::kBadRequest, "expected host:port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc{} || p != port.data() + port.size() || value > 65535)
    return make_error(StatusCode::kBadRequest, "port must be a number from 0 to 65535");
  if (host == "localhost") host = "127.0.0.1";
  asio::error_code addr_ec;
  asio::ip::make_address(host, addr_ec);
  if (addr_ec) return make_error(StatusCode::kBadRequest, "host must be an IP address or localhost");
  return HostPort{host, static_cast<std::uint16_t>(value)};
}

bool is_loopback_host(const std::string& host) {
  asio::error_code ec;
  auto addr = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  return !ec && addr.is_loopback();
}

Result<Ok> validate_config(const Config& c) {
  if (auto e = check_listen(c.server.listen, false)) return config_error("server.listen", *e);
  if (auto e = check_listen(c.server.ws_listen, true)) return config_error("server.ws_listen", *e);
  if (auto e = check_listen(c.admin.listen, true)) return config_error("admin.listen", *e);
  if (c.server.max_pending_bytes < c.server.max_frame_bytes + kHeaderSize)
    return config_error("server.max_pending_bytes", "must hold at least one frame of server.max_frame_bytes");
  for (const auto& origin : c.server.ws_allowed_origins)
    if (origin.empty()) return config_error("server.ws_allowed_origins", "an origin must not be empty");
  if (!c.server.web_root.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(c.server.web_root, ec))
      return config_error("server.web_root", "not a directory: " + c.server.web_root);
  }
  if (c.tls.cert_file.empty() != c.tls.key_file.empty())
    return config_error(c.tls.cert_file.empty() ? "tls.cert_file" : "tls.key_file",
                        "set both tls.cert_file and tls.key_file, or neither");
  if (!c.tls.cert_file.empty() && !file_readable(c.tls.cert_file))
    return config_error("tls.cert_file", "cannot read " + c.tls.cert_file);
  if (!c.tls.key_file.empty() && !file_readable(c.tls.key_file))
    return config_error("tls.key_file", "cannot read " + c.tls.key_file);
  if (c.heartbeat.timeout_s <= c.heartbeat.interval_s)
    return config_error("heartbeat.timeout_s", "must be greater than heartbeat.interval_s");
  if (c.storage.data_dir.empty()) return config_error("storage.data_dir", "must not be empty");
  if (c.auth.mode == "jwt") {
    if (c.auth.jwt_secret.size() < 32)
      return config_error("auth.jwt_secret", "must be at least 32 bytes in jwt mode (or set auth.jwt_secret_file)");
  } else if (c.auth.mode == "insecure") {
    for (const std::string* l : {&c.server.listen, &c.server.ws_listen, &c.admin.listen}) {
      if (l->empty()) continue;
      auto hp = parse_host_port(*l);
      if (hp && !is_loopback_host(hp->host))
        return config_error("auth.mode", "\"insecure\" is allowed only when every listener is on loopback, not " + *l);
    }
  } else {
    return config_error("auth.mode", "must be \"jwt\" or \"insecure\"");
  }
  if (!c.webhook.url.empty() && c.webhook.url.rfind("http://", 0) != 0 && c.webhook.url.rfind("https://", 0) != 0)
    return config_error("webhook.url", "must start with http:// or https://");
  if (!c.webhook.url.empty() && c.webhook.secret.size() < 32)
    return config_error("webhook.secret", "must be at least 32 bytes when webhook.url is set");
  if (c.limits.max_message_bytes + 1024 > c.server.max_frame_bytes)
    return config_error("limits.max_message_bytes",
                        "must leave 1024 bytes of envelope within server.max_frame_bytes (" +
                            std::to_string(c.server.max_frame_bytes) + ")");
  if (c.cluster.mode == "jetstream") {
    if (c.cluster.nats_urls.empty())
      return config_error("cluster.nats_urls", "must name at least one NATS server in jetstream mode");
    for (const auto& url : c.cluster.nats_urls)
      if (url.rfind("nats://", 0) != 0 && url.rfind("tls://", 0) != 0)
        return config_error("cluster.nats_urls", "each must start with nats:// or tls://, not " + url);
    for (char ch : c.cluster.node_name)
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.')
        return config_error("cluster.node_name", "only letters, digits, '-', '_' and '.'");
    // A stream name and a subject token: no '.', '*', '>' or spaces.
    const auto& prefix = c.cluster.stream_prefix;
    if (prefix.empty() || prefix.size() > 32 || !std::all_of(prefix.begin(), prefix.end(), [](char ch) {
          return (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
        }))
      return config_error("cluster.stream_prefix", "1 to 32 upper-case letters, digits and '_'");
    if (c.server.max_frame_bytes > 262144)
      return config_error("server.max_frame_bytes",
                          "at most 262144 in jetstream mode: a batch of a message's rows must fit one NATS "
                          "message (the servers' max_payload; docs/cluster.md)");
    if (c.storage.fsync)
      return config_error("storage.fsync",
                          "cannot be true in jetstream mode: the log on the NATS servers is the durable copy, and "
                          "nats-server 2.9 does not fsync it (docs/cluster.md, durability limits)");
    if (c.cluster.publish_timeout_ms > c.cluster.unanswered_stop_ms)
      return config_error("cluster.unanswered_stop_ms", "must be at least cluster.publish_timeout_ms");
    // A retry is deduplicated only within the streams' 2-minute duplicates
    // window (cluster::StreamSpec); a later one would look like another
    // writer's entry.
    if (c.cluster.unanswered_stop_ms + c.cluster.publish_timeout_ms > 110000)
      return config_error("cluster.unanswered_stop_ms",
                          "with cluster.publish_timeout_ms at most 110000: an entry's retries must end within "
                          "the streams' 2-minute duplicates window");
  } else if (c.cluster.mode != "embedded") {
    return config_error("cluster.mode", "must be \"embedded\" or \"jetstream\"");
  }
  static constexpr std::array kLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (std::find(kLevels.begin(), kLevels.end(), c.log.level) == kLevels.end())
    return config_error("log.level", "must be one of trace, debug, info, warn, error, critical, off");
  if (c.log.format != "text" && c.log.format != "json")
    return config_error("log.format", "must be \"text\" or \"json\"");
  return Ok{};
}

Result<Config> load_config(const std::string& path, const std::map<std::string, std::string>& env) {
  Config config;
  toml::table file;
  if (!path.empty()) {
    try {
      file = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      std::ostringstream where;
      where << path << ":" << e.source().begin.line << ":" << e.source().begin.column;
      return config_error(where.str(), e.description());
    } catch (const std::exception& e) {
      return config_error(path, e.what());
    }
  }
  for (const auto& [section, node] : file) {
    const std::string section_name(section.str());
    const toml::table* keys = node.as_table();
    bool known_section =
        std::any_of(schema().begin(), schema().end(), [&](const KeySpec& k) { return k.section == section_name; });
    if (!known_section) return config_error(section_name, "unknown section");
    if (!keys) return config_error(section_name, "expected a [" + section_name + "] table");
    for (const auto& [name, value] : *keys) {
      const std::string key = section_name + "." + std::string(name.str());
      const KeySpec* spec = find_key(section_name, name.str());
      if (!spec) return config_error(key, "unknown key");
      if (auto e = spec->assign(config, RawValue{&value, std::nullopt})) return config_error(key, *e);
    }
  }
  static constexpr std::string_view kPrefix = "IMSERVER_";
  for (const auto& [var, value] : env) {
    if (var.rfind(kPrefix, 0) != 0) continue;
    const std::string rest = lower(var.substr(kPrefix.size()));
    const auto sep = rest.find("__");
    if (sep == std::string::npos) return config_error(var, "expected IMSERVER_<SECTION>__<KEY>");
    const KeySpec* spec = find_key(rest.substr(0, sep), rest.substr(sep + 2));
    if (!spec) return config_error(var, "unknown key " + rest.substr(0, sep) + "." + rest.substr(sep + 2));
    if (auto e = spec->assign(config, RawValue{nullptr, value}))
      return config_error(var + " (" + rest.substr(0, sep) + "." + rest.substr(sep + 2) + ")", *e);
  }
  if (!config.auth.jwt_secret_file.empty()) {
    if (!config.auth.jwt_secret.empty())
      return config_error("auth.jwt_secret_file", "set auth.jwt_secret or auth.jwt_secret_file, not both");
    std::ifstream in(config.auth.jwt_secret_file, std::ios::binary);
    if (!in) return config_error("auth.jwt_secret_file", "cannot read " + config.auth.jwt_secret_file);
    std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    config.auth.jwt_secret = std::move(secret);
  }
  // The web client ships beside the config (config/ and web/ in the
  // repository, /etc and /usr/share in a package): a relative web_root is
  // taken from the config file's folder, whatever the working directory.
  if (!config.server.web_root.empty() && std::filesystem::path(config.server.web_root).is_relative())
    config.server.web_root = (std::filesystem::path(path).parent_path() / config.server.web_root).lexically_normal();
  auto valid = validate_config(config);
  if (!valid) return valid.error();
  return config;
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    auto eq = entry.find('=');
    if (eq != std::string_view::npos) env.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return env;
}

}  // namespace im
