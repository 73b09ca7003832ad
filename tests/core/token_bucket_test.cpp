#include <catch2/catch.hpp>

#include "core/token_bucket.h"

using im::core::TokenBucket;

TEST_CASE("the bucket allows a burst, then the rate, with the wait until the next token") {
  TokenBucket b(3);
  std::uint32_t now = 1000;
  CHECK(b.take(now, 10, 3) == 0);  // the first take refills from t=0, capped at the burst
  CHECK(b.take(now, 10, 3) == 0);
  CHECK(b.take(now, 10, 3) == 0);
  std::uint32_t wait = b.take(now, 10, 3);
  CHECK(wait > 0);
  CHECK(wait <= 100);
  CHECK(b.take(now + 100, 10, 3) == 0);
  CHECK(b.take(now + 100, 10, 3) > 0);
}

TEST_CASE("the bucket never holds more than the burst") {
  TokenBucket b(2);
  CHECK(b.take(1'000'000, 1000, 2) == 0);
  CHECK(b.take(1'000'000, 1000, 2) == 0);
  CHECK(b.take(1'000'000, 1000, 2) > 0);
}
