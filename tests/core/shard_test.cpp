// Shards on a temporary store whose file system fails on demand
// (tests/support/fault_env.h): storage faults are answered honestly, and a
// failed write leaves no trace in memory.

#include <catch2/catch.hpp>

#include <filesystem>
#include <future>
#include <map>
#include <random>
#include <set>

#include <asio/post.hpp>

#include "common/metrics.h"
#include "core/commands.h"
#include "core/core_env.h"
#include "core/fanout_recovery.h"
#include "core/shard.h"
#include "fault_env.h"
#include "store/conv_id.h"
#include "store/keys.h"
#include "store/store.h"
#include "wait_until.h"

using namespace im;
using namespace im::core;
using namespace std::chrono_literals;

namespace {

constexpr auto kAnswerTimeout = 20s;

// Two shards over one store, as Service builds them, without the network.
class TestCore {
 public:
  explicit TestCore(unsigned shards = 2) : shard_count_(shards) {
    config_.storage.data_dir =
        (std::filesystem::temp_directory_path() / ("imcore-" + std::to_string(std::random_device{}()))).string();
    open();
    start_shards();
  }
  ~TestCore() {
    faults.fail_reads(false);
    faults.fail_writes(false);
    stop();
    std::filesystem::remove_all(config_.storage.data_dir);
  }

  // Closes and opens the store again (cold cache, its WAL replayed into
  // table files); shards are rebuilt, so nothing is cached in memory.
  void reopen() {
    stop();
    open();
  }
  void start_shards() {
    for (unsigned i = 0; i < shard_count_; ++i) {
      loops_.push_back(std::make_unique<ShardLoop>(i));
      shards_.push_back(std::make_unique<Shard>(i, *env_, *loops_.back()));
    }
    for (auto& s : shards_) s->start();
    for (auto& l : loops_) l->start();
  }
  void stop() {
    for (auto& s : shards_) s->request_stop();
    for (auto& l : loops_) l->request_stop();
    for (auto& l : loops_) l->stop();
    shards_.clear();
    loops_.clear();
    env_.reset();
    store_.reset();
  }

  store::Store& store() { return *store_; }
  CoreEnv& env() { return *env_; }

  // Runs `fn` on `shard` and returns what it returns.
  template <class Fn>
  auto on(Shard& shard, Fn fn) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    asio::post(shard.context(), [&task] { task(); });
    if (result.wait_for(kAnswerTimeout) != std::future_status::ready) {
      // The job (and what `fn` refers to on the caller's stack) must not
      // run after this frame is gone: the stop runs or drops it now.
      stop();
      FAIL("no answer from the shard in " << kAnswerTimeout.count() << " s");
    }
    return result.get();
  }
  Shard& shard_for(const std::string& key) { return env_->shard_for(key); }

  // Posts a SEND and returns the future of its answer.
  std::future<Result<v1::SendResp>> send_async(const std::string& from, const std::string& to, const std::string& cmid,
                                               v1::ConvType type = v1::C2C) {
    v1::SendReq req;
    req.set_client_msg_id(cmid);
    req.set_conv_type(type);
    req.set_to(to);
    req.set_body("body of " + cmid);
    auto job = make_send_job(from, req);
    auto answer = std::make_shared<std::promise<Result<v1::SendResp>>>();
    auto future = answer->get_future();
    job->done = [answer](const Result<v1::SendResp>& r) { answer->set_value(r); };
    Shard& shard = shard_for(from);
    asio::post(shard.context(), [&shard, job] { shard.send(job); });
    return future;
  }
  Result<v1::SendResp> send(const std::string& from, const std::string& to, const std::string& cmid,
                            v1::ConvType type = v1::C2C) {
    auto f = send_async(from, to, cmid, type);
    REQUIRE(f.wait_for(kAnswerTimeout) == std::future_status::ready);
    return f.get();
  }

