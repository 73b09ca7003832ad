#include <catch2/catch.hpp>

#include "core/message_search.h"

using im::core::SearchSlots;

TEST_CASE("a user holds at most kPerUser search slots, each given back when its last copy goes") {
  SearchSlots slots;
  std::vector<std::shared_ptr<void>> held;
  for (std::uint32_t i = 0; i < SearchSlots::kPerUser; ++i) {
    held.push_back(slots.take("alice"));
    REQUIRE(held.back());
  }
  CHECK_FALSE(slots.take("alice"));
  CHECK(slots.take("bob"));  // another user's are counted apart (and this one is given back at once)

  auto copy = held.back();  // a job and its queue entry share one slot
  held.pop_back();
  CHECK_FALSE(slots.take("alice"));
  copy.reset();
  auto again = slots.take("alice");
  CHECK(again);
  CHECK_FALSE(slots.take("alice"));

  held.clear();
  again.reset();
  for (std::uint32_t i = 0; i < SearchSlots::kPerUser; ++i) CHECK(slots.take("alice"));  // each dropped at once
}
