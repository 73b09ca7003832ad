#include "crash_loop.h"

#include <fmt/format.h>
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <random>
#include <thread>

#include "conn.h"
#include "ledger.h"
#include "load.h"
#include "server_runner.h"
#include "verifier.h"
#include "webhook_sink.h"

namespace im::stress {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kAdminKey = "imstress-admin-key";
constexpr const char* kHookSecret = "imstress-webhook-secret-0123456789abcdef";
constexpr std::size_t kDedupeSample = 30;
constexpr auto kCycleBudget = std::chrono::seconds(120);

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Creates `g` (the GROUP_CREATE `req`) as its owner on a connection of its
// own and records it in the Ledger; false with the reason in `why`.
bool create_setup_group(const LoadContext& ctx, const GroupRecord& g, const v1::GroupCreateReq& req,
                        std::chrono::milliseconds timeout, std::string& why) {
  Conn c;
  if (!c.connect(ctx.port) || !login(c, g.owner, ctx.token(g.owner), v1::WEB, "setup", why)) {
    why = "setup LOGIN of " + g.owner + ": " + why;
    return false;
  }
  auto answer = c.call(Cmd::kGroupCreate, req, timeout);
  if (!answer || !answer->ok()) {
    why = "setup GROUP_CREATE " + g.gid + ": " + describe(answer);
    return false;
  }
  ctx.ledger->put_group(g);
  return true;
}

// The groups every cycle sends to: each of the first three actors owns one
// with every actor and passive user as a member.
bool make_stable_groups(const LoadContext& ctx, std::string& why) {
  for (std::size_t i = 0; i < std::min<std::size_t>(3, ctx.people.actors.size()); ++i) {
    const std::string gid = fmt::format("stable{}", i);
    v1::GroupCreateReq req;
    const GroupRecord g =
        setup_group(ctx.people.actors[i], gid, "stable " + gid, {&ctx.people.actors, &ctx.people.passive}, req);
    if (!create_setup_group(ctx, g, req, std::chrono::seconds(5), why)) return false;
  }
  return true;
}

// A group of every user, the quiet ones too, whose SENDs fan out in slices
// across the shards: a kill lands inside a fan-out more often.
bool make_big_group(const LoadContext& ctx, std::string& why) {
  if (ctx.people.quiet.empty()) return true;
  v1::GroupCreateReq req;
  const GroupRecord g = setup_group(ctx.people.actors[0], "big0", "big",
                                    {&ctx.people.actors, &ctx.people.passive, &ctx.people.quiet}, req);
  return create_setup_group(ctx, g, req, std::chrono::seconds(30), why);
}

void cut_newest_wal(const std::string& data_dir) {
  std::filesystem::path newest;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(data_dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".log" && (newest.empty() || it->path().filename() > newest.filename()))
      newest = it->path();
  if (newest.empty()) return;
  const auto size = std::filesystem::file_size(newest, ec);
  if (!ec) std::filesystem::resize_file(newest, size / 2, ec);
  std::cout << fmt::format("cut {} from {} to {} bytes\n", newest.filename().string(), size, size / 2);
}

void print_violations(Ledger& ledger, std::uint64_t seed, int cycle, const std::string& dir, bool keep) {
  auto violations = ledger.violations();
  // Lost and duplicated messages first: they are what the loop is for.
  std::stable_partition(violations.begin(), violations.end(), [](const std::string& v) {
    return v.rfind("LOST:", 0) == 0 || v.rfind("DUPLICATED:", 0) == 0;
  });
  std::cerr << fmt::format("\nimstress crash-loop: {} violation(s) in cycle {} (seed {}):\n", violations.size(), cycle,
                           seed);
  for (std::size_t i = 0; i < violations.size() && i < 60; ++i) std::cerr << "  - " << violations[i] << "\n";
  if (violations.size() > 60) std::cerr << fmt::format("  ... and {} more\n", violations.size() - 60);
  if (keep) {
    std::cerr << fmt::format("the server's folder (config, data, server.log) is kept: {}\n", dir);
  } else {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
}

}  // namespace

int run_crash_loop(const CrashLoopOptions& o) {
  std::cout
      << fmt::format(
             "imstress crash-loop: seed {} ({} cycles, {} actors, {} quiet members, {} shards); rerun with --seed "
             "{}\n",
             o.seed, o.cycles, o.actors, o.quiet, o.shards, o.seed)
      << std::flush;
  std::mt19937_64 rng(o.seed);
  raise_file_limit();
  const std::string dir = make_temp_dir("imstress");
  WebhookSink sink(kHookSecret, 100, o.seed ^ 0x9e3779b97f4a7c15ull);
  if (!sink.start()) {
    std::cerr << "imstress: the webhook receiver cannot listen on 127.0.0.1\n";
    return 1;
  }
  ServerRunner server(o.imserver, dir,
                      {{"server.listen", "\"127.0.0.1:0\""},
                       {"server.ws_listen", "\"\""},
                       {"server.io_threads", "2"},
                       {"admin.listen", "\"127.0.0.1:0\""},
                       {"admin.api_key", fmt::format("\"{}\"", kAdminKey)},
                       {"storage.data_dir", fmt::format("\"{}/data\"", dir)},
                       {"auth.mode", "\"insecure\""},
                       {"webhook.url", fmt::format("\"{}\"", sink.url())},
                       {"webhook.secret", fmt::format("\"{}\"", kHookSecret)},
                       {"webhook.timeout_ms", "2000"},
                       // offline_push events off in effect (the kill drops their timers): each message
                       // to the big group would queue 500 of them, and the one webhook worker, at about
                       // 640 a second here, would keep the REPORTs waiting behind them for minutes.
                       {"push.offline_delay_ms", "60000"},
                       {"limits.messages_per_second", "100000"},
                       {"limits.burst", "100000"},
                       {"sharding.shards", std::to_string(o.shards)},
                       {"log.level", "\"info\""}});
  std::string why;
  if (!server.start(why)) {
    std::cerr << "imstress: " << why << "\n";
    return 1;
  }

  Ledger ledger;
  std::atomic<bool> stop{false};
  LoadContext ctx;
  ctx.ledger = &ledger;
  ctx.people = make_population("", o.actors, 4, 3);
  ctx.admin_key = kAdminKey;
  ctx.token = [](const std::string&) { return std::string("insecure"); };
  ctx.stop = &stop;
  // Paced so that the thirty cycles' checks, which go over everything
  // acknowledged so far, stay within minutes; the bursts keep several
  // SENDs in flight at the kill.
  ctx.pause = std::chrono::milliseconds(15);
  ctx.port = server.tcp_port();
  ctx.admin_port = server.admin_port();
  for (int i = 0; i < o.quiet; ++i) ctx.people.quiet.push_back(fmt::format("q{}", i));
  if (!make_stable_groups(ctx, why) || !make_big_group(ctx, why)) {
    std::cerr << "imstress: " << why << "\n";
    return 1;
  }

  for (int cycle = 1; cycle <= o.cycles; ++cycle) {
    if (interrupted()) {
      std::cerr << fmt::format("imstress crash-loop: interrupted before cycle {} (seed {}); folder: {}\n", cycle,
                               o.seed, dir);
      return 1;
    }
    const auto t0 = Clock::now();
    ctx.cycle = cycle;
    ctx.port = server.tcp_port();
    ctx.admin_port = server.admin_port();
    stop = false;
    LoadThreads load(ctx, rng);
    load.start();

    const int kill_ms = 200 + static_cast<int>(rng() % static_cast<std::uint64_t>(std::max(1, o.max_kill_ms - 200)));
    std::this_thread::sleep_for(std::chrono::milliseconds(kill_ms));
    if (!server.running()) ledger.violation("the server died by itself during the load:\n" + server.log_tail());
    server.kill9();
    stop = true;
    load.join();
    const double load_s = seconds_since(t0);
    if (o.cut_wal) cut_newest_wal(dir + "/data");

    // Now and then a second kill during the restart: while RocksDB replays
    // its log, the fan-outs are replayed, or just after it listens.
    std::string recovery_kill;
    if (rng() % 4 == 0) {
      const int ms = static_cast<int>(rng() % 400);
      server.start_then_kill(std::chrono::milliseconds(ms));
      recovery_kill = fmt::format(", killed again {} ms into the restart", ms);
    }
    const auto t_restart = Clock::now();
    if (!server.start(why)) {
      ledger.violation("restart failed: " + why);
      print_violations(ledger, o.seed, cycle, dir, !o.cut_wal || o.keep_dir);
      return 1;
    }
    const double restart_s = seconds_since(t_restart);

    const auto t_verify = Clock::now();
    ctx.port = server.tcp_port();
    ctx.admin_port = server.admin_port();
    Verifier verifier(ctx);
    verifier.resolve(rng, kDedupeSample);
    verifier.check_groups();
    verifier.check_messages(std::chrono::seconds(10));
    const double messages_s = seconds_since(t_verify);
    // The reports' wait is skipped once the cycle failed (it would only
    // lengthen the failing run).
    if (ledger.violation_count() == 0) verifier.check_reports(sink, std::chrono::seconds(30));
    for (const auto& p : sink.problems()) ledger.violation("webhook: " + p);
    if (!server.running()) ledger.violation("the server died during the checks:\n" + server.log_tail());
    const double verify_s = seconds_since(t_verify);
    if (Clock::now() - t0 > kCycleBudget)
      ledger.violation(
          fmt::format("cycle {} took {:.0f} s (budget {} s)", cycle, seconds_since(t0), kCycleBudget.count()));

    std::size_t ok = 0, unknown = 0, failed = 0, reports_ok = 0;
    for (const auto& r : ledger.sends())
      (r.outcome == Outcome::kOk ? ok : r.outcome == Outcome::kUnknown ? unknown : failed)++;
    for (const auto& r : ledger.reports()) reports_ok += r.outcome == Outcome::kOk;
    const auto& res = verifier.resolved();
    const auto& read = verifier.read();
    std::cout << fmt::format("cycle {}/{}: load {:.1f} s, SIGKILL at {} ms{}; restart {:.2f} s\n", cycle, o.cycles,
                             load_s, kill_ms, recovery_kill, restart_s)
              << fmt::format(
                     "  retried {} unanswered SENDs ({} had been stored, {} stored now, {} still unknown); {} "
                     "acknowledged ones re-sent came back duplicate\n",
                     res.retried, res.were_stored, res.stored_now, res.still_unknown, res.dedupe_checked)
              << fmt::format(
                     "  checks {:.1f} s ({:.1f} s before the reports' wait): {} inboxes ({} rows), {} "
                     "histories ({} rows)\n",
                     verify_s, messages_s, read.inboxes, read.inbox_rows, read.histories, read.history_rows)
              << fmt::format(
                     "  so far: {} SENDs acknowledged, {} unknown, {} refused; {} REPORTs acknowledged, {} "
                     "webhook deliveries ({} refused by the receiver); {}\n",
                     ok, unknown, failed, reports_ok, sink.deliveries(), sink.refused(),
                     ledger.violation_count() ? "VIOLATIONS" : "ok")
              << std::flush;
    auto counts = ledger.take_counts();
    if (o.verbose)
      for (const auto& [what, n] : counts) std::cout << fmt::format("    {:>7}  {}\n", n, what);
    if (ledger.violation_count() > 0) {
      print_violations(ledger, o.seed, cycle, dir, !o.cut_wal || o.keep_dir);
      return 1;
    }
  }
  const int status = server.terminate(std::chrono::seconds(20));
  if (status != 0) {
    std::cerr << fmt::format("imstress crash-loop: SIGTERM after the last cycle: exit status {} (seed {})\n{}\n",
                             status, o.seed, server.log_tail());
    std::cerr << "the server's folder is kept: " << dir << "\n";
    return 1;
  }
  std::cout << fmt::format("imstress crash-loop: {} cycles held (seed {})\n", o.cycles, o.seed);
  std::error_code ec;
  if (!o.keep_dir) std::filesystem::remove_all(dir, ec);
  return 0;
}

}  // namespace im::stress
