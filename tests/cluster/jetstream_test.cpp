// JetStream as cluster mode uses it (src/cluster/jetstream.h), against a real
// three-node nats-server cluster on loopback (scripts/nats-cluster.sh).

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cluster/jetstream.h"
#include "nats_cluster.h"
#include "wait_until.h"

using namespace std::chrono_literals;
using im::cluster::Entry;
using im::cluster::JetStream;
using im::cluster::Published;
using im::cluster::StreamSpec;
using Outcome = Published::Outcome;

namespace {

StreamSpec spec(const std::string& name, std::int64_t max_bytes = -1) {
  StreamSpec s;
  s.name = name;
  s.subject = "im.test." + name;
  s.replicas = 3;
  s.max_bytes = max_bytes;
  return s;
}

// Collects the answers of asynchronous publishes, by the caller's index.
// The answers land in state the callbacks share: after a failed wait one
// may still come (the client answers what is pending when it is closed).
class Answers {
 public:
  explicit Answers(std::size_t n) : s_(std::make_shared<State>(n)) {}
  JetStream::Done slot(std::size_t i) {
    return [s = s_, i](const Published& p) {
      std::lock_guard lock(s->m);
      s->got[i] = p;
      ++s->calls[i];
      ++s->answered;
      s->cv.notify_all();
    };
  }
  bool wait_all(std::chrono::milliseconds within = 30s) {
    std::unique_lock lock(s_->m);
    return s_->cv.wait_for(lock, within, [&] { return s_->answered >= s_->got.size(); });
  }
  Published at(std::size_t i) {
    std::lock_guard lock(s_->m);
    return s_->got[i];
  }
  int calls(std::size_t i) {
    std::lock_guard lock(s_->m);
    return s_->calls[i];
  }

 private:
  struct State {
    explicit State(std::size_t n) : got(n), calls(n) {}
    std::mutex m;
    std::condition_variable cv;
    std::vector<Published> got;
    std::vector<int> calls;
    std::size_t answered = 0;
  };
  std::shared_ptr<State> s_;
};

Published publish_sync(JetStream& js, const StreamSpec& s, const std::string& data, const std::string& id,
                       std::uint64_t expect, std::chrono::milliseconds wait = 5s) {
  Answers a(1);
  js.publish(s.subject, data, id, expect, wait, a.slot(0));
  REQUIRE(a.wait_all());
  return a.at(0);
}

// Publishes entries 1..n as one writer's chain (ids w:1:<i>, each expecting
// the one before), one after another, each required stored.
void publish_chain(JetStream& js, const StreamSpec& s, std::uint64_t n,
                   const std::function<std::string(std::uint64_t)>& data) {
  for (std::uint64_t i = 1; i <= n; ++i) {
    INFO("entry " << i);
    REQUIRE(publish_sync(js, s, data(i), "w:1:" + std::to_string(i), i - 1).outcome == Outcome::kStored);
  }
}

}  // namespace

TEST_CASE("JetStream: only a timeout or a failure is an unknown fate, and not-sent after one is a timeout",
          "[cluster]") {
  using O = Published::Outcome;
  // Every outcome, with and without an earlier attempt that went out
  // unanswered. After one, a refusal of the retry (the client is
  // reconnecting) may hide a stored first attempt: a timeout.
  for (O given : {O::kStored, O::kDuplicate, O::kWrongLastSequence, O::kFull, O::kTimeout, O::kFailed, O::kNotSent}) {
    for (bool before : {false, true}) {
      INFO(im::cluster::to_string(given) << (before ? " after an unanswered attempt" : " first"));
      const bool unknown = given == O::kTimeout || given == O::kFailed || (given == O::kNotSent && before);
      Published p{given, 7, "why"};
      bool maybe_stored = before;
      CHECK(fate_unknown(p, maybe_stored) == unknown);
      CHECK(p.outcome == (given == O::kNotSent && before ? O::kTimeout : given));
      CHECK(maybe_stored == (before || unknown));
      CHECK(p.seq == 7);
      CHECK(p.error == "why");
    }
  }
}