  Result<GroupReply> group(Cmd cmd, const std::string& actor, const std::string& gid,
                           const std::vector<std::string>& uids = {}) {
    auto future = group_async(cmd, actor, gid, uids);
    REQUIRE(future.wait_for(kAnswerTimeout) == std::future_status::ready);
    return future.get();
  }
  std::future<Result<GroupReply>> group_async(Cmd cmd, const std::string& actor, const std::string& gid,
                                              const std::vector<std::string>& uids = {}) {
    auto c = std::make_shared<GroupCommand>();
    c->cmd = cmd;
    c->actor = {actor, false};
    c->gid = gid;
    c->create.set_gid(gid);
    c->create.set_name("team");
    for (const auto& u : uids) c->create.add_members(u);
    c->members.set_gid(gid);
    for (const auto& u : uids) c->members.add_uids(u);
    c->get.set_gid(gid);
    c->get.set_with_members(true);
    auto answer = std::make_shared<std::promise<Result<GroupReply>>>();
    auto future = answer->get_future();
    c->done = [answer](const Result<GroupReply>& r) { answer->set_value(r); };
    Shard& owner = shard_for(store::group_conv(gid));
    asio::post(owner.context(), [&owner, c] { owner.group_command(c); });
    return future;
  }

  Result<v1::PullResp> pull(const std::string& uid, std::uint64_t after = 0, std::uint32_t limit = 1000) {
    auto body = on(shard_for(uid), [&] {
      v1::PullReq req;
      req.set_after_seq(after);
      req.set_limit(limit);
      return shard_for(uid).pull(uid, 0, req);  // no session: moves no cursor
    });
    if (!body) return body.error();
    v1::PullResp resp;
    REQUIRE(resp.ParseFromString(*body));
    return resp;
  }

  // The inbox as stored, read straight from the store.
  std::vector<v1::Message> inbox(const std::string& uid) {
    std::vector<v1::Message> out;
    REQUIRE(store_->scan_inbox(uid, 0, UINT64_MAX, [&](std::uint64_t, std::string_view row) {
      v1::Message m;
      REQUIRE(m.ParseFromArray(row.data(), static_cast<int>(row.size())));
      out.push_back(m);
      return true;
    }));
    return out;
  }
  std::vector<v1::Message> history(const std::string& conv) {
    std::vector<v1::Message> out;
    REQUIRE(store_->scan_history_back(conv, UINT64_MAX, [&](std::uint64_t, std::string_view row) {
      v1::Message m;
      REQUIRE(m.ParseFromArray(row.data(), static_cast<int>(row.size())));
      out.insert(out.begin(), m);
      return true;
    }));
    return out;
  }

  // Writes succeed again (RocksDB's own recovery from a full disk polls
  // about every 5 s once the fault is gone).
  bool writes_recovered() {
    return test::wait_until(
        [&] {
          store::Batch probe(*store_);
          probe.put_meta("test-probe", 1);
          return store_->write(probe).ok();
        },
        60s, 100ms);
  }

  test::FaultEnv faults;

 private:
  void open() {
    auto opened = store::Store::open(config_.storage, faults.env());
    REQUIRE(opened);
    store_ = std::move(opened.value());
    env_.reset(new CoreEnv{config_, *store_, shards_});
  }

  const unsigned shard_count_;
  Config config_;
  std::unique_ptr<store::Store> store_;
  std::vector<std::unique_ptr<ShardLoop>> loops_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<CoreEnv> env_;
};

// Every inbox seq from 1 to the last, once.
void require_gapless(const std::vector<v1::Message>& rows) {
  for (std::size_t i = 0; i < rows.size(); ++i) REQUIRE(rows[i].inbox_seq() == i + 1);
}

}  // namespace

TEST_CASE("shard: a read error on a user's inbox answers INTERNAL and never reuses a seq") {
  TestCore core;
  for (int i = 0; i < 3; ++i) REQUIRE(core.send("alice", "bob", "m" + std::to_string(i)));
  core.reopen();  // the rows now lie in table files, nothing in memory
  core.start_shards();

  core.faults.fail_reads(true);
  auto refused = core.send("alice", "bob", "m3");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == StatusCode::kInternal);
  auto pulled = core.pull("alice");
  REQUIRE_FALSE(pulled);
  CHECK(pulled.error().code == StatusCode::kInternal);
  core.faults.fail_reads(false);

  auto sent = core.send("alice", "bob", "m3");
  REQUIRE(sent);
  CHECK(sent->inbox_seq() == 4);
  CHECK(sent->conv_seq() == 4);
  CHECK_FALSE(sent->duplicate());
  auto rows = core.pull("alice");
  REQUIRE(rows);
  REQUIRE(rows->messages_size() == 4);
  CHECK(rows->inbox_max_seq() == 4);
  require_gapless(core.inbox("alice"));
  require_gapless(core.inbox("bob"));
}

