// One partition's log (src/cluster/partition_log.h) against a real
// three-node JetStream cluster on loopback and real stores in temp dirs:
// batches reach the store only through the stream, a store is rebuilt from
// the stream alone, a second writer fences the first, a full stream
// refuses without losing anything.

#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <string>

#include <zstd.h>
#include <asio/post.hpp>
#include <catch2/catch.hpp>

#include "cluster/partition_log.h"
#include "cluster/snapshot.h"
#include "cluster/trimmer.h"
#include "common/metrics.h"
#include "core/group_commit.h"
#include "core/shard_loop.h"
#include "fault_env.h"
#include "nats_cluster.h"
#include "proto/cluster_log.pb.h"
#include "server_process.h"
#include "store/keys.h"
#include "wait_until.h"

using namespace std::chrono_literals;
using im::StatusCode;
using im::cluster::JetStream;
using im::cluster::PartitionLog;
using im::store::Batch;
using im::store::Cf;
using im::store::Store;
using State = PartitionLog::State;

namespace {

struct TempStore {
  TempStore() {
    config.data_dir = im::test::unique_temp_path("impart");
    auto opened = Store::open(config);
    REQUIRE(opened);
    store = std::move(opened.value());
  }
  ~TempStore() {
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(config.data_dir, ec);
  }
  im::StorageConfig config;
  std::unique_ptr<Store> store;
};

PartitionLog::Options options(const std::string& node, unsigned partition = 7, std::int64_t max_bytes = -1) {
  PartitionLog::Options o;
  o.partition = partition;
  o.node = node;
  o.stream.name = "IM_P" + std::to_string(partition);
  o.stream.subject = "im.p." + std::to_string(partition);
  o.stream.replicas = 3;
  o.stream.max_bytes = max_bytes;
  o.retry_for = 10s;
  o.read_chunk = 7;     // several reads per catch-up
  o.read_bytes = 1000;  // and several fetches per read, by size
  return o;
}

// `o` on a clock shared with other partitions of the same node.
PartitionLog::Options with_clock(PartitionLog::Options o, std::shared_ptr<std::atomic<std::uint64_t>> clock) {
  o.clock = std::move(clock);
  return o;
}

// Every row of every family: what a rebuilt store must hold too.
std::map<std::pair<int, std::string>, std::string> dump(Store& store) {
  std::map<std::pair<int, std::string>, std::string> rows;
  for (std::size_t cf = 0; cf < im::store::kCfCount; ++cf)
    REQUIRE(store
                .scan_family(static_cast<Cf>(cf),
                             [&](std::string_view k, std::string_view v) {
                               rows[{static_cast<int>(cf), std::string(k)}] = std::string(v);
                               return true;
                             })
                .ok());
  return rows;
}

// A batch of the kinds of rows the core writes: puts, a delete, a range
// delete, a merge.
void stage(Batch& b, int i) {
  const std::string uid = "u" + std::to_string(i % 5);
  b.put_inbox(uid, static_cast<std::uint64_t>(i), "message " + std::to_string(i));
  b.put_history("c2c:a:b", static_cast<std::uint64_t>(i), "history " + std::to_string(i), "text " + std::to_string(i));
  b.put_deleted(uid, "c2c:a:b", static_cast<std::uint64_t>(i));
  if (i % 4 == 0) b.del_deleted_upto(uid, "c2c:a:b", static_cast<std::uint64_t>(i - 1));
  b.merge_read("g1", uid, static_cast<std::uint64_t>(i));
  b.put_meta("counter:" + std::to_string(i % 3), static_cast<std::uint64_t>(i));
}

std::uint64_t applied_in(Store& store, unsigned partition) {
  auto v = store.get_meta(PartitionLog::applied_key(partition));
  REQUIRE(v.ok());
  return v->value_or(0);
}

}  // namespace

TEST_CASE("PartitionLog: a partition's stream and subject are named after cluster.stream_prefix") {
  const auto p7 = im::cluster::partition_stream("IM", 7);
  CHECK(p7.name == "IM_P7");
  CHECK(p7.subject == "im.p.7");
  const auto staging = im::cluster::partition_stream("STAGING_2", 0);
  CHECK(staging.name == "STAGING_2_P0");
  CHECK(staging.subject == "staging_2.p.0");
}

TEST_CASE("PartitionLog: batches reach the store through the stream, and an empty data dir is rebuilt from it",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TempStore a;
  PartitionLog log(*js, *a.store, options("node-a"));
  REQUIRE(log.open().ok());
  CHECK(log.state() == State::kWriting);
  CHECK(log.epoch() == 1);  // the marker is the stream's first entry
  for (int i = 1; i <= 40; ++i) {
    Batch b(*a.store);
    stage(b, i);
    auto seq = log.append(b);
    REQUIRE(seq.ok());
    CHECK(*seq == static_cast<std::uint64_t>(i) + 1);
  }
  CHECK(log.applied() == 41);
  CHECK(applied_in(*a.store, 7) == 41);
  std::string row;
  REQUIRE(a.store
              ->scan_inbox("u1", 1, 100,
                           [&](std::uint64_t seq, std::string_view m) {
                             if (seq == 36) row = m;
                             return true;
                           })
              .ok());
  CHECK(row == "message 36");

  // A node that lost its disk: the same partition from the stream alone.
  TempStore b;
  PartitionLog rebuilt(*js, *b.store, options("node-b"));
  REQUIRE(rebuilt.open().ok());
  CHECK(rebuilt.caught_up() == 42);  // 41 entries and its own marker, stored first
  CHECK(rebuilt.epoch() == 42);
  auto want = dump(*a.store);
  auto got = dump(*b.store);
  // Only the applied row differs: b has also applied its own marker.
  CHECK(got[{static_cast<int>(Cf::kMeta), "applied:7"}] != want[{static_cast<int>(Cf::kMeta), "applied:7"}]);
  got.erase({static_cast<int>(Cf::kMeta), "applied:7"});
  want.erase({static_cast<int>(Cf::kMeta), "applied:7"});
  CHECK(got == want);
  CHECK(got.size() > 100);
}

TEST_CASE("PartitionLog: a restarted node catches up what another writer appended, and fences it", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TempStore a, b;
  {
    PartitionLog first(*js, *a.store, options("node-a"));
    REQUIRE(first.open().ok());
    for (int i = 1; i <= 10; ++i) {
      Batch batch(*a.store);
      stage(batch, i);
      REQUIRE(first.append(batch).ok());
    }
  }
  // b takes the partition over: it catches up a's entries, then its marker
  // fences a.
  PartitionLog a_again(*js, *a.store, options("node-a"));
  REQUIRE(a_again.open().ok());  // a restarted: nothing to catch up, a new epoch
  CHECK(a_again.caught_up() == 1);  // its own marker only
  PartitionLog second(*js, *b.store, options("node-b"));
  REQUIRE(second.open().ok());
  CHECK(second.caught_up() == 13);  // a's marker, 10 batches, a's second marker, its own
  {
    Batch batch(*a.store);
    stage(batch, 11);
    auto refused = a_again.append(batch);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code == StatusCode::kUnavailable);
    CHECK(a_again.state() == State::kFenced);
    // And stays refused, without publishing.
    Batch again(*a.store);
    stage(again, 12);
    CHECK_FALSE(a_again.append(again).ok());
  }
  const auto a_applied = applied_in(*a.store, 7);
  CHECK(a_applied == 12);
  for (int i = 11; i <= 15; ++i) {
    Batch batch(*b.store);
    stage(batch, i);
    REQUIRE(second.append(batch).ok());
  }
  auto state = js->stream_state("IM_P7");
  REQUIRE(state.ok());
  CHECK(state->last_seq == 18);  // nothing of a's after b's marker
  CHECK(second.applied() == 18);

  // a, restarted once more, catches up b's marker and five batches, and its own marker.
  PartitionLog a_third(*js, *a.store, options("node-a"));
  REQUIRE(a_third.open().ok());
  CHECK(a_third.caught_up() == 7);
  std::string row;
  REQUIRE(a.store
              ->scan_inbox("u0", 15, 16,
                           [&](std::uint64_t, std::string_view m) {
                             row = m;
                             return true;
                           })
              .ok());
  CHECK(row == "message 15");
}

