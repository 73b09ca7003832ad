#pragma once
// The checks of imstress after a restart (or at the end of a soak), from
// the Ledger against what the server now answers:
//  - resolve(): every SEND whose answer was lost is sent again with its
//    client_msg_id (the original or one new copy, never two), and a sample
//    of acknowledged ones must come back duplicate with their original ids;
//    REPORTs whose answer was lost are sent again;
//  - check_groups(): unknown creates and dismissals are settled; the
//    members never removed are members; names and announcements are the
//    last acknowledged ones; a dismissed gid stays dismissed;
//  - check_messages(): every inbox is gapless 1..max, holds every row ever
//    shown, each acknowledged message exactly once, no (sender,
//    client_msg_id) twice, no conversation seq twice, each conversation in
//    conv_seq order; every history is gapless 1..N and equals the
//    conversation's rows in each member's inbox; every acknowledged SEND
//    is stored exactly once anywhere, an unknown one at most once, a
//    failed one nowhere; each connection's SENDs to one conversation got
//    increasing conv_seqs;
//    a msg_id names one message only;
//  - check_reports(): every acknowledged REPORT reached the webhook, and no
//    webhook event id is also a msg_id (one clock makes both).
// Violations go to the Ledger. One thread.

#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "conn.h"
#include "ledger.h"
#include "load.h"
#include "webhook_sink.h"

namespace im::stress {

class Verifier {
 public:
  explicit Verifier(const LoadContext& ctx);
  void resolve(std::mt19937_64& rng, std::size_t sample);
  void check_groups();
  void check_messages(std::chrono::seconds settle);
  void check_reports(WebhookSink& sink, std::chrono::seconds within);

  // What resolve() found, for the cycle's summary.
  struct Resolved {
    std::size_t retried = 0, were_stored = 0, stored_now = 0, still_unknown = 0, dedupe_checked = 0;
    std::size_t reports_retried = 0;
  };
  const Resolved& resolved() const { return resolved_; }
  // What check_messages read.
  struct Read {
    std::size_t inboxes = 0, inbox_rows = 0, histories = 0, history_rows = 0;
  };
  const Read& read() const { return read_; }

 private:
  // A connection logged in as `uid` (device DESKTOP "verifier"); nullptr
  // (and a violation) when that fails.
  Conn* as(const std::string& uid);
  std::vector<v1::Message> pull_all(Conn& c, const std::string& uid);
  std::vector<v1::Message> history_all(Conn& c, v1::ConvType type, const std::string& peer, bool& ok);
  void retry_send(SendRecord r, bool acknowledged);
  // GROUP_GET with every member; nullopt when not OK (status in `status`).
  std::optional<std::pair<v1::Group, std::set<std::string>>> get_group(const GroupRecord& g, StatusCode& status);

  const LoadContext& ctx_;
  Ledger& ledger_;
  std::map<std::string, std::unique_ptr<Conn>> conns_;
  // Every msg_id check_messages saw, with the conversation row it names.
  std::map<std::uint64_t, std::string> msg_ids_;
  Resolved resolved_;
  Read read_;
};

}  // namespace im::stress
