// imserver in cluster mode (docs/cluster.md) against a real three-node NATS
// JetStream cluster on loopback: kill -9 of imserver with its data dir
// wiped, kill -9 of a NATS server leading a stream, a second imserver on the
// same streams, and a full stream. Every acknowledged message must be
// present exactly once, in gapless inboxes.

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include "cluster/snapshot.h"
#include "core/fanout_plan.h"
#include "http_helpers.h"
#include "kill_cycles.h"
#include "messaging.h"
#include "nats_cluster.h"
#include "proto/cluster_log.pb.h"
#include "server_process.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

Overrides cluster_overrides(const NatsCluster& cluster, Overrides extra = {}) {
  return merged({{"limits.messages_per_second", "1000000"},
                 {"limits.burst", "1000000"},
                 {"limits.fanout_rows_per_second", "100000000"},
                 {"server.io_threads", "2"},
                 {"cluster.mode", "\"jetstream\""},
                 {"cluster.nats_urls", toml_list(cluster.urls())},
                 {"cluster.partitions", "4"},
                 {"cluster.replicas", "3"},
                 {"cluster.stream_max_bytes", "67108864"},
                 {"cluster.snapshot_max_bytes", "67108864"},
                 {"cluster.node_name", "\"node-a\""}},
                extra);
}

// `n` SENDs to bob in one write, client_msg_ids "during-<i>", seqs 1..n.
std::string pipelined_sends(int n) {
  std::string frames;
  for (int i = 0; i < n; ++i)
    frames +=
        request_frame(Cmd::kSend, static_cast<std::uint32_t>(i + 1), send_req("bob", "during-" + std::to_string(i)));
  return frames;
}

struct Answered {
  int at_once = 0;      // OK
  int after_retry = 0;  // UNAVAILABLE, then OK to the client's retry
};

// Reads the answers to pipelined_sends(n) and retries each UNAVAILABLE one
// with its client_msg_id, as a client would, until it is OK.
Answered answered_or_retried(SyncClient& alice, int n) {
  Answered a;
  std::vector<int> refused;
  for (int answered = 0; answered < n;) {
    auto f = alice.next_frame(60s);
    REQUIRE(f);
    if (f->header.cmd != Cmd::kSend) continue;
    ++answered;
    if (f->ok()) {
      ++a.at_once;
    } else {
      CHECK(f->status() == StatusCode::kUnavailable);
      refused.push_back(static_cast<int>(f->header.seq) - 1);
    }
  }
  for (int i : refused) {
    auto req = send_req("bob", "during-" + std::to_string(i));
    REQUIRE(wait_until([&] { return must(alice.call(Cmd::kSend, &req)).ok(); }, 60s, 500ms));
    ++a.after_retry;
  }
  WARN(a.at_once << " SENDs answered OK at once, " << a.after_retry << " after a retry");
  return a;
}

// bob's inbox, gapless with each client_msg_id once: how many it holds.
std::size_t inbox_once_gapless(SyncClient& bob) {
  auto rows = pull_all(bob);
  std::set<std::string> cmids;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    REQUIRE(rows[i].inbox_seq() == i + 1);
    REQUIRE(cmids.insert(rows[i].client_msg_id()).second);
  }
  return cmids.size();
}

}  // namespace

TEST_CASE("cluster mode: SIGKILL mid-stream and a wiped data dir, every acknowledged message exactly once, gapless",
          "[cluster]") {
  NatsCluster cluster;
  ServerProcess server(cluster_overrides(cluster));
  CHECK(server.log().find("cluster: node node-a, 4 partitions") != std::string::npos);
  KillCycles run(server);
  for (int cycle = 0; cycle < 6; ++cycle) {
    run.pipelined_senders_run();
    run.server_killed();
    // Every other cycle the node comes back with nothing: it rebuilds from the streams.
    run.restart_and_retry_unanswered(cycle % 2 == 0);
    run.every_acknowledged_message_present_exactly_once_and_gapless(cycle);
  }
  WARN("cluster crash test: " << run.answered_before_kill() << " answered before the kills, " << run.retried()
                              << " retried, " << run.retried_duplicate() << " of them already stored");
  CHECK(run.answered_before_kill() > 0);
  CHECK(run.retried() > 0);
  CHECK(server.log().find("log entries applied at start") != std::string::npos);
}