TEST_CASE("PartitionLog: a full stream answers UNAVAILABLE and loses nothing", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TempStore a;
  PartitionLog log(*js, *a.store, options("node-a", 3, 16 * 1024));
  REQUIRE(log.open().ok());
  int stored = 0;
  im::Error refused;
  for (int i = 1; i <= 200; ++i) {  // each batch is several hundred bytes
    Batch b(*a.store);
    stage(b, i);
    b.put_inbox("big", static_cast<std::uint64_t>(i), std::string(400, 'x'));
    auto seq = log.append(b);
    if (!seq) {
      refused = seq.error();
      break;
    }
    ++stored;
  }
  REQUIRE(stored > 3);
  REQUIRE(stored < 200);
  CHECK(refused.code == StatusCode::kUnavailable);
  CHECK(refused.message.find("full") != std::string::npos);
  CHECK(log.state() == State::kWriting);  // nothing stored, nothing lost: it may be tried again
  CHECK(applied_in(*a.store, 3) == static_cast<std::uint64_t>(stored) + 1);
  // Filled to the last bytes: small batches, then the markers of starts,
  // until not even a marker fits. A start then says what to do.
  int small = 0;
  for (int i = 1; i <= 200; ++i, ++small) {
    Batch b(*a.store);
    b.put_meta("x", static_cast<std::uint64_t>(i));
    if (!log.append(b)) break;
  }
  REQUIRE(small < 200);
  im::Error too_full;
  for (int i = 0; i < 20 && too_full.message.empty(); ++i) {
    TempStore restarted;
    PartitionLog again(*js, *restarted.store, options("node-a", 3, 16 * 1024));
    if (auto opened = again.open(); !opened) too_full = opened.error();
  }
  CHECK(too_full.code == StatusCode::kUnavailable);
  CHECK_THAT(too_full.message, Catch::Contains("too full for this run's epoch marker") &&
                                   Catch::Contains("larger cluster.stream_max_bytes than 16384"));
  auto full = js->stream_state("IM_P3");
  REQUIRE(full.ok());
  // A node rebuilt from the stream with a larger limit (raised at its
  // start) holds exactly the acknowledged batches.
  TempStore b;
  auto bigger = options("node-b", 3, 64 * 1024);
  PartitionLog rebuilt(*js, *b.store, bigger);
  REQUIRE(rebuilt.open().ok());
  CHECK(rebuilt.caught_up() == full->last_seq + 1);  // every entry, and its own marker
  std::uint64_t rows = 0, last = 0;
  REQUIRE(b.store
              ->scan_inbox("big", 1, 1000,
                           [&](std::uint64_t seq, std::string_view) {
                             ++rows;
                             last = seq;
                             return true;
                           })
              .ok());
  CHECK(rows == static_cast<std::uint64_t>(stored));
  CHECK(last == static_cast<std::uint64_t>(stored));
}

TEST_CASE("PartitionLog: a data dir ahead of its stream is refused", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TempStore a;
  {
    Batch b(*a.store);
    b.put_meta(PartitionLog::applied_key(5), 100);
    REQUIRE(a.store->write(b).ok());
  }
  PartitionLog log(*js, *a.store, options("node-a", 5));
  auto opened = log.open();
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().message.find("ends at 0") != std::string::npos);
  CHECK(log.state() == State::kClosed);
  Batch b(*a.store);
  stage(b, 1);
  CHECK(log.append(b).error().code == StatusCode::kUnavailable);
}

TEST_CASE("PartitionLog: catch-up applies the partitions' entries in Lamport order, so a removal stays after its put",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TempStore a;
  auto clock = std::make_shared<std::atomic<std::uint64_t>>(0);
  auto opts = [&](unsigned p) { return with_clock(options("node-a", p), clock); };
  // Partition 2 puts a record, partition 1 removes it afterwards (a C2C
  // copy record and the recipient's inbox row, as the core writes them).
  PartitionLog owner(*js, *a.store, opts(2));
  PartitionLog recipient(*js, *a.store, opts(1));
  auto opened = PartitionLog::open_all({&recipient, &owner});
  INFO((opened.ok() ? std::string() : opened.error().message));
  REQUIRE(opened.ok());
  for (int i = 1; i <= 5; ++i) {
    const std::string key = "copy:" + std::to_string(i);
    Batch put(*a.store);
    put.put_meta(key, 1);
    REQUIRE(owner.append(put).ok());
    Batch remove(*a.store);
    remove.put_inbox("bob", static_cast<std::uint64_t>(i), "m" + std::to_string(i));
    remove.add_row(im::store::Row{Cf::kMeta, im::store::RowOp::kDelete, key, {}});
    REQUIRE(recipient.append(remove).ok());
  }
  for (int i = 1; i <= 5; ++i) CHECK_FALSE(a.store->get_meta("copy:" + std::to_string(i))->has_value());

  // Rebuilt: partition 1's stream read first would delete before the put.
  TempStore b;
  auto clock_b = std::make_shared<std::atomic<std::uint64_t>>(0);
  auto opts_b = [&](unsigned p) { return with_clock(options("node-b", p), clock_b); };
  PartitionLog r1(*js, *b.store, opts_b(1));
  PartitionLog r2(*js, *b.store, opts_b(2));
  REQUIRE(PartitionLog::open_all({&r1, &r2}).ok());
  for (int i = 1; i <= 5; ++i) {
    INFO(i);
    CHECK_FALSE(b.store->get_meta("copy:" + std::to_string(i))->has_value());
  }
  CHECK(clock_b->load() == clock->load());  // at the newest entry it applied (markers carry no time)
}

TEST_CASE("PartitionLog: an entry larger than the servers take is refused at once and the partition goes on",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TempStore a;
  PartitionLog log(*js, *a.store, options("node-a", 4));
  REQUIRE(log.open().ok());
  Batch big(*a.store);
  for (int i = 1; i <= 40; ++i) big.put_inbox("big", static_cast<std::uint64_t>(i), std::string(450 * 1024, 'x'));
  auto refused = log.append(big);  // 18 MB against the test servers' max_payload of 16 MB: never sent, not retried
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("not sent") != std::string::npos);
  // Nothing stored, but no retry would pass: not UNAVAILABLE, which clients
  // retry without end (a refusal that may pass, a full reconnect buffer, is).
  CHECK(refused.error().code == im::StatusCode::kInternal);
  CHECK(log.state() == State::kWriting);
  CHECK(applied_in(*a.store, 4) == log.epoch());  // nothing of it applied
  Batch small(*a.store);
  stage(small, 1);
  auto seq = log.append(small);
  REQUIRE(seq.ok());
  CHECK(*seq == log.epoch() + 1);
}

TEST_CASE("PartitionLog: a batch the store would refuse is not published", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TempStore a;
  PartitionLog log(*js, *a.store, options("node-a", 6));
  REQUIRE(log.open().ok());
  Batch b(*a.store);
  b.put_inbox("u", 1, "m");
  // Inbox rows carry memtable insert hints: a range deletion from inside
  // a user's rows is refused by the store (store.h).
  b.add_row(im::store::Row{Cf::kInbox, im::store::RowOp::kDeleteRange, std::string("u\0", 2) + "x", "v"});
  REQUIRE(b.refused());
  CHECK_FALSE(log.append(b).ok());
  auto state = js->stream_state("IM_P6");
  REQUIRE(state.ok());
  CHECK(state->last_seq == log.epoch());  // only the marker
  CHECK(log.state() == State::kWriting);
}

TEST_CASE("PartitionLog: after a clean restart new entries still come after the old ones in Lamport order",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TempStore a;
  {
    auto clock = std::make_shared<std::atomic<std::uint64_t>>(0);
    PartitionLog owner(*js, *a.store, with_clock(options("node-a", 2), clock));
    PartitionLog recipient(*js, *a.store, with_clock(options("node-a", 1), clock));
    REQUIRE(PartitionLog::open_all({&recipient, &owner}).ok());
    for (int i = 1; i <= 30; ++i) {  // the owner's clock runs ahead
      Batch b(*a.store);
      b.put_meta("other:" + std::to_string(i), 1);
      REQUIRE(owner.append(b).ok());
    }
    Batch put(*a.store);
    put.put_meta("copy:1", 1);
    REQUIRE(owner.append(put).ok());
  }
  // A clean restart: everything is applied already, nothing is read again.
  {
    auto clock = std::make_shared<std::atomic<std::uint64_t>>(0);
    PartitionLog owner(*js, *a.store, with_clock(options("node-a", 2), clock));
    PartitionLog recipient(*js, *a.store, with_clock(options("node-a", 1), clock));
    REQUIRE(PartitionLog::open_all({&recipient, &owner}).ok());
    CHECK(clock->load() >= 31);
    Batch remove(*a.store);
    remove.add_row(im::store::Row{Cf::kMeta, im::store::RowOp::kDelete, "copy:1", {}});
    REQUIRE(recipient.append(remove).ok());
  }
  CHECK_FALSE(a.store->get_meta("copy:1")->has_value());
  TempStore b;
  auto clock_b = std::make_shared<std::atomic<std::uint64_t>>(0);
  PartitionLog r1(*js, *b.store, with_clock(options("node-b", 1), clock_b));
  PartitionLog r2(*js, *b.store, with_clock(options("node-b", 2), clock_b));
  REQUIRE(PartitionLog::open_all({&r1, &r2}).ok());
  CHECK_FALSE(b.store->get_meta("copy:1")->has_value());
  CHECK(b.store->get_meta("other:30")->has_value());
}