TEST_CASE("shard: a read error on a group is INTERNAL, never taken for an absent group") {
  TestCore core;
  REQUIRE(core.group(Cmd::kGroupCreate, "alice", "g1", {"bob"}));
  core.reopen();
  core.start_shards();
  core.faults.fail_reads(true);
  auto again = core.group(Cmd::kGroupCreate, "mallory", "g1", {"mallory"});
  REQUIRE_FALSE(again);
  CHECK(again.error().code == StatusCode::kInternal);
  core.faults.fail_reads(false);
  auto conflict = core.group(Cmd::kGroupCreate, "mallory", "g1", {"mallory"});
  REQUIRE_FALSE(conflict);
  CHECK(conflict.error().code == StatusCode::kConflict);
  auto got = core.group(Cmd::kGroupGet, "alice", "g1");
  REQUIRE(got);
  CHECK(got->group.group().owner() == "alice");
}

TEST_CASE("shard: a write failure during GROUP_ADD_MEMBERS leaves membership as it was") {
  TestCore core;
  REQUIRE(core.group(Cmd::kGroupCreate, "alice", "g1", {"bob"}));

  core.faults.fail_writes(true);
  auto added = core.group(Cmd::kGroupAddMembers, "alice", "g1", {"carol"});
  REQUIRE_FALSE(added);
  CHECK(added.error().code == StatusCode::kInternal);
  // The cached group is what is durable: carol is no member and cannot send.
  auto got = core.group(Cmd::kGroupGet, "alice", "g1");
  REQUIRE(got);
  CHECK(std::vector<std::string>(got->group.members().begin(), got->group.members().end()) ==
        std::vector<std::string>{"alice", "bob"});
  CHECK(got->group.group().member_count() == 2);
  auto sent = core.send("carol", "g1", "c1", v1::GROUP);
  REQUIRE_FALSE(sent);
  CHECK(sent.error().code == StatusCode::kForbidden);
  core.faults.fail_writes(false);

  REQUIRE(core.writes_recovered());
  auto retried = core.group(Cmd::kGroupAddMembers, "alice", "g1", {"carol"});
  REQUIRE(retried);
  CHECK(std::vector<std::string>(retried->members.changed().begin(), retried->members.changed().end()) ==
        std::vector<std::string>{"carol"});
  CHECK(retried->members.member_count() == 3);
}

TEST_CASE("shard: a write failure during start-up replay keeps the record, and a later start finishes it") {
  TestCore core(2);
  core.stop();
  core.reopen();
  // A group message whose fan-out a crash left unfinished: its first chain
  // (shard 0 of 1) got one row written, with its progress row.
  v1::Message msg;
  msg.set_msg_id(4242);
  msg.set_conv_type(v1::GROUP);
  msg.set_from("alice");
  msg.set_to("g1");
  msg.set_conv_seq(1);
  msg.set_content_type(1);
  const store::FanoutKey key{store::group_conv("g1"), 1, ""};
  const std::vector<std::string> members{"alice", "bob", "carol", "dave"};
  {
    store::Batch b(core.store());
    b.put_history(key.conv, 1, msg.SerializeAsString());
    b.put_group_fanout(key, {msg, members, 1});
    v1::Message first = msg;
    first.set_inbox_seq(1);
    b.put_inbox("alice", 1, first.SerializeAsString());
    b.put_fanout_progress(key, {0, 1});
    REQUIRE(core.store().write(b));
  }
  core.start_shards();
  core.faults.fail_writes(true);
  CHECK_THROWS_AS(recover_fanouts(core.env()), std::runtime_error);
  core.faults.fail_writes(false);
  int records = 0;
  REQUIRE(core.store().scan_fanout([&](const store::FanoutEntry& e) {
    records += e.kind == store::FanoutEntry::Kind::kGroup;
    return true;
  }));
  CHECK(records == 1);

  core.reopen();  // a later start
  core.start_shards();
  recover_fanouts(core.env());
  for (const auto& uid : members) {
    auto rows = core.inbox(uid);
    INFO(uid);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].msg_id() == 4242);
  }
  records = 0;
  REQUIRE(core.store().scan_fanout([&](const store::FanoutEntry&) {
    ++records;
    return true;
  }));
  CHECK(records == 0);          // the record and its progress rows are gone
  recover_fanouts(core.env());  // nothing left: no row twice
  for (const auto& uid : members) CHECK(core.inbox(uid).size() == 1);
}