TEST_CASE("cluster mode: kill -9 of the NATS server leading a stream under load loses nothing", "[cluster]") {
  NatsCluster cluster;
  ServerProcess server(cluster_overrides(cluster));
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  for (int i = 0; i < 50; ++i) send_ok(*alice, "bob", "before-" + std::to_string(i));
  int leader = 0;
  REQUIRE(wait_until([&] { return (leader = cluster.leader_of("IM_P0")) != 0; }, 10s));
  // Pipelined SENDs, then the kill while they are written.
  constexpr int kN = 300;
  alice->send_raw(pipelined_sends(kN));
  cluster.kill9(leader);
  // Each SEND is answered: OK once a new leader stores it (publishes are
  // retried for cluster.unanswered_stop_ms). IM_P0 holds bob's copies,
  // which alice's SendResp waits for: when the election takes longer than
  // the 5 s a SEND may wait (SendDedupe::kMaxWait; slower under ASan) it is
  // answered UNAVAILABLE, and the client retries the same client_msg_id,
  // which answers OK (a duplicate once stored). Never lost, never twice.
  const Answered a = answered_or_retried(*alice, kN);
  CHECK(a.at_once + a.after_retry == kN);
  cluster.restart(leader);
  // Both ends: bob's copies (IM_P0) and alice's own (the sender's copies),
  // and the same in a node rebuilt from the streams alone.
  CHECK(inbox_once_gapless(*bob) == 50 + kN);
  CHECK(inbox_once_gapless(*alice) == 50 + kN);
  alice.reset();
  bob.reset();
  server.kill9();
  std::filesystem::remove_all(server.data_dir());
  server.restart();
  CHECK(inbox_once_gapless(*server.login("bob")) == 50 + kN);
  CHECK(inbox_once_gapless(*server.login("alice")) == 50 + kN);
}

TEST_CASE("cluster mode: every NATS server killed under load and started again loses nothing", "[cluster]") {
  NatsCluster cluster;
  // The outage and the elections after it must end before a partition
  // gives up its unanswered batch (then only a restart would serve it):
  // the longest wait the duplicates window allows, for a slow machine.
  ServerProcess server(
      cluster_overrides(cluster, {{"cluster.unanswered_stop_ms", "100000"}, {"admin.listen", "\"127.0.0.1:0\""}}));
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  for (int i = 0; i < 20; ++i) send_ok(*alice, "bob", "before-" + std::to_string(i));
  for (int n = 1; n <= cluster.nodes(); ++n) cluster.kill9(n);
  constexpr int kN = 100;
  alice->send_raw(pipelined_sends(kN));
  // The partitions retry their unanswered publishes (for
  // cluster.unanswered_stop_ms) while nothing answers.
  REQUIRE(wait_until([&] { return server.log().find("not answered") != std::string::npos; }, 30s));
  cluster.restart_all();
  // Every SEND is answered: UNAVAILABLE while nothing can be stored, then
  // OK to the client's retry.
  const Answered a = answered_or_retried(*alice, kN);
  CHECK(a.at_once + a.after_retry == kN);
  CHECK(inbox_once_gapless(*bob) == 20 + kN);
  AdminClient admin(server.admin_port(), "");
  CHECK(admin.metric("imserver_cluster_unavailable_partitions") == 0.0);
  // The node still writes, and a node rebuilt from the streams holds the same.
  send_ok(*alice, "bob", "after");
  alice.reset();
  bob.reset();
  server.kill9();
  std::filesystem::remove_all(server.data_dir());
  server.restart();
  CHECK(inbox_once_gapless(*server.login("bob")) == 20 + kN + 1);
  CHECK(inbox_once_gapless(*server.login("alice")) == 20 + kN + 1);
}

TEST_CASE("cluster mode: a second node on the same streams fences the first and serves all it wrote", "[cluster]") {
  NatsCluster cluster;
  ServerProcess first(cluster_overrides(cluster));
  auto alice = first.login("alice");
  for (int i = 0; i < 40; ++i) send_ok(*alice, "bob", "m" + std::to_string(i));
  ServerProcess second(cluster_overrides(cluster, {{"cluster.node_name", "\"node-b\""}}));
  // The first node's partitions are fenced: a write is refused, not stored.
  const auto fence_req = send_req("bob", "after-fence");
  auto f = alice->call(Cmd::kSend, &fence_req);
  REQUIRE(f);
  CHECK(f->header.status == StatusCode::kUnavailable);
  CHECK(first.log().find("fenced") != std::string::npos);
  auto bob = second.login("bob");
  auto rows = pull_all(*bob);
  REQUIRE(rows.size() == 40);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i].inbox_seq() == i + 1);
    CHECK(rows[i].client_msg_id() == "m" + std::to_string(i));
  }
  // The retry goes to the node that holds the partition now.
  auto alice2 = second.login("alice");
  auto resp = send_ok(*alice2, "bob", "after-fence");
  CHECK_FALSE(resp.duplicate());
}