TEST_CASE("PartitionLog: a stream written with another partition count is refused before any marker is stored",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TempStore a, b;
  // A node of `partitions` partitions, on stream IM_P<partition>.
  auto counted = [](unsigned partitions, unsigned partition = 0) {
    auto o = options("node-a", partition);
    o.partitions = partitions;
    return o;
  };
  {
    PartitionLog first(*js, *a.store, counted(4));
    REQUIRE(first.open().ok());
    Batch batch(*a.store);
    stage(batch, 1);
    REQUIRE(first.append(batch).ok());
  }
  // A node with a wiped data dir and another count: refused, and neither
  // its caller's check nor a marker ran.
  bool checked = false;
  PartitionLog other(*js, *b.store, counted(2));
  auto refused = PartitionLog::open_all({&other}, [&]() -> im::Result<im::Ok> {
    checked = true;
    return im::Ok{};
  });
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.error().message, Catch::Contains("IM_P0 was written with cluster.partitions = 4, not 2"));
  CHECK_FALSE(checked);
  auto state = js->stream_state("IM_P0");
  REQUIRE(state.ok());
  CHECK(state->last_seq == 2);  // the marker and the batch, nothing since
  // The caller's refusal stops the start before the markers too.
  PartitionLog same(*js, *b.store, counted(4));
  auto refused_by_caller = PartitionLog::open_all(
      {&same}, []() -> im::Result<im::Ok> { return im::make_error(StatusCode::kInternal, "the caller says no"); });
  REQUIRE_FALSE(refused_by_caller.ok());
  CHECK(refused_by_caller.error().message == "the caller says no");
  CHECK(js->stream_state("IM_P0")->last_seq == 2);
  // The right count opens, and catches up.
  PartitionLog right(*js, *b.store, counted(4));
  REQUIRE(right.open().ok());
  CHECK(right.caught_up() == 3);  // the first marker, the batch, its own marker
  // A stream whose first marker holds no count (written before counts were
  // recorded) is not checked.
  TempStore c, d;
  PartitionLog old_node(*js, *c.store, counted(0, 1));
  REQUIRE(old_node.open().ok());
  PartitionLog new_node(*js, *d.store, counted(2, 1));
  REQUIRE(new_node.open().ok());
  // A stream still empty when the checks read it, filled by a node of
  // another count before this one's marker: refused at the marker.
  TempStore e, f;
  PartitionLog late(*js, *e.store, counted(4, 2));
  auto raced = PartitionLog::open_all({&late}, [&]() -> im::Result<im::Ok> {
    PartitionLog other_count(*js, *f.store, counted(8, 2));
    REQUIRE(other_count.open().ok());
    return im::Ok{};
  });
  REQUIRE_FALSE(raced.ok());
  CHECK_THAT(raced.error().message, Catch::Contains("IM_P2 was written with cluster.partitions = 8, not 4"));
  CHECK(js->stream_state("IM_P2")->last_seq == 1);  // the other node's marker alone
}

namespace {

// Partitions 1 and 2 of one node (one store, one clock), open.
struct TwoPartitions {
  TwoPartitions() { REQUIRE(PartitionLog::open_all({&p1, &p2}).ok()); }
  im::test::NatsCluster cluster;
  std::unique_ptr<JetStream> js = cluster.connect();
  TempStore a;
  std::shared_ptr<std::atomic<std::uint64_t>> clock = std::make_shared<std::atomic<std::uint64_t>>(0);
  PartitionLog p1{*js, *a.store, with_clock(options("node-a", 1), clock)};
  PartitionLog p2{*js, *a.store, with_clock(options("node-a", 2), clock)};
};

}  // namespace

TEST_CASE_METHOD(
    TwoPartitions,
    "PartitionLog: appends of two partitions are in flight at once, and reach the store only when finished",
    "[cluster]") {
  Batch b1(*a.store);
  b1.put_meta("one", 1);
  Batch b2(*a.store);
  b2.put_meta("two", 2);
  REQUIRE(p1.start_append(b1).ok());
  REQUIRE(p2.start_append(b2).ok());
  CHECK(p1.in_flight());
  CHECK(p2.in_flight());
  // One append at a time per partition.
  auto again = p1.start_append(b1);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == StatusCode::kInternal);

  // Both entries reach their streams before either answer is awaited.
  auto last_seq = [&](const std::string& stream) {
    auto state = js->stream_state(stream);
    return state ? state->last_seq : 0;
  };
  CHECK(im::test::wait_until([&] { return last_seq("IM_P1") == 2 && last_seq("IM_P2") == 2; }));
  CHECK_FALSE(a.store->get_meta("one")->has_value());
  CHECK_FALSE(a.store->get_meta("two")->has_value());
  CHECK(p1.applied() == 1);

  auto second = p2.finish_append(b2);
  REQUIRE(second.ok());
  CHECK(*second == 2);
  auto first = p1.finish_append(b1);
  REQUIRE(first.ok());
  CHECK(*first == 2);
  CHECK(a.store->get_meta("one")->value_or(0) == 1);
  CHECK(a.store->get_meta("two")->value_or(0) == 2);
  CHECK(applied_in(*a.store, 1) == 2);
  CHECK(applied_in(*a.store, 2) == 2);
  CHECK_FALSE(p1.in_flight());
  auto nothing = p1.finish_append(b1);
  REQUIRE_FALSE(nothing.ok());
  CHECK(nothing.error().code == StatusCode::kInternal);
  // The partition goes on as before.
  Batch b3(*a.store);
  b3.put_meta("three", 3);
  auto third = p1.append(b3);
  REQUIRE(third.ok());
  CHECK(*third == 3);
  // Finishing with another batch than the one sent stops the partition
  // (the caller broke the rule) instead of writing the wrong rows.
  Batch b4(*a.store);
  b4.put_meta("four", 4);
  REQUIRE(p1.start_append(b4).ok());
  auto wrong = p1.finish_append(b3);
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().code == StatusCode::kInternal);
  CHECK(p1.state() == State::kStopped);
  CHECK_FALSE(p1.in_flight());
  CHECK_FALSE(a.store->get_meta("four")->has_value());
}

TEST_CASE(
    "PartitionLog: an entry the stream took whose store write failed stops the partition, and a restart "
    "applies it",
    "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  im::test::FaultEnv faults;  // outlives the store
  im::StorageConfig config;
  config.data_dir = im::test::unique_temp_path("impart");
  {
    auto opened = Store::open(config, faults.env());
    REQUIRE(opened);
    Store& store = **opened;
    PartitionLog log(*js, store, options("node-a", 5));
    REQUIRE(log.open().ok());
    Batch b1(store);
    stage(b1, 1);
    REQUIRE(log.append(b1).ok());
    faults.fail_writes(true);  // a full disk
    Batch b2(store);
    stage(b2, 2);
    auto failed = log.append(b2);
    faults.fail_writes(false);
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.error().code == StatusCode::kUnavailable);
    CHECK(failed.error().message.find("in the stream") != std::string::npos);
    CHECK(log.state() == State::kStopped);
    // Stopped: nothing more is published, so no later entry can pass it.
    Batch b3(store);
    stage(b3, 3);
    CHECK_FALSE(log.append(b3).ok());
    auto state = js->stream_state("IM_P5");
    REQUIRE(state.ok());
    CHECK(state->last_seq == 3);  // the marker, entry 1, entry 2
  }
  // The restart: entry 2 comes from the stream, behind the store's applied:5.
  auto opened = Store::open(config);
  REQUIRE(opened);
  Store& store = **opened;
  CHECK(applied_in(store, 5) == 2);
  PartitionLog log(*js, store, options("node-a", 5));
  REQUIRE(log.open().ok());
  CHECK(applied_in(store, 5) == 4);  // entry 2, then the new marker
  std::vector<std::string> inbox;
  REQUIRE(store
              .scan_inbox("u2", 1, 10,
                          [&](std::uint64_t, std::string_view row) {
                            inbox.emplace_back(row);
                            return true;
                          })
              .ok());
  CHECK(inbox == std::vector<std::string>{"message 2"});
  Batch b4(store);
  stage(b4, 4);
  auto fourth = log.append(b4);
  REQUIRE(fourth.ok());
  CHECK(*fourth == 5);
  std::error_code ec;
  opened->reset();
  std::filesystem::remove_all(config.data_dir, ec);
}

