#pragma once
// The soak (docs/testing.md, bench/soak.sh): one imserver (JWT, admin API,
// a webhook to imstress's own receiver) under the mixed load of load.h and
// the hostile probes of probes.h for a given time, plus a second, plain
// server with no webhook for the REPORT probe. Every `sample_s` seconds it
// samples the soaked server's RSS, open files, WAL size (*.log in its data
// dir) and outbox depth (imserver_outbox_depth of /metrics), and prints the
// table and a first/last/max summary; `out` also gets them as Markdown. At
// the end the Ledger's checks run (nothing acknowledged lost) and both
// servers get SIGTERM, which they must survive with exit 0.

#include <cstdint>
#include <string>
#include <vector>

namespace im::stress {

struct SoakOptions {
  std::string imserver;
  int duration_s = 600;
  int sample_s = 10;
  std::uint64_t seed = 0;
  int actors = 4;
  double probe_scale = 1.0;
  int probe_budget_s = 30;          // each probe's time in a round
  std::vector<std::string> probes;  // only these (probes.h's names); empty: all
  std::string out;                  // a Markdown file to write the table to ("": none)
  bool keep_dir = false;
};

// 0 when the servers lived, nothing acknowledged was lost and they stopped
// cleanly; 1 otherwise. Flatness is for the reader of the table to judge.
int run_soak(const SoakOptions& options);

}  // namespace im::stress