TEST_CASE("cluster mode: a node fenced while it writes loses none of the SENDs it acknowledged", "[cluster]") {
  NatsCluster cluster;
  ServerProcess first(cluster_overrides(cluster));
  // alice keeps sending to bob on the first node, one SEND after another,
  // until one is refused: the second node has fenced the first meanwhile.
  // Logged in here: Catch2's assertions (in login) are for this thread.
  auto alice = first.login("alice");
  std::vector<std::string> acked;
  std::atomic<std::size_t> acked_count{0};
  std::string refused_status;
  {
    // Joined on every way out (a stop asked first), also when the second
    // node fails to start.
    std::jthread writer([&](std::stop_token stop) {
      for (int i = 0; i < 100000 && !stop.stop_requested(); ++i) {
        const std::string cmid = "w" + std::to_string(i);
        const auto req = send_req("bob", cmid);
        // A SEND whose copy into bob's partition meets the fence is answered
        // UNAVAILABLE after SendDedupe's 5 s wait.
        auto f = alice->call(Cmd::kSend, &req, 30s);
        if (!f || !f->ok()) {
          refused_status = f ? std::string(status_name(f->status())) : "no answer";
          return;
        }
        acked.push_back(cmid);
        acked_count.store(acked.size());
      }
    });
    REQUIRE(wait_until([&] { return acked_count.load() >= 20; }, 30s));
    ServerProcess second(cluster_overrides(cluster, {{"cluster.node_name", "\"node-b\""}}));
    writer.join();
    CHECK(refused_status == "UNAVAILABLE");
    // The second node holds every SEND the first acknowledged, once, in
    // order, at both ends; a refused one may be there too (it may have been
    // stored), last.
    for (const char* uid : {"bob", "alice"}) {
      INFO(uid);
      auto rows = pull_all(*second.login(uid));
      REQUIRE(rows.size() >= acked.size());
      REQUIRE(rows.size() <= acked.size() + 1);
      for (std::size_t i = 0; i < rows.size(); ++i) {
        CHECK(rows[i].inbox_seq() == i + 1);
        CHECK(rows[i].client_msg_id() == "w" + std::to_string(i));
      }
    }
  }
}

TEST_CASE("cluster mode: a full stream answers UNAVAILABLE and loses no acknowledged message", "[cluster]") {
  NatsCluster cluster;
  ServerProcess server(cluster_overrides(cluster, {{"cluster.partitions", "1"},
                                                   {"cluster.stream_max_bytes", "1048576"},
                                                   {"cluster.trim_at_percent", "0"}}));  // no trimming: it must fill
  auto alice = server.login("alice");
  const std::string body(2000, 'x');
  std::vector<std::string> acked;
  Frame refused;
  for (int i = 0; i < 2000; ++i) {  // 1 MiB holds fewer than 2000 x 2 KB
    const std::string cmid = "m" + std::to_string(i);
    const auto req = send_req("bob", cmid, body);
    auto f = alice->call(Cmd::kSend, &req);
    REQUIRE(f);
    if (!f->ok()) {
      refused = *f;
      break;
    }
    acked.push_back(cmid);
  }
  REQUIRE(acked.size() > 10);
  REQUIRE(acked.size() < 2000);
  CHECK(refused.header.status == StatusCode::kUnavailable);
  // Rebuilt from the stream alone, the node holds exactly what it acknowledged.
  server.kill9();
  std::error_code ec;
  std::filesystem::remove_all(server.data_dir(), ec);
  server.restart();
  auto bob = server.login("bob");
  auto rows = pull_all(*bob);
  REQUIRE(rows.size() == acked.size());
  for (std::size_t i = 0; i < rows.size(); ++i) CHECK(rows[i].client_msg_id() == acked[i]);
}