TEST_CASE_METHOD(TwoPartitions,
                 "ShardLoop: partitions sharing a thread publish their batches side by side before awaiting any",
                 "[cluster]") {
  const auto pending_before = im::metrics::get().cluster_pending_entries.value();
  im::core::ShardLoop loop(0);
  im::core::GroupCommit c1(loop, *a.store, 1, &p1);
  im::core::GroupCommit c2(loop, *a.store, 2, &p2);
  // A third shard of the loop without a log (as in embedded mode) joins the
  // same rounds.
  im::core::GroupCommit local(loop, *a.store, 3);
  loop.start();

  struct Seen {
    bool ok1 = false, ok2 = false, ok3 = false;
    bool p2_sent_when_p1_done = false;
    int finished = 0;
  };
  std::promise<Seen> done;
  auto seen = std::make_shared<Seen>();
  // A batch is finished as soon as its answer is in, in any order: the
  // last of the three hands over what was seen.
  auto finished = [&done, seen](bool& ok_flag, bool ok) {
    ok_flag = ok;
    if (++seen->finished == 3) done.set_value(*seen);
  };
  // The loop stops before what its handlers use goes, whatever fails
  // (declared after all of it; its stop runs what is still queued).
  struct StopAtEnd {
    im::core::ShardLoop& loop;
    ~StopAtEnd() { loop.stop(); }
  } stop_at_end{loop};
  asio::post(loop.context(), [&] {
    c1.batch().put_meta("one", 1);
    c1.after_commit([&, seen](bool ok) {
      // p2's entry went out before p1's was awaited: it is in flight, or
      // already stored (one commit after another would have neither).
      seen->p2_sent_when_p1_done = p2.in_flight() || p2.applied() == 2;
      finished(seen->ok1, ok);
    });
    c1.schedule();
    c2.batch().put_meta("two", 2);
    c2.after_commit([&, seen](bool ok) { finished(seen->ok2, ok); });
    c2.schedule();
    local.batch().put_meta("three", 3);
    local.after_commit([&, seen](bool ok) { finished(seen->ok3, ok); });
    local.schedule();
  });
  auto got = done.get_future();
  REQUIRE(got.wait_for(20s) == std::future_status::ready);
  const Seen s = got.get();
  loop.stop();
  CHECK(s.ok1);
  CHECK(s.ok2);
  CHECK(s.ok3);
  CHECK(s.p2_sent_when_p1_done);
  CHECK(a.store->get_meta("one")->value_or(0) == 1);
  CHECK(a.store->get_meta("two")->value_or(0) == 2);
  CHECK(a.store->get_meta("three")->value_or(0) == 3);
  CHECK(applied_in(*a.store, 1) == 2);
  CHECK(applied_in(*a.store, 2) == 2);
  CHECK(im::metrics::get().cluster_pending_entries.value() == pending_before);
}

namespace {

im::cluster::SnapshotOptions snapshot_options(const std::string& node) {
  im::cluster::SnapshotOptions o;
  o.spec = im::cluster::snapshot_spec("IM");
  o.spec.stream.max_bytes = 64 << 20;
  o.node = node;
  o.chunk_bytes = 300;  // many chunks
  o.retry_for = 10s;
  return o;
}

std::uint64_t first_seq_of(JetStream& js, const std::string& stream) {
  auto state = js.stream_state(stream);
  REQUIRE(state.ok());
  return state->first_seq;
}

// Two partitions of one node writing the core's kinds of rows, and the
// copy-record pattern across them: partition 2 puts "copy:<i>", partition
// 1 removes it.
struct TwoWriters {
  explicit TwoWriters(JetStream& js, const std::string& node = "node-a", std::int64_t max_bytes = -1)
      : one(js, *store.store, with_clock(options(node, 1, max_bytes), clock)),
        two(js, *store.store, with_clock(options(node, 2, max_bytes), clock)) {
    REQUIRE(PartitionLog::open_all({&one, &two}).ok());
  }
  void write(int from, int to) {
    for (int i = from; i <= to; ++i) {
      Batch b1(*store.store);
      stage(b1, i);
      b1.put_meta("copy:" + std::to_string(i), 1);
      // outbox_count is an AddMerge: an entry applied twice would count twice.
      b1.put_outbox(im::store::OutboxEvent{static_cast<std::uint64_t>(i), "event", 2});
      if (i % 3 == 0) b1.del_outbox(2, static_cast<std::uint64_t>(i - 1));
      REQUIRE(two.append(b1).ok());
      Batch b2(*store.store);
      b2.put_inbox("bob", static_cast<std::uint64_t>(i), "m" + std::to_string(i));
      b2.add_row(im::store::Row{Cf::kMeta, im::store::RowOp::kDelete, "copy:" + std::to_string(i), {}});
      if (i % 5 == 0)
        b2.add_row(im::store::Row{Cf::kInbox, im::store::RowOp::kDelete, im::store::inbox_key("u1", 1), {}});
      REQUIRE(one.append(b2).ok());
    }
  }
  std::vector<const PartitionLog*> logs() const { return {&one, &two}; }
  std::shared_ptr<std::atomic<std::uint64_t>> clock = std::make_shared<std::atomic<std::uint64_t>>(0);
  TempStore store;
  PartitionLog one, two;
};

// Partitions 1 and 2 of `node` opened on `store` (a rebuild when it is
// empty), on a clock of their own; `partitions` as the node's count.
struct TwoReaders {
  TwoReaders(JetStream& js, Store& store, const std::string& node, unsigned partitions = 0)
      : r1(js, store, counted(with_clock(options(node, 1), clock), partitions)),
        r2(js, store, counted(with_clock(options(node, 2), clock), partitions)),
        opened(PartitionLog::open_all({&r1, &r2})) {}
  static PartitionLog::Options counted(PartitionLog::Options o, unsigned partitions) {
    o.partitions = partitions;
    return o;
  }
  std::shared_ptr<std::atomic<std::uint64_t>> clock = std::make_shared<std::atomic<std::uint64_t>>(0);
  PartitionLog r1, r2;
  im::Result<im::Ok> opened;
};

// Stores `data` on IM_SNAP's `subject` at the stream's end, as another
// node (or a build of another layout) would.
void store_on_snap(JetStream& js, const std::string& subject, const std::string& data) {
  auto snap = js.stream_state("IM_SNAP");
  REQUIRE(snap.ok());
  // Shared with the callback: should the wait below give up, a late answer
  // still has its promise.
  auto answer = std::make_shared<std::promise<im::cluster::Published>>();
  auto stored = answer->get_future();
  js.publish(subject, data, "hand:" + std::to_string(snap->last_seq), snap->last_seq, 5s,
             [answer](const im::cluster::Published& p) { answer->set_value(p); });
  REQUIRE(stored.wait_for(60s) == std::future_status::ready);  // the publish's own wait is 5 s
  REQUIRE(stored.get().outcome == im::cluster::Published::Outcome::kStored);
}

// The rows of a rebuilt store, checked equal to the live one's but for
// applied:1 and applied:2 (the rebuilt node applied its own markers too);
// how many.
std::size_t check_rebuilt(Store& live, Store& rebuilt) {
  auto want = dump(live);
  auto got = dump(rebuilt);
  for (const char* key : {"applied:1", "applied:2"}) {
    got.erase({static_cast<int>(Cf::kMeta), key});
    want.erase({static_cast<int>(Cf::kMeta), key});
  }
  CHECK(got == want);
  return got.size();
}

}  // namespace

namespace {

im::cluster::v1::SnapshotChunk rows_chunk(const std::vector<std::pair<std::string, std::string>>& rows) {
  im::cluster::v1::SnapshotChunk chunk;
  for (const auto& [key, value] : rows) {
    auto* row = chunk.add_rows();
    row->set_family(static_cast<std::uint32_t>(Cf::kHistory));
    row->set_op(im::cluster::v1::LogRow::PUT);
    row->set_key(key);
    row->set_value(value);
  }
  return chunk;
}

}  // namespace

