// core/seq_table: open addressing with backward-shift deletion, checked
// against std::unordered_map, with keys chosen to collide on the low bits.

#include <algorithm>
#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "core/seq_table.h"

using im::core::SeqTable;

namespace {

// Well-mixed keys, as RecentSends' hashes are (splitmix64's finalizer).
std::uint64_t key(std::uint64_t i) {
  std::uint64_t x = i + 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

TEST_CASE("seq table: insert, find, erase, the held seq kept") {
  SeqTable t;
  CHECK(t.find(42) == 0);
  t.erase(42);  // nothing held: nothing happens
  CHECK(t.insert(42, 7) == 0);
  CHECK(t.insert(42, 9) == 7);  // held: unchanged
  CHECK(t.find(42) == 7);
  CHECK(t.insert(0, 3) == 0);  // a hash of 0 is a key like any other
  CHECK(t.find(0) == 3);
  CHECK(t.size() == 2);
  t.erase(42);
  CHECK(t.find(42) == 0);
  CHECK(t.find(0) == 3);
  t.erase(0);
  CHECK(t.empty());
}

TEST_CASE("seq table: runs that wrap around the end keep every key after deletions") {
  SeqTable t;
  // Eight slots at first: keys whose low bits are 7 fill 7, then wrap to 0, 1...
  for (std::uint64_t k = 0; k < 5; ++k) CHECK(t.insert((k << 3) | 7, k + 1) == 0);
  CHECK(t.capacity() == 8);
  t.erase(7);  // the head of the run, in slot 7: the others shift back over the end
  for (std::uint64_t k = 1; k < 5; ++k) CHECK(t.find((k << 3) | 7) == k + 1);
  t.erase((2 << 3) | 7);
  for (std::uint64_t k : {1, 3, 4}) CHECK(t.find((k << 3) | 7) == k + 1);
  CHECK(t.find((2 << 3) | 7) == 0);
}

TEST_CASE("seq table: a run across the end stays put where its keys are home, and shifts back where not") {
  SeqTable t;
  // Eight slots: homes 6, 7, 7 and 0 sit in slots 6, 7, 0 and 1.
  CHECK(t.insert(6, 1) == 0);
  CHECK(t.insert(7, 2) == 0);
  CHECK(t.insert(15, 3) == 0);
  CHECK(t.insert(8, 4) == 0);
  REQUIRE(t.capacity() == 8);
  t.erase(6);  // every later key is at or past its home: none moves
  CHECK(t.find(7) == 2);
  CHECK(t.find(15) == 3);
  CHECK(t.find(8) == 4);
  t.erase(7);  // 15 (home 7) moves back over the end, then 8 (home 0) into slot 0
  CHECK(t.find(15) == 3);
  CHECK(t.find(8) == 4);
  CHECK(t.find(7) == 0);
  CHECK(t.size() == 2);
}

TEST_CASE("seq table: during a resize, erased keys stay gone and re-inserted ones hold their new seq") {
  SeqTable t;
  std::uint64_t n = 0;
  // Up to the first doubling that moves step by step (past 64 slots).
  while (!t.resizing()) {
    REQUIRE(t.insert(key(n), n + 1) == 0);
    REQUIRE(++n < 10000);
  }
  REQUIRE(t.capacity() == 256);
  std::vector<std::uint64_t> expected(n);
  for (std::uint64_t i = 0; i < n; ++i) expected[i] = i + 1;
  auto all_as_expected = [&] {
    for (std::uint64_t i = 0; i < n; ++i)
      if (t.find(key(i)) != expected[i]) return false;
    return true;
  };
  // Each operation moves 16 of the old table's 128 slots: keys leave it
  // while others are still only there. Every even key erased, every fourth
  // put back with another seq, each state checked whole.
  int ops_while_moving = 0;
  for (std::uint64_t i = 0; i < n; i += 2) {
    ops_while_moving += t.resizing() ? 1 : 0;
    t.erase(key(i));
    expected[i] = 0;
    REQUIRE(all_as_expected());
    if (i % 4 != 0) continue;
    ops_while_moving += t.resizing() ? 1 : 0;
    REQUIRE(t.insert(key(i), 100000 + i) == 0);
    expected[i] = 100000 + i;
    REQUIRE(all_as_expected());
  }
  CHECK(ops_while_moving >= 5);
  CHECK_FALSE(t.resizing());  // 128 slots moved in 8 operations
  CHECK(t.size() ==
        static_cast<std::size_t>(std::count_if(expected.begin(), expected.end(), [](auto s) { return s; })));
  CHECK(t.capacity() == 256);
}

TEST_CASE("seq table: erasing a key not held, or erased already, during a move changes nothing") {
  SeqTable t;
  std::uint64_t n = 0;
  while (!t.resizing()) REQUIRE(t.insert(key(n++), 5) == 0);
  const std::size_t held = t.size();
  t.erase(key(n + 7));  // never held
  CHECK(t.size() == held);
  REQUIRE(t.resizing());  // 16 of 128 slots moved
  t.erase(key(0));
  t.erase(key(0));  // marked gone in the old table (and out of the new one, if moved)
  t.erase(key(0));
  CHECK(t.size() == held - 1);
  CHECK(t.find(key(0)) == 0);
  for (std::uint64_t i = 1; i < n; ++i) REQUIRE(t.find(key(i)) == 5);
}

TEST_CASE("seq table: tables filled alike double at loads from 1/2 to 3/4, picked by their first key") {
  // 64 tables, each filled with keys of its own, one key at a time, as W2's
  // senders did: they must not all double at the same count.
  std::set<std::size_t> counts;
  for (std::uint64_t table = 0; table < 64; ++table) {
    SeqTable t;
    std::uint64_t n = 0;
    while (t.capacity() < 256) {
      REQUIRE(t.insert(key(table * 1000 + n), n + 1) == 0);
      REQUIRE(t.size() * 4 <= t.capacity() * 3);
      REQUIRE(++n < 1000);
    }
    counts.insert(n);  // the insert that made it double from 128 slots
    CHECK(n >= 65);
    CHECK(n <= 97);
  }
  CHECK(counts.size() >= 3);
  // The same keys give the same table: a run can be replayed.
  auto doubled_at = [] {
    SeqTable t;
    std::uint64_t n = 0;
    while (t.capacity() < 256) REQUIRE(t.insert(key(n++), 1) == 0);
    return n;
  };
  CHECK(doubled_at() == doubled_at());
}

TEST_CASE("seq table: matches std::unordered_map over random inserts and erases, growing and shrinking") {
  std::mt19937_64 rng(12345);
  SeqTable t;
  std::unordered_map<std::uint64_t, std::uint64_t> ref;
  std::vector<std::uint64_t> keys;
  std::size_t largest = 0;
  int shrinks = 0;
  int steps_resizing = 0;
  for (int step = 0; step < 200000; ++step) {
    // Low bits 0xFF8 to 0x007: long runs that cross the end of every table
    // up to 8,192 slots. Phases of mostly inserts, then mostly erases, so
    // the table grows and shrinks several times.
    const std::uint64_t key = (rng() & ~std::uint64_t{0xFFF}) | ((0xFF8 + rng() % 16) & 0xFFF);
    const int op = static_cast<int>(rng() % 10);
    const bool growing = (step / 20000) % 2 == 0;
    if (op < (growing ? 6 : 2) || keys.empty()) {
      const std::uint64_t seq = step + 1;
      auto [it, added] = ref.try_emplace(key, seq);
      REQUIRE(t.insert(key, seq) == (added ? 0 : it->second));
      if (added) keys.push_back(key);
    } else if (op < 9) {  // erase, now and then one not held
      if (op == 8 && rng() % 4 == 0) {
        const std::uint64_t absent = rng() | 1;
        if (!ref.contains(absent)) t.erase(absent);
        REQUIRE(t.size() == ref.size());
      }
      const std::size_t i = rng() % keys.size();
      t.erase(keys[i]);
      ref.erase(keys[i]);
      keys[i] = keys.back();
      keys.pop_back();
    } else {
      const std::uint64_t probe = keys.empty() ? key : keys[rng() % keys.size()];
      auto it = ref.find(probe);
      REQUIRE(t.find(probe) == (it == ref.end() ? 0 : it->second));
    }
    REQUIRE(t.size() == ref.size());
    steps_resizing += t.resizing() ? 1 : 0;
    if (t.capacity() < largest && t.capacity() * 2 == largest) ++shrinks;
    largest = std::max(largest, t.capacity());
    if (step % 10000 == 9999)
      for (const auto& [k, v] : ref) REQUIRE(t.find(k) == v);
  }
  CHECK(shrinks > 0);  // in an erase phase, before the drain
  CHECK(steps_resizing > 1000);  // lookups, inserts and erases met tables being moved from
  // Drain: every key still found until erased, and the table shrinks back.
  for (std::uint64_t k : keys) {
    REQUIRE(t.find(k) == ref[k]);
    t.erase(k);
    REQUIRE(t.find(k) == 0);
  }
  CHECK(t.empty());
  CHECK(largest > 64);
  CHECK(t.capacity() <= 16);
}
