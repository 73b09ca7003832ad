// imstress: the crash loop and the soak of docs/testing.md, against the real
// imserver binary (loopback only; it stops only the servers it started).
//
//   imstress crash-loop --imserver build/imserver --cycles 30 [--seed N]
//   imstress soak --imserver build/imserver --duration 600 [--out soak.md]
//
// The seed is printed first; the same seed replays the same choices (which
// operations, which kill moments), though not the threads' interleaving.

#include <csignal>
#include <iostream>
#include <random>

#include <CLI/CLI.hpp>

#include "crash_loop.h"
#include "server_runner.h"
#include "soak.h"

int main(int argc, char** argv) {
  CLI::App app{"imstress: crash loop and soak for imserver (loopback only)"};
  app.require_subcommand(1);
  im::stress::CrashLoopOptions crash;
  im::stress::SoakOptions soak;
  std::uint64_t seed = 0;
  auto* crash_cmd = app.add_subcommand("crash-loop", "mixed load, SIGKILL at random moments, restart, check");
  crash_cmd->add_option("--imserver", crash.imserver, "the imserver binary")->required()->check(CLI::ExistingFile);
  crash_cmd->add_option("--cycles", crash.cycles, "kill-restart-check cycles")->check(CLI::Range(1, 100000));
  crash_cmd->add_option("--seed", seed, "the random seed (default: a fresh one, printed)");
  crash_cmd->add_option("--actors", crash.actors, "users driving the load, one connection each")
      ->check(CLI::Range(1, 64));
  crash_cmd->add_option("--quiet", crash.quiet, "members of the big group who never log in during the load")
      ->check(CLI::Range(0, 1800));
  crash_cmd->add_option("--shards", crash.shards, "the server's sharding.shards")->check(CLI::Range(1, 64));
  crash_cmd->add_option("--max-kill-ms", crash.max_kill_ms, "the load runs 200 ms to this long before each kill")
      ->check(CLI::Range(300, 60000));
  crash_cmd->add_flag("--keep-dir", crash.keep_dir, "keep the server's folder after a run that held");
  crash_cmd->add_flag("--verbose", crash.verbose, "print what the load was answered, per cycle");
  crash_cmd->add_flag("--cut-wal", crash.cut_wal,
                      "after each kill cut the newest WAL file in half (proves the checks fail on a loss)");

  auto* soak_cmd = app.add_subcommand("soak", "mixed load and hostile probes; samples RSS, files, WAL, outbox");
  soak_cmd->add_option("--imserver", soak.imserver, "the imserver binary")->required()->check(CLI::ExistingFile);
  soak_cmd->add_option("--duration", soak.duration_s, "seconds")->check(CLI::Range(10, 86400));
  soak_cmd->add_option("--sample", soak.sample_s, "seconds between samples")->check(CLI::Range(1, 3600));
  soak_cmd->add_option("--seed", seed, "the random seed (default: a fresh one, printed)");
  soak_cmd->add_option("--actors", soak.actors, "users driving the mixed load")->check(CLI::Range(1, 64));
  soak_cmd->add_option("--probe-scale", soak.probe_scale, "multiplies every probe's count")
      ->check(CLI::Range(0.001, 10.0));
  soak_cmd->add_option("--probe-budget", soak.probe_budget_s, "seconds each probe may take in a round")
      ->check(CLI::Range(1, 3600));
  soak_cmd->add_option("--probes", soak.probes, "run only these probes (names in tests/stress/probes.h)")
      ->delimiter(',')
      ->check(CLI::IsMember({"big_groups", "big_group_sends", "announcements", "big_reports", "history_flood",
                             "absent_groups", "one_uid_logins", "expiring_sessions", "unauthenticated",
                             "metrics_ranges", "connection_flood"}));
  soak_cmd->add_option("--out", soak.out, "also write the table and summary to this Markdown file");
  soak_cmd->add_flag("--keep-dir", soak.keep_dir, "keep the servers' folder");
  CLI11_PARSE(app, argc, argv);

  if (seed == 0) seed = std::random_device{}() | (static_cast<std::uint64_t>(std::random_device{}()) << 32);
  std::signal(SIGPIPE, SIG_IGN);
  im::stress::install_interrupt_handlers();
  try {
    if (crash_cmd->parsed()) {
      crash.seed = seed;
      return im::stress::run_crash_loop(crash);
    }
    soak.seed = seed;
    return im::stress::run_soak(soak);
  } catch (const std::exception& e) {
    std::cerr << "imstress: " << e.what() << "\n";
    return 1;
  }
}
