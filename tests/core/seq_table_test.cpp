// core/seq_table: open addressing with backward-shift deletion, checked
// against std::unordered_map, with keys chosen to collide on the low bits.

#include <algorithm>
#include <catch2/catch.hpp>
#include <random>
#include <unordered_map>
#include <vector>

#include "core/seq_table.h"

using im::core::SeqTable;

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

TEST_CASE("seq table: matches std::unordered_map over random inserts and erases, growing and shrinking") {
  std::mt19937_64 rng(12345);
  SeqTable t;
  std::unordered_map<std::uint64_t, std::uint64_t> ref;
  std::vector<std::uint64_t> keys;
  std::size_t largest = 0;
  int shrinks = 0;
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
    } else if (op < 9) {  // erase
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
    if (t.capacity() < largest && t.capacity() * 2 == largest) ++shrinks;
    largest = std::max(largest, t.capacity());
    if (step % 10000 == 9999)
      for (const auto& [k, v] : ref) REQUIRE(t.find(k) == v);
  }
  CHECK(shrinks > 0);  // in an erase phase, before the drain
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