TEST_CASE("snapshot chunks: rows that shrink are stored compressed, others as rows, and both read back") {
  im::cluster::ChunkPacker packer;
  std::vector<std::pair<std::string, std::string>> text;
  for (int i = 0; i < 200; ++i)
    text.emplace_back("c2c:alice:bob/" + std::to_string(i),
                      "a message of the kind people send, number " + std::to_string(i));
  const auto chunk = rows_chunk(text);
  const std::string raw = chunk.SerializeAsString();
  const std::string stored = packer.pack(chunk, "00ab", 3);
  CHECK(packer.pack(chunk, "00ab", 3) == stored);  // the same bytes again (a publish retried)
  im::cluster::v1::SnapshotChunk as_stored;
  REQUIRE(as_stored.ParseFromString(stored));
  CHECK(as_stored.rows_size() == 0);
  CHECK_FALSE(as_stored.zstd_rows().empty());
  CHECK(stored.size() * 3 < raw.size());
  im::cluster::v1::SnapshotChunk read;
  REQUIRE(im::cluster::unpack_chunk(stored, read).ok());
  CHECK(read.id() == "00ab");
  CHECK(read.index() == 3);
  CHECK(read.zstd_rows().empty());
  REQUIRE(read.rows_size() == 200);
  CHECK(read.rows(199).key() == text[199].first);
  CHECK(read.rows(199).value() == text[199].second);
  CHECK(read.rows(0).family() == static_cast<std::uint32_t>(Cf::kHistory));

  // Rows that do not shrink (random bytes) are stored as they are, as
  // builds before compression stored every chunk, and read back.
  std::mt19937_64 random(7);
  std::string noise(2000, '\0');
  for (char& c : noise) c = static_cast<char>(random());
  const std::string plain = packer.pack(rows_chunk({{"k", noise}}), "00ab", 4);
  im::cluster::v1::SnapshotChunk plain_read;
  REQUIRE(im::cluster::unpack_chunk(plain, plain_read).ok());
  CHECK(plain_read.zstd_rows().empty());
  REQUIRE(plain_read.rows_size() == 1);
  CHECK(plain_read.rows(0).value() == noise);
  CHECK(plain_read.id() == "00ab");
  CHECK(plain_read.index() == 4);

  // Rows of exactly 64 MiB (a chunk of one row of 64 MiB - 15 bytes) are
  // compressed and read back; one byte more and they are stored as rows,
  // which no reader would decompress.
  const auto at_limit = rows_chunk({{"k", std::string((64u << 20) - 15, 'x')}});
  CHECK(at_limit.ByteSizeLong() == (64u << 20));
  const std::string limit = packer.pack(at_limit, "00ab", 5);
  CHECK(limit.size() < 100000);
  im::cluster::v1::SnapshotChunk limit_read;
  REQUIRE(im::cluster::unpack_chunk(limit, limit_read).ok());
  REQUIRE(limit_read.rows_size() == 1);
  CHECK(limit_read.rows(0).value().size() == (64u << 20) - 15);
  CHECK(packer.pack(rows_chunk({{"k", std::string((64u << 20) - 14, 'x')}}), "00ab", 5).size() > (64u << 20));
  const std::string large = packer.pack(rows_chunk({{"k", std::string((64u << 20) + 1, 'x')}}), "00ab", 5);
  CHECK(large.size() > (64u << 20));
  im::cluster::v1::SnapshotChunk large_read;
  REQUIRE(im::cluster::unpack_chunk(large, large_read).ok());
  REQUIRE(large_read.rows_size() == 1);
  CHECK(large_read.rows(0).value().size() == (64u << 20) + 1);
}

TEST_CASE("snapshot chunks: compressed rows that are not zstd, not rows, too large or beside rows are refused") {
  auto why = [](const im::cluster::v1::SnapshotChunk& chunk) {
    im::cluster::v1::SnapshotChunk read;
    auto unpacked = im::cluster::unpack_chunk(chunk.SerializeAsString(), read);
    return unpacked ? std::string("read") : unpacked.error().message;
  };
  auto compressed = [](const std::string& raw) {
    std::string out(ZSTD_compressBound(raw.size()), '\0');
    const std::size_t n = ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), 1);
    REQUIRE_FALSE(ZSTD_isError(n));
    out.resize(n);
    return out;
  };
  auto with_zstd = [&](const im::cluster::v1::SnapshotChunk& inner) {
    im::cluster::v1::SnapshotChunk chunk;
    chunk.set_id("1");
    chunk.set_zstd_rows(compressed(inner.SerializeAsString()));
    return chunk;
  };
  im::cluster::v1::SnapshotChunk garbage;
  garbage.set_zstd_rows("not a zstd frame");
  CHECK(why(garbage).find("no whole zstd frame") != std::string::npos);
  im::cluster::v1::SnapshotChunk unparsed;
  CHECK(im::cluster::unpack_chunk("\xff\xff\xff", unparsed).error().message.find("does not parse") !=
        std::string::npos);

  // A zstd frame of bytes that are no chunk.
  im::cluster::v1::SnapshotChunk not_rows;
  not_rows.set_zstd_rows(compressed("\xff\xff\xff\xff"));
  CHECK(why(not_rows).find("not rows only") != std::string::npos);
  // A nested chunk with an id, an index or compressed rows of its own.
  im::cluster::v1::SnapshotChunk inner = rows_chunk({{"k", "v"}});
  inner.set_id("nested");
  CHECK(why(with_zstd(inner)).find("not rows only") != std::string::npos);
  inner.clear_id();
  inner.set_index(2);
  CHECK(why(with_zstd(inner)).find("not rows only") != std::string::npos);
  inner.set_index(0);
  inner.set_zstd_rows("x");
  CHECK(why(with_zstd(inner)).find("not rows only") != std::string::npos);
  // Compressed rows beside plain ones.
  im::cluster::v1::SnapshotChunk both = rows_chunk({{"k", "v"}});
  both.set_zstd_rows(compressed(rows_chunk({{"k2", "v2"}}).SerializeAsString()));
  CHECK(why(both).find("rows and compressed rows") != std::string::npos);
  // Rows of more than 64 MiB once decompressed (a few KB compressed), and
  // rows just under it.
  const auto over = with_zstd(rows_chunk({{"k", std::string(64u << 20, '\0')}}));
  CHECK(over.zstd_rows().size() < 100000);
  CHECK(why(over).find("decompress to 67108879 bytes, more than 67108864") != std::string::npos);
  CHECK(why(with_zstd(rows_chunk({{"k", std::string((64u << 20) - 64, '\0')}}))) == "read");
  CHECK(why(with_zstd(rows_chunk({{"k", "v"}}))) == "read");
}

