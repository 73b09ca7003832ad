// core/recent_sends: the dedupe window in memory; lookups, the sender's
// rebuilt mark, expiry, the capacity's spill, and a shared hash.

#include <catch2/catch.hpp>
#include <vector>

#include "core/recent_sends.h"

using im::core::RecentSends;
using Spilled = std::vector<RecentSends::Spilled>;

namespace {

constexpr std::int64_t kWindow = 60'000;
constexpr std::int64_t kT0 = 1'700'000'000'000;

std::uint64_t h(const char* id) {
  return RecentSends::hash_of(id);
}

}  // namespace

TEST_CASE("recent sends: found by sender and id, loaded only once marked") {
  RecentSends r(100, kWindow);
  Spilled spilled;
  CHECK_FALSE(r.find("alice", h("m1")).loaded);
  r.add("alice", h("m1"), 7, kT0, spilled);
  auto f = r.find("alice", h("m1"));
  CHECK(f.inbox_seq == 7);
  CHECK_FALSE(f.loaded);  // added by a commit, not rebuilt: the rest of its window is unknown
  r.mark_loaded("alice");
  CHECK(r.find("alice", h("m1")).loaded);
  CHECK(r.find("alice", h("m2")).loaded);
  CHECK(r.find("alice", h("m2")).inbox_seq == 0);
  CHECK(r.find("bob", h("m1")).inbox_seq == 0);  // per sender
  CHECK_FALSE(r.find("bob", h("m1")).loaded);
  CHECK(spilled.empty());
  CHECK(r.size() == 1);
}

TEST_CASE("recent sends: the same row added twice is one entry, another row with the same hash replaces it") {
  RecentSends r(100, kWindow);
  Spilled spilled;
  r.add("alice", h("m1"), 7, kT0, spilled);
  r.add("alice", h("m1"), 7, kT0, spilled);  // a rebuild meeting a committed entry
  CHECK(r.size() == 1);
  r.add("alice", h("m1"), 9, kT0 + 5, spilled);  // two ids sharing a hash: the newer row is the one checked
  CHECK(r.size() == 1);
  CHECK(r.find("alice", h("m1")).inbox_seq == 9);
  // The replaced entry's place in the queue expires nothing of the newer one.
  r.expire(kT0 + kWindow + 1);
  CHECK(r.find("alice", h("m1")).inbox_seq == 9);
  r.expire(kT0 + 5 + kWindow + 1);
  CHECK(r.size() == 0);
}

TEST_CASE("recent sends: entries leave after the window, and a sender left with none is forgotten") {
  RecentSends r(100, kWindow);
  Spilled spilled;
  r.mark_loaded("alice");
  r.add("alice", h("m1"), 1, kT0, spilled);
  r.add("alice", h("m2"), 2, kT0 + 1000, spilled);
  r.expire(kT0 + kWindow);  // not older than the window yet
  CHECK(r.size() == 2);
  r.expire(kT0 + kWindow + 1);
  CHECK(r.find("alice", h("m1")).inbox_seq == 0);
  CHECK(r.find("alice", h("m2")).inbox_seq == 2);
  CHECK(r.find("alice", h("m2")).loaded);
  r.expire(kT0 + 1000 + kWindow + 1);
  CHECK(r.size() == 0);
  CHECK(r.senders() == 0);
  CHECK_FALSE(r.find("alice", h("m2")).loaded);  // its next SEND rebuilds it
}

TEST_CASE("recent sends: past the capacity the oldest are spilled, their sender still loaded") {
  RecentSends r(3, kWindow);
  Spilled spilled;
  r.mark_loaded("alice");
  r.mark_loaded("bob");
  r.add("alice", h("a1"), 1, kT0, spilled);
  r.add("bob", h("b1"), 1, kT0 + 1, spilled);
  r.add("alice", h("a2"), 2, kT0 + 2, spilled);
  CHECK(spilled.empty());
  r.add("alice", h("a3"), 3, kT0 + 3, spilled);
  r.add("bob", h("b2"), 2, kT0 + 4, spilled);
  REQUIRE(spilled.size() == 2);
  CHECK(spilled[0].uid == "alice");
  CHECK(spilled[0].inbox_seq == 1);
  CHECK(spilled[1].uid == "bob");
  CHECK(spilled[1].inbox_seq == 1);
  CHECK(r.size() == 3);
  CHECK(r.find("alice", h("a1")).inbox_seq == 0);
  // bob has one entry left, and both stay loaded: a miss in memory is then
  // answered by the dedupe rows the spill wrote.
  CHECK(r.find("bob", h("b1")).loaded);
  CHECK(r.find("alice", h("a3")).inbox_seq == 3);
}

TEST_CASE("recent sends: a sender whose every entry was spilled stays loaded") {
  RecentSends r(1, kWindow);
  Spilled spilled;
  r.mark_loaded("alice");
  r.add("alice", h("a1"), 1, kT0, spilled);
  r.add("bob", h("b1"), 1, kT0 + 1, spilled);
  REQUIRE(spilled.size() == 1);
  CHECK(spilled[0].uid == "alice");
  auto f = r.find("alice", h("a1"));
  CHECK(f.loaded);
  CHECK(f.inbox_seq == 0);
  CHECK(r.senders() == 2);
}

TEST_CASE("recent sends: capacity 0 or no window holds nothing") {
  Spilled spilled;
  RecentSends off(0, kWindow);
  CHECK_FALSE(off.enabled());
  off.add("alice", h("m1"), 1, kT0, spilled);
  CHECK(off.size() == 0);
  RecentSends no_window(100, 0);
  CHECK_FALSE(no_window.enabled());
  CHECK(spilled.empty());
}