TEST_CASE("shard: ENOSPC in the middle of pipelined SENDs loses no acknowledged message, and writes come back") {
  TestCore core(2);
  const std::vector<std::string> users{"u1", "u2", "u3", "u4", "u5", "u6"};
  constexpr int kSends = 600;
  std::vector<std::string> cmids;
  std::vector<std::pair<std::string, std::string>> ends;  // from, to
  std::vector<std::future<Result<v1::SendResp>>> answers;
  constexpr int kChunk = 50;
  for (int i = 0; i < kSends; ++i) {
    const std::string& from = users[static_cast<std::size_t>(i) % users.size()];
    const std::string& to = users[static_cast<std::size_t>(i * 7 + 1) % users.size()];
    cmids.push_back("p" + std::to_string(i));
    ends.emplace_back(from, to);
    answers.push_back(core.send_async(from, to, cmids.back()));
    if (i % kChunk != kChunk - 1) continue;
    // The disk fills, then frees, while a chunk is still in flight.
    if (i + 1 == kSends / 3) core.faults.fail_writes(true);
    if (i + 1 == 2 * kSends / 3) core.faults.fail_writes(false);
    REQUIRE(answers[static_cast<std::size_t>(i - kChunk + 1)].wait_for(kAnswerTimeout) == std::future_status::ready);
  }
  // Every SEND is answered (a failed one within SendDedupe's bound).
  std::vector<Result<v1::SendResp>> results;
  int failed = 0;
  for (auto& a : answers) {
    REQUIRE(a.wait_for(kAnswerTimeout) == std::future_status::ready);
    results.push_back(a.get());
    if (!results.back()) {
      ++failed;
      // INTERNAL when nothing was stored; UNAVAILABLE from the overdue
      // sweep when the history row is, and a copy is still being retried.
      const StatusCode code = results.back().error().code;
      CHECK((code == StatusCode::kInternal || code == StatusCode::kUnavailable));
    }
  }
  CHECK(failed > 0);
  REQUIRE(core.writes_recovered());
  // The clients retry what failed, with the same client_msg_id.
  for (int i = 0; i < kSends; ++i) {
    if (results[static_cast<std::size_t>(i)]) continue;
    // Not a structured binding: clang 14 (the sanitized build) cannot
    // capture one in a lambda.
    const auto& end = ends[static_cast<std::size_t>(i)];
    Result<v1::SendResp> retried = make_error(StatusCode::kInternal, "");
    REQUIRE(test::wait_until(
        [&] {
          retried = core.send(end.first, end.second, cmids[static_cast<std::size_t>(i)]);
          return retried.ok();
        },
        30s, 200ms));
    results[static_cast<std::size_t>(i)] = retried;
  }
  // Copies written in the background have landed once every SEND answered OK;
  // each message is then in its history once, at its SendResp's conv_seq,
  // and in both inboxes once; every inbox and history is gapless.
  std::map<std::string, std::vector<v1::Message>> histories;
  for (int i = 0; i < kSends; ++i) {
    auto& [from, to] = ends[static_cast<std::size_t>(i)];
    const std::string conv = store::c2c_conv(from, to);
    if (!histories.count(conv)) histories[conv] = core.history(conv);
  }
  for (auto& [conv, rows] : histories)
    for (std::size_t i = 0; i < rows.size(); ++i) REQUIRE(rows[i].conv_seq() == i + 1);
  for (int i = 0; i < kSends; ++i) {
    auto& [from, to] = ends[static_cast<std::size_t>(i)];
    const auto& rows = histories[store::c2c_conv(from, to)];
    const auto& resp = *results[static_cast<std::size_t>(i)];
    int copies = 0;
    for (const auto& m : rows) copies += m.client_msg_id() == cmids[static_cast<std::size_t>(i)] && m.from() == from;
    INFO(cmids[static_cast<std::size_t>(i)]);
    REQUIRE(copies == 1);
    REQUIRE(rows[resp.conv_seq() - 1].msg_id() == resp.msg_id());
  }
  REQUIRE(test::wait_until(
      [&] {
        std::size_t rows = 0;
        for (const auto& u : users) rows += core.inbox(u).size();
        return rows == 2u * kSends;
      },
      30s));
  for (const auto& u : users) {
    auto rows = core.inbox(u);
    require_gapless(rows);
    std::set<std::uint64_t> ids;
    for (const auto& m : rows) REQUIRE(ids.insert(m.msg_id()).second);
  }
}