TEST_CASE("PartitionLog: a snapshot trims the streams, and an empty data dir is rebuilt from it and what followed",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TwoWriters a(*js);
  a.write(1, 30);
  const std::uint64_t purged_before = im::metrics::get().cluster_purged_entries.value();
  auto first = im::cluster::take_snapshot(*js, *a.store.store, a.logs(), snapshot_options("node-a"));
  REQUIRE(first.ok());
  CHECK(first->chunks > 5);
  // Stored compressed: the manifest and the metric say how small.
  CHECK(first->stored_bytes > 0);
  CHECK(first->stored_bytes < first->bytes);
  CHECK(im::metrics::get().cluster_snapshot_stored_bytes.value() == static_cast<std::int64_t>(first->stored_bytes));
  {
    auto manifest = im::cluster::last_manifest(*js, im::cluster::snapshot_spec("IM"));
    REQUIRE(manifest.ok());
    REQUIRE(manifest->has_value());
    CHECK((*manifest)->stored_bytes() == first->stored_bytes);
  }
  CHECK(first->applied[1] == a.one.applied());
  CHECK(first->applied[2] == a.two.applied());
  // Each stream keeps its last entry (the cut, here), which the next
  // snapshot reads to check its writer.
  CHECK(first_seq_of(*js, "IM_P1") == a.one.applied());
  CHECK(first_seq_of(*js, "IM_P2") == a.two.applied());
  CHECK(first->purged == a.one.applied() - 1 + a.two.applied() - 1);
  CHECK(im::metrics::get().cluster_purged_entries.value() - purged_before == first->purged);

  // Rows of the cut deleted and rewritten after it, the chunks of an
  // attempt that stored no manifest (a node killed amid a snapshot), then
  // a second snapshot, which replaces the first on the SNAP stream and
  // purges those chunks.
  a.write(31, 45);
  {
    // Rows that do not compress (random bytes): their chunks are stored as
    // rows, beside compressed ones, and the rebuild below reads both.
    std::mt19937_64 random(11);
    Batch b(*a.store.store);
    for (int i = 0; i < 3; ++i) {
      std::string noise(400, '\0');
      for (char& c : noise) c = static_cast<char>(random());
      b.add_row(im::store::Row{Cf::kMeta, im::store::RowOp::kPut, "noise:" + std::to_string(i), noise});
    }
    REQUIRE(a.one.append(b).ok());
  }
  store_on_snap(*js, "im.s.c.0123456789abcdef", "a chunk");
  auto second = im::cluster::take_snapshot(*js, *a.store.store, a.logs(), snapshot_options("node-a"));
  REQUIRE(second.ok());
  auto snap = js->stream_state("IM_SNAP");
  REQUIRE(snap.ok());
  CHECK(snap->messages == second->chunks + 1);  // its chunks and its manifest, the first snapshot purged
  {
    auto chunks = js->read("IM_SNAP", "im.s.c." + second->id, snap->first_seq, second->chunks);
    REQUIRE(chunks.ok());
    REQUIRE(chunks->size() == second->chunks);
    int compressed = 0, plain = 0;
    for (const auto& e : *chunks) {
      im::cluster::v1::SnapshotChunk c;
      REQUIRE(c.ParseFromString(e.data));
      (c.zstd_rows().empty() ? plain : compressed) += 1;
    }
    CHECK(compressed > 0);
    CHECK(plain > 0);
  }
  a.write(46, 60);
  {
    Batch b(*a.store.store);
    b.del_deleted_upto("u1", "c2c:a:b", 58);  // a range delete over rows of the cut
    REQUIRE(a.one.append(b).ok());
  }

  // A node that lost its disk: the cut, then the entries after it, in Lamport order.
  TempStore b;
  TwoReaders rebuilt(*js, *b.store, "node-b");
  REQUIRE(rebuilt.opened.ok());
  // 31 entries after the cut and the markers, not all 120
  CHECK(rebuilt.r1.caught_up() + rebuilt.r2.caught_up() < 40);
  CHECK(check_rebuilt(*a.store.store, *b.store) > 200);
  for (int i = 1; i <= 60; ++i) CHECK_FALSE(b.store->get_meta("copy:" + std::to_string(i))->has_value());
  CHECK(rebuilt.clock->load() == a.clock->load());
  CHECK_FALSE(b.store->get_meta(im::cluster::kRestoringKey)->has_value());
  CHECK(b.store->count_events().value() == 40);  // 60 put, 20 deleted: the merged count and the rows agree
  REQUIRE(b.store->reload_outbox_depth().ok());  // as the service does after opening the logs
  CHECK(b.store->outbox_depth() == 40);
  // It writes on where a stopped: the next entries follow.
  Batch more(*b.store);
  stage(more, 61);
  CHECK(rebuilt.r1.append(more).ok());
}

TEST_CASE("PartitionLog: a data dir behind a trimmed stream, or holding a restore cut short, is refused", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TempStore behind;
  {
    PartitionLog log(*js, *behind.store, options("node-b"));
    REQUIRE(log.open().ok());  // applied:7 = 1, its marker
  }
  {
    // Another node writes on and trims below its snapshot.
    TempStore a;
    PartitionLog log(*js, *a.store, options("node-a"));
    REQUIRE(log.open().ok());
    for (int i = 1; i <= 10; ++i) {
      Batch b(*a.store);
      stage(b, i);
      REQUIRE(log.append(b).ok());
    }
    REQUIRE(im::cluster::take_snapshot(*js, *a.store, {&log}, snapshot_options("node-a")).ok());
    CHECK(first_seq_of(*js, "IM_P7") == 12);  // its last entry kept
  }
  PartitionLog log(*js, *behind.store, options("node-b"));
  auto opened = log.open();
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().message.find("trimmed") != std::string::npos);
  CHECK(first_seq_of(*js, "IM_P7") == 12);  // refused before writing anything
  auto state = js->stream_state("IM_P7");
  REQUIRE(state.ok());
  CHECK(state->last_seq == 12);

  TempStore cut_short;
  {
    Batch b(*cut_short.store);
    b.put_meta(im::cluster::kRestoringKey, 1);
    REQUIRE(cut_short.store->write(b).ok());
  }
  PartitionLog again(*js, *cut_short.store, options("node-c"));
  opened = again.open();
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().message.find("part of an older snapshot") != std::string::npos);
}

TEST_CASE("PartitionLog: a fenced writer stores no snapshot and trims nothing", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TwoWriters a(*js);
  a.write(1, 5);
  TwoWriters b(*js, "node-b");  // fences a on both streams
  auto refused = im::cluster::take_snapshot(*js, *a.store.store, a.logs(), snapshot_options("node-a"));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("another node") != std::string::npos);
  CHECK(first_seq_of(*js, "IM_P1") == 1);
  CHECK(first_seq_of(*js, "IM_P2") == 1);
  auto manifest = im::cluster::last_manifest(*js, im::cluster::snapshot_spec("IM"));
  REQUIRE(manifest.ok());
  CHECK_FALSE(manifest->has_value());
  auto snap = js->stream_state("IM_SNAP");
  CHECK((!snap.ok() || snap->last_seq == 0));  // nothing of a's snapshot stored, not even a chunk
  // b's own snapshot goes through.
  b.write(6, 8);
  REQUIRE(im::cluster::take_snapshot(*js, *b.store.store, b.logs(), snapshot_options("node-b")).ok());
  CHECK(first_seq_of(*js, "IM_P1") == b.one.applied());
}

TEST_CASE("PartitionLog: a snapshot the SNAP stream cannot hold fails, leaves no chunk behind and trims nothing",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TwoWriters a(*js);
  a.write(1, 30);
  auto small = snapshot_options("node-a");
  small.spec.stream.max_bytes = 1024;  // a few chunks of the store's 10 KB or so (4 KB compressed)
  auto refused = im::cluster::take_snapshot(*js, *a.store.store, a.logs(), small);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("stream full") != std::string::npos);
  auto snap = js->stream_state("IM_SNAP");
  REQUIRE(snap.ok());
  CHECK(snap->last_seq > 0);   // some chunks were stored
  CHECK(snap->messages == 0);  // and purged again
  CHECK(first_seq_of(*js, "IM_P1") == 1);
  CHECK(first_seq_of(*js, "IM_P2") == 1);
  CHECK_FALSE(im::cluster::last_manifest(*js, small.spec)->has_value());
  // With room (the limit is applied to the stream again), it goes through.
  REQUIRE(im::cluster::take_snapshot(*js, *a.store.store, a.logs(), snapshot_options("node-a")).ok());
  CHECK(first_seq_of(*js, "IM_P2") == a.two.applied());
}

TEST_CASE("PartitionLog: snapshots go on while a partition is idle, and an older cut than the last is refused",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TwoWriters a(*js);
  a.write(1, 5);
  REQUIRE(im::cluster::take_snapshot(*js, *a.store.store, a.logs(), snapshot_options("node-a")).ok());
  const std::uint64_t idle_head = first_seq_of(*js, "IM_P1");
  // Partition 1 writes nothing from here on.
  for (int i = 6; i <= 10; ++i) {
    Batch b(*a.store.store);
    stage(b, i);
    REQUIRE(a.two.append(b).ok());
  }
  auto second = im::cluster::take_snapshot(*js, *a.store.store, a.logs(), snapshot_options("node-a"));
  REQUIRE(second.ok());
  CHECK(first_seq_of(*js, "IM_P1") == idle_head);
  CHECK(first_seq_of(*js, "IM_P2") == a.two.applied());
  // Nothing written by either: still a snapshot (the streams keep their last entries).
  REQUIRE(im::cluster::take_snapshot(*js, *a.store.store, a.logs(), snapshot_options("node-a")).ok());

  // A store behind the last cut (a copy of this node's data dir from
  // before, say) names an older cut: refused, nothing stored.
  TempStore old;
  {
    Batch b(*old.store);
    b.put_meta(PartitionLog::applied_key(2), 3);
    REQUIRE(old.store->write(b).ok());
  }
  auto before = js->stream_state("IM_SNAP");
  REQUIRE(before.ok());
  auto refused = im::cluster::take_snapshot(*js, *old.store, a.logs(), snapshot_options("node-a"));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("older than snapshot") != std::string::npos);
  auto after = js->stream_state("IM_SNAP");
  REQUIRE(after.ok());
  CHECK(after->messages == before->messages);  // its chunks purged again
  auto manifest = im::cluster::last_manifest(*js, im::cluster::snapshot_spec("IM"));
  REQUIRE(manifest.ok());
  REQUIRE(manifest->has_value());
  CHECK((*manifest)->applied(2) == a.two.applied());
}

