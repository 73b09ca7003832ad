#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "core/small_map.h"

using im::core::SmallMap;

TEST_CASE("small map: find, add, erase, and every entry seen once") {
  SmallMap<int> m;
  CHECK(m.empty());
  CHECK(m.find("a") == m.end());
  m.emplace("a", 1);
  m.emplace("b", 2);
  m["c"] = 3;
  m["a"] += 10;  // an existing key is not added again
  REQUIRE(m.size() == 3);
  CHECK(m.find("a")->second == 11);
  CHECK(m.find("c")->second == 3);

  m.erase(m.find("a"));  // the last entry takes its place
  CHECK(m.size() == 2);
  CHECK(m.find("a") == m.end());
  CHECK(m.find("b")->second == 2);
  CHECK(m.find("c")->second == 3);
  m.erase(m.find("c"));  // the last entry itself
  CHECK(m.size() == 1);
  CHECK(m.find("b")->second == 2);

  for (int i = 0; i < 100; ++i) m.emplace("k" + std::to_string(i), i);
  std::set<std::string> seen;
  for (const auto& [key, value] : m) CHECK(seen.insert(key).second);
  CHECK(seen.size() == 101);
  CHECK(m.find("k99")->second == 99);
}
