// core/send_dedupe: a retry of a SEND still being stored waits for the
// original's answer, within bounds of count and time.

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/send_dedupe.h"

using im::core::SendDedupe;
using im::core::SendJob;
using Admit = SendDedupe::Admit;
using Clock = std::chrono::steady_clock;
using Jobs = std::vector<std::shared_ptr<SendJob>>;

namespace {

const Clock::time_point kNow = Clock::now();
constexpr auto kOld = SendDedupe::kMaxWait + std::chrono::seconds(1);

std::shared_ptr<SendJob> job(const std::string& from, const std::string& client_msg_id,
                             Clock::time_point started = kNow) {
  auto j = std::make_shared<SendJob>();
  j->msg.set_from(from);
  j->msg.set_client_msg_id(client_msg_id);
  j->started = started;
  return j;
}

bool holds(const Jobs& jobs, const std::shared_ptr<SendJob>& j) {
  for (const auto& x : jobs)
    if (x == j) return true;
  return false;
}

}  // namespace

// ---------------------------------------------------------------- admit

TEST_CASE("dedupe: the first SEND of an id is kFirst, a retry while it is stored is kParked") {
  SendDedupe d;
  CHECK(d.empty());
  CHECK(d.admit(job("alice", "m1")) == Admit::kFirst);
  CHECK_FALSE(d.empty());
  CHECK(d.admit(job("alice", "m1")) == Admit::kParked);
}

TEST_CASE("dedupe: the id is per sender, so other ids and other senders are each kFirst") {
  SendDedupe d;
  CHECK(d.admit(job("alice", "m1")) == Admit::kFirst);
  CHECK(d.admit(job("alice", "m2")) == Admit::kFirst);
  CHECK(d.admit(job("bob", "m1")) == Admit::kFirst);
}

TEST_CASE("dedupe: the sender and the id stay apart: (ab, c) and (a, bc) are different SENDs") {
  SendDedupe d;
  CHECK(d.admit(job("ab", "c")) == Admit::kFirst);
  CHECK(d.admit(job("a", "bc")) == Admit::kFirst);
}

TEST_CASE("dedupe: at most kMaxParked retries wait, one more is kRefused") {
  SendDedupe d;
  REQUIRE(d.admit(job("alice", "m1")) == Admit::kFirst);
  for (std::size_t i = 0; i < SendDedupe::kMaxParked; ++i) CHECK(d.admit(job("alice", "m1")) == Admit::kParked);
  CHECK(d.admit(job("alice", "m1")) == Admit::kRefused);
  CHECK(d.admit(job("alice", "m2")) == Admit::kFirst);  // other ids are not held back
}

// ---------------------------------------------------------------- finish

TEST_CASE("dedupe: finish returns the parked retries in order and forgets the id") {
  SendDedupe d;
  auto original = job("alice", "m1");
  auto retry1 = job("alice", "m1");
  auto retry2 = job("alice", "m1");
  REQUIRE(d.admit(original) == Admit::kFirst);
  REQUIRE(d.admit(retry1) == Admit::kParked);
  REQUIRE(d.admit(retry2) == Admit::kParked);
  CHECK(d.finish(*original) == Jobs{retry1, retry2});
  CHECK(d.empty());
  CHECK(d.admit(job("alice", "m1")) == Admit::kFirst);
}

TEST_CASE("dedupe: finish with no retries returns none") {
  SendDedupe d;
  auto original = job("alice", "m1");
  REQUIRE(d.admit(original) == Admit::kFirst);
  CHECK(d.finish(*original).empty());
  CHECK(d.empty());
}

TEST_CASE("dedupe: finish with a job that is not the original returns nothing and keeps the id") {
  SendDedupe d;
  auto original = job("alice", "m1");
  auto retry = job("alice", "m1");
  REQUIRE(d.admit(original) == Admit::kFirst);
  REQUIRE(d.admit(retry) == Admit::kParked);
  CHECK(d.finish(*retry).empty());
  CHECK(d.finish(*job("alice", "m1")).empty());
  CHECK(d.finish(*job("alice", "unknown")).empty());
  CHECK(d.admit(job("alice", "m1")) == Admit::kParked);  // still under way
  CHECK(d.finish(*original).size() == 2);
}