TEST_CASE("cluster mode: a data dir of embedded mode, or of another partition count, is refused", "[cluster]") {
  NatsCluster cluster;
  {
    ServerProcess embedded(Overrides{{"limits.messages_per_second", "1000000"}, {"limits.burst", "1000000"}});
    auto alice = embedded.login("alice");
    send_ok(*alice, "bob", "m1");
    alice.reset();
    REQUIRE(embedded.terminate() == 0);
    // Its messages are in no stream: a node rebuilt later would lose them.
    CHECK_THROWS_WITH(embedded.restart(cluster_overrides(cluster)), Catch::Contains("written in embedded mode"));
  }
  ServerProcess node(cluster_overrides(cluster));
  auto alice = node.login("alice");
  send_ok(*alice, "bob", "m1");
  alice.reset();
  REQUIRE(node.terminate() == 0);
  CHECK_THROWS_WITH(node.restart({{"cluster.partitions", "2"}}), Catch::Contains("cluster.partitions = 4, not 2"));
  // With the data dir wiped, the streams' markers say so: the count is
  // refused before anything is written, to the data dir or to the streams.
  std::filesystem::remove_all(node.data_dir());
  CHECK_THROWS_WITH(node.restart({{"cluster.partitions", "8"}}),
                    Catch::Contains("IM_P0 was written with cluster.partitions = 4, not 8"));
  auto js = cluster.connect();
  auto p4 = js->stream_state("IM_P4");  // the refused start created no stream
  REQUIRE_FALSE(p4.ok());
  CHECK(p4.error().code == StatusCode::kNotFound);
  // Servers that cannot reserve the snapshots' stream refuse the start
  // before any marker (the test servers hold 8 GB each).
  auto before = js->stream_state("IM_P0");
  REQUIRE(before.ok());
  CHECK_THROWS_WITH(node.restart({{"cluster.partitions", "4"}, {"cluster.snapshot_max_bytes", "1099511627776"}}),
                    Catch::Contains("the snapshots' stream (cluster.snapshot_max_bytes 1099511627776)"));
  auto after = js->stream_state("IM_P0");
  REQUIRE(after.ok());
  CHECK(after->last_seq == before->last_seq);
  // The count it was written with (restart's overrides stay: the limit is set back).
  node.restart({{"cluster.partitions", "4"}, {"cluster.snapshot_max_bytes", "67108864"}});
  auto bob = node.login("bob");
  CHECK(pull_all(*bob).size() == 1);
}

namespace {

// The names of a process's threads that start with `prefix`.
std::vector<std::string> threads_named(pid_t pid, const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& t : threads_of(pid))
    if (t.name.starts_with(prefix)) names.push_back(t.name);
  return names;
}

}  // namespace

TEST_CASE("cluster mode: the partitions share sharding.shards threads", "[cluster]") {
  NatsCluster cluster;
  ServerProcess node(cluster_overrides(cluster, {{"cluster.partitions", "8"}, {"sharding.shards", "2"}}));
  CHECK(node.log().find("8 core shards on 2 threads") != std::string::npos);
  auto shard_threads = threads_named(node.pid(), "im:shard");
  std::sort(shard_threads.begin(), shard_threads.end());
  CHECK(shard_threads == std::vector<std::string>{"im:shard0", "im:shard1"});

  // Messages to users of every partition (three each), answered and stored
  // once; and the same from a node rebuilt from the streams.
  std::vector<std::string> users;
  std::vector<int> in_partition(8, 0);
  for (int i = 0; i < 1000 && users.size() < 24; ++i) {
    const std::string uid = "u" + std::to_string(i);
    int& n = in_partition[core::shard_of(uid, 8)];
    if (n < 3) {
      ++n;
      users.push_back(uid);
    }
  }
  REQUIRE(users.size() == 24);
  {
    auto alice = node.login("alice");
    for (const auto& uid : users) send_ok(*alice, uid, "m-" + uid);
  }
  auto every_inbox_holds_its_message = [&] {
    for (const auto& uid : users) {
      auto u = node.login(uid);
      auto got = pull_all(*u);
      INFO(uid);
      REQUIRE(got.size() == 1);
      CHECK(got[0].client_msg_id() == "m-" + uid);
    }
  };
  every_inbox_holds_its_message();
  REQUIRE(node.terminate() == 0);
  std::filesystem::remove_all(node.data_dir());
  node.restart();
  every_inbox_holds_its_message();
}