TEST_CASE("JetStream: a chain of pipelined publishes is stored in order, each at the sequence it expected",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  const auto s = spec("CHAIN");
  auto made = js->ensure_stream(s);
  REQUIRE(made.ok());
  CHECK(made->last_seq == 0);
  CHECK(made->replicas == 3);

  constexpr std::size_t kN = 2000;
  Answers answers(kN);
  for (std::size_t i = 0; i < kN; ++i)
    js->publish(s.subject, "entry " + std::to_string(i + 1), "w:1:" + std::to_string(i + 1), i, 5s, answers.slot(i));
  REQUIRE(answers.wait_all());
  for (std::size_t i = 0; i < kN; ++i) {
    INFO("publish " << i);
    CHECK(answers.calls(i) == 1);
    CHECK(answers.at(i).outcome == Outcome::kStored);
    CHECK(answers.at(i).seq == i + 1);
  }
  CHECK(js->pending() == 0);
  auto state = js->stream_state(s.name);
  REQUIRE(state.ok());
  CHECK(state->last_seq == kN);
  CHECK(state->messages == kN);

  auto all = js->read(s.name, s.subject, 1, kN + 10);
  REQUIRE(all.ok());
  REQUIRE(all->size() == kN);
  for (std::size_t i = 0; i < kN; ++i) {
    CHECK((*all)[i].seq == i + 1);
    CHECK((*all)[i].data == "entry " + std::to_string(i + 1));
  }
  auto tail = js->read(s.name, s.subject, kN - 9, 100);
  REQUIRE(tail.ok());
  REQUIRE(tail->size() == 10);
  CHECK(tail->front().seq == kN - 9);
  auto past = js->read(s.name, s.subject, kN + 1, 100);
  REQUIRE(past.ok());
  CHECK(past->empty());
  auto some = js->read(s.name, s.subject, 5, 3);
  REQUIRE(some.ok());
  REQUIRE(some->size() == 3);
  CHECK(some->back().seq == 7);
  // A byte limit smaller than any entry still reads the first one.
  auto one = js->read(s.name, s.subject, 9, 100, 1);
  REQUIRE(one.ok());
  REQUIRE(one->size() == 1);
  CHECK(one->front().data == "entry 9");
}

TEST_CASE("JetStream: a read with a byte limit stays within it, a small first entry or a large one", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  const auto s = spec("BYTES");
  REQUIRE(js->ensure_stream(s).ok());
  // A 5-byte entry (as a marker is small), then 20 of 1,000 bytes.
  std::vector<std::string> data{"small"};
  for (int i = 0; i < 20; ++i) data.push_back(std::string(1000, static_cast<char>('a' + i)));
  Answers answers(data.size());
  for (std::size_t i = 0; i < data.size(); ++i)
    js->publish(s.subject, data[i], "b" + std::to_string(i), i, 5s, answers.slot(i));
  REQUIRE(answers.wait_all());
  for (std::size_t i = 0; i < data.size(); ++i) REQUIRE(answers.at(i).outcome == Outcome::kStored);
  auto bytes_of = [](const std::vector<im::cluster::Entry>& entries) {
    std::size_t n = 0;
    for (const auto& e : entries) n += e.data.size();
    return n;
  };
  auto capped = js->read(s.name, s.subject, 1, 100, 3500);
  REQUIRE(capped.ok());
  CHECK(bytes_of(*capped) <= 3500);
  CHECK(capped->size() >= 3);  // room for at least two of the large ones
  // Read on in such steps, every entry comes once, in order.
  std::vector<im::cluster::Entry> all;
  for (int reads = 0; reads < 50 && all.size() < data.size(); ++reads) {
    auto r = js->read(s.name, s.subject, all.size() + 1, 100, 2500);
    REQUIRE(r.ok());
    REQUIRE_FALSE(r->empty());
    CHECK((r->size() == 1 || bytes_of(*r) <= 2500));
    for (auto& e : *r) all.push_back(std::move(e));
  }
  REQUIRE(all.size() == data.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    CHECK(all[i].seq == i + 1);
    CHECK(all[i].data == data[i]);
  }
  // A limit below the next entry's size gives that entry alone.
  auto big = js->read(s.name, s.subject, 2, 100, 10);
  REQUIRE(big.ok());
  REQUIRE(big->size() == 1);
  CHECK(big->front().seq == 2);
}

