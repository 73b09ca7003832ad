#pragma once
// What the clients of imstress were told, and what they saw: every SEND
// (by sender and client_msg_id) with its outcome, every REPORT, every
// persisted server push, the groups with the members that are never
// removed, and each inbox row and history row some answer or PUSH showed.
// The checks after a restart (Verifier) hold the server to it. Thread safe:
// the load's threads record into one Ledger.

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "im/client.h"
#include "im/protocol.h"
#include "proto/im.pb.h"

namespace im::stress {

// What a request's sender knows of its effect.
enum class Outcome : std::uint8_t {
  kOk,       // answered OK: it took effect and must stay
  kFailed,   // answered with an error that means nothing was written
  kUnknown,  // no answer (the server died, or UNAVAILABLE): it may or may not have happened, once
};

struct SendRecord {
  std::string from;
  std::string cmid;
  v1::ConvType type = v1::C2C;
  std::string to;
  std::string body;
  std::uint32_t content_type = 0;
  bool admin = false;  // POST /v1/messages (no inbox_seq in the answer)
  Outcome outcome = Outcome::kUnknown;
  StatusCode status = StatusCode::kOk;  // the error of a kFailed one
  std::uint64_t msg_id = 0, conv_seq = 0, inbox_seq = 0;
  bool duplicate = false;     // the OK answer said duplicate
  bool resolved = false;      // its outcome came from a retry after a restart
  std::uint64_t session = 0;  // the connection that sent it (0: admin or a retry)
  std::uint64_t order = 0;    // its place among that connection's requests
  int cycle = 0;
};

struct ReportRecord {
  std::string uid, report_id, topic, payload;
  Outcome outcome = Outcome::kUnknown;
  int cycle = 0;
};

struct PushRecord {
  std::string to, topic, payload;
  Outcome outcome = Outcome::kUnknown;
  std::uint64_t push_id = 0;
  int cycle = 0;
};

struct GroupRecord {
  enum class Life : std::uint8_t {
    kMaybeCreated,  // GROUP_CREATE got no answer
    kLive,
    kMaybeDismissed,  // GROUP_DISMISS got no answer
    kDismissed,
    kAbsent,  // never created
  };
  std::string gid, owner;
  std::set<std::string> created_with;  // the GROUP_CREATE's members, the owner included
  std::set<std::string> stable;        // members never removed: they hold every message
  std::set<std::string> names;         // values the name may have now (several after unknown outcomes)
  std::set<std::string> announcements;
  Life life = Life::kMaybeCreated;
  bool throwaway = false;  // made to be dismissed
  bool dismiss_checked = false;
};

// The conversation key of PROTOCOL/DESIGN: c:<smaller>:<larger>, g:<gid>, s:<uid>.
std::string conv_key(v1::ConvType type, const std::string& a, const std::string& b);
// The conversation an inbox row of `owner` belongs to.
std::string conv_of(const std::string& owner, const v1::Message& m);

class Ledger {
 public:
  using SendKey = std::pair<std::string, std::string>;  // (from, client_msg_id)

  // ---- records (any thread) ----
  void add_send(SendRecord r);
  // The answer of a SEND; `answer` nullopt: none came.
  void answer_send(const SendKey& key, const std::optional<Frame>& answer);
  void set_send(const SendKey& key, const SendRecord& r);
  std::optional<SendRecord> send(const SendKey& key);
  std::vector<SendRecord> sends();

  void add_report(ReportRecord r);
  void answer_report(const std::string& report_id, Outcome outcome);
  std::vector<ReportRecord> reports();

  void add_push(PushRecord r);
  std::vector<PushRecord> pushes();

  void put_group(const GroupRecord& g);
  std::optional<GroupRecord> group(const std::string& gid);
  std::vector<GroupRecord> groups();

  // An inbox row shown by a PULL, PUSH or SendResp; a second, different
  // msg_id at the same seq is a violation.
  void see_inbox(const std::string& uid, std::uint64_t inbox_seq, std::uint64_t msg_id, const char* where);
  void see_history(const std::string& conv, std::uint64_t conv_seq, std::uint64_t msg_id, const char* where);
  std::map<std::uint64_t, std::uint64_t> seen_inbox(const std::string& uid);
  std::map<std::uint64_t, std::uint64_t> seen_history(const std::string& conv);
  // The highest inbox seq of `uid` known to be durable.
  std::uint64_t max_seen_inbox(const std::string& uid);

  std::uint64_t new_session() { return next_session_.fetch_add(1) + 1; }

  // ---- violations ----
  void violation(std::string what);
  std::vector<std::string> violations();
  std::size_t violation_count();
  // How many times the same kind of event was noted (for the cycle summary).
  void count(const std::string& what, std::uint64_t n = 1);
  std::map<std::string, std::uint64_t> take_counts();

 private:
  void see_inbox_locked(const std::string& uid, std::uint64_t inbox_seq, std::uint64_t msg_id, const char* where);
  void see_history_locked(const std::string& conv, std::uint64_t conv_seq, std::uint64_t msg_id, const char* where);

  std::mutex mutex_;
  std::map<SendKey, SendRecord> sends_;
  std::map<std::string, ReportRecord> reports_;
  std::vector<PushRecord> pushes_;
  std::map<std::string, GroupRecord> groups_;
  std::map<std::string, std::map<std::uint64_t, std::uint64_t>> inbox_seen_;
  std::map<std::string, std::map<std::uint64_t, std::uint64_t>> history_seen_;
  std::vector<std::string> violations_;
  std::map<std::string, std::uint64_t> counts_;
  std::atomic<std::uint64_t> next_session_{0};
};

// Whether an error answer to a write means "nothing was written". Anything
// else (UNAVAILABLE: the admin API's wait for a shard timed out, the work
// may still run) leaves the outcome unknown.
bool definite_failure(StatusCode status);

}  // namespace im::stress
