#include "server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <stdexcept>

#include "auth/jwt.h"
#include "cluster/jetstream.h"
#include "cluster/partition_log.h"
#include "proto/im.pb.h"
#include "wait_until.h"

extern char** environ;

namespace im::test {
namespace {

std::string make_temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "imtest-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  return pattern;
}

}  // namespace

std::string token_for(const std::string& uid, std::int64_t exp_s) {
  return mint_jwt(kTestSecret, uid, exp_s);
}

std::string login_body(const std::string& uid, const std::string& token, int device_type,
                       const std::string& device_id) {
  v1::LoginReq req;
  req.set_uid(uid);
  req.set_token(token);
  req.set_device_type(static_cast<v1::DeviceType>(device_type));
  req.set_device_id(device_id);
  return req.SerializeAsString();
}

std::string unique_temp_path(const std::string& stem) {
  static std::atomic<int> counter{0};
  return (std::filesystem::temp_directory_path() /
          (stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter)))
      .string();
}

namespace {

// Whether 127.0.0.1:port can be bound now (0: any port; the one bound is returned).
std::uint16_t bind_loopback(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  return ok ? ntohs(addr.sin_port) : 0;
}

// The lowest port the kernel hands out for outgoing connections.
std::uint16_t ephemeral_low() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  unsigned low = 0;
  return in >> low && low > 20000 && low <= 65535 ? static_cast<std::uint16_t>(low) : 0;
}

}  // namespace

std::uint16_t free_loopback_port() {
  // Below the ephemeral range: a port there is not taken by some test's
  // outgoing connection while its server is down between kill9() and
  // restart(). Random, so parallel tests rarely pick the same one.
  if (const std::uint16_t low = ephemeral_low(); low != 0) {
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<int> pick(20000, low - 1);
    for (int i = 0; i < 200; ++i)
      if (const auto port = bind_loopback(static_cast<std::uint16_t>(pick(rng))); port != 0) return port;
  }
  if (const auto port = bind_loopback(0); port != 0) return port;
  throw std::runtime_error("no free loopback port");
}

std::vector<ProcessThread> threads_of(pid_t pid) {
  std::vector<ProcessThread> threads;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name))
      threads.push_back({static_cast<pid_t>(std::stol(task.path().filename().string())), name});
  }
  return threads;
}

int connect_raw(std::uint16_t port, int rcvbuf) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string toml_list(const std::vector<std::string>& items) {
  std::string list;
  for (const auto& item : items) list += (list.empty() ? "\"" : ", \"") + item + "\"";
  return "[" + list + "]";
}

std::vector<std::string> suite_nats_urls() {
  const char* dir = std::getenv("IM_TEST_NATS_DIR");
  if (dir == nullptr || *dir == 0) return {};
  std::ifstream in(std::string(dir) + "/urls");
  std::string line;
  if (!std::getline(in, line) || line.empty())
    throw std::runtime_error(std::string("IM_TEST_NATS_DIR is set but ") + dir +
                             "/urls names no NATS cluster (is the nats_suite fixture running?)");
  std::vector<std::string> urls;
  for (std::size_t from = 0; from <= line.size();) {
    const std::size_t comma = std::min(line.find(',', from), line.size());
    urls.push_back(line.substr(from, comma - from));
    from = comma + 1;
  }
  return urls;
}

namespace {

constexpr unsigned kSuitePartitions = 4;

// The streams of a server on `data_dir` in the suite's cluster run are named
// after the data dir, so a restart, or a second server on the same data
// dir, finds the same streams.
std::string suite_stream_prefix(const std::string& data_dir) {
  return fmt::format("T{:016X}", std::hash<std::string>{}(data_dir));
}

Overrides suite_cluster(const std::string& data_dir) {
  const auto urls = suite_nats_urls();
  if (urls.empty()) return {};
  return {{"cluster.mode", "\"jetstream\""},
          {"cluster.nats_urls", toml_list(urls)},
          {"cluster.partitions", std::to_string(kSuitePartitions)},
          {"cluster.replicas", "3"},
          // Each server reserves partitions x this on each NATS node.
          {"cluster.stream_max_bytes", std::to_string(64u << 20)},
          // No trimming: the suite checks the other behaviours, each alone
          // (tests/cluster covers trimming).
          {"cluster.trim_at_percent", "0"},
          {"cluster.stream_prefix", "\"" + suite_stream_prefix(data_dir) + "\""}};
}

}  // namespace

ServerProcess::ServerProcess(Overrides overrides, std::string data_dir)
    : overrides_(std::move(overrides)), dir_(make_temp_dir()), own_data_dir_(data_dir.empty()) {
  data_dir_ = data_dir.empty() ? dir_ + "/data" : data_dir;
  if (!overrides_.count("cluster.mode")) cluster_ = suite_cluster(data_dir_);
  spawn();
}

ServerProcess::~ServerProcess() {
  // A graceful stop, so every test also exercises shutdown (and the server
  // logs its closing figures); SIGKILL if it does not exit in time.
  if (pid_ > 0) terminate(std::chrono::seconds(15));
  if (own_data_dir_ && !cluster_.empty()) delete_streams();
  std::error_code ec;
  if (std::getenv("IM_KEEP_TEST_DIRS") == nullptr) std::filesystem::remove_all(dir_, ec);
}