TEST_CASE("PartitionLog: a restore cut short is resumed from the same snapshot, refused from another", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TwoWriters a(*js);
  a.write(1, 10);
  REQUIRE(im::cluster::take_snapshot(*js, *a.store.store, a.logs(), snapshot_options("node-a")).ok());
  auto manifest = im::cluster::last_manifest(*js, im::cluster::snapshot_spec("IM"));
  REQUIRE(manifest.ok());
  REQUIRE(manifest->has_value());
  const auto rebuild = [&](Store& store, const std::string& node) { return TwoReaders(*js, store, node).opened; };
  // Half a restore: the marker and some of the rows.
  TempStore half;
  {
    Batch b(*half.store);
    b.put_meta(im::cluster::kRestoringKey, im::cluster::restoring_id(**manifest));
    b.put_inbox("bob", 1, "m1");
    REQUIRE(half.store->write(b).ok());
  }
  REQUIRE(rebuild(*half.store, "node-b").ok());
  check_rebuilt(*a.store.store, *half.store);

  // Half of another snapshot's restore: refused.
  TempStore other;
  {
    Batch b(*other.store);
    b.put_meta(im::cluster::kRestoringKey, 12345);
    REQUIRE(other.store->write(b).ok());
  }
  auto refused = rebuild(*other.store, "node-c");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("older snapshot") != std::string::npos);
  // And part of a snapshot with entries applied after it.
  TempStore mixed;
  {
    Batch b(*mixed.store);
    b.put_meta(im::cluster::kRestoringKey, im::cluster::restoring_id(**manifest));
    b.put_meta(PartitionLog::applied_key(1), 2);
    REQUIRE(mixed.store->write(b).ok());
  }
  refused = rebuild(*mixed.store, "node-d");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("holds part of a snapshot") != std::string::npos);
}

TEST_CASE("PartitionLog: a rebuild refuses a snapshot of another layout or partition count, or a stream made again",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TwoWriters a(*js);
  a.write(1, 5);
  REQUIRE(im::cluster::take_snapshot(*js, *a.store.store, a.logs(), snapshot_options("node-a")).ok());
  auto found = im::cluster::last_manifest(*js, im::cluster::snapshot_spec("IM"));
  REQUIRE(found.ok());
  REQUIRE(found->has_value());
  // A manifest stored after the real one, as a node of another build would.
  auto store_manifest = [&](const im::cluster::v1::SnapshotManifest& m) {
    store_on_snap(*js, "im.s.m", m.SerializeAsString());
  };
  const auto rebuild = [&] {
    TempStore b;
    return TwoReaders(*js, *b.store, "node-b", 3).opened;
  };
  const auto last_of_p1 = [&] {
    auto state = js->stream_state("IM_P1");
    REQUIRE(state.ok());
    return state->last_seq;
  };
  // Refused before any marker: the running node is not fenced.
  const std::uint64_t end = last_of_p1();
  auto layout = **found;
  layout.set_schema_version(im::store::kRowsReadableFrom - 1);
  store_manifest(layout);
  auto refused = rebuild();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("store layout") != std::string::npos);
  layout.set_schema_version(im::store::kSchemaVersion + 1);
  store_manifest(layout);
  refused = rebuild();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("store layout") != std::string::npos);
  CHECK(last_of_p1() == end);

  auto count = **found;
  count.set_partitions(5);
  store_manifest(count);
  refused = rebuild();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("holds 5 partitions") != std::string::npos);
  CHECK(last_of_p1() == end);
  {
    Batch b(*a.store.store);
    stage(b, 99);
    CHECK(a.one.append(b).ok());  // still the writer
  }

  auto behind = **found;
  behind.set_applied(1, 1);  // the stream begins well past it
  store_manifest(behind);
  refused = rebuild();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("past its cut") != std::string::npos);

  auto remade = **found;
  remade.set_created_ns(1, remade.created_ns(1) + 1);
  store_manifest(remade);
  refused = rebuild();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("made again") != std::string::npos);

  auto short_fields = **found;
  short_fields.clear_created_ns();
  store_manifest(short_fields);
  refused = rebuild();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("no position") != std::string::npos);

  auto ahead = **found;
  ahead.set_applied(2, 1000);
  store_manifest(ahead);
  refused = rebuild();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("past this node's marker") != std::string::npos);

  // A manifest whose chunk does not decompress: refused, saying why.
  {
    auto snap = js->stream_state("IM_SNAP");
    REQUIRE(snap.ok());
    im::cluster::v1::SnapshotChunk corrupt;
    corrupt.set_id("00000000000000c0");
    corrupt.set_zstd_rows("not a zstd frame");
    store_on_snap(*js, "im.s.c.00000000000000c0", corrupt.SerializeAsString());
    auto unreadable = **found;
    unreadable.set_id("00000000000000c0");
    unreadable.set_first_chunk_seq(snap->last_seq + 1);
    unreadable.set_chunks(1);
    store_manifest(unreadable);
    refused = rebuild();
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().message.find("cannot be read: its compressed rows are no whole zstd frame") !=
          std::string::npos);
  }

  // The real one again: rebuilt.
  store_manifest(**found);
  CHECK(rebuild().ok());
}

TEST_CASE("PartitionLog: a cut between a copy record's put and its removal brings nothing back", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TwoWriters a(*js);
  a.write(1, 3);
  // Partition 2 puts the record; the snapshot is taken; partition 1 removes it.
  Batch put(*a.store.store);
  put.put_meta("copy:cut", 1);
  REQUIRE(a.two.append(put).ok());
  auto taken = im::cluster::take_snapshot(*js, *a.store.store, a.logs(), snapshot_options("node-a"));
  REQUIRE(taken.ok());
  Batch remove(*a.store.store);
  remove.put_inbox("bob", 100, "the copy");
  remove.add_row(im::store::Row{Cf::kMeta, im::store::RowOp::kDelete, "copy:cut", {}});
  REQUIRE(a.one.append(remove).ok());
  // The put is in the cut, the removal in partition 1's tail: rebuilt, it stays removed.
  TempStore b;
  TwoReaders rebuilt(*js, *b.store, "node-b");
  REQUIRE(rebuilt.opened.ok());
  CHECK(rebuilt.r1.caught_up() + rebuilt.r2.caught_up() == 3);  // the removal and the two markers
  CHECK_FALSE(b.store->get_meta("copy:cut")->has_value());
  std::string copy;
  REQUIRE(b.store
              ->scan_inbox("bob", 100, 101,
                           [&](std::uint64_t, std::string_view m) {
                             copy = m;
                             return true;
                           })
              .ok());
  CHECK(copy == "the copy");
}

TEST_CASE("Trimmer: a snapshot once a stream holds its share of the limit, and only when it can shrink a stream",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TwoWriters a(*js, "node-a", 64 << 10);
  im::cluster::Trimmer never(*js, *a.store.store, a.logs(), snapshot_options("node-a"), 0, 3600s);
  im::cluster::Trimmer trimmer(*js, *a.store.store, a.logs(), snapshot_options("node-a"), 25, 3600s);
  a.write(1, 2);
  auto checked = trimmer.run_once();
  REQUIRE(checked.ok());
  CHECK_FALSE(*checked);  // far below 25% of 64 KiB
  int i = 3;
  for (; i < 400; ++i) {  // bounded: each batch adds a few hundred bytes to each stream
    a.write(i, i);
    auto state = js->stream_state("IM_P2");
    REQUIRE(state.ok());
    if (state->bytes * 4 >= static_cast<std::uint64_t>(state->max_bytes)) break;
  }
  REQUIRE(i < 400);
  auto off = never.run_once();
  REQUIRE(off.ok());
  CHECK_FALSE(*off);  // trim_at_percent 0
  const std::uint64_t snapshots = im::metrics::get().cluster_snapshots.value();
  checked = trimmer.run_once();
  REQUIRE(checked.ok());
  CHECK(*checked);
  CHECK(im::metrics::get().cluster_snapshots.value() == snapshots + 1);
  CHECK(first_seq_of(*js, "IM_P2") == a.two.applied());
  // Nothing past the cut: nothing to shrink, no second snapshot.
  checked = trimmer.run_once();
  REQUIRE(checked.ok());
  CHECK_FALSE(*checked);
}