TEST_CASE("JetStream: a retried id answers the original sequence, and a stale expectation stores nothing",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  const auto s = spec("FENCE");
  REQUIRE(js->ensure_stream(s).ok());
  CHECK(publish_sync(*js, s, "a", "w:1:1", 0).outcome == Outcome::kStored);
  CHECK(publish_sync(*js, s, "b", "w:1:2", 1).outcome == Outcome::kStored);

  // The same id again (an ambiguous timeout retried): the first entry's seq.
  auto again = publish_sync(*js, s, "b", "w:1:2", 1);
  CHECK(again.outcome == Outcome::kDuplicate);
  CHECK(again.seq == 2);

  // Another writer that still believes the stream ends at 1.
  auto stale = publish_sync(*js, s, "c", "w:2:2", 1);
  CHECK(stale.outcome == Outcome::kWrongLastSequence);
  // Nor does an empty stream's expectation (0) pass.
  CHECK(publish_sync(*js, s, "d", "w:3:1", 0).outcome == Outcome::kWrongLastSequence);
  auto state = js->stream_state(s.name);
  REQUIRE(state.ok());
  CHECK(state->last_seq == 2);

  // A pipelined chain behind a refused entry is refused whole: every later
  // expectation is stale too.
  Answers chain(3);
  js->publish(s.subject, "x", "w:2:3", 1, 5s, chain.slot(0));
  js->publish(s.subject, "y", "w:2:4", 3, 5s, chain.slot(1));
  js->publish(s.subject, "z", "w:2:5", 4, 5s, chain.slot(2));
  REQUIRE(chain.wait_all());
  for (std::size_t i = 0; i < 3; ++i) CHECK(chain.at(i).outcome == Outcome::kWrongLastSequence);
  state = js->stream_state(s.name);
  REQUIRE(state.ok());
  CHECK(state->last_seq == 2);
}

TEST_CASE("JetStream: a full stream refuses a publish and keeps what it holds", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  const auto s = spec("FULL", 64 * 1024);
  REQUIRE(js->ensure_stream(s).ok());
  const std::string body(1000, 'x');
  std::uint64_t last = 0;
  Published refused;
  for (int i = 1; i <= 200; ++i) {  // 64 KiB holds far fewer than 200 KB
    auto p = publish_sync(*js, s, body, "w:1:" + std::to_string(i), last);
    if (p.outcome != Outcome::kStored) {
      refused = p;
      break;
    }
    last = p.seq;
  }
  INFO(refused.error);
  CHECK(refused.outcome == Outcome::kFull);
  REQUIRE(last > 10);
  auto state = js->stream_state(s.name);
  REQUIRE(state.ok());
  CHECK(state->last_seq == last);
  CHECK(state->first_seq == 1);  // nothing old was dropped to make room
  auto all = js->read(s.name, s.subject, 1, 1000);
  REQUIRE(all.ok());
  CHECK(all->size() == last);
}

TEST_CASE("JetStream: a publish nobody can store is answered once, as failed", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  const auto s = spec("NOSTREAM");  // never created
  auto p = publish_sync(*js, s, "a", "w:1:1", 0, 2s);
  CHECK((p.outcome == Outcome::kFailed || p.outcome == Outcome::kTimeout));
  CHECK(js->pending() == 0);
  CHECK(js->stream_state(s.name).error().code == im::StatusCode::kNotFound);
}

TEST_CASE("JetStream: ensure_stream refuses a stream of another layout and updates the limits of its own",
          "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  auto s = spec("LAYOUT");
  REQUIRE(js->ensure_stream(s).ok());
  s.max_bytes = 1 << 20;
  auto updated = js->ensure_stream(s);
  REQUIRE(updated.ok());
  CHECK(updated->max_bytes == 1 << 20);
  auto other = spec("LAYOUT");
  other.subject = "im.test.other";
  auto refused = js->ensure_stream(other);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("another layout") != std::string::npos);
  // Removed with its entries; removing what is gone is not an error.
  REQUIRE(js->delete_stream("LAYOUT").ok());
  CHECK(js->stream_state("LAYOUT").error().code == im::StatusCode::kNotFound);
  CHECK(js->delete_stream("LAYOUT").ok());
  CHECK(js->ensure_stream(other).ok());
}

