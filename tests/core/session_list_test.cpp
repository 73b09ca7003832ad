#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <vector>

#include "core/session_list.h"

using im::core::SessionList;
using im::core::SessionRef;

namespace {

std::vector<std::uint64_t> ids(const SessionList& l) {
  std::vector<std::uint64_t> out;
  for (const SessionRef& s : l) out.push_back(s.session_id);
  return out;
}

SessionRef ref(std::uint64_t id) {
  return SessionRef{{}, id, static_cast<std::uint8_t>(id % 7)};
}

}  // namespace

TEST_CASE("session list: one inline, more in a vector, back to inline, in order") {
  SessionList l;
  CHECK(l.empty());
  CHECK(l.begin() == l.end());
  l.push_back(ref(5));
  CHECK(ids(l) == std::vector<std::uint64_t>{5});
  l.push_back(ref(6));
  l.push_back(ref(7));
  CHECK(ids(l) == std::vector<std::uint64_t>{5, 6, 7});
  l.erase(l.begin() + 1);
  CHECK(ids(l) == std::vector<std::uint64_t>{5, 7});
  l.erase(l.begin());
  CHECK(ids(l) == std::vector<std::uint64_t>{7});
  CHECK(l.size() == 1);
  l.erase(l.begin());
  CHECK(l.empty());

  l.push_back(ref(1));
  l.push_back(ref(2));
  SessionList moved = std::move(l);
  CHECK(l.empty());  // NOLINT(bugprone-use-after-move): a moved-from list is empty
  CHECK(ids(moved) == std::vector<std::uint64_t>{1, 2});
  auto taken = moved.take();
  CHECK(moved.empty());
  REQUIRE(taken.size() == 2);
  CHECK(taken[1].session_id == 2);

  moved.push_back(ref(9));
  SessionList other;
  other = std::move(moved);
  CHECK(moved.empty());  // NOLINT(bugprone-use-after-move)
  CHECK(ids(other) == std::vector<std::uint64_t>{9});
}

TEST_CASE("session list: random pushes and erases match a vector") {
  std::mt19937 rng(7);
  SessionList l;
  std::vector<std::uint64_t> want;
  std::uint64_t next = 1;
  for (int step = 0; step < 20000; ++step) {
    const auto op = rng() % 10;
    if (op < 4 && want.size() < 6) {
      l.push_back(ref(next));
      want.push_back(next++);
    } else if (op < 8 && !want.empty()) {
      const auto at = rng() % want.size();
      l.erase(l.begin() + at);
      want.erase(want.begin() + static_cast<std::ptrdiff_t>(at));
    } else if (op == 8) {
      SessionList m = std::move(l);
      l = std::move(m);
    } else {
      auto taken = l.take();
      std::vector<std::uint64_t> got;
      for (const auto& s : taken) got.push_back(s.session_id);
      REQUIRE(got == want);
      want.clear();
    }
    REQUIRE(ids(l) == want);
    REQUIRE(l.size() == want.size());
  }
}