// ---------------------------------------------------------------- overdue

TEST_CASE("dedupe: nothing is overdue before kMaxWait") {
  SendDedupe d;
  REQUIRE(d.admit(job("alice", "m1")) == Admit::kFirst);
  REQUIRE(d.admit(job("alice", "m1")) == Admit::kParked);
  CHECK(d.overdue(kNow + SendDedupe::kMaxWait).empty());
}

TEST_CASE("dedupe: an unanswered original past kMaxWait is overdue, and its id stays so retries still wait") {
  SendDedupe d;
  auto original = job("alice", "m1", kNow - kOld);
  REQUIRE(d.admit(original) == Admit::kFirst);
  CHECK(d.overdue(kNow) == Jobs{original});
  CHECK(d.admit(job("alice", "m1")) == Admit::kParked);
}

TEST_CASE("dedupe: an answered original is not overdue") {
  SendDedupe d;
  auto original = job("alice", "m1", kNow - kOld);
  REQUIRE(d.admit(original) == Admit::kFirst);
  original->answer(im::make_error(im::StatusCode::kInternal, "timed out"));
  CHECK(d.overdue(kNow).empty());
}

TEST_CASE("dedupe: parked retries past kMaxWait are overdue and stop waiting, fresh ones keep waiting") {
  SendDedupe d;
  auto original = job("alice", "m1");
  auto old_retry = job("alice", "m1", kNow - kOld);
  auto new_retry = job("alice", "m1");
  REQUIRE(d.admit(original) == Admit::kFirst);
  REQUIRE(d.admit(old_retry) == Admit::kParked);
  REQUIRE(d.admit(new_retry) == Admit::kParked);
  CHECK(d.overdue(kNow) == Jobs{old_retry});
  CHECK(d.overdue(kNow).empty());  // returned once
  CHECK(d.finish(*original) == Jobs{new_retry});
}

TEST_CASE("dedupe: overdue retries free their places, so new retries can park again") {
  SendDedupe d;
  auto original = job("alice", "m1");
  REQUIRE(d.admit(original) == Admit::kFirst);
  for (std::size_t i = 0; i < SendDedupe::kMaxParked; ++i)
    REQUIRE(d.admit(job("alice", "m1", kNow - kOld)) == Admit::kParked);
  REQUIRE(d.admit(job("alice", "m1")) == Admit::kRefused);
  CHECK(d.overdue(kNow).size() == SendDedupe::kMaxParked);
  CHECK(d.admit(job("alice", "m1")) == Admit::kParked);
}

TEST_CASE("dedupe: overdue gathers originals and retries of every id") {
  SendDedupe d;
  auto a = job("alice", "m1", kNow - kOld);
  auto a_retry = job("alice", "m1", kNow - kOld);
  auto b = job("bob", "m9", kNow - kOld);
  REQUIRE(d.admit(a) == Admit::kFirst);
  REQUIRE(d.admit(a_retry) == Admit::kParked);
  REQUIRE(d.admit(b) == Admit::kFirst);
  const Jobs late = d.overdue(kNow);
  CHECK(late.size() == 3);
  CHECK(holds(late, a));
  CHECK(holds(late, a_retry));
  CHECK(holds(late, b));
}

// ---------------------------------------------------------------- SendJob::answer

TEST_CASE("send job: answer calls done once, later answers are ignored") {
  SendJob j;
  int calls = 0;
  std::uint64_t msg_id = 0;
  j.done = [&](const im::Result<im::v1::SendResp>& r) {
    ++calls;
    if (r) msg_id = r->msg_id();
  };
  im::v1::SendResp first;
  first.set_msg_id(7);
  j.answer(first);
  j.answer(im::make_error(im::StatusCode::kInternal, "late"));
  im::v1::SendResp second;
  second.set_msg_id(8);
  j.answer(second);
  CHECK(calls == 1);
  CHECK(msg_id == 7);
  CHECK(j.answered);
}

TEST_CASE("send job: answer without a done callback only marks it answered") {
  SendJob j;
  j.answer(im::v1::SendResp{});
  CHECK(j.answered);
}