TEST_CASE("JetStream: after kill -9 of the stream's leader a new leader stores the chain on", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  const auto s = spec("FAILOVER");
  REQUIRE(js->ensure_stream(s).ok());
  publish_chain(*js, s, 50, [](std::uint64_t i) { return "a" + std::to_string(i); });
  const std::uint64_t last = 50;
  int leader = 0;
  REQUIRE(im::test::wait_until([&] { return (leader = cluster.leader_of(s.name)) != 0; }, 10s));
  cluster.kill9(leader);
  // Until a new leader serves, a publish times out or fails; the writer
  // retries the same id, so an entry stored before its answer was lost is
  // not stored twice (bounded: 30 s).
  const int next = 51;
  Published p;
  std::vector<std::string> seen;
  const bool served = im::test::wait_until(
      [&] {
        p = publish_sync(*js, s, "a" + std::to_string(next), "w:1:" + std::to_string(next), last, 1s);
        if (p.outcome == Outcome::kStored || p.outcome == Outcome::kDuplicate) return true;
        if (seen.size() < 20) seen.push_back(std::string(im::cluster::to_string(p.outcome)) + ": " + p.error);
        CHECK((p.outcome == Outcome::kTimeout || p.outcome == Outcome::kFailed));
        return false;
      },
      30s, 200ms);
  for (const auto& e : seen) UNSCOPED_INFO(e);
  REQUIRE(served);
  CHECK(p.seq == last + 1);
  // A read makes a consumer, which needs the cluster's meta leader: if the
  // killed node held that role too, reads fail until a new one is elected.
  im::Result<std::vector<Entry>> all = im::make_error(im::StatusCode::kUnavailable, "not read");
  CHECK(im::test::wait_until([&] { return (all = js->read(s.name, s.subject, 1, 1000)).ok(); }, 30s, 200ms));
  INFO((all.ok() ? "" : all.error().message));
  REQUIRE(all.ok());
  REQUIRE(all->size() == 51);
  for (std::size_t i = 0; i < all->size(); ++i) CHECK((*all)[i].data == "a" + std::to_string(i + 1));
  cluster.restart(leader);
}

TEST_CASE("JetStream: a stream's creation time and entries are the same after every NATS server is killed and started",
          "[cluster]") {
  // A snapshot's manifest names each stream by its creation time (a
  // deleted and remade stream is another one): a restart of the whole
  // NATS cluster must not look like a remake.
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  const auto s = spec("RESTART");
  auto made = js->ensure_stream(s);
  REQUIRE(made.ok());
  REQUIRE(made->created_ns > 0);
  publish_chain(*js, s, 5, [](std::uint64_t i) { return "e" + std::to_string(i); });
  for (int node = 1; node <= cluster.nodes(); ++node) cluster.kill9(node);
  cluster.restart_all();
  // Reads need a meta leader again: bounded, 30 s.
  im::Result<im::cluster::StreamState> state = im::make_error(im::StatusCode::kUnavailable, "not read");
  CHECK(im::test::wait_until([&] { return (state = js->stream_state(s.name)).ok(); }, 30s, 200ms));
  INFO((state.ok() ? "" : state.error().message));
  REQUIRE(state.ok());
  CHECK(state->created_ns == made->created_ns);
  CHECK(state->last_seq == 5);
  // As a start sees it: ensure_stream finds the same stream, and the chain goes on.
  auto again = js->ensure_stream(s);
  REQUIRE(again.ok());
  CHECK(again->created_ns == made->created_ns);
  Published p;
  CHECK(im::test::wait_until(
      [&] {
        p = publish_sync(*js, s, "e6", "w:1:6", 5, 1s);
        return p.outcome == Outcome::kStored || p.outcome == Outcome::kDuplicate;
      },
      30s, 200ms));
  CHECK(p.seq == 6);
}

