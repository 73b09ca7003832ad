#pragma once
// The hostile clients of the soak (docs/testing.md), one after another,
// round after round, until `stop`:
//   big_groups        50 GROUP_CREATEs of 900 random 60-byte uids (disk)
//   big_group_sends   32 KiB SENDs to a 2,000-member group
//   announcements     4 KiB announcement updates of that group
//   big_reports       30 KB REPORTs, to a server with a webhook and one without
//   history_flood     100k HISTORY requests with random peers (memory)
//   absent_groups     100k GROUP_GETs of absent gids (memory)
//   one_uid_logins    20,000 LOGINs of one uid with distinct device_ids
//   expiring_sessions sessions whose JWT exp passes while they are open
//   unauthenticated   10,000 sockets that never log in, each holding a big
//                     pre-login frame half sent (one in ten over the limit)
//   metrics_ranges    multi-Range GET /metrics
//   connection_flood  12,000 connections opened at once, over the admission limits
// Each tallies what the server answered; none asserts (the soak watches
// the server's RSS, files, WAL and outbox while they run). Loopback only;
// every loop bounded; every socket it opens it closes. One thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>

namespace im::stress {

struct ProbeTarget {
  std::uint16_t port = 0;        // the soaked server's TCP listener
  std::uint16_t admin_port = 0;  // its admin API (GET /metrics)
  std::uint16_t plain_port = 0;  // a second server with no webhook.url (REPORT is DISABLED there)
  // A LOGIN token for uid; exp_s 0: none.
  std::function<std::string(const std::string& uid, std::int64_t exp_s)> token;
  std::atomic<bool>* stop = nullptr;
  double scale = 1.0;  // multiplies every count (a short trial uses less)
  // Each probe stops after this long in a round (its sockets closed), so
  // every probe gets its turn within a round.
  std::chrono::seconds budget{30};
  // Only these probes (by the names above); empty: all.
  std::set<std::string> only;
};

class Probes {
 public:
  Probes(ProbeTarget target, std::uint64_t seed);
  void run();
  // probe -> what happened -> how many times.
  std::map<std::string, std::map<std::string, std::uint64_t>> tallies();
  int rounds() const { return rounds_.load(); }

 private:
  // The soak is over, or this probe's budget is spent.
  bool stopped() const { return target_.stop->load() || std::chrono::steady_clock::now() >= deadline_; }
  int scaled(int n) const;
  void tally(const std::string& probe, const std::string& what, std::uint64_t n = 1);
  std::string random_id(std::size_t length);
  // Waits `ms` (at most 5 s) unless stopping.
  void back_off(std::uint32_t ms);

  void big_groups();
  void big_group_sends();
  void announcements();
  void big_reports();
  void history_flood();
  void absent_groups();
  void one_uid_logins();
  void expiring_sessions();
  void unauthenticated();
  void metrics_ranges();
  void connection_flood();
  bool ensure_big_group();

  ProbeTarget target_;
  std::mt19937_64 rng_;
  std::mutex mutex_;
  std::map<std::string, std::map<std::string, std::uint64_t>> tallies_;
  std::chrono::steady_clock::time_point deadline_;
  std::string big_gid_;
  std::atomic<int> rounds_{0};
  std::uint64_t counter_ = 0;
};

}  // namespace im::stress