// The suite's cluster is shared by every test: each server's streams go
// with it (not asserted: a destructor must not throw).
void ServerProcess::delete_streams() {
  cluster::JetStream::Options o;
  o.urls = suite_nats_urls();
  auto js = cluster::JetStream::connect(o);
  if (!js) return;
  for (unsigned p = 0; p < kSuitePartitions; ++p)
    (void)(*js)->delete_stream(cluster::partition_stream(suite_stream_prefix(data_dir_), p).name);
  (void)(*js)->delete_stream(cluster::snapshot_spec(suite_stream_prefix(data_dir_)).stream.name);
}

void ServerProcess::spawn() {
  Overrides values = {
      {"server.listen", "\"127.0.0.1:0\""},
      {"server.ws_listen", "\"127.0.0.1:0\""},
      {"admin.listen", "\"\""},
      {"storage.data_dir", "\"" + data_dir_ + "\""},
      {"auth.mode", "\"jwt\""},
      {"auth.jwt_secret", std::string("\"") + kTestSecret + "\""},
      {"log.level", "\"debug\""},
      // Two loops and two shards whatever the machine (0 would be half its
      // cores): every test goes through the cross-thread paths.
      {"server.io_threads", "2"},
      {"sharding.shards", "2"},
  };
  for (const auto& [k, v] : cluster_) values[k] = v;
  for (const auto& [k, v] : overrides_) values[k] = v;
  std::map<std::string, std::map<std::string, std::string>> sections;
  for (const auto& [k, v] : values) {
    auto dot = k.find('.');
    sections[k.substr(0, dot)][k.substr(dot + 1)] = v;
  }
  std::ofstream toml(dir_ + "/im.toml");
  for (const auto& [section, keys] : sections) {
    toml << "[" << section << "]\n";
    for (const auto& [k, v] : keys) toml << k << " = " << v << "\n";
  }
  toml.close();

  int out[2];
  if (pipe(out) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, (dir_ + "/server.log").c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::string config_path = dir_ + "/im.toml";
  std::string bin = IMSERVER_BIN;
  char* argv[] = {bin.data(), const_cast<char*>("--config"), config_path.data(), nullptr};
  int rc = posix_spawn(&pid_, bin.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    throw std::runtime_error("cannot start " + bin);
  }
  // Read "imserver: listening <kind> <address>" lines until every listener
  // the config opens has told its port (the server prints them together).
  auto opens = [&](const std::string& key) { return values[key] != "\"\""; };
  const bool want_ws = opens("server.ws_listen");
  const bool want_admin = opens("admin.listen");
  std::string buffer;
  tcp_port_ = ws_port_ = admin_port_ = 0;
  auto all_seen = [&] { return tcp_port_ != 0 && (!want_ws || ws_port_ != 0) && (!want_admin || admin_port_ != 0); };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!all_seen() && std::chrono::steady_clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    char chunk[512];
    ssize_t n = read(out[0], chunk, sizeof chunk);
    if (n <= 0) break;
    buffer.append(chunk, static_cast<std::size_t>(n));
    std::size_t nl;
    while ((nl = buffer.find('\n')) != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      std::istringstream words(line);
      std::string prefix, verb, kind, address;
      words >> prefix >> verb >> kind >> address;
      if (verb != "listening") continue;
      auto port = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
      if (kind == "tcp") tcp_port_ = port;
      if (kind == "ws") ws_port_ = port;
      if (kind == "admin") admin_port_ = port;
    }
  }
  close(out[0]);
  if (!all_seen()) {
    ::kill(pid_, SIGKILL);
    reap();
    throw std::runtime_error("imserver did not start (or did not open every listener of its config); its log:\n" +
                             log());
  }
}

void ServerProcess::reap() {
  if (pid_ <= 0) return;
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void ServerProcess::restart() {
  if (pid_ > 0) kill9();
  spawn();
}

void ServerProcess::restart(const Overrides& extra) {
  overrides_ = merged(std::move(overrides_), extra);
  restart();
}

void ServerProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  reap();
}

int ServerProcess::terminate(std::chrono::seconds within) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  if (!wait_until([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, within)) {
    kill9();
    return -1;
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool ServerProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::string ServerProcess::log() const {
  std::ifstream in(dir_ + "/server.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

long ServerProcess::rss_kb() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

std::unique_ptr<SyncClient> ServerProcess::connect() const {
  auto c = std::make_unique<SyncClient>();
  REQUIRE(c->connect("127.0.0.1", tcp_port_));
  return c;
}

std::unique_ptr<SyncClient> ServerProcess::login(const std::string& uid, int device_type, const std::string& device_id,
                                                 Frame* resp) const {
  auto c = connect();
  auto r = c->call_raw(Cmd::kLogin, login_body(uid, token_for(uid), device_type, device_id));
  REQUIRE(r);
  INFO(r->error_message());
  REQUIRE(r->ok());
  if (resp) *resp = *r;
  return c;
}

Run run_imserver(const std::string& args) {
  const std::string out = unique_temp_path("imserver-cli-test") + ".out";
  const std::string cmd = std::string(IMSERVER_BIN) + " " + args + " >" + out + " 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream in(out);
  std::stringstream s;
  s << in.rdbuf();
  std::filesystem::remove(out);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, s.str()};
}

}  // namespace im::test
