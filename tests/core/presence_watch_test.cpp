#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>

#include "core/presence_watch.h"

using im::core::presence_mask;
using im::core::PresenceWatch;
using im::core::Watcher;
namespace v1 = im::v1;

namespace {

// A PresenceWatch whose pushes are recorded: (uid, session ids). Its timer
// is never run here: the tests pass the time and call flush.
struct Recorded {
  asio::io_context io;
  std::vector<std::pair<std::string, std::vector<std::uint64_t>>> pushes;
  PresenceWatch watch{io, [this](const std::string& uid, const std::vector<const Watcher*>& to) {
                        std::vector<std::uint64_t> ids;
                        for (const Watcher* w : to) ids.push_back(w->session_id);
                        std::sort(ids.begin(), ids.end());
                        pushes.emplace_back(uid, std::move(ids));
                      }};

  // Watched by `session` and active (its answer said `mask`).
  void watched(const std::string& uid, std::uint64_t session, std::uint32_t mask = 0) {
    watch.watch(uid, session, {}, 1, mask);
    watch.activate(uid, session, 1, mask);
  }
};

using Ids = std::vector<std::uint64_t>;

}  // namespace

TEST_CASE("presence_mask: one bit for online, one per device type") {
  v1::Presence p;
  CHECK(presence_mask(p) == 0);
  p.set_online(true);
  p.add_devices(v1::IOS);
  p.add_devices(v1::WEB);
  CHECK(presence_mask(p) == (1u | 2u << v1::IOS | 2u << v1::WEB));
  p.set_last_seen_ms(12345);  // not part of it
  CHECK(presence_mask(p) == (1u | 2u << v1::IOS | 2u << v1::WEB));
}

TEST_CASE("presence watch: the first change is pushed at once, the next ones within a second merged at its end") {
  Recorded r;
  r.watched("bob", 1);
  r.watched("bob", 2);
  CHECK(r.pushes.empty());
  r.watch.changed("bob", 10'000);
  REQUIRE(r.pushes.size() == 1);
  CHECK(r.pushes[0] == std::pair<std::string, Ids>{"bob", {1, 2}});
  r.watch.changed("bob", 10'100);
  r.watch.changed("bob", 10'900);
  r.watch.flush(10'999);
  CHECK(r.pushes.size() == 1);
  r.watch.flush(11'000);  // the end of the second: one push for both changes
  CHECK(r.pushes.size() == 2);
  r.watch.flush(12'000);
  CHECK(r.pushes.size() == 2);
  // the next change, a second after that push, goes at once
  r.watch.changed("bob", 12'000);
  CHECK(r.pushes.size() == 3);
  // a change 500 ms later waits for 13'000
  r.watch.changed("bob", 12'500);
  r.watch.flush(12'999);
  CHECK(r.pushes.size() == 3);
  r.watch.flush(13'000);
  CHECK(r.pushes.size() == 4);
}

TEST_CASE("presence watch: merges are per watched user") {
  Recorded r;
  r.watched("bob", 1);
  r.watched("carol", 1);
  r.watch.changed("bob", 1'000);
  r.watch.changed("carol", 1'500);  // carol's first: at once
  r.watch.changed("bob", 1'600);
  r.watch.changed("carol", 1'700);
  REQUIRE(r.pushes.size() == 2);
  r.watch.flush(2'000);  // bob's second ends
  REQUIRE(r.pushes.size() == 3);
  CHECK(r.pushes[2].first == "bob");
  r.watch.flush(2'500);  // carol's
  REQUIRE(r.pushes.size() == 4);
  CHECK(r.pushes[3].first == "carol");
}

TEST_CASE("presence watch: unwatched users and removed pairs get nothing, and nothing is held for them") {
  Recorded r;
  r.watch.changed("carol", 1'000);
  CHECK(r.pushes.empty());
  CHECK(r.watch.watched() == 0);
  r.watched("bob", 1);
  r.watched("bob", 2);
  CHECK(r.watch.pairs() == 2);
  CHECK_FALSE(r.watch.unwatch("bob", 3));
  CHECK(r.watch.unwatch("bob", 1));
  CHECK(r.watch.pairs() == 1);
  r.watch.changed("bob", 1'000);
  REQUIRE(r.pushes.size() == 1);
  CHECK(r.pushes[0].second == Ids{2});
  r.watch.changed("bob", 1'200);  // a merge due at 2'000 ...
  CHECK(r.watch.unwatch("bob", 2));
  CHECK(r.watch.pairs() == 0);
  CHECK(r.watch.watched() == 0);
  r.watch.flush(2'000);  // ... is skipped once nobody watches
  CHECK(r.pushes.size() == 1);
  // watched again: a fresh start, the first change at once
  r.watched("bob", 3);
  r.watch.changed("bob", 2'100);
  CHECK(r.pushes.size() == 2);
}

TEST_CASE("presence watch: a pair is muted until its answer is sent, then pushed if the state moved") {
  Recorded r;
  r.watched("bob", 1);
  r.watch.watch("bob", 2, {}, 7, 0);  // request 7 of session 2 answered "offline"
  r.watch.changed("bob", 1'000);      // bob logs in before the answer left
  REQUIRE(r.pushes.size() == 1);
  CHECK(r.pushes[0].second == Ids{1});  // not to the muted pair
  const std::uint32_t online = 1u | 2u << v1::IOS;
  r.watch.activate("bob", 2, 7, online);  // the answer is out: session 2 gets the new state
  REQUIRE(r.pushes.size() == 2);
  CHECK(r.pushes[1].second == Ids{2});
  // added again by request 8 (answered online); the late activation of an
  // older request leaves it muted, its own unmutes it without a push
  r.watch.watch("bob", 2, {}, 8, online);
  CHECK(r.watch.pairs() == 2);  // the same pair
  r.watch.activate("bob", 2, 7, online);
  r.watch.changed("bob", 5'000);
  REQUIRE(r.pushes.size() == 3);
  CHECK(r.pushes[2].second == Ids{1});
  r.watch.activate("bob", 2, 8, online);
  CHECK(r.pushes.size() == 3);
  r.watch.changed("bob", 7'000);
  REQUIRE(r.pushes.size() == 4);
  CHECK(r.pushes[3].second == Ids{1, 2});
}
