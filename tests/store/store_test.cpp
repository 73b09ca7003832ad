#include <catch2/catch.hpp>
#include <filesystem>
#include <random>

#include "core/retention.h"
#include "proto/im.pb.h"
#include "store/keys.h"
#include "store/outbox.h"
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

std::vector<std::uint64_t> inbox_seqs(Store& s, const std::string& uid) {
  std::vector<std::uint64_t> out;
  REQUIRE(s.scan_inbox(uid, 0, UINT64_MAX, [&](std::uint64_t seq, std::string_view) {
    out.push_back(seq);
    return true;
  }));
  return out;
}

std::vector<std::uint64_t> history_seqs(Store& s, const std::string& conv) {
  std::vector<std::uint64_t> out;
  REQUIRE(s.scan_history_back(conv, UINT64_MAX, [&](std::uint64_t seq, std::string_view) {
    out.insert(out.begin(), seq);
    return true;
  }));
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

TEST_CASE("typed writes and reads: inbox and history bounds, both scan directions") {
  TempStore t;
  Batch b(*t.store);
  for (std::uint64_t i = 1; i <= 5; ++i) b.put_inbox("alice", i, "v" + std::to_string(i));
  b.put_inbox("alicia", 1, "other");
  for (std::uint64_t i = 1; i <= 3; ++i) b.put_history("c:alice:bob", i, "h" + std::to_string(i));
  REQUIRE(t.store->write(b));
  CHECK(*t.store->last_inbox_seq("alice") == 5);
  CHECK(*t.store->first_inbox_seq("alice") == 1);
  CHECK(*t.store->last_inbox_seq("nobody") == 0);
  CHECK(*t.store->first_inbox_seq("nobody") == 0);
  CHECK(*t.store->last_history_seq("c:alice:bob") == 3);
  CHECK(*t.store->last_history_seq("c:alice:carol") == 0);
  std::vector<std::string> rows;
  REQUIRE(t.store->scan_inbox("alice", 2, 5, [&](std::uint64_t, std::string_view row) {
    rows.emplace_back(row);
    return true;
  }));
  CHECK(rows == std::vector<std::string>{"v2", "v3", "v4"});
  std::vector<std::uint64_t> down;
  REQUIRE(t.store->scan_history_back("c:alice:bob", 3, [&](std::uint64_t seq, std::string_view) {
    down.push_back(seq);
    return true;
  }));
  CHECK(down == std::vector<std::uint64_t>{2, 1});
  CHECK(inbox_seqs(*t.store, "alicia") == std::vector<std::uint64_t>{1});  // prefixes are apart
}

TEST_CASE("cursors, dedupe rows, meta counters and the outbox") {
  TempStore t;
  Batch b(*t.store);
  b.put_cursor("alice", 1, "phone", 42);
  b.put_dedupe("alice", "m1", DedupeRecord{7, 8, 9, 1700000000000});
  b.put_meta("counter", 123);
  b.put_outbox({5, "five"});
  b.put_outbox({3, "three"});
  REQUIRE(t.store->write(b));
  CHECK(**t.store->get_cursor("alice", 1, "phone") == 42);
  CHECK_FALSE(*t.store->get_cursor("alice", 2, "phone"));
  CHECK(**t.store->get_dedupe("alice", "m1") == DedupeRecord{7, 8, 9, 1700000000000});
  CHECK_FALSE(*t.store->get_dedupe("bob", "m1"));
  CHECK(**t.store->get_meta("counter") == 123);
  CHECK_FALSE(*t.store->get_meta("other"));
  CHECK((*t.store->oldest_event())->id == 3);
  CHECK(*t.store->count_events() == 2);
  Batch d(*t.store);
  d.del_outbox(3);
  REQUIRE(t.store->write(d));
  CHECK((*t.store->oldest_event())->body == "five");
}

TEST_CASE("groups and members: rows written together, read back in uid order") {
  TempStore t;
  GroupRecord g;
  g.info.set_gid("g1");
  g.info.set_name("team");
  g.info.set_owner("alice");
  Batch b(*t.store);
  b.put_group(g);
  b.put_member("g1", "bob", {false, 2});
  b.put_member("g1", "alice", {true, 1});
  REQUIRE(t.store->write(b));
  auto back = *t.store->get_group("g1");
  REQUIRE(back);
  CHECK(back->info.name() == "team");
  CHECK_FALSE(back->dismissed);
  CHECK_FALSE(*t.store->get_group("g2"));
  std::vector<std::pair<std::string, bool>> members;
  REQUIRE(t.store->scan_members("g1", [&](std::string_view uid, const MemberRecord& m) {
    members.emplace_back(uid, m.owner);
    return true;
  }));
  CHECK(members == std::vector<std::pair<std::string, bool>>{{"alice", true}, {"bob", false}});
  std::vector<std::string> groups;
  REQUIRE(t.store->scan_user_groups("bob", [&](std::string_view gid) {
    groups.emplace_back(gid);
    return true;
  }));
  CHECK(groups == std::vector<std::string>{"g1"});
  Batch d(*t.store);
  d.del_member("g1", "bob");
  REQUIRE(t.store->write(d));
  groups.clear();
  REQUIRE(t.store->scan_user_groups("bob", [&](std::string_view gid) {
    groups.emplace_back(gid);
    return true;
  }));
  CHECK(groups.empty());
}

TEST_CASE("fan-out rows: copies, group records and their progress, read back by kind and deleted together") {
  TempStore t;
  v1::Message m;
  m.set_msg_id(77);
  m.set_from("alice");
  const FanoutKey copy{"c:alice:bob", 4, "bob"};
  const FanoutKey group{"g:g1", 9, ""};
  const FanoutKey other{"g:g1", 10, ""};
  Batch b(*t.store);
  b.put_copy(copy, {true, m});
  b.put_group_fanout(group, {m, {"alice", "bob", "carol"}, 2});
  b.put_fanout_progress(group, {0, 2});
  b.put_fanout_progress(group, {1, 1});
  b.put_group_fanout(other, {m, {"alice"}, 2});
  REQUIRE(t.store->write(b));
  std::vector<FanoutEntry> seen;
  REQUIRE(t.store->scan_fanout([&](const FanoutEntry& e) {
    seen.push_back(e);
    return true;
  }));
  REQUIRE(seen.size() == 5);
  CHECK(seen[0].kind == FanoutEntry::Kind::kCopy);
  CHECK(seen[0].key == copy);
  CHECK(seen[0].copy.is_sender);
  CHECK(seen[0].copy.msg.msg_id() == 77);
  CHECK(seen[1].kind == FanoutEntry::Kind::kGroup);
  CHECK(seen[1].key == group);
  CHECK(seen[1].group.recipients == std::vector<std::string>{"alice", "bob", "carol"});
  CHECK(seen[1].group.shard_count == 2);
  CHECK(seen[2].kind == FanoutEntry::Kind::kProgress);
  CHECK(seen[2].progress.chain == 0);
  CHECK(seen[2].progress.done == 2);
  CHECK(seen[3].progress.chain == 1);
  CHECK(seen[4].key == other);
  Batch d(*t.store);
  d.del_fanout(group);  // the record and its progress rows, not the next record
  d.del_fanout(copy);
  REQUIRE(t.store->write(d));
  seen.clear();
  REQUIRE(t.store->scan_fanout([&](const FanoutEntry& e) {
    seen.push_back(e);
    return true;
  }));
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].key == other);
}