TEST_CASE("shard: no answer rests on a group change whose batch then fails") {
  TestCore core;
  core.faults.fail_writes(true);
  // Both land in one turn of the group's shard: the second must not see the
  // first's group, which is never written.
  auto first = core.group_async(Cmd::kGroupCreate, "alice", "g1", {"bob"});
  auto second = core.group_async(Cmd::kGroupCreate, "mallory", "g1", {"eve"});
  REQUIRE(first.wait_for(kAnswerTimeout) == std::future_status::ready);
  REQUIRE(second.wait_for(kAnswerTimeout) == std::future_status::ready);
  auto a = first.get();
  auto b = second.get();
  REQUIRE_FALSE(a);
  CHECK(a.error().code == StatusCode::kInternal);
  REQUIRE_FALSE(b);
  CHECK(b.error().code == StatusCode::kInternal);
  core.faults.fail_writes(false);
  REQUIRE(core.writes_recovered());
  auto created = core.group(Cmd::kGroupCreate, "mallory", "g1", {"eve"});
  REQUIRE(created);
  CHECK(created->group.group().owner() == "mallory");
}

TEST_CASE("shard: msg_ids keep growing across a restart") {
  TestCore core;
  auto before = core.send("alice", "bob", "a1");
  REQUIRE(before);
  core.reopen();
  core.start_shards();
  auto after = core.send("alice", "bob", "a2");
  REQUIRE(after);
  CHECK(after->msg_id() > before->msg_id());
  auto dup = core.send("alice", "bob", "a1");  // the dedupe row survived too
  REQUIRE(dup);
  CHECK(dup->duplicate());
  CHECK(dup->msg_id() == before->msg_id());
}

TEST_CASE("shard: ACK moves the cursor of the device its session logged in on, also once replaced or kicked") {
  TestCore core;
  for (int i = 0; i < 5; ++i) REQUIRE(core.send("alice", "bob", "c" + std::to_string(i)));
  // The SendResp comes before bob's copy is written on bob's shard.
  REQUIRE(test::wait_until([&] { return core.inbox("bob").size() == 5; }, 30s));
  Shard& shard = core.shard_for("bob");
  auto login = [&](std::uint64_t id, v1::DeviceType type, const std::string& device) {
    auto state = core.on(shard, [&] {
      return shard.add_session("bob", SessionRef{{}, id, static_cast<std::uint8_t>(type)}, device);
    });
    REQUIRE(state);
    return *state;
  };
  auto ack = [&](std::uint64_t id, std::uint64_t seq) {
    REQUIRE(core.on(shard, [&] { return shard.ack("bob", id, seq); }));
  };
  login(1, v1::WEB, "laptop");
  login(2, v1::IOS, "phoneA");
  ack(1, 2);
  ack(2, 4);
  auto replaced = login(3, v1::IOS, "phoneB");
  REQUIRE(replaced.replaced);
  CHECK(replaced.replaced->session_id == 2);
  ack(2, 5);  // phoneA's, still on its way: phoneA's cursor, not phoneB's
  ack(3, 1);
  CHECK(core.on(shard, [&] { return shard.take_sessions("bob", 0); }).size() == 2);
  ack(1, 3);  // the laptop's, after the kick: still the laptop's
  ack(0, 5);  // no session: nothing
  CHECK(login(4, v1::WEB, "laptop").acked_seq == 3);
  CHECK(login(5, v1::IOS, "phoneA").acked_seq == 5);
  CHECK(login(6, v1::IOS, "phoneB").acked_seq == 1);
  login(7, v1::IOS, "phoneB");  // the same device again
  ack(6, 4);                    // the old session's ACK: PROTOCOL 5 lets it be lost
  CHECK(login(8, v1::IOS, "phoneB").acked_seq == 1);
  CHECK(core.on(shard,
                [&] {
                  return shard.add_session("bob", SessionRef{{}, 0, 1}, "x");
                })
            .error()
            .code == StatusCode::kInternal);
}

