// core/recent_sends: the dedupe window in memory; lookups, the sender's
// rebuilt mark, a hash held by another row, expiry, room, idle senders.

#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "core/recent_sends.h"

using im::core::RecentSends;
using Added = RecentSends::Added;

namespace {

constexpr std::int64_t kWindow = 60'000;
constexpr std::int64_t kT0 = 1'700'000'000'000;

}  // namespace

TEST_CASE("recent sends: found by sender and id, loaded only once marked") {
  RecentSends r(100, kWindow);
  const auto m1 = r.hash_of("m1");
  CHECK_FALSE(r.find("alice", m1).loaded);
  CHECK(r.add("alice", m1, 7, kT0) == Added::kAdded);
  auto f = r.find("alice", m1);
  CHECK(f.inbox_seq == 7);
  CHECK_FALSE(f.loaded);  // added by a commit, not rebuilt: the rest of its window is unknown
  r.mark_loaded("alice");
  CHECK(r.find("alice", m1).loaded);
  CHECK(r.find("alice", r.hash_of("m2")).loaded);
  CHECK(r.find("alice", r.hash_of("m2")).inbox_seq == 0);
  CHECK(r.find("bob", m1).inbox_seq == 0);  // per sender
  CHECK_FALSE(r.find("bob", m1).loaded);
  CHECK(r.size() == 1);
}

TEST_CASE("recent sends: hashes are keyed per instance and spread") {
  RecentSends a(100, kWindow);
  RecentSends b(100, kWindow);
  CHECK(a.hash_of("m1") == a.hash_of("m1"));
  CHECK(a.hash_of("m1") != b.hash_of("m1"));  // another seed (a 2^-64 chance of a false failure)
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 10000; ++i) seen.insert(a.hash_of("id-" + std::to_string(i)));
  seen.insert(a.hash_of(""));
  seen.insert(a.hash_of(std::string(1, '\0')));
  seen.insert(a.hash_of(std::string(8, 'x')));
  seen.insert(a.hash_of(std::string(9, 'x')));
  CHECK(seen.size() == 10004);
}

TEST_CASE("recent sends: the same row again is known, another row with the same hash is refused") {
  RecentSends r(100, kWindow);
  const auto m1 = r.hash_of("m1");
  CHECK(r.add("alice", m1, 7, kT0) == Added::kAdded);
  CHECK(r.add("alice", m1, 7, kT0) == Added::kKnown);  // a rebuild meeting a committed entry
  CHECK(r.add("alice", m1, 9, kT0 + 5) == Added::kTaken);
  CHECK(r.size() == 1);
  CHECK(r.find("alice", m1).inbox_seq == 7);  // the first row keeps it; the caller writes a row for the other
  r.expire(kT0 + kWindow + 1);
  CHECK(r.size() == 0);
  CHECK(r.senders() == 0);
}

TEST_CASE("recent sends: entries leave after the window, and a sender left with none is forgotten") {
  RecentSends r(100, kWindow);
  r.mark_loaded("alice");
  r.add("alice", r.hash_of("m1"), 1, kT0);
  r.add("alice", r.hash_of("m2"), 2, kT0 + 1000);
  r.expire(kT0 + kWindow);  // not older than the window yet
  CHECK(r.size() == 2);
  r.expire(kT0 + kWindow + 1);
  CHECK(r.find("alice", r.hash_of("m1")).inbox_seq == 0);
  CHECK(r.find("alice", r.hash_of("m2")).inbox_seq == 2);
  CHECK(r.find("alice", r.hash_of("m2")).loaded);
  r.expire(kT0 + 1000 + kWindow + 1);
  CHECK(r.size() == 0);
  CHECK(r.senders() == 0);
  CHECK_FALSE(r.find("alice", r.hash_of("m2")).loaded);  // its next SEND rebuilds it
}

TEST_CASE("recent sends: room counts entries up to the capacity") {
  RecentSends r(3, kWindow);
  CHECK(r.room() == 3);
  CHECK(r.has_room(3));
  CHECK_FALSE(r.has_room(4));
  r.add("alice", r.hash_of("a1"), 1, kT0);
  r.add("bob", r.hash_of("b1"), 1, kT0);
  CHECK(r.has_room(1));
  CHECK_FALSE(r.has_room(2));
  r.add("alice", r.hash_of("a2"), 2, kT0);
  CHECK_FALSE(r.has_room(1));
  CHECK(r.room() == 0);
  CHECK(r.add("carol", r.hash_of("c1"), 0, kT0) == Added::kTaken);  // seq 0 is no row
  r.expire(kT0 + kWindow + 1);
  CHECK(r.has_room(3));
}

TEST_CASE("recent sends: senders without entries are forgotten once many were made, whatever the peak") {
  RecentSends r(4, kWindow);  // sweeps when a sender is made after more than 4 / 4 + 1024 = 1025 idle ones
  r.add("busy", r.hash_of("x"), 1, kT0);
  r.mark_loaded("busy");
  for (int i = 0; i < 1026; ++i) r.mark_loaded("idle-" + std::to_string(i));
  CHECK(r.senders() == 1027);
  r.mark_loaded("one-more");  // the sweep: only the sender with an entry stays, then the new one
  CHECK(r.senders() == 2);
  CHECK(r.find("busy", r.hash_of("x")).loaded);
  CHECK(r.find("one-more", r.hash_of("x")).loaded);
  CHECK_FALSE(r.find("idle-0", r.hash_of("x")).loaded);
  // A sender that gets an entry is no longer counted idle: with one of them
  // holding an entry, one more sender is made before the next sweep.
  for (int i = 0; i < 1024; ++i) r.mark_loaded("again-" + std::to_string(i));  // 1,025 idle with one-more
  r.add("again-0", r.hash_of("y"), 1, kT0);                                    // 1,024
  r.mark_loaded("later");
  r.mark_loaded("last");  // 1,026 idle
  CHECK(r.senders() == 1028);
  r.mark_loaded("final");  // swept first: busy and again-0 stay, then final
  CHECK(r.senders() == 3);
  CHECK(r.find("again-0", r.hash_of("y")).inbox_seq == 1);
}

TEST_CASE("recent sends: capacity 0 or no window is off") {
  CHECK_FALSE(RecentSends(0, kWindow).enabled());
  CHECK_FALSE(RecentSends(100, 0).enabled());
  CHECK(RecentSends(100, kWindow).enabled());
}
