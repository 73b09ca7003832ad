#include <catch2/catch.hpp>
#include <filesystem>
#include <random>

#include "core/retention.h"
#include "proto/im.pb.h"
#include "store/keys.h"
#include "store/store.h"

using namespace im;
using namespace im::store;

namespace {

struct TempStore {
  TempStore() {
    config.data_dir =
        (std::filesystem::temp_directory_path() / ("imstore-" + std::to_string(std::random_device{}()))).string();
    auto opened = Store::open(config);
    REQUIRE(opened);
    store = std::move(opened.value());
  }
  ~TempStore() {
    store.reset();
    std::filesystem::remove_all(config.data_dir);
  }
  StorageConfig config;
  std::unique_ptr<Store> store;
};

std::string row(std::int64_t time_ms, std::uint64_t seq) {
  v1::Message m;
  m.set_server_time_ms(time_ms);
  m.set_inbox_seq(seq);
  return m.SerializeAsString();
}

std::vector<std::uint64_t> seqs(Store& s, Cf cf, const std::string& prefix) {
  std::vector<std::uint64_t> out;
  s.scan(cf, prefix, prefix_end(prefix), [&](std::string_view k, std::string_view) {
    out.push_back(seq_of(k));
    return true;
  });
  return out;
}

}  // namespace

TEST_CASE("keys keep one user's rows together and in seq order") {
  CHECK(inbox_key("a", 2) < inbox_key("a", 10));
  CHECK(inbox_key("a", 0xFFFFFFFFFFull) < inbox_key("a0", 0));  // "a\0..." sorts before "a0"
  CHECK(inbox_key("ab", 1) > inbox_key("a", 0xFFFFFFFFFFFFFFFFull));
  CHECK(seq_of(inbox_key("alice", 123456789012345ull)) == 123456789012345ull);
  CHECK(c2c_conv("bob", "alice") == "c:alice:bob");
  CHECK(c2c_conv("alice", "bob") == "c:alice:bob");
  CHECK(group_conv("g1") == "g:g1");
  CHECK(prefix_end(std::string("a\0", 2)) == std::string("a\x01", 2));
  CHECK(prefix_end("a\xFF") == "b");
}

TEST_CASE("write, get, scan both ways, first and last key of a prefix") {
  TempStore t;
  Batch b(*t.store);
  for (std::uint64_t i = 1; i <= 5; ++i) b.put(Cf::kInbox, inbox_key("alice", i), "v" + std::to_string(i));
  b.put(Cf::kInbox, inbox_key("alicia", 1), "other");
  REQUIRE(t.store->write(b));
  auto got = t.store->get(Cf::kInbox, inbox_key("alice", 3));
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK(**got == "v3");
  CHECK_FALSE(t.store->get(Cf::kInbox, inbox_key("alice", 9))->has_value());
  CHECK_FALSE(t.store->get(Cf::kHistory, inbox_key("alice", 3))->has_value());  // families are apart
  CHECK(seq_of(*t.store->last_key(Cf::kInbox, user_prefix("alice"))) == 5);
  CHECK(seq_of(*t.store->first_key(Cf::kInbox, user_prefix("alice"))) == 1);
  CHECK_FALSE(t.store->last_key(Cf::kInbox, user_prefix("nobody")));
  std::vector<std::uint64_t> down;
  t.store->scan(
      Cf::kInbox, inbox_key("alice", 2), inbox_key("alice", 5),
      [&](std::string_view k, std::string_view) {
        down.push_back(seq_of(k));
        return true;
      },
      true);
  CHECK(down == std::vector<std::uint64_t>{4, 3, 2});
}

TEST_CASE("dedupe records round-trip") {
  DedupeRecord r{1, 2, 3, 1700000000000};
  auto back = DedupeRecord::decode(r.encode());
  REQUIRE(back);
  CHECK(back->msg_id == 1);
  CHECK(back->conv_seq == 2);
  CHECK(back->inbox_seq == 3);
  CHECK(back->time_ms == 1700000000000);
  CHECK_FALSE(DedupeRecord::decode("short"));
}

TEST_CASE("retention deletes old rows of each inbox and conversation, never the newest") {
  TempStore t;
  constexpr std::int64_t kDay = 86400000;
  const std::int64_t now = 1'800'000'000'000;
  Batch b(*t.store);
  // alice: 3 old rows, 2 recent; bob: only old rows; carol: only recent
  for (std::uint64_t i = 1; i <= 3; ++i) b.put(Cf::kInbox, inbox_key("alice", i), row(now - 40 * kDay, i));
  for (std::uint64_t i = 4; i <= 5; ++i) b.put(Cf::kInbox, inbox_key("alice", i), row(now - kDay, i));
  for (std::uint64_t i = 1; i <= 4; ++i) b.put(Cf::kInbox, inbox_key("bob", i), row(now - 100 * kDay, i));
  b.put(Cf::kInbox, inbox_key("carol", 1), row(now, 1));
  for (std::uint64_t i = 1; i <= 3; ++i) b.put(Cf::kHistory, history_key("c:a:b", i), row(now - 400 * kDay, i));
  b.put(Cf::kHistory, history_key("c:a:b", 4), row(now - 10 * kDay, 4));
  REQUIRE(t.store->write(b));

  core::Retention retention(t.config, *t.store);  // 30 and 365 days by default
  CHECK(retention.run_once(now) == 3 + 3 + 3);
  CHECK(seqs(*t.store, Cf::kInbox, user_prefix("alice")) == std::vector<std::uint64_t>{4, 5});
  CHECK(seqs(*t.store, Cf::kInbox, user_prefix("bob")) == std::vector<std::uint64_t>{4});
  CHECK(seqs(*t.store, Cf::kInbox, user_prefix("carol")) == std::vector<std::uint64_t>{1});
  CHECK(seqs(*t.store, Cf::kHistory, conv_prefix("c:a:b")) == std::vector<std::uint64_t>{4});
  CHECK(retention.run_once(now) == 0);
}