TEST_CASE("records refuse values of another shape") {
  CHECK_FALSE(GroupRecord::decode(""));
  CHECK_FALSE(GroupRecord::decode("X"));
  CHECK_FALSE(MemberRecord::decode("O123"));
  CHECK_FALSE(CopyRecord::decode("Q"));
  CHECK_FALSE(GroupFanoutRecord::decode("H\x00"));
  GroupFanoutRecord r{{}, {"a"}, 1};
  std::string v = r.encode();
  CHECK(GroupFanoutRecord::decode(v));
  v.push_back('\x05');  // a uid length past the end
  CHECK_FALSE(GroupFanoutRecord::decode(v));
  CHECK_FALSE(parse_fanout_key("no-separator"));
  CHECK_FALSE(parse_fanout_key(std::string("c\0short", 8)));
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
  for (std::uint64_t i = 1; i <= 3; ++i) b.put_inbox("alice", i, row(now - 40 * kDay, i));
  for (std::uint64_t i = 4; i <= 5; ++i) b.put_inbox("alice", i, row(now - kDay, i));
  for (std::uint64_t i = 1; i <= 4; ++i) b.put_inbox("bob", i, row(now - 100 * kDay, i));
  b.put_inbox("carol", 1, row(now, 1));
  for (std::uint64_t i = 1; i <= 3; ++i) b.put_history("c:a:b", i, row(now - 400 * kDay, i));
  b.put_history("c:a:b", 4, row(now - 10 * kDay, 4));
  REQUIRE(t.store->write(b));

  core::Retention retention(t.config, *t.store);  // 30 and 365 days by default
  CHECK(retention.run_once(now) == 3 + 3 + 3);
  CHECK(inbox_seqs(*t.store, "alice") == std::vector<std::uint64_t>{4, 5});
  CHECK(inbox_seqs(*t.store, "bob") == std::vector<std::uint64_t>{4});
  CHECK(inbox_seqs(*t.store, "carol") == std::vector<std::uint64_t>{1});
  CHECK(history_seqs(*t.store, "c:a:b") == std::vector<std::uint64_t>{4});
  CHECK(retention.run_once(now) == 0);
}

TEST_CASE("the outbox: pushed with a batch, read oldest first, removed once delivered") {
  TempStore t;
  Outbox outbox(*t.store);
  CHECK_FALSE(*outbox.oldest());
  Batch b(*t.store);
  Outbox::push(b, {9, "nine"});
  Outbox::push(b, {4, "four"});
  REQUIRE(t.store->write(b));
  CHECK(*outbox.count() == 2);
  CHECK((*outbox.oldest())->body == "four");
  REQUIRE(outbox.remove(4));
  CHECK((*outbox.oldest())->id == 9);
  REQUIRE(outbox.remove(9));
  CHECK_FALSE(*outbox.oldest());
  CHECK(*outbox.count() == 0);
}