TEST_CASE("Trimmer: destroyed amid a snapshot, it stops, leaves no chunk and no manifest, and trims nothing",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TwoWriters a(*js, "node-a", 64 << 10);
  // A store of over 10,000 chunks (about 300 bytes of rows each): a
  // snapshot of half a minute or more, each chunk a replicated publish, so
  // that it is still under way however late the wait below sees its first
  // chunks (stream info comes slowly from servers under load).
  for (int batch = 0; batch < 20; ++batch) {
    Batch b(*a.store.store);
    for (int i = 0; i < 10000; ++i)
      b.put_meta("filler:" + std::to_string(batch) + ":" + std::to_string(i), static_cast<std::uint64_t>(i));
    REQUIRE(a.store.store->write(b).ok());
  }
  a.write(1, 10);  // past 1% of 64 KiB
  const std::uint64_t failures = im::metrics::get().cluster_snapshot_failures.value();
  {
    im::cluster::Trimmer trimmer(*js, *a.store.store, a.logs(), snapshot_options("node-a"), 1, 1s);
    REQUIRE(im::test::wait_until(
        [&] {
          auto snap = js->stream_state("IM_SNAP");
          return snap.ok() && snap->messages >= 5;
        },
        30s));
  }  // destroyed with the snapshot under way
  // Stopped, not failed: a snapshot that failed on its own (and was not
  // cut short) is counted.
  CHECK(im::metrics::get().cluster_snapshot_failures.value() == failures);
  CHECK_FALSE(im::cluster::last_manifest(*js, im::cluster::snapshot_spec("IM"))->has_value());
  auto snap = js->stream_state("IM_SNAP");
  REQUIRE(snap.ok());
  CHECK(snap->messages == 0);  // its chunks purged
  CHECK(first_seq_of(*js, "IM_P1") == 1);
  CHECK(first_seq_of(*js, "IM_P2") == 1);
  // The next snapshot goes through.
  auto options = snapshot_options("node-a");
  options.chunk_bytes = 1 << 20;
  auto taken = im::cluster::take_snapshot(*js, *a.store.store, a.logs(), options);
  REQUIRE(taken.ok());
  CHECK(taken->rows > 200000);
  CHECK(first_seq_of(*js, "IM_P2") == a.two.applied());
}

namespace {
// The bytes TwoWriters' streams (partitions 1 and 2) hold together.
std::uint64_t two_streams_bytes(JetStream& js) {
  std::uint64_t bytes = 0;
  for (const char* name : {"IM_P1", "IM_P2"}) {
    auto state = js.stream_state(name);
    REQUIRE(state.ok());
    bytes += state->bytes;
  }
  return bytes;
}
}  // namespace

TEST_CASE("Trimmer: a snapshot once the streams grew by as much as the last snapshot, far below their limits",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TwoWriters a(*js, "node-a", 64 << 20);  // 25% of that is never reached here
  constexpr std::uint64_t kFloor = 16 << 10;
  im::cluster::Trimmer trimmer(*js, *a.store.store, a.logs(), snapshot_options("node-a"), 25, 3600s, kFloor);
  auto log_bytes = [&] { return two_streams_bytes(*js); };
  auto last_snapshot_bytes = [&] {
    auto last = im::cluster::last_manifest(*js, snapshot_options("node-a").spec);
    REQUIRE(last.ok());
    REQUIRE(last->has_value());
    return (*last)->bytes();
  };
  int i = 1;
  std::uint64_t kept = 0;  // what the streams held after the last trim
  // Writes until the streams grew by `bytes` since the last trim (bounded).
  auto write_until = [&](std::uint64_t bytes) {
    const int from = i;
    for (; i < from + 4000 && log_bytes() < kept + bytes; ++i) a.write(i, i);
    REQUIRE(log_bytes() >= kept + bytes);
  };
  auto due = [&](im::cluster::Trimmer& t) {
    auto checked = t.run_once();
    REQUIRE(checked.ok());
    if (*checked) kept = log_bytes();
    return *checked;
  };
  a.write(i, i + 1);
  i += 2;
  REQUIRE(log_bytes() < kFloor);
  CHECK_FALSE(due(trimmer));  // no snapshot yet, but below the floor
  write_until(kFloor);
  CHECK(due(trimmer));
  // A large row stays in the store: the next snapshot holds it.
  Batch large(*a.store.store);
  large.put_inbox("carol", 1, std::string(96 << 10, 'c'));
  REQUIRE(a.two.append(large).ok());
  a.write(i, i);  // the streams' last entries, which stay, are small ones
  ++i;
  CHECK(due(trimmer));
  std::uint64_t snapshot_bytes = last_snapshot_bytes();
  REQUIRE(snapshot_bytes > (96u << 10));
  // Past the floor, but less than the snapshot holds: none is due.
  write_until(kFloor);
  REQUIRE(log_bytes() < kept + snapshot_bytes);
  CHECK_FALSE(due(trimmer));
  // As much as it holds: the next.
  write_until(snapshot_bytes);
  CHECK(due(trimmer));
  snapshot_bytes = last_snapshot_bytes();
  // A trimmer of a later run knows the last snapshot's size from its
  // manifest (and counts all the streams hold).
  im::cluster::Trimmer later(*js, *a.store.store, a.logs(), snapshot_options("node-a"), 25, 3600s, kFloor);
  write_until(kFloor);
  REQUIRE(log_bytes() < snapshot_bytes);
  CHECK_FALSE(due(later));
  // One whose last manifest does not parse counts it as none, and replaces it.
  store_on_snap(*js, "im.s.m", "not a manifest");
  im::cluster::Trimmer after_garbage(*js, *a.store.store, a.logs(), snapshot_options("node-a"), 25, 3600s, kFloor);
  CHECK(due(after_garbage));
  auto replaced = im::cluster::last_manifest(*js, snapshot_options("node-a").spec);
  REQUIRE(replaced.ok());
  CHECK(replaced->has_value());
}

TEST_CASE("Trimmer: what a purge must leave (each stream's last entry) does not make the next snapshot due",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  TwoWriters a(*js, "node-a", 64 << 20);
  constexpr std::uint64_t kFloor = 16 << 10;
  im::cluster::Trimmer trimmer(*js, *a.store.store, a.logs(), snapshot_options("node-a"), 25, 3600s, kFloor);
  a.write(1, 3);
  // Partition 2's last entry puts a large row that partition 1 then
  // removes: no snapshot holds it, but its stream keeps that entry.
  Batch put(*a.store.store);
  put.put_meta("large:" + std::string(64 << 10, 'l'), 1);
  REQUIRE(a.two.append(put).ok());
  Batch remove(*a.store.store);
  remove.add_row(im::store::Row{Cf::kMeta, im::store::RowOp::kDelete, "large:" + std::string(64 << 10, 'l'), {}});
  REQUIRE(a.one.append(remove).ok());
  auto checked = trimmer.run_once();
  REQUIRE(checked.ok());
  CHECK(*checked);  // past the floor, no snapshot yet
  auto p2 = js->stream_state("IM_P2");
  REQUIRE(p2.ok());
  REQUIRE(p2->bytes > (64u << 10));  // the large entry stays
  auto last = im::cluster::last_manifest(*js, snapshot_options("node-a").spec);
  REQUIRE(last.ok());
  REQUIRE(last->has_value());
  REQUIRE((*last)->bytes() < kFloor);
  auto log_bytes = [&] { return two_streams_bytes(*js); };
  const std::uint64_t kept = log_bytes();  // both large entries: each stream's last one stays
  REQUIRE(kept > 2 * (64u << 10));
  // Partition 1 can shrink again (two entries past its cut); the streams
  // hold more than the floor and the snapshot, all but those two entries
  // left by the purge: not due.
  for (int k = 0; k < 2; ++k) {
    Batch small(*a.store.store);
    small.put_meta("small", static_cast<std::uint64_t>(k));
    REQUIRE(a.one.append(small).ok());
  }
  REQUIRE(log_bytes() >= kFloor);
  checked = trimmer.run_once();
  REQUIRE(checked.ok());
  CHECK_FALSE(*checked);
  // Grown by the floor since: due.
  int i = 4;
  for (; i < 4000 && log_bytes() < kept + kFloor; ++i) a.write(i, i);
  REQUIRE(log_bytes() >= kept + kFloor);
  checked = trimmer.run_once();
  REQUIRE(checked.ok());
  CHECK(*checked);
}
