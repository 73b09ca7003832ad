#include "soak.h"

#include <httplib.h>

#include <fmt/format.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "auth/jwt.h"
#include "conn.h"
#include "ledger.h"
#include "load.h"
#include "probes.h"
#include "server_runner.h"
#include "verifier.h"
#include "webhook_sink.h"

namespace im::stress {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kAdminKey = "imstress-admin-key";
constexpr const char* kHookSecret = "imstress-webhook-secret-0123456789abcdef";
constexpr const char* kJwtSecret = "imstress-jwt-secret-0123456789abcdef-0123";

long rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

long open_files(pid_t pid) {
  std::error_code ec;
  long n = 0;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end; !ec && it != end;
       it.increment(ec))
    ++n;
  return ec ? -1 : n;
}

// The RocksDB write-ahead log: the *.log files of the data dir.
long long wal_bytes(const std::string& data_dir) {
  std::error_code ec;
  long long total = 0;
  for (std::filesystem::directory_iterator it(data_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() != ".log") continue;
    std::error_code size_ec;
    const auto size = std::filesystem::file_size(it->path(), size_ec);
    if (!size_ec) total += static_cast<long long>(size);
  }
  return total;
}

// A metric of GET /metrics without labels; nullopt when absent or no answer.
std::optional<double> metric(std::uint16_t admin_port, const std::string& name) {
  httplib::Client cli("127.0.0.1", admin_port);
  cli.set_connection_timeout(2, 0);
  cli.set_read_timeout(5, 0);
  auto r = cli.Get("/metrics");
  if (!r || r->status != 200) return std::nullopt;
  std::istringstream lines(r->body);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return std::nullopt;
}

struct Sample {
  int t_s = 0;
  long rss_kb = 0;
  long files = 0;
  long long wal = 0;
  std::optional<double> outbox;
  long plain_rss_kb = 0;
  std::optional<double> sessions;
};