TEST_CASE("shard: a C2C SEND is answered only once the recipient's inbox on another shard holds the message") {
  TestCore core(2);
  // The sender's shard owns the conversation (the smaller uid) and writes
  // the sender's row; the recipient's shard writes the other.
  std::string from = "a0", to;
  for (int i = 0; i < 100 && to.empty(); ++i) {
    const std::string candidate = "b" + std::to_string(i);
    if (&core.shard_for(candidate) != &core.shard_for(from)) to = candidate;
  }
  REQUIRE_FALSE(to.empty());
  // The recipient's shard is held back.
  std::promise<void> release;
  auto released = release.get_future().share();
  asio::post(core.shard_for(to).context(), [released] { released.wait_for(kAnswerTimeout); });
  auto answer = core.send_async(from, to, "m1");
  // Should it come while the recipient's row cannot be written yet, it
  // breaks PROTOCOL 3 (OK: durable in the inbox of every participant).
  const bool early = answer.wait_for(500ms) == std::future_status::ready;
  if (early) CHECK(core.inbox(to).size() == 1);
  release.set_value();
  REQUIRE(answer.wait_for(kAnswerTimeout) == std::future_status::ready);
  auto resp = answer.get();
  REQUIRE(resp.ok());
  auto rows = core.inbox(to);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].client_msg_id() == "m1");
  CHECK(core.inbox(from).size() == 1);
}

TEST_CASE("shard: PULL past references whose history rows are gone reaches the inbox's end, has_more false") {
  TestCore core;
  for (int i = 1; i <= 2; ++i) REQUIRE(core.send("alice", "bob", "m" + std::to_string(i)));
  REQUIRE(core.inbox("bob").size() == 2);
  // Rows 3 and 4 as history retention would leave them, had their history
  // rows gone before bob's references (written late, behind newer rows):
  // references to no row. Read by the shards of the next start.
  const std::string conv = store::c2c_conv("alice", "bob");
  store::Batch late(core.store());
  late.put_inbox_ref("bob", 3, conv, 3);
  late.put_inbox_ref("bob", 4, conv, 4);
  REQUIRE(core.store().write(late));
  core.reopen();
  core.start_shards();

  auto all = core.pull("bob");
  REQUIRE(all);
  REQUIRE(all->messages_size() == 2);
  CHECK(all->messages(1).body() == "body of m2");
  CHECK(all->inbox_max_seq() == 4);
  CHECK_FALSE(all->has_more());
  // From the last row handed out: nothing more, and not "more" for ever.
  auto rest = core.pull("bob", 2);
  REQUIRE(rest);
  CHECK(rest->messages_size() == 0);
  CHECK_FALSE(rest->has_more());
  // A page that stops at its limit before the gone rows still has more.
  auto page = core.pull("bob", 0, 1);
  REQUIRE(page);
  REQUIRE(page->messages_size() == 1);
  CHECK(page->has_more());
}

TEST_CASE("shard: the record that inbox references exist goes in the batch of the first one, again after it failed") {
  TestCore core(1);
  auto& refs = metrics::get().inbox_refs;
  const std::uint64_t before = refs.value();
  core.faults.fail_writes(true);
  CHECK_FALSE(core.send("alice", "bob", "m1"));
  core.faults.fail_writes(false);
  REQUIRE(core.writes_recovered());
  CHECK_FALSE(core.store().get_meta(store::kInboxRefsKey).value());
  CHECK(refs.value() == before);  // a failed batch wrote none
  REQUIRE(core.send("alice", "bob", "m2"));
  CHECK(core.store().get_meta(store::kInboxRefsKey).value() == store::kInboxRefsOn);
  CHECK(refs.value() == before + 2);  // alice's row and bob's
  const auto rows = core.inbox("bob");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].body() == "body of m2");
}
