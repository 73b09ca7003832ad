// The pieces of issue 11's bounds: LruMap, GroupCache's member bound (on a
// temporary store), FanoutLimiter, the event slices of a group plan, and
// the frame limit's floor.

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/fanout_limiter.h"
#include "core/group_cache.h"
#include "core/group_rules.h"
#include "core/lru_map.h"
#include "core/wire.h"
#include "im/config.h"
#include "store/store.h"

using namespace im;
using namespace im::core;
using namespace std::chrono_literals;

TEST_CASE("LruMap drops the least recently used idle entries down to its capacity") {
  LruMap<int> m(3);
  for (int i = 0; i < 5; ++i) m.put("k" + std::to_string(i), i);
  REQUIRE(m.size() == 5);
  int* k0 = m.find("k0");  // k0 is now the most recent
  REQUIRE(k0);
  // k1 is busy: it stays, and the next idle ones go instead
  CHECK(m.trim([](const std::string& key, const int&) { return key != "k1"; }) == 2);
  CHECK(m.size() == 3);
  CHECK(m.peek("k1"));
  CHECK(m.peek("k0"));
  CHECK(m.peek("k4"));
  CHECK_FALSE(m.peek("k2"));
  CHECK_FALSE(m.peek("k3"));
  CHECK(k0 == m.find("k0"));  // values never move
  SECTION("nothing idle: nothing goes, and the trim ends") {
    m.put("k9", 9);
    CHECK(m.trim([](const std::string&, const int&) { return false; }) == 0);
    CHECK(m.size() == 4);
  }
  SECTION("erase and put again") {
    m.erase("k0");
    CHECK_FALSE(m.peek("k0"));
    m.put("k0", 7);
    CHECK(*m.peek("k0") == 7);
    CHECK(*m.key_of("k0") == "k0");
  }
}

TEST_CASE("LruMap keeps the order of use of a reference list through puts, finds, erases, trims and rehashes") {
  // The reference: keys, most recently used first, and each value.
  std::vector<std::string> order;
  std::map<std::string, int> values;
  LruMap<int> m(64);
  std::map<std::string, const int*> where;  // the address of each value: never moves
  std::mt19937 rng(15);
  auto use = [&](const std::string& k) {
    order.erase(std::remove(order.begin(), order.end(), k), order.end());
    order.insert(order.begin(), k);
  };
  for (int step = 0; step < 20000; ++step) {
    const std::string k = "k" + std::to_string(rng() % 200);  // up to 200 keys: rehashes on the way
    switch (rng() % 5) {
      case 0:
      case 1: {
        const int v = static_cast<int>(rng() % 1000);
        const int& stored = m.put(k, v);
        if (where.count(k)) REQUIRE(where[k] == &stored);
        where[k] = &stored;
        values[k] = v;
        use(k);
        break;
      }
      case 2: {
        int* found = m.find(k);
        REQUIRE((found != nullptr) == (values.count(k) == 1));
        if (found) {
          REQUIRE(*found == values[k]);
          REQUIRE(found == where[k]);
          use(k);
        }
        break;
      }
      case 3:
        m.erase(k);
        values.erase(k);
        where.erase(k);
        order.erase(std::remove(order.begin(), order.end(), k), order.end());
        break;
      default: {
        // Keys with an odd value are busy: the trim moves them to the front.
        const std::size_t dropped = m.trim([](const std::string&, int v) { return v % 2 == 0; });
        std::size_t expect = 0;
        std::size_t budget =
            std::min(order.size(), std::min(order.size() > 64 ? order.size() - 64 : 0, LruMap<int>::kTrimStep) +
                                       LruMap<int>::kTrimSlack);
        while (order.size() > 64 && budget-- > 0 && !order.empty()) {
          const std::string last = order.back();
          order.pop_back();
          if (values[last] % 2 == 0) {
            values.erase(last);
            where.erase(last);
            ++expect;
          } else {
            order.insert(order.begin(), last);
          }
        }
        REQUIRE(dropped == expect);
        // The same entries went: the ones left are the reference's.
        for (const auto& kv : values) REQUIRE(m.peek(kv.first) == where[kv.first]);
        break;
      }
    }
    REQUIRE(m.size() == values.size());
  }
  CHECK(m.size() == values.size());
}

TEST_CASE("FanoutLimiter: a burst of twice the rate, refilled over time, debts for big requests") {
  FanoutLimiter limiter(100);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(limiter.take("u", 150, t0) == 0);
  const std::uint32_t wait = limiter.take("u", 100, t0);
  CHECK(wait == 500);  // 50 tokens left, 50 more take 0.5 s
  CHECK(limiter.take("u", 100, t0 + 500ms) == 0);
  CHECK(limiter.take("other", 200, t0) == 0);  // per user
  SECTION("a request over the burst needs a full bucket and leaves a debt") {
    CHECK(limiter.take("big", 1000, t0) == 0);
    CHECK(limiter.take("big", 1, t0 + 1s) > 0);  // 200 - 1000 + 100 < 1
    CHECK(limiter.take("big", 1, t0 + 9s) == 0);
  }
  SECTION("idle full buckets are forgotten") {
    for (int i = 0; i < 20000; ++i) REQUIRE(limiter.take("early" + std::to_string(i), 1, t0) == 0);
    for (int i = 0; i < 20000; ++i) REQUIRE(limiter.take("late" + std::to_string(i), 1, t0 + 10s) == 0);
    CHECK(limiter.tracked() <= 25000);  // the early ones, full again, went as the stripes grew
  }
  SECTION("a new rate applies at once") {
    limiter.set_rate(1);
    CHECK(limiter.take("u", 3, t0 + 500ms) > 0);
  }
}

