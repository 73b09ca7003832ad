#include <catch2/catch.hpp>
#include <string>

#include <asio/io_context.hpp>

#include "core/typing.h"

using im::core::TypingThrottle;
namespace v1 = im::v1;

// The throttle's timer is never run here: the tests pass the time.

TEST_CASE("typing throttle: a start is forwarded once per conversation every 3 s, repeats dropped") {
  asio::io_context io;
  TypingThrottle t(io);
  CHECK(t.admit("alice", v1::C2C, "bob", v1::TYPING, 10'000));
  CHECK_FALSE(t.admit("alice", v1::C2C, "bob", v1::TYPING, 10'001));
  CHECK_FALSE(t.admit("alice", v1::C2C, "bob", v1::RECORDING, 12'999));  // any start
  CHECK(t.admit("alice", v1::C2C, "bob", v1::RECORDING, 13'000));
  CHECK_FALSE(t.admit("alice", v1::C2C, "bob", v1::TYPING, 15'999));
  CHECK(t.admit("alice", v1::C2C, "bob", v1::TYPING, 16'000));
  // other conversations and other users have their own
  CHECK(t.admit("alice", v1::C2C, "carol", v1::TYPING, 16'001));
  CHECK(t.admit("alice", v1::GROUP, "bob", v1::TYPING, 16'001));
  CHECK(t.admit("bob", v1::C2C, "alice", v1::TYPING, 16'001));
  CHECK(t.size() == 4);
}

TEST_CASE("typing throttle: STOPPED only within 6 s of a forwarded start, once per start") {
  asio::io_context io;
  TypingThrottle t(io);
  CHECK_FALSE(t.admit("alice", v1::C2C, "bob", v1::STOPPED, 1'000));  // no start before
  CHECK(t.size() == 0);                                               // and nothing kept for it
  CHECK(t.admit("alice", v1::C2C, "bob", v1::TYPING, 1'000));
  CHECK(t.admit("alice", v1::C2C, "bob", v1::STOPPED, 2'000));
  CHECK_FALSE(t.admit("alice", v1::C2C, "bob", v1::STOPPED, 2'001));  // one per start
  CHECK_FALSE(t.admit("alice", v1::C2C, "bob", v1::TYPING, 3'999));   // still within 3 s of the start
  CHECK_FALSE(t.admit("alice", v1::C2C, "bob", v1::STOPPED, 4'000));
  CHECK(t.admit("alice", v1::C2C, "bob", v1::TYPING, 4'000));
  CHECK_FALSE(t.admit("alice", v1::C2C, "bob", v1::STOPPED, 10'000));  // 6 s after the start
  CHECK(t.admit("alice", v1::C2C, "bob", v1::TYPING, 10'000));
  CHECK(t.admit("alice", v1::C2C, "bob", v1::STOPPED, 15'999));
}

TEST_CASE("typing throttle: entries are pruned 6 s after their start, however many conversations") {
  asio::io_context io;
  TypingThrottle t(io);
  for (int i = 0; i < 1000; ++i)
    CHECK(t.admit("mallory", v1::C2C, "made-up-" + std::to_string(i), v1::TYPING, 1'000 + i));
  CHECK(t.size() == 1000);
  CHECK(t.prune(6'999) == 0);
  CHECK(t.prune(7'000) == 1);
  CHECK(t.prune(7'999) == 999);
  CHECK(t.size() == 0);
  // pruned: known no more, so a STOPPED is dropped and a start forwarded
  CHECK_FALSE(t.admit("mallory", v1::C2C, "made-up-999", v1::STOPPED, 8'000));
  CHECK(t.admit("mallory", v1::C2C, "made-up-999", v1::TYPING, 8'000));
}