TEST_CASE("JetStream: a purge keeps the entries from a sequence on, and the chain goes on after it", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  const auto s = spec("PURGE");
  auto made = js->ensure_stream(s);
  REQUIRE(made.ok());
  CHECK(made->created_ns > 0);
  publish_chain(*js, s, 10, [](std::uint64_t i) { return "e" + std::to_string(i); });
  REQUIRE(js->purge(s.name, 7).ok());
  auto state = js->stream_state(s.name);
  REQUIRE(state.ok());
  CHECK(state->first_seq == 7);
  CHECK(state->last_seq == 10);
  CHECK(state->messages == 4);
  CHECK(state->created_ns == made->created_ns);
  // A stream's creation time names it across updates of its limits too
  // (a start applies the configured ones).
  auto updated = js->ensure_stream(spec("PURGE", 1 << 20));
  REQUIRE(updated.ok());
  CHECK(updated->max_bytes == 1 << 20);
  CHECK(updated->created_ns == made->created_ns);
  auto rest = js->read(s.name, s.subject, 1, 100);
  REQUIRE(rest.ok());
  REQUIRE(rest->size() == 4);
  CHECK(rest->front().seq == 7);
  CHECK(rest->front().data == "e7");
  // The expected-sequence chain is unbroken by the purge.
  CHECK(publish_sync(*js, s, "e11", "w:1:11", 10).seq == 11);
  CHECK(publish_sync(*js, s, "x", "w:2:1", 6).outcome == Outcome::kWrongLastSequence);

  // Past the end: empty, and the next entry still numbered on.
  REQUIRE(js->purge(s.name, 12).ok());
  state = js->stream_state(s.name);
  REQUIRE(state.ok());
  CHECK(state->messages == 0);
  CHECK(state->last_seq == 11);
  CHECK(state->first_seq == 12);
  auto none = js->read(s.name, s.subject, 1, 100);
  REQUIRE(none.ok());
  CHECK(none->empty());
  CHECK(publish_sync(*js, s, "e12", "w:1:12", 11).seq == 12);
}

TEST_CASE("JetStream: the last entry on a subject of a stream with several", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  StreamSpec s = spec("SUBJECTS");
  s.subject = "im.test.subjects.*";
  REQUIRE(js->ensure_stream(s).ok());
  auto none = js->last_on_subject(s.name, "im.test.subjects.m");
  REQUIRE(none.ok());
  CHECK(!none->has_value());
  auto put = [&](const std::string& subject, const std::string& data, std::uint64_t expect) {
    Answers a(1);
    js->publish(subject, data, data, expect, 5s, a.slot(0));
    REQUIRE(a.wait_all());
    return a.at(0);
  };
  CHECK(put("im.test.subjects.c", "c1", 0).seq == 1);
  CHECK(put("im.test.subjects.m", "m1", 1).seq == 2);
  CHECK(put("im.test.subjects.c", "c2", 2).seq == 3);
  auto last = js->last_on_subject(s.name, "im.test.subjects.m");
  REQUIRE(last.ok());
  REQUIRE(last->has_value());
  CHECK((*last)->seq == 2);
  CHECK((*last)->data == "m1");
  // A read filtered by one subject skips the other's entries.
  auto chunks = js->read(s.name, "im.test.subjects.c", 1, 10);
  REQUIRE(chunks.ok());
  REQUIRE(chunks->size() == 2);
  CHECK(chunks->back().seq == 3);
  auto held = js->subjects(s.name, "im.test.subjects.*");
  REQUIRE(held.ok());
  CHECK(*held == std::map<std::string, std::uint64_t>{{"im.test.subjects.c", 2}, {"im.test.subjects.m", 1}});
  // A purge of one subject leaves the other's entries.
  REQUIRE(js->purge(s.name, 0, "im.test.subjects.c").ok());
  auto state = js->stream_state(s.name);
  REQUIRE(state.ok());
  CHECK(state->messages == 1);
  held = js->subjects(s.name, "im.test.subjects.*");
  REQUIRE(held.ok());
  CHECK(*held == std::map<std::string, std::uint64_t>{{"im.test.subjects.m", 1}});
  CHECK(put("im.test.subjects.c", "c3", 3).seq == 4);
}

TEST_CASE("JetStream: ensure_stream refuses to lower a stream's limit below what it holds", "[cluster]") {
  im::test::NatsCluster cluster;
  auto js = cluster.connect();
  REQUIRE(js->ensure_stream(spec("SHRINK", 1 << 20)).ok());
  const std::string body(1000, 'x');
  publish_chain(*js, spec("SHRINK"), 10, [&](std::uint64_t) { return body; });
  auto refused = js->ensure_stream(spec("SHRINK", 4096));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("holds") != std::string::npos);
  auto state = js->stream_state("SHRINK");
  REQUIRE(state.ok());
  CHECK(state->first_seq == 1);  // nothing dropped
  CHECK(state->messages == 10);
  CHECK(state->max_bytes == 1 << 20);
  // Above what it holds, a lower limit is applied.
  auto lowered = js->ensure_stream(spec("SHRINK", 512 << 10));
  REQUIRE(lowered.ok());
  CHECK(lowered->max_bytes == 512 << 10);
}