namespace {

GroupPlan wide_plan(std::size_t uids, std::size_t uid_len, std::size_t announcement) {
  GroupPlan plan;
  plan.actor = std::string(64, 'o');
  plan.info.set_gid(std::string(64, 'g'));
  plan.info.set_name("n");
  plan.info.set_owner(plan.actor);
  plan.info.set_announcement(std::string(announcement, 'a'));
  GroupEventPlan e{v1::CREATED, {}, {"r1", "r2"}};
  for (std::size_t i = 0; i < uids; ++i) {
    std::string uid = std::to_string(i);
    uid.resize(uid_len, 'u');
    e.uids.push_back(uid);
  }
  plan.events.push_back(e);
  plan.events.push_back({v1::UPDATED, {}, {"r1", "r2", "r3"}});
  return plan;
}

std::size_t row_size(const GroupPlan& plan, const EventSlice& s) {
  v1::Message m = event_message(plan, s);
  m.set_msg_id(UINT64_MAX);
  m.set_server_time_ms(INT64_MAX);
  m.set_conv_seq(UINT64_MAX);
  m.set_inbox_seq(UINT64_MAX);
  return m.ByteSizeLong();
}

}  // namespace

TEST_CASE("event_slices cut by 500 uids and by bytes, CREATED first then MEMBERS_ADDED, in order") {
  const std::size_t max_row = wire::max_row_bytes(8192 - wire::kFrameSlack);
  for (auto [count, len, ann] : {std::tuple{60, 64, 4096}, std::tuple{1200, 3, 0}, std::tuple{2000, 64, 100}}) {
    GroupPlan plan = wide_plan(count, len, ann);
    auto slices = event_slices(plan, max_row);
    std::size_t next = 0;
    for (const EventSlice& s : slices) {
      if (s.event != 0) continue;
      CHECK(s.from == next);
      CHECK(s.to > s.from);
      CHECK(s.to - s.from <= kEventMaxUids);
      CHECK(s.type == (s.from == 0 ? v1::CREATED : v1::MEMBERS_ADDED));
      CHECK(row_size(plan, s) <= max_row);
      next = s.to;
    }
    CHECK(next == static_cast<std::size_t>(count));
    REQUIRE(slices.back().event == 1);  // the UPDATED event, no uids
    CHECK(plan_rows(plan, slices) == 2 * (slices.size() - 1) + 3);
  }
  // 60 uids of 64 bytes and a 4 KiB announcement cannot go in one 8 KiB frame
  CHECK(event_slices(wide_plan(60, 64, 4096), max_row).size() > 2);
}

TEST_CASE("the smallest frame limit holds the largest group event and its answer's fields") {
  CHECK(largest_event_row() <= wire::max_row_bytes(kMinFrameBytes - wire::kFrameSlack));
}

TEST_CASE("GroupCache keeps at most its member capacity past a trim, least recently used groups first") {
  StorageConfig storage;
  storage.data_dir =
      (std::filesystem::temp_directory_path() / ("imgroupcache-" + std::to_string(std::random_device{}()))).string();
  {
    auto opened = store::Store::open(storage);
    REQUIRE(opened);
    store::Store& store = **opened;
    // Five groups of 300 members each in the store.
    store::Batch batch(store);
    for (int g = 0; g < 5; ++g) {
      store::GroupRecord group;
      group.info.set_gid("g" + std::to_string(g));
      group.info.set_owner("o");
      batch.put_group(group);
      for (int m = 0; m < 300; ++m)
        batch.put_member(group.info.gid(), "m" + std::to_string(m), store::MemberRecord{m == 0, 0});
    }
    REQUIRE(store.write(batch));
    GroupCache cache(store, 100, 1000);  // room for 100 groups, but only 1,000 members
    for (int g = 0; g < 5; ++g) REQUIRE(*cache.find("g" + std::to_string(g)));
    CHECK(cache.members() == 1500);
    CHECK(cache.over());
    REQUIRE(*cache.find("g0"));  // g0 is now the most recent
    CHECK(cache.trim() == 2);    // g1 and g2 go: 900 members are left in g3, g4 and g0
    CHECK(cache.members() == 900);
    CHECK_FALSE(cache.over());
    // A miss caches nothing, and a dropped group comes back from the store.
    CHECK(*cache.find("absent") == nullptr);
    auto g1 = cache.find("g1");
    REQUIRE(*g1);
    CHECK((*g1)->members.size() == 300);
    CHECK(cache.members() == 1200);
    // A change counts once its batch is written; a failed batch drops it.
    cache.touch("g1");
    (*g1)->members.emplace("new", false);
    cache.on_written(true);
    CHECK(cache.members() == 1201);
    cache.touch("g1");
    cache.on_written(false);
    CHECK(cache.members() == 900);
  }
  std::filesystem::remove_all(storage.data_dir);
}
