#pragma once
// The mixed load of imstress. An Actor is one user on one connection (and
// now and then a second device) doing, at random: C2C and group SENDs in
// pipelined bursts, group creates, adds, removes, updates and create-send-
// dismiss runs, PULLs from random points with ACKs, HISTORY pages, REPORTs,
// LOGOUT and LOGIN again with another device type. The AdminActor sends
// through the admin API (POST /v1/messages, persisted POST /v1/push).
// Everything they are told goes into the Ledger; what an answer shows that
// the protocol forbids (a PULL with a gap, a login that forgot a seen seq)
// is a violation at once.
//
// Each runs on its own thread until `stop` is set. A lost connection is
// reconnected (after a kill that fails until the loop sets `stop`).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "conn.h"
#include "ledger.h"

namespace im::stress {

struct Population {
  std::vector<std::string> actors;   // log in and drive the load
  std::vector<std::string> passive;  // receive only; stable group members
  std::vector<std::string> churn;    // added to and removed from groups
  std::vector<std::string> quiet;    // only in the big group: its fan-out's recipients
  std::vector<std::string> all() const;
};

struct LoadContext {
  Ledger* ledger = nullptr;
  Population people;
  std::uint16_t port = 0;
  std::uint16_t admin_port = 0;
  std::string admin_key;
  // The LOGIN token of a uid.
  std::function<std::string(const std::string&)> token;
  std::atomic<bool>* stop = nullptr;
  int cycle = 0;
  // Between two operations of one actor: 0 in the crash loop, a pause in
  // the soak so the load is mixed rather than flat out.
  std::chrono::milliseconds pause{0};
};

class Actor {
 public:
  Actor(const LoadContext& ctx, std::string uid, std::uint64_t seed);
  void run();

 private:
  bool reconnect();
  void c2c_burst();
  void group_burst();
  // Group SENDs to `gid`; false when none was answered OK.
  bool send_to_group(const std::string& gid, int n);
  void group_change();
  std::optional<GroupRecord> create_group(bool throwaway);
  void throwaway_run();
  void add_churn();
  void owner_change();
  void pull(Conn& c, const char* where);
  void history();
  void report();
  void relogin();
  void second_device();
  void drain_pushes();
  // A request on the main connection (notes one left unanswered).
  std::optional<Frame> call(Cmd cmd, const google::protobuf::MessageLite& req);
  // After a LOGOUT that was answered (no request of the session was left
  // unanswered): the PUSHes and the session's own SendResps covered every
  // inbox seq from LoginResp's inbox_max_seq + 1 to the highest of them.
  void check_session_gapless();
  bool send_batch(std::vector<SendRecord> records);
  std::string next_id(const char* kind);
  std::string random_body(std::size_t max);
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[rng_() % v.size()];
  }
  std::vector<GroupRecord> my_groups(bool owned);

  const LoadContext& ctx_;
  Ledger& ledger_;
  std::string uid_;
  std::mt19937_64 rng_;
  Conn conn_;
  v1::DeviceType device_ = v1::IOS;
  std::uint64_t session_ = 0;
  std::uint64_t order_ = 0;
  std::uint64_t counter_ = 0;
  std::uint64_t login_max_ = 0;           // this session's LoginResp.inbox_max_seq
  std::set<std::uint64_t> session_seqs_;  // inbox seqs this session got by PUSH or SendResp
  bool unanswered_ = false;               // a request of this session got no answer
};

class AdminActor {
 public:
  AdminActor(const LoadContext& ctx, std::uint64_t seed);
  void run();

 private:
  void send_as();
  void persisted_push();

  const LoadContext& ctx_;
  Ledger& ledger_;
  std::mt19937_64 rng_;
  std::uint64_t counter_ = 0;
};

// The mixed load on threads: an Actor for each of ctx.people.actors and the
// AdminActor, seeded from `rng` in that order when constructed; start() runs
// each on a thread of its own, join() waits for them (set *ctx.stop first).
// Threads still running when it is destroyed (an exception between start()
// and join()) are stopped through *ctx.stop and joined.
class LoadThreads {
 public:
  LoadThreads(const LoadContext& ctx, std::mt19937_64& rng);
  ~LoadThreads();
  LoadThreads(const LoadThreads&) = delete;
  LoadThreads& operator=(const LoadThreads&) = delete;
  void start();
  void join();

 private:
  std::atomic<bool>* stop_;
  std::vector<std::unique_ptr<Actor>> actors_;
  AdminActor admin_;
  std::vector<std::thread> threads_;
};

// `actors` actors, `passive` passive and `churn` churn users, named
// <prefix>a0.., <prefix>p0.. and <prefix>c0.. (no quiet ones).
Population make_population(const std::string& prefix, int actors, int passive, int churn);

// A setup group `gid` of `owner` named `name`, live, whose members (stable
// ones all) are every user of `lists`; `req` gets the GROUP_CREATE that
// makes it.
GroupRecord setup_group(const std::string& owner, const std::string& gid, const std::string& name,
                        std::initializer_list<const std::vector<std::string>*> lists, v1::GroupCreateReq& req);

// The SEND of `r`.
v1::SendReq send_req(const SendRecord& r);

// A body of 1 to `max` random bytes.
std::string random_bytes(std::mt19937_64& rng, std::size_t max);

}  // namespace im::stress
