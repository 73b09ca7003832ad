// imserver: command line, config, logging, signals. Everything else is
// im::Server (include/im/server.h).

#if IM_JEMALLOC
#include <jemalloc/jemalloc.h>
#else
#include <malloc.h>
#endif
#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string_view>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "config/config_loader.h"
#include "im/server.h"
#include "im/version.h"
#include "search/search_index.h"

#if IM_JEMALLOC
// jemalloc's options, read at its first allocation (MALLOC_CONF in the
// environment is applied after them): one arena, shared by every thread
// through their thread caches. On this 2-core machine it served W2 as well
// as an arena per CPU, with an idle connection as small as under glibc's
// malloc (bench/ANALYSIS.md, "Allocator"), and unlike jemalloc's per-CPU
// arenas it does not fall back to four arenas a CPU when the process may run
// on fewer CPUs than are online (taskset, a container's cpuset). Hosts with
// many cores may do better with more (MALLOC_CONF=narenas:N; not measured).
extern "C" {
// NOLINTNEXTLINE: jemalloc looks this symbol up by name
const char* malloc_conf = "narenas:1";
}
#endif

namespace {

// The message of a log record as a JSON string (quotes and escapes), for
// log.format = "json".
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    dest.push_back('"');
    for (char c : msg.payload) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            fmt::format_to(std::back_inserter(dest), "\\u{:04x}", static_cast<unsigned>(c));
          } else {
            dest.push_back(c);
          }
      }
    }
    dest.push_back('"');
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessageFlag>(); }
};

void setup_logging(const im::LogConfig& log) {
  auto logger = spdlog::stderr_color_mt("imserver");
  spdlog::set_default_logger(logger);
  if (log.format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":%*})");
    spdlog::set_formatter(std::move(formatter));
  } else {
    spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }
  spdlog::set_level(spdlog::level::from_str(log.level));
}

// Raises the soft limit on open files to the hard one and clamps
// server.max_connections below it, keeping a reserve for RocksDB, listeners
// and refused clients (up to 32 per listener draining their answer, then
// one spare).
void fit_file_limit(im::Config& config) {
  constexpr rlim_t kReserve = 384;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  spdlog::info("open file limit {} (hard {})", rl.rlim_cur, rl.rlim_max);
  if (rl.rlim_cur == RLIM_INFINITY) return;
  const std::uint64_t room = rl.rlim_cur > kReserve ? rl.rlim_cur - kReserve : 1;
  if (config.server.max_connections > room) {
    spdlog::info("server.max_connections {} clamped to {} by the open file limit", config.server.max_connections, room);
    config.server.max_connections = room;
  }
}

#if IM_JEMALLOC
// One of jemalloc's settings (mallctl), or a zero value if it has none.
template <typename T>
T jemalloc_setting(const char* name) {
  T value{};
  std::size_t size = sizeof(value);
  mallctl(name, &value, &size, nullptr, 0);
  return value;
}

// Logs the allocator and the arenas it was given (malloc_conf above).
void set_up_malloc(const im::Config&) {
  const auto* version = jemalloc_setting<const char*>("version");
  const auto* percpu = jemalloc_setting<const char*>("opt.percpu_arena");
  spdlog::info("malloc: jemalloc {}, narenas {}, percpu_arena {}, {} arenas in all", version ? version : "?",
               jemalloc_setting<unsigned>("opt.narenas"), percpu ? percpu : "?",
               jemalloc_setting<unsigned>("arenas.narenas"));
}
#else
// glibc gives each new thread an arena of its own at its first malloc, up to
// eight per core, and then shares them; each keeps its own free space
// between the long-lived blocks. Capped at loops + shards + 1 (shared by all
// threads, RocksDB's included), an idle connection holds 35-40 bytes less
// (bench/ANALYSIS.md, W1) at the same W2, W3 and W5 throughput.
// MALLOC_ARENA_MAX or a GLIBC_TUNABLES arena_max, when set, rules instead.
void set_up_malloc(const im::Config& config) {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (std::getenv("MALLOC_ARENA_MAX") != nullptr ||
      (tunables != nullptr && std::string_view(tunables).find("arena_max") != std::string_view::npos)) {
    spdlog::info("malloc arenas: as the environment sets them");
    return;
  }
  const unsigned threads = im::thread_count(config.server.io_threads) + im::shard_thread_count(config);
  const unsigned arenas = std::min(threads + 1, 1024u);
  mallopt(M_ARENA_MAX, static_cast<int>(arenas));
  spdlog::info("malloc arenas: at most {} (I/O loops + shards + 1)", arenas);
}

#endif

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"imserver: an instant-messaging server"};
  std::string config_path;
  bool check_only = false;
  app.add_option("-c,--config", config_path, "path of the TOML config (im.toml)");
  app.add_flag("--check-config", check_only, "validate the config and exit");
  bool rebuild_search = false;
  app.add_flag("--rebuild-search", rebuild_search,
               "remove the search indexes (the server must be stopped) and exit; the next start indexes the history "
               "again");
  app.set_version_flag("-V,--version", std::string("imserver ") + im::kVersionString);
  CLI11_PARSE(app, argc, argv);

  auto loaded = im::load_config(config_path, im::process_environment());
  if (!loaded) {
    std::cerr << "imserver: config: " << loaded.error().message << "\n";
    return 2;
  }
  if (check_only) {
    std::cout << "imserver: config OK\n";
    return 0;
  }
  if (rebuild_search) {
    auto removed = im::search::remove_indexes(*loaded);
    if (!removed) {
      std::cerr << "imserver: " << removed.error().message << "\n";
      return 1;
    }
    std::cout << "imserver: search indexes removed (" << *removed
              << " bytes); the next start indexes the history again\n";
    return 0;
  }
  im::Config config = std::move(loaded.value());
  setup_logging(config.log);
  spdlog::info("imserver {} starting with {}", im::kVersionString, config_path);
  fit_file_limit(config);
  set_up_malloc(config);  // before the server starts its threads
  if (config.auth.insecure()) spdlog::warn("auth.mode = \"insecure\": any token is accepted (loopback only)");

  // Signals are taken by this thread alone (sigwait); every other thread
  // inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  im::Server server(config);
  try {
    server.start();
  } catch (const std::exception& e) {
    std::cerr << "imserver: " << e.what() << "\n";
    return 1;
  }
  for (const auto& l : server.listeners())
    std::printf("imserver: listening %s %s\n", l.kind.c_str(), l.address().c_str());
  std::fflush(stdout);
  spdlog::info("imserver {} started", im::kVersionString);

  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGHUP) {
      auto fresh = im::load_config(config_path, im::process_environment());
      if (!fresh) {
        spdlog::error("SIGHUP: config not reloaded: {}", fresh.error().message);
        continue;
      }
      spdlog::set_level(spdlog::level::from_str(fresh->log.level));
      server.reload(*fresh);
      spdlog::info(
          "SIGHUP: reloaded auth.jwt_secret, limits.messages_per_second, limits.burst, "
          "limits.fanout_rows_per_second, log.level ({}); "
          "other keys take effect at the next start",
          fresh->log.level);
      continue;
    }
    spdlog::info("signal {}: draining", sig);
    break;
  }
  server.stop();
  spdlog::info("stopped");
  return 0;
}
