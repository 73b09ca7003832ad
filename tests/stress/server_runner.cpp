#include "server_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace im::stress {

std::string make_temp_dir(const std::string& stem) {
  std::string pattern = (std::filesystem::temp_directory_path() / (stem + "-XXXXXX")).string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed for " + pattern);
  return pattern;
}

namespace {
volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_interrupt(int) {
  g_interrupted = 1;
}
}  // namespace

void install_interrupt_handlers() {
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
}

bool interrupted() {
  return g_interrupted != 0;
}

long raise_file_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return static_cast<long>(rl.rlim_cur);
}

ServerRunner::ServerRunner(std::string binary, std::string dir, Settings settings)
    : binary_(std::move(binary)), dir_(std::move(dir)), settings_(std::move(settings)) {}

ServerRunner::~ServerRunner() {
  kill9();
}

std::string ServerRunner::data_dir() const {
  auto it = settings_.find("storage.data_dir");
  if (it == settings_.end() || it->second.size() < 2) return "";
  return it->second.substr(1, it->second.size() - 2);  // the TOML string's quotes
}

bool ServerRunner::spawn(int& out_fd, std::string& why) {
  if (pid_ > 0) kill9();
  out_fd = -1;
  std::map<std::string, std::map<std::string, std::string>> sections;
  for (const auto& [k, v] : settings_) {
    auto dot = k.find('.');
    sections[k.substr(0, dot)][k.substr(dot + 1)] = v;
  }
  const std::string config = dir_ + "/im.toml";
  {
    std::ofstream toml(config);
    for (const auto& [section, keys] : sections) {
      toml << "[" << section << "]\n";
      for (const auto& [k, v] : keys) toml << k << " = " << v << "\n";
    }
  }
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    why = "pipe failed";
    return false;
  }
  // fork and exec rather than posix_spawn, for PR_SET_PDEATHSIG: the
  // server dies with imstress however imstress ends (a SIGKILL, a CTest
  // timeout), so no server outlives the run. Between fork and exec only
  // async-signal-safe calls; everything they use is made before the fork.
  const std::string log = dir_ + "/server.log";
  std::string bin = binary_, flag = "--config", cfg = config;
  char* argv[] = {bin.data(), flag.data(), cfg.data(), nullptr};
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // imstress already gone
    const int err = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (err < 0 || dup2(out[1], STDOUT_FILENO) < 0 || dup2(err, STDERR_FILENO) < 0) _exit(127);
    execve(bin.c_str(), argv, environ);
    _exit(127);
  }
  close(out[1]);
  if (child < 0) {
    close(out[0]);
    pid_ = -1;
    why = "cannot start " + binary_ + " (fork failed)";
    return false;
  }
  pid_ = child;
  out_fd = out[0];
  return true;
}

void ServerRunner::start_then_kill(std::chrono::milliseconds after) {
  int out = -1;
  std::string why;
  if (!spawn(out, why)) return;
  std::this_thread::sleep_for(after);
  kill9();
  close(out);  // after the kill: a closed pipe would end the server by SIGPIPE first
}

bool ServerRunner::start(std::string& why, std::chrono::seconds within) {
  int out_fd = -1;
  if (!spawn(out_fd, why)) return false;
  auto opens = [&](const std::string& key) {
    auto it = settings_.find(key);
    return it != settings_.end() && it->second != "\"\"";
  };
  const bool want_admin = opens("admin.listen");
  tcp_port_ = admin_port_ = 0;
  std::string buffer;
  const auto deadline = std::chrono::steady_clock::now() + within;
  auto all_seen = [&] { return tcp_port_ != 0 && (!want_admin || admin_port_ != 0); };
  while (!all_seen() && std::chrono::steady_clock::now() < deadline) {
    pollfd p{out_fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    char chunk[512];
    const ssize_t n = read(out_fd, chunk, sizeof chunk);
    if (n <= 0) break;
    buffer.append(chunk, static_cast<std::size_t>(n));
    for (std::size_t nl; (nl = buffer.find('\n')) != std::string::npos;) {
      std::istringstream words(buffer.substr(0, nl));
      buffer.erase(0, nl + 1);
      std::string prefix, verb, kind, address;
      words >> prefix >> verb >> kind >> address;
      if (verb != "listening" || address.rfind(':') == std::string::npos) continue;
      const auto port = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
      if (kind == "tcp") tcp_port_ = port;
      if (kind == "admin") admin_port_ = port;
    }
  }
  close(out_fd);
  if (!all_seen()) {
    kill9();
    why = "imserver did not open its listeners within " + std::to_string(within.count()) + " s; its log ends:\n" +
          log_tail();
    return false;
  }
  return true;
}

void ServerRunner::reap() {
  if (pid_ <= 0) return;
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void ServerRunner::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  reap();
}

int ServerRunner::terminate(std::chrono::seconds within) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + within;
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) != pid_) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill9();
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool ServerRunner::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::string ServerRunner::log_tail(std::size_t bytes) const {
  std::ifstream in(dir_ + "/server.log", std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

}  // namespace im::stress