TEST_CASE("cluster mode: a delivered webhook event is not sent again by a node rebuilt from the streams", "[cluster]") {
  NatsCluster cluster;
  WebhookReceiver receiver;
  ServerProcess server(cluster_overrides(cluster, {{"webhook.url", "\"" + receiver.url() + "\""},
                                                   {"webhook.secret", "\"cluster-test-webhook-secret-0123456789\""},
                                                   {"admin.listen", "\"127.0.0.1:0\""}}));
  {
    auto alice = server.login("alice");
    REQUIRE(send_report(*alice, "r1").ok());
    REQUIRE(receiver.wait_for(1).size() == 1);
    // Delivered and deleted: the outbox is empty once the delete is durable.
    AdminClient admin(server.admin_port(), "");
    REQUIRE(wait_until([&] { return admin.metric("imserver_outbox_depth") == 0.0; }));
  }
  server.kill9();
  std::filesystem::remove_all(server.data_dir());
  server.restart();
  auto alice = server.login("alice");
  REQUIRE(send_report(*alice, "r2").ok());
  // One queue per user, delivered in order: r1, were it queued again,
  // would come before r2.
  auto events = receiver.wait_for(2);
  REQUIRE(events.size() >= 2);
  CHECK(nlohmann::json::parse(events[1].body)["report_id"] == "r2");
  CHECK(receiver.wait_for(3, 1s).size() == 2);
}

TEST_CASE("cluster mode: streams trimmed below snapshots under SIGKILL cycles and wiped data dirs lose nothing",
          "[cluster]") {
  NatsCluster cluster;
  auto js = cluster.connect();
  // A snapshot as soon as a stream holds 1% of 8 MiB (about 84 KB), looked at every second.
  ServerProcess server(cluster_overrides(cluster, {{"cluster.stream_max_bytes", "8388608"},
                                                   {"cluster.trim_at_percent", "1"},
                                                   {"cluster.trim_check_s", "1"},
                                                   {"cluster.snapshot_max_bytes", "67108864"}}));
  // The partition streams' first entries: above 1 once trimmed.
  auto heads = [&] {
    std::vector<std::uint64_t> first;
    for (int p = 0; p < 4; ++p) {
      auto state = js->stream_state("IM_P" + std::to_string(p));
      REQUIRE(state.ok());
      first.push_back(state->first_seq);
    }
    return first;
  };
  KillCycles run(server);
  int restored = 0;
  for (int cycle = 0; cycle < 6; ++cycle) {
    const auto before = heads();
    run.pipelined_senders_run();
    // Every third cycle waits for a snapshot to trim the streams before the
    // kill, and rebuilds from it; the others kill wherever the trimmer is,
    // maybe amid a snapshot.
    if (cycle % 3 == 0) REQUIRE(wait_until([&] { return heads() != before; }, 60s, 200ms));
    run.server_killed();
    const bool wipe = cycle % 3 != 1;
    run.restart_and_retry_unanswered(wipe);
    // Trimmed since cycle 0: every wiped data dir is rebuilt from a
    // snapshot (the log holds every run's lines).
    if (wipe) ++restored;
    const std::string log = server.log();
    int restores = 0;
    for (std::size_t at = 0; (at = log.find("snapshot restored", at)) != std::string::npos; ++at) ++restores;
    CHECK(restores == restored);
    run.every_acknowledged_message_present_exactly_once_and_gapless(cycle);
  }
  CHECK(restored == 4);
  CHECK(run.answered_before_kill() > 0);
  for (std::uint64_t first : heads()) CHECK(first > 1);
  // The last snapshot's chunks all there, the older snapshots purged (the
  // trimmer still runs: one more snapshot may be on its way).
  auto manifest = cluster::last_manifest(*js, cluster::snapshot_spec("IM"));
  REQUIRE(manifest.ok());
  REQUIRE(manifest->has_value());
  auto chunks = js->subjects("IM_SNAP", "im.s.c.*");
  REQUIRE(chunks.ok());
  CHECK(chunks->size() <= 2);
  CHECK((*chunks)["im.s.c." + (*manifest)->id()] == (*manifest)->chunks());
  auto snap = js->stream_state("IM_SNAP");
  REQUIRE(snap.ok());
  CHECK(snap->first_seq > 1);
}