std::string mib(long long bytes) {
  return fmt::format("{:.1f}", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

std::string row(const Sample& s) {
  return fmt::format("| {:>5} | {:>9} | {:>6} | {:>8} | {:>6} | {:>8} | {:>9} |", s.t_s, s.rss_kb / 1024, s.files,
                     mib(s.wal), s.outbox ? fmt::format("{:.0f}", *s.outbox) : "n/a",
                     s.sessions ? fmt::format("{:.0f}", *s.sessions) : "n/a", s.plain_rss_kb / 1024);
}

constexpr const char* kHeader =
    "|   t s | RSS MiB   |  files | WAL MiB  | outbox | sessions | plain RSS |\n"
    "|------:|----------:|-------:|---------:|-------:|---------:|----------:|";

}  // namespace

int run_soak(const SoakOptions& o) {
  std::cout << fmt::format("imstress soak: seed {}, {} s, a sample every {} s, probe scale {}\n", o.seed, o.duration_s,
                           o.sample_s, o.probe_scale)
            << std::flush;
  std::mt19937_64 rng(o.seed);
  raise_file_limit();
  const std::string dir = make_temp_dir("imsoak");
  std::filesystem::create_directories(dir + "/plain");
  WebhookSink sink(kHookSecret, 0, o.seed);
  if (!sink.start()) {
    std::cerr << "imstress: the webhook receiver cannot listen on 127.0.0.1\n";
    return 1;
  }
  const std::string data_dir = dir + "/data";
  ServerRunner server(o.imserver, dir,
                      {{"server.listen", "\"127.0.0.1:0\""},
                       {"server.ws_listen", "\"\""},
                       {"admin.listen", "\"127.0.0.1:0\""},
                       {"admin.api_key", fmt::format("\"{}\"", kAdminKey)},
                       {"storage.data_dir", fmt::format("\"{}\"", data_dir)},
                       {"auth.mode", "\"jwt\""},
                       {"auth.jwt_secret", fmt::format("\"{}\"", kJwtSecret)},
                       {"webhook.url", fmt::format("\"{}\"", sink.url())},
                       {"webhook.secret", fmt::format("\"{}\"", kHookSecret)},
                       {"limits.messages_per_second", "100000"},
                       {"limits.burst", "100000"},
                       {"limits.accept_per_second", "5000"},
                       {"log.level", "\"info\""}});
  ServerRunner plain(o.imserver, dir + "/plain",
                     {{"server.listen", "\"127.0.0.1:0\""},
                      {"server.ws_listen", "\"\""},
                      {"admin.listen", "\"\""},
                      {"storage.data_dir", fmt::format("\"{}/plain/data\"", dir)},
                      {"auth.mode", "\"jwt\""},
                      {"auth.jwt_secret", fmt::format("\"{}\"", kJwtSecret)},
                      {"limits.messages_per_second", "100000"},
                      {"limits.burst", "100000"},
                      {"log.level", "\"info\""}});
  std::string why;
  if (!server.start(why) || !plain.start(why)) {
    std::cerr << "imstress: " << why << "\n";
    return 1;
  }

  Ledger ledger;
  std::atomic<bool> stop{false};
  LoadContext ctx;
  ctx.ledger = &ledger;
  ctx.people = make_population("soak-", o.actors, 3, 2);
  ctx.admin_key = kAdminKey;
  ctx.token = [](const std::string& uid) { return mint_jwt(kJwtSecret, uid, 0); };
  ctx.stop = &stop;
  ctx.port = server.tcp_port();
  ctx.admin_port = server.admin_port();
  ctx.pause = std::chrono::milliseconds(20);
  {
    // The same three stable groups as the crash loop's.
    for (std::size_t i = 0; i < std::min<std::size_t>(3, ctx.people.actors.size()); ++i) {
      v1::GroupCreateReq req;
      const GroupRecord g = setup_group(ctx.people.actors[i], fmt::format("soak{}", i), "soak",
                                        {&ctx.people.actors, &ctx.people.passive}, req);
      Conn c;
      std::optional<Frame> answer;
      if (c.connect(ctx.port) && login(c, g.owner, ctx.token(g.owner), v1::WEB, "setup", why))
        answer = c.call(Cmd::kGroupCreate, req);
      if (!answer || !answer->ok()) {
        std::cerr << "imstress: setup GROUP_CREATE " << g.gid << ": " << describe(answer) << " " << why << "\n";
        return 1;
      }
      ledger.put_group(g);
    }
  }

  LoadThreads load(ctx, rng);
  ProbeTarget target;
  target.port = server.tcp_port();
  target.admin_port = server.admin_port();
  target.plain_port = plain.tcp_port();
  target.token = [](const std::string& uid, std::int64_t exp_s) { return mint_jwt(kJwtSecret, uid, exp_s); };
  target.stop = &stop;
  target.scale = o.probe_scale;
  target.budget = std::chrono::seconds(o.probe_budget_s);
  target.only.insert(o.probes.begin(), o.probes.end());
  Probes probes(target, rng());
  load.start();
  std::thread probe_thread([&probes] { probes.run(); });

  std::vector<Sample> samples;
  std::cout << kHeader << "\n" << std::flush;
  const auto t0 = Clock::now();
  bool died = false;
  for (int k = 0;; ++k) {
    const auto at = t0 + std::chrono::seconds(static_cast<long>(k) * o.sample_s);
    while (Clock::now() < at && !interrupted()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (interrupted()) {
      std::cerr << "imstress soak: interrupted; stopping the load and the servers\n";
      break;
    }
    if (!server.running() || !plain.running()) {
      died = true;
      break;
    }
    Sample s;
    s.t_s = static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - t0).count());
    s.rss_kb = rss_kb(server.pid());
    s.files = open_files(server.pid());
    s.wal = wal_bytes(data_dir);
    s.outbox = metric(server.admin_port(), "imserver_outbox_depth");
    s.sessions = metric(server.admin_port(), "imserver_sessions");
    s.plain_rss_kb = rss_kb(plain.pid());
    samples.push_back(s);
    std::cout << row(s) << "\n" << std::flush;
    if (s.t_s >= o.duration_s) break;
  }
  stop = true;
  load.join();
  probe_thread.join();
  if (interrupted()) return 1;  // the servers are killed on the way out
  if (died) {
    std::cerr << "imstress soak: a server died during the soak; the soaked one's log ends:\n"
              << server.log_tail() << "\nthe plain one's:\n"
              << plain.log_tail() << "\nfolder kept: " << dir << "\n";
    return 1;
  }

  // Nothing acknowledged may be lost, under the probes either.
  const auto t_verify = Clock::now();
  Verifier verifier(ctx);
  verifier.resolve(rng, 30);
  verifier.check_groups();
  verifier.check_messages(std::chrono::seconds(30));
  verifier.check_reports(sink, std::chrono::seconds(120));
  for (const auto& p : sink.problems()) ledger.violation("webhook: " + p);
  const double verify_s = std::chrono::duration<double>(Clock::now() - t_verify).count();

  std::ostringstream report;
  report << fmt::format(
                "Soak: {} s of mixed load ({} actors and the admin API, a pause of {} ms between operations) "
                "and {} whole rounds of the hostile probes (scale {}, at most {} s each a round), seed {}. The "
                "soaked server's RSS, open files, WAL (*.log of its data dir) and outbox depth, and live "
                "sessions, every {} s; \"plain RSS\" is the second server (no webhook) of the 30 KB REPORT "
                "probe.\n\n",
                o.duration_s, o.actors, ctx.pause.count(), probes.rounds(), o.probe_scale, o.probe_budget_s, o.seed,
                o.sample_s)
         << kHeader << "\n";
  for (const auto& s : samples) report << row(s) << "\n";
  if (!samples.empty()) {
    Sample max = samples.front();
    for (const auto& s : samples) {
      max.rss_kb = std::max(max.rss_kb, s.rss_kb);
      max.files = std::max(max.files, s.files);
      max.wal = std::max(max.wal, s.wal);
      if (s.outbox && (!max.outbox || *s.outbox > *max.outbox)) max.outbox = s.outbox;
      if (s.sessions && (!max.sessions || *s.sessions > *max.sessions)) max.sessions = s.sessions;
      max.plain_rss_kb = std::max(max.plain_rss_kb, s.plain_rss_kb);
    }
    auto line = [](const char* what, const Sample& s) {
      std::string r = row(s);
      return fmt::format("| {:>5} |{}", what, r.substr(r.find('|', 1) + 1));
    };
    report << "\n"
           << kHeader << "\n"
           << line("first", samples.front()) << "\n"
           << line("last", samples.back()) << "\n"
           << line("max", max) << "\n";
  }
  report << "\nWhat the probes got (probe: answer x count):\n\n";
  for (const auto& [probe, outcomes] : probes.tallies()) {
    report << "- " << probe << ":";
    for (const auto& [what, n] : outcomes) report << fmt::format(" {} x {};", what, n);
    report << "\n";
  }
  std::size_t ok = 0, unknown = 0, failed = 0;
  for (const auto& r : ledger.sends())
    (r.outcome == Outcome::kOk ? ok : r.outcome == Outcome::kUnknown ? unknown : failed)++;
  report << fmt::format(
      "\nMixed load: {} SENDs acknowledged, {} without an answer, {} refused; {} webhook deliveries; the checks after "
      "it ({:.1f} s): {} violation(s).\n",
      ok, unknown, failed, sink.deliveries(), verify_s, ledger.violation_count());
  std::cout << "\n" << report.str() << std::flush;
  if (!o.out.empty()) std::ofstream(o.out) << report.str();

  int rc = 0;
  for (const auto& v : ledger.violations()) {
    std::cerr << "  - " << v << "\n";
    rc = 1;
  }
  const int a = server.terminate(std::chrono::seconds(30));
  const int b = plain.terminate(std::chrono::seconds(30));
  if (a != 0 || b != 0) {
    std::cerr << fmt::format("imstress soak: SIGTERM: exit status {} (soaked) and {} (plain)\n{}\n", a, b,
                             server.log_tail());
    rc = 1;
  }
  std::error_code ec;
  if (rc != 0 || o.keep_dir) {
    std::cerr << "folder kept: " << dir << "\n";
  } else {
    std::filesystem::remove_all(dir, ec);
  }
  return rc;
}

}  // namespace im::stress
