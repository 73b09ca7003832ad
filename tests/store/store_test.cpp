#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include <rocksdb/db.h>
#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>

#include "common/clock.h"
#include "core/changed_messages.h"
#include "core/msg_id_clock.h"
#include "core/retention.h"
#include "proto/im.pb.h"
#include "store/keys.h"
#include "store/outbox.h"
#include "store/records.h"
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

// A config naming a data dir that does not exist yet (the caller removes it).
StorageConfig fresh_config(const std::string& prefix) {
  StorageConfig config;
  config.data_dir =
      (std::filesystem::temp_directory_path() / (prefix + std::to_string(std::random_device{}()))).string();
  return config;
}

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
  b.put_cursor("alice", CursorRecord{1, "phone", 42, 1700000000000});
  b.put_cursor("alice", CursorRecord{2, "", 7, 0});
  b.put_cursor("alicia", CursorRecord{1, "phone", 9, 0});
  b.put_dedupe("alice", "m1", DedupeRecord{7, 8, 9, 1700000000000});
  b.put_meta("counter", 123);
  b.put_outbox({5, "five"});
  b.put_outbox({3, "three"});
  REQUIRE(t.store->write(b));
  std::vector<CursorRecord> cursors;
  REQUIRE(t.store->scan_cursors("alice", [&](const CursorRecord& c) {
    cursors.push_back(c);
    return true;
  }));
  CHECK(cursors == std::vector<CursorRecord>{{1, "phone", 42, 1700000000000}, {2, "", 7, 0}});
  Batch del(*t.store);
  del.del_cursor("alice", 1, "phone");
  REQUIRE(t.store->write(del));
  cursors.clear();
  REQUIRE(t.store->scan_cursors("alice", [&](const CursorRecord& c) {
    cursors.push_back(c);
    return true;
  }));
  CHECK(cursors == std::vector<CursorRecord>{{2, "", 7, 0}});
  CHECK(CursorRecord::decode("\x01phone", std::string(8, '\0')) == CursorRecord{1, "phone", 0, 0});  // older rows
  CHECK_FALSE(CursorRecord::decode("\x01phone", "short"));
  CHECK_FALSE(CursorRecord::decode("", std::string(8, '\0')));
  CHECK(**t.store->get_dedupe("alice", "m1") == DedupeRecord{7, 8, 9, 1700000000000});
  CHECK_FALSE(*t.store->get_dedupe("bob", "m1"));
  CHECK(**t.store->get_meta("counter") == 123);
  CHECK_FALSE(*t.store->get_meta("other"));
  CHECK((*t.store->first_event(0, 0))->id == 3);
  CHECK(*t.store->count_events() == 2);
  Batch d(*t.store);
  d.del_outbox(0, 3);
  REQUIRE(t.store->write(d));
  CHECK((*t.store->first_event(0, 0))->body == "five");
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

TEST_CASE("large group markers: written, read back in gid order with their from_seq") {
  TempStore t;
  Batch b(*t.store);
  b.put_large_group("g2", 7);
  b.put_large_group("g1", 3);
  b.put_token_revocation("g0", 1);  // another kind of meta row: never listed
  REQUIRE(t.store->write(b));
  std::vector<std::pair<std::string, std::uint64_t>> seen;
  REQUIRE(t.store->scan_large_groups([&](std::string_view gid, std::uint64_t from) {
    seen.emplace_back(gid, from);
    return true;
  }));
  CHECK(seen == std::vector<std::pair<std::string, std::uint64_t>>{{"g1", 3}, {"g2", 7}});
}

TEST_CASE("a member's user_groups row holds its join conv_seq, and an old empty row reads as 0") {
  TempStore t;
  Batch b(*t.store);
  b.put_member("g1", "bob", {false, 2}, 9);
  b.put_member("g1", "alice", {true, 1});
  REQUIRE(t.store->write(b));
  auto bob = t.store->in_group("bob", "g1");
  REQUIRE(bob);
  REQUIRE(bob->has_value());
  CHECK(**bob == 9);
  auto alice = t.store->in_group("alice", "g1");
  REQUIRE(alice);
  REQUIRE(alice->has_value());
  CHECK(**alice == 0);
  auto carol = t.store->in_group("carol", "g1");
  REQUIRE(carol);
  CHECK_FALSE(carol->has_value());
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

TEST_CASE("earlier runs' ids and times lie below the highest reservation of any shard, whatever the clock") {
  TempStore t;
  const auto now =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  // No run before: now.
  auto fresh = core::MsgIdClock::earlier_runs_below_ms(*t.store);
  REQUIRE(fresh);
  CHECK(*fresh >= now);
  CHECK(*fresh < now + 60000);
  // A run whose clock was an hour ahead, on shard index 7 (more shards than
  // now): its reservation bounds what it wrote.
  constexpr std::int64_t kEpochMs = 1704067200000;
  const std::int64_t ahead = now + 3600000;
  Batch b(*t.store);
  b.put_meta("msg_id_reserved:7", static_cast<std::uint64_t>(ahead - kEpochMs));
  REQUIRE(t.store->write(b));
  auto earlier = core::MsgIdClock::earlier_runs_below_ms(*t.store);
  REQUIRE(earlier);
  CHECK(*earlier == ahead);
  // A clock of this run's shard 0 reserves from now: the bound stays.
  auto clock = core::MsgIdClock::open(0, *t.store);
  REQUIRE(clock);
  auto id = clock->next();
  REQUIRE(id);
  CHECK(*id < core::MsgIdClock::first_id_at(ahead));
  auto again = core::MsgIdClock::earlier_runs_below_ms(*t.store);
  REQUIRE(again);
  CHECK(*again == ahead);
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

  core::ChangedMessages changes(*t.store);
  core::Retention retention(t.config, *t.store, changes);  // 30 and 365 days by default
  CHECK(retention.run_once(now) == 3 + 3 + 3);
  CHECK(inbox_seqs(*t.store, "alice") == std::vector<std::uint64_t>{4, 5});
  CHECK(inbox_seqs(*t.store, "bob") == std::vector<std::uint64_t>{4});
  CHECK(inbox_seqs(*t.store, "carol") == std::vector<std::uint64_t>{1});
  CHECK(history_seqs(*t.store, "c:a:b") == std::vector<std::uint64_t>{4});
  CHECK(retention.run_once(now) == 0);
}

TEST_CASE("retention: change rows go a day after the inbox retention, a kept newest copy is written changed") {
  TempStore t;
  constexpr std::int64_t kDay = 86400000;
  const std::int64_t now = 1'800'000'000'000;
  const std::uint64_t gone = core::MsgIdClock::first_id_at(now - 32 * kDay);
  const std::uint64_t kept = core::MsgIdClock::first_id_at(now - 30 * kDay - kDay / 2);
  // carol's only inbox row: an old copy of a message recalled since.
  v1::Message copy;
  copy.set_msg_id(gone);
  copy.set_conv_seq(1);
  copy.set_inbox_seq(1);
  copy.set_content_type(1);
  copy.set_body("secret");
  copy.set_server_time_ms(now - 32 * kDay);
  v1::Message tombstone = copy;
  tombstone.set_inbox_seq(0);
  tombstone.set_content_type(10005);
  tombstone.set_body("");
  Batch b(*t.store);
  b.put_inbox("carol", 1, copy.SerializeAsString());
  b.put_history("c:alice:carol", 1, tombstone.SerializeAsString());
  b.put_history("c:alice:carol", 2, row(now, 2));  // the conversation's newest
  b.put_change(gone, {"c:alice:carol", 1, true, {}});
  b.put_change(kept, {"c:alice:carol", 2, false, {}});
  REQUIRE(t.store->write(b));
  core::ChangedMessages changes(*t.store);
  REQUIRE(changes.load());
  CHECK(changes.added() == 2);
  core::Retention retention(t.config, *t.store, changes);
  CHECK(retention.run_once(now) == 0);  // carol's row is her newest: kept
  CHECK_FALSE(t.store->get_change(gone).value());
  CHECK(t.store->get_change(kept).value());
  std::string stored;
  REQUIRE(t.store->scan_inbox("carol", 1, 2, [&](std::uint64_t, std::string_view r) {
    stored = std::string(r);
    return true;
  }));
  v1::Message now_copy;
  REQUIRE(now_copy.ParseFromString(stored));
  CHECK(now_copy.content_type() == 10005);
  CHECK(now_copy.body().empty());
  CHECK(now_copy.inbox_seq() == 1);
}

TEST_CASE("changed messages: a copy is answered as its history row now is, anything else as stored") {
  TempStore t;
  core::ChangedMessages changes(*t.store);
  REQUIRE(changes.load());
  v1::Message copy;
  copy.set_msg_id(77);
  copy.set_conv_seq(5);
  copy.set_inbox_seq(40);
  copy.set_content_type(1);
  copy.set_body("secret");
  const std::string stored = copy.SerializeAsString();
  CHECK_FALSE(changes.changed_row(stored).value());  // nothing changed at all: not even parsed

  v1::Message tombstone = copy;
  tombstone.set_inbox_seq(0);  // the history row's own fields stay out of the copy
  tombstone.set_content_type(10005);
  tombstone.set_body("recall");
  Batch b(*t.store);
  b.put_history("c:a:b", 5, tombstone.SerializeAsString());
  b.put_change(77, {"c:a:b", 5, true, {}});
  REQUIRE(t.store->write(b));
  changes.add(77);
  auto answered = changes.changed_row(stored).value();
  REQUIRE(answered);
  v1::Message m;
  REQUIRE(m.ParseFromString(*answered));
  CHECK(m.content_type() == 10005);
  CHECK(m.body() == "recall");
  CHECK(m.inbox_seq() == 40);
  CHECK(m.msg_id() == 77);

  v1::Message other = copy;
  other.set_msg_id(78);
  CHECK_FALSE(changes.changed_row(other.SerializeAsString()).value());
  v1::Message event = copy;  // a recall event carrying the same id is never rewritten
  event.set_content_type(10003);
  CHECK_FALSE(changes.changed_row(event.SerializeAsString()).value());
  CHECK_FALSE(changes.changed_row("not a message").value());
  changes.add(79);  // staged, not durable: the copy stays as stored
  other.set_msg_id(79);
  CHECK_FALSE(changes.changed_row(other.SerializeAsString()).value());
  // History retention took the row of a recalled message: still a tombstone.
  Batch c(*t.store);
  c.put_change(80, {"c:a:b", 9, true, {}});
  c.put_change(81, {"c:a:b", 10, false, {}});
  REQUIRE(t.store->write(c));
  changes.add(80);
  changes.add(81);
  other.set_msg_id(80);
  other.set_conv_seq(9);
  answered = changes.changed_row(other.SerializeAsString()).value();
  REQUIRE(answered);
  REQUIRE(m.ParseFromString(*answered));
  CHECK(m.content_type() == 10005);
  CHECK(m.body().find("secret") == std::string::npos);
  other.set_msg_id(81);  // an edit whose row is gone: as stored
  CHECK_FALSE(changes.changed_row(other.SerializeAsString()).value());
}

TEST_CASE("changed messages: a rebuild drops expired ids and keeps every durable or just-added one") {
  TempStore t;
  core::ChangedMessages changes(*t.store);
  REQUIRE(changes.load());
  Batch b(*t.store);
  for (std::uint64_t id = 1; id <= 500; ++id) b.put_change(id, {"c:a:b", id, true, {}});  // to expire
  for (std::uint64_t id = 10001; id <= 15000; ++id) b.put_change(id, {"c:a:b", id, true, {}});
  REQUIRE(t.store->write(b));
  for (std::uint64_t id = 1; id <= 500; ++id) changes.add(id);
  for (std::uint64_t id = 10001; id <= 15000; ++id) changes.add(id);  // more than the recent ids kept
  changes.add(20000);  // staged, its batch not written yet
  CHECK(changes.added() == 5501);
  REQUIRE(t.store->del_changes_below(501));
  REQUIRE(changes.rebuild());
  for (std::uint64_t id = 10001; id <= 15000; ++id) CHECK(changes.may_contain(id));
  CHECK(changes.may_contain(20000));  // one of the last ids added
  int still = 0;
  for (std::uint64_t id = 1; id <= 500; ++id) still += changes.may_contain(id) ? 1 : 0;
  CHECK(still < 25);  // gone, but for false hits
  CHECK(changes.added() == 5000);
}

TEST_CASE("change records round-trip, and a damaged one is refused") {
  ChangeRecord r{"g:team", 42, true, {43, 44, 1ull << 40}};
  CHECK(ChangeRecord::decode(r.encode()) == r);
  ChangeRecord plain{"c:a:b", 1, false, {}};
  CHECK(ChangeRecord::decode(plain.encode()) == plain);
  std::string v = r.encode();
  CHECK_FALSE(ChangeRecord::decode(v.substr(0, 20)));  // cut in the edit seqs
  CHECK_FALSE(ChangeRecord::decode(plain.encode().substr(0, 12)));  // no conversation
  v[0] = 9;
  CHECK_FALSE(ChangeRecord::decode(v));
  CHECK_FALSE(ChangeRecord::decode(""));
}

TEST_CASE("the outbox: a queue per shard, each read in id order from a cursor, removed once delivered") {
  TempStore t;
  Outbox outbox(*t.store);
  CHECK_FALSE(*outbox.first(0, 0));
  CHECK_FALSE(*outbox.next_queue(0));
  Batch b(*t.store);
  Outbox::push(b, {9, "nine", 1});
  Outbox::push(b, {4, "four", 0});
  Outbox::push(b, {2, "two", 1});
  Outbox::push(b, {7, "seven", 255});
  REQUIRE(t.store->write(b));
  CHECK(*outbox.count() == 4);
  CHECK((*outbox.first(0, 0))->body == "four");
  CHECK((*outbox.first(1, 0))->body == "two");
  CHECK((*outbox.first(1, 3))->body == "nine");  // from a cursor
  CHECK((*outbox.first(1, 3))->queue == 1);
  CHECK_FALSE(*outbox.first(0, 5));
  CHECK_FALSE(*outbox.first(2, 0));
  CHECK((*outbox.first(255, 0))->id == 7);
  CHECK(**outbox.next_queue(0) == 0);
  CHECK(**outbox.next_queue(1) == 1);
  CHECK(**outbox.next_queue(2) == 255);
  CHECK_FALSE(*outbox.next_queue(256));
  REQUIRE(outbox.remove({4, "four", 0}, false));
  CHECK_FALSE(*outbox.first(0, 0));
  CHECK(**outbox.next_queue(0) == 1);
  REQUIRE(outbox.remove({2, "two", 1}, false));
  CHECK((*outbox.first(1, 0))->id == 9);
  std::vector<std::uint64_t> all;
  REQUIRE(t.store->scan_events([&](const OutboxEvent& e) {
    all.push_back(e.id);
    return true;
  }));
  CHECK(all == std::vector<std::uint64_t>{9, 7});  // queue after queue
}

namespace {

void reopen(TempStore& t) {
  t.store.reset();
  auto opened = Store::open(t.config);
  REQUIRE(opened);
  t.store = std::move(opened.value());
}

}  // namespace

TEST_CASE("the outbox count is kept with every event written and deleted: a start reads it, not the queue") {
  TempStore t;
  {
    Outbox outbox(*t.store);
    Batch b(*t.store);
    for (std::uint64_t id = 1; id <= 5; ++id) Outbox::push(b, {id, "e", static_cast<std::uint8_t>(id % 2)});
    REQUIRE(t.store->write(b));
    REQUIRE(outbox.remove({2, "e", 0}, false));
    REQUIRE(outbox.remove({3, "e", 1}, false));
  }
  reopen(t);
  CHECK(t.store->outbox_depth() == 3);
  CHECK(*Outbox(*t.store).count() == 3);
  // The count row alone decides: a start does not walk the queue.
  Batch b(*t.store);
  b.put_meta("outbox_count", 1000);
  REQUIRE(t.store->write(b));
  reopen(t);
  CHECK(t.store->outbox_depth() == 1000);
  // A count below 0 (a second delete of one event) is not believed: the
  // queue is counted again.
  Batch negative(*t.store);
  negative.put_meta("outbox_count", ~std::uint64_t{0});
  REQUIRE(t.store->write(negative));
  reopen(t);
  CHECK(t.store->outbox_depth() == 3);
  CHECK(*Outbox(*t.store).count() == 3);
}

TEST_CASE("the outbox depth: counted at open, reserved up to a maximum, given back") {
  TempStore t;
  Outbox outbox(*t.store);
  CHECK(outbox.depth() == 0);
  CHECK(outbox.reserve(2));
  CHECK(outbox.reserve(2));
  CHECK_FALSE(outbox.reserve(2));
  outbox.release(1);  // staged in a batch that failed
  CHECK(outbox.depth() == 1);
  CHECK(outbox.reserve(2));
  Batch b(*t.store);
  Outbox::push(b, {1, "one", 0});
  Outbox::push(b, {2, "two", 3});
  REQUIRE(t.store->write(b));
  CHECK(outbox.depth() == 2);
  reopen(t);  // a restart counts what is stored
  Outbox again(*t.store);
  CHECK(again.depth() == 2);
  CHECK_FALSE(again.reserve(2));
  REQUIRE(again.remove({1, "one", 0}, false));
  CHECK(again.depth() == 1);
  CHECK(again.reserve(2));
  again.release(5);  // never below 0
  CHECK(again.depth() == 0);
}

TEST_CASE("an event's first failure is kept until the event is deleted") {
  TempStore t;
  Outbox outbox(*t.store);
  const OutboxEvent e{5, "five", 2};
  Batch b(*t.store);
  Outbox::push(b, e);
  REQUIRE(t.store->write(b));
  CHECK_FALSE(*outbox.failing_since(e));
  REQUIRE(outbox.mark_failing(e, 1234));
  CHECK(**outbox.failing_since(e) == 1234);
  CHECK_FALSE(*outbox.failing_since({5, "five", 1}));  // another queue's event 5
  reopen(t);
  Outbox again(*t.store);
  CHECK(**again.failing_since(e) == 1234);
  REQUIRE(again.remove(e, true));
  CHECK_FALSE(*again.failing_since(e));
  CHECK_FALSE(*again.first(2, 0));
}

TEST_CASE("outbox events of the bare-id key format move to queue 0 at open") {
  TempStore t;
  t.store.reset();
  {
    // Written as a server before queues did: the key is the id alone.
    std::vector<std::string> names;
    REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), t.config.data_dir, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const auto& n : names) families.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions(), t.config.data_dir, families, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::ColumnFamilyHandle* outbox = nullptr;
    rocksdb::ColumnFamilyHandle* meta = nullptr;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "outbox") outbox = handles[i];
      if (names[i] == "meta") meta = handles[i];
    }
    REQUIRE(outbox);
    REQUIRE(meta);
    REQUIRE(db->Delete(rocksdb::WriteOptions(), meta, "outbox_count").ok());  // that version kept no count
    for (std::uint64_t id : {30, 10, 20}) {
      std::string key;
      append_u64(key, id);
      REQUIRE(db->Put(rocksdb::WriteOptions(), outbox, key, "legacy-" + std::to_string(id)).ok());
    }
    for (auto* h : handles) REQUIRE(db->DestroyColumnFamilyHandle(h).ok());
  }
  for (int open = 0; open < 2; ++open) {  // moved once; the second open finds them moved
    reopen(t);
    Outbox outbox(*t.store);
    CHECK(outbox.depth() == 3);
    CHECK(*outbox.count() == 3);
    CHECK((*outbox.first(0, 0))->body == "legacy-10");
    CHECK((*outbox.first(0, 11))->body == "legacy-20");
    CHECK((*outbox.first(0, 21))->body == "legacy-30");
    CHECK(**outbox.next_queue(0) == 0);
    CHECK_FALSE(*outbox.next_queue(1));
  }
}

TEST_CASE("a queue's delivered events are not walked again: the next one is found from a cursor") {
  // Each delivered event leaves a delete tombstone at the front of its
  // queue; reading from the start of the family (as the worker did) walks
  // all of them for every event. RocksDB's perf context counts them.
  TempStore t;
  Outbox outbox(*t.store);
  constexpr std::uint64_t kEvents = 2000;
  Batch b(*t.store);
  for (std::uint64_t id = 1; id <= kEvents; ++id) Outbox::push(b, {id, "e", 0});
  Outbox::push(b, {kEvents + 7, "other queue", 1});
  REQUIRE(t.store->write(b));
  std::uint64_t next = 0;
  for (std::uint64_t i = 0; i < kEvents; ++i) {  // delivered one by one, as the worker does
    auto e = outbox.first(0, next);
    REQUIRE(e);
    REQUIRE(*e);
    REQUIRE(outbox.remove(**e, false));
    next = (*e)->id + 1;
  }
  Batch more(*t.store);
  Outbox::push(more, {kEvents + 1, "last", 0});
  REQUIRE(t.store->write(more));
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  rocksdb::get_perf_context()->Reset();
  auto from_cursor = outbox.first(0, next);
  const std::uint64_t skipped_from_cursor = rocksdb::get_perf_context()->internal_delete_skipped_count;
  rocksdb::get_perf_context()->Reset();
  auto from_start = outbox.first(0, 0);
  const std::uint64_t skipped_from_start = rocksdb::get_perf_context()->internal_delete_skipped_count;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  REQUIRE(from_cursor);
  REQUIRE(*from_cursor);
  CHECK((*from_cursor)->body == "last");
  CHECK((*from_start)->body == "last");
  CHECK(skipped_from_cursor == 0);
  CHECK(skipped_from_start >= kEvents);  // what every read from the start cost
}

namespace {

std::uintmax_t wal_bytes(const std::string& dir) {
  std::uintmax_t total = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".log") continue;
    std::error_code gone;  // RocksDB may delete an old WAL file meanwhile
    const std::uintmax_t size = std::filesystem::file_size(e.path(), gone);
    if (!gone) total += size;
  }
  return total;
}

}  // namespace

TEST_CASE("a rarely written family does not pin the WAL: storage.max_wal_mb bounds it", "[store]") {
  // One cursor row, then 96 MB of inbox rows: without max_total_wal_size
  // the cursor family's unflushed row keeps every WAL file since it.
  StorageConfig config;
  config.data_dir =
      (std::filesystem::temp_directory_path() / ("imwal-" + std::to_string(std::random_device{}()))).string();
  config.max_wal_mb = 16;
  config.write_buffer_mb = 1024;  // so only max_total_wal_size can release the pinned WAL
  {
    auto opened = Store::open(config);
    REQUIRE(opened);
    Store& s = **opened;
    Batch first(s);
    first.put_cursor("u", CursorRecord{1, "d", 7, 0});
    REQUIRE(s.write(first));
    const std::string body(4000, 'x');
    std::uintmax_t most = 0;
    for (std::uint64_t seq = 1; seq <= 24000; ++seq) {
      Batch b(s);
      b.put_inbox("writer", seq, body);
      REQUIRE(s.write(b));
      if (seq % 1000 == 0) most = std::max(most, wal_bytes(config.data_dir));
    }
    // The flushes that release WAL files run in the background (a slow,
    // sanitized build lags behind the writes): wait, at most 30 s, for the
    // total to settle under the bound. Without it, it never drops below the
    // 96 MB written.
    std::uintmax_t now = wal_bytes(config.data_dir);
    for (int i = 0; i < 300 && now >= (32u << 20); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      now = wal_bytes(config.data_dir);
    }
    INFO("largest WAL total seen while writing: " << most << ", settled: " << now);
    CHECK(now < (32u << 20));
    std::uint64_t acked = 0;
    REQUIRE(s.scan_cursors("u", [&](const CursorRecord& c) {
      acked = c.acked;
      return true;
    }));
    CHECK(acked == 7);
  }
  std::filesystem::remove_all(config.data_dir);
}

TEST_CASE("store: a store of the layout before PROTOCOL 8 opens, gains the new families and the schema version") {
  const StorageConfig config = fresh_config("imstore-v1-");
  {
    // The ten families of layout 1, no schema row, one inbox row.
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> families{{rocksdb::kDefaultColumnFamilyName, {}}};
    for (const char* name :
         {"inbox", "history", "dedupe", "cursors", "groups", "members", "user_groups", "fanout", "outbox", "meta"})
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    REQUIRE(rocksdb::DB::Open(options, config.data_dir, families, &handles, &db).ok());
    v1::Message m;
    m.set_body("old");
    m.set_inbox_seq(1);
    REQUIRE(db->Put(rocksdb::WriteOptions(), handles[1], inbox_key("bob", 1), m.SerializeAsString()).ok());
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
  {
    auto opened = Store::open(config);
    REQUIRE(opened);
    auto& store = **opened;
    CHECK(store.last_inbox_seq("bob").value() == 1);
    CHECK(store.get_meta(kSchemaVersionKey).value() == kSchemaVersion);
    CHECK(store.get_conv_applied("bob").value() == 0);  // derived from the inbox on first use
    Batch b(store);
    b.put_meta(kSchemaVersionKey, kSchemaVersion + 1);
    REQUIRE(store.write(b));
  }
  // A later layout is refused, with a message that says so.
  auto refused = Store::open(config);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.find("newer imserver") != std::string::npos);
  std::filesystem::remove_all(config.data_dir);
}

TEST_CASE("store: group read positions keep the largest, whatever the order of the writes") {
  TempStore t;
  Batch b(*t.store);
  b.merge_read("g", "bob", 7);
  b.merge_read("g", "bob", 3);
  b.merge_read("g", "amy", 2);
  REQUIRE(t.store->write(b));
  Batch c(*t.store);
  c.merge_read("g", "bob", 5);
  REQUIRE(t.store->write(c));
  std::vector<std::pair<std::string, std::uint64_t>> reads;
  REQUIRE(t.store->scan_reads("g", [&](std::string_view uid, std::uint64_t seq) {
    reads.emplace_back(std::string(uid), seq);
    return true;
  }));
  CHECK(reads == std::vector<std::pair<std::string, std::uint64_t>>{{"amy", 2}, {"bob", 7}});
}

TEST_CASE("store: a conversation's settings row is read alone and is not a conversation state") {
  TempStore t;
  ConvRecord state;
  state.last_conv_seq = 3;
  state.muted = true;
  Batch b(*t.store);
  b.put_conv("bob", "c:alice:bob", state);
  b.put_conv_applied("bob", 9);
  b.put_conv_settings("bob", "c:alice:bob", {true, false, true});
  b.put_conv_settings("bob", "g:team", {false, true, false});
  REQUIRE(t.store->write(b));
  CHECK(t.store->get_conv_settings("bob", "c:alice:bob").value() == ConvSettingsRecord{true, false, true});
  CHECK(t.store->get_conv_settings("bob", "g:team").value() == ConvSettingsRecord{false, true, false});
  CHECK_FALSE(t.store->get_conv_settings("bob", "c:bob:carol").value());
  CHECK_FALSE(t.store->get_conv_settings("bo", "c:alice:bob").value());
  std::vector<std::string> states;
  REQUIRE(t.store->scan_convs("bob", [&](std::string_view conv, ConvRecord&& r) {
    states.emplace_back(conv);
    CHECK(r == state);
    return true;
  }));
  CHECK(states == std::vector<std::string>{"c:alice:bob"});
  CHECK(t.store->get_conv_applied("bob").value() == 9);
  CHECK_FALSE(ConvSettingsRecord::decode(""));
  CHECK_FALSE(ConvSettingsRecord::decode(std::string("\x02\x01", 2)));
}

TEST_CASE("store: a store of layout 2 gains a settings row for each conversation state with a setting") {
  const StorageConfig config = fresh_config("imstore-v2-");
  {
    auto opened = Store::open(config);
    REQUIRE(opened);
    auto& store = **opened;
    ConvRecord muted;
    muted.last_conv_seq = 1;
    muted.muted = true;
    ConvRecord pinned;
    pinned.last_conv_seq = 2;
    pinned.pinned = true;
    ConvRecord plain;
    plain.last_conv_seq = 4;
    Batch b(store);
    b.put_conv("bob", "c:alice:bob", muted);
    b.put_conv("bob", "g:team", pinned);
    b.put_conv("bob", "c:bob:carol", plain);
    b.put_conv_applied("bob", 7);
    b.put_meta(kSchemaVersionKey, 2);
    REQUIRE(store.write(b));
  }
  {
    auto opened = Store::open(config);
    REQUIRE(opened);
    auto& store = **opened;
    CHECK(store.get_meta(kSchemaVersionKey).value() == kSchemaVersion);
    CHECK(store.get_conv_settings("bob", "c:alice:bob").value() == ConvSettingsRecord{true, false, false});
    CHECK(store.get_conv_settings("bob", "g:team").value() == ConvSettingsRecord{false, true, false});
    CHECK_FALSE(store.get_conv_settings("bob", "c:bob:carol").value());
    int states = 0;
    REQUIRE(store.scan_convs("bob", [&](std::string_view, ConvRecord&&) { return ++states > 0; }));
    CHECK(states == 3);
  }
  std::filesystem::remove_all(config.data_dir);
}

TEST_CASE("store: a store of layout 3 gains a change row for each recalled or edited history row") {
  const StorageConfig config = fresh_config("imstore-v3-");
  {
    auto opened = Store::open(config);
    REQUIRE(opened);
    auto& store = **opened;
    Batch b(store);
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
      v1::Message m;
      m.set_msg_id(100 + seq);
      m.set_conv_seq(seq);
      m.set_content_type(seq == 1 ? 10005 : 1);
      m.set_edit_version(seq == 2 ? 1 : 0);
      b.put_history("c:alice:bob", seq, m.SerializeAsString());
    }
    b.put_meta(kSchemaVersionKey, 3);
    REQUIRE(store.write(b));
  }
  {
    auto opened = Store::open(config);
    REQUIRE(opened);
    auto& store = **opened;
    CHECK(store.get_meta(kSchemaVersionKey).value() == kSchemaVersion);
    std::vector<std::uint64_t> ids;
    REQUIRE(store.scan_change_ids([&](std::uint64_t id) {
      ids.push_back(id);
      return true;
    }));
    CHECK(ids == std::vector<std::uint64_t>{101, 102});
    CHECK(store.get_change(101).value() == ChangeRecord{"c:alice:bob", 1, true, {}});
    CHECK(store.get_change(102).value() == ChangeRecord{"c:alice:bob", 2, false, {}});
  }
  std::filesystem::remove_all(config.data_dir);
}

TEST_CASE("store: deleted seqs are read by range in either direction, and a clear drops those it covers") {
  TempStore t;
  Batch b(*t.store);
  for (std::uint64_t seq : {2, 3, 5, 8, 13}) b.put_deleted("bob", "c:alice:bob", seq);
  b.put_deleted("bob", "c:bob:carol", 4);
  b.put_deleted("bobby", "c:alice:bob", 6);
  REQUIRE(t.store->write(b));
  auto seqs = [&](std::uint64_t from, std::uint64_t to, bool reverse, std::size_t at_most = 100) {
    std::vector<std::uint64_t> out;
    REQUIRE(t.store->scan_deleted("bob", "c:alice:bob", from, to, reverse, [&](std::uint64_t s) {
      out.push_back(s);
      return out.size() < at_most;
    }));
    return out;
  };
  CHECK(seqs(0, 100, false) == std::vector<std::uint64_t>{2, 3, 5, 8, 13});
  CHECK(seqs(3, 13, false) == std::vector<std::uint64_t>{3, 5, 8});
  CHECK(seqs(3, 14, true) == std::vector<std::uint64_t>{13, 8, 5, 3});
  CHECK(seqs(0, UINT64_MAX, true, 2) == std::vector<std::uint64_t>{13, 8});
  CHECK(seqs(9, 9, false).empty());
  CHECK(t.store->get_cleared("bob", "c:alice:bob").value() == 0);

  Batch clear(*t.store);
  clear.put_cleared("bob", "c:alice:bob", 5);
  clear.del_deleted_upto("bob", "c:alice:bob", 5);
  REQUIRE(t.store->write(clear));
  CHECK(t.store->get_cleared("bob", "c:alice:bob").value() == 5);
  CHECK(seqs(0, 100, false) == std::vector<std::uint64_t>{8, 13});
  // Other users' and conversations' rows are untouched.
  std::vector<std::uint64_t> other;
  REQUIRE(t.store->scan_deleted("bob", "c:bob:carol", 0, 100, false, [&](std::uint64_t s) {
    other.push_back(s);
    return true;
  }));
  REQUIRE(t.store->scan_deleted("bobby", "c:alice:bob", 0, 100, false, [&](std::uint64_t s) {
    other.push_back(s);
    return true;
  }));
  CHECK(other == std::vector<std::uint64_t>{4, 6});
}

TEST_CASE("store: a member's read position goes with the member") {
  TempStore t;
  Batch b(*t.store);
  for (const char* uid : {"amy", "bob"}) {
    b.put_member("g", uid, {false, 1});
    b.merge_read("g", uid, 4);
  }
  b.merge_read("g2", "bob", 9);
  REQUIRE(t.store->write(b));
  Batch removal(*t.store);
  removal.del_member("g", "bob");
  REQUIRE(t.store->write(removal));
  auto reads = [&](const std::string& gid) {
    std::vector<std::pair<std::string, std::uint64_t>> out;
    REQUIRE(t.store->scan_reads(gid, [&](std::string_view uid, std::uint64_t seq) {
      out.emplace_back(std::string(uid), seq);
      return true;
    }));
    return out;
  };
  CHECK(reads("g") == std::vector<std::pair<std::string, std::uint64_t>>{{"amy", 4}});
  CHECK(reads("g2") == std::vector<std::pair<std::string, std::uint64_t>>{{"bob", 9}});
}

TEST_CASE("store: inbox and history rows appended after retention's range deletions read back whole") {
  // Inbox and history use RocksDB's per-prefix insert positions, which 7.8
  // shares between a memtable's rows and its range deletions: retention's
  // deletions must start outside every prefix, or this aborts or loses rows.
  TempStore t;
  constexpr std::int64_t kDay = 86400000;
  const std::int64_t now = 1'800'000'000'000;
  Batch b(*t.store);
  for (std::uint64_t i = 1; i <= 4; ++i) b.put_inbox("alice", i, row(now - 40 * kDay, i));
  for (std::uint64_t i = 1; i <= 4; ++i) b.put_history("c:alice:bob", i, row(now - 400 * kDay, i));
  REQUIRE(t.store->write(b));
  core::ChangedMessages changes(*t.store);
  core::Retention retention(t.config, *t.store, changes);
  CHECK(retention.run_once(now) == 3 + 3);
  Batch more(*t.store);
  for (std::uint64_t i = 5; i <= 7; ++i) more.put_inbox("alice", i, row(now, i));
  for (std::uint64_t i = 5; i <= 7; ++i) more.put_history("c:alice:bob", i, row(now, i));
  REQUIRE(t.store->write(more));
  const std::vector<std::uint64_t> kept{4, 5, 6, 7};
  CHECK(inbox_seqs(*t.store, "alice") == kept);
  CHECK(history_seqs(*t.store, "c:alice:bob") == kept);
  REQUIRE(t.store->flush());
  CHECK(inbox_seqs(*t.store, "alice") == kept);
  CHECK(history_seqs(*t.store, "c:alice:bob") == kept);
}

TEST_CASE("store: a WAL holding a range deletion inside an inbox, from a build before the hints, replays whole") {
  auto config = fresh_config("imstore-wal-");
  REQUIRE(Store::open(config));  // the families, then closed
  {
    // What an older build left: rows and a retention-style range deletion
    // starting at a row, in the WAL only (no flush at close).
    std::vector<std::string> names;
    REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), config.data_dir, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const auto& name : names) families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    rocksdb::DBOptions options;
    options.avoid_flush_during_shutdown = true;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    REQUIRE(rocksdb::DB::Open(options, config.data_dir, families, &handles, &db).ok());
    rocksdb::ColumnFamilyHandle* inbox = nullptr;
    for (std::size_t i = 0; i < names.size(); ++i)
      if (names[i] == "inbox") inbox = handles[i];
    REQUIRE(inbox);
    for (std::uint64_t i = 1; i <= 4; ++i) REQUIRE(db->Put({}, inbox, inbox_key("alice", i), row(0, i)).ok());
    REQUIRE(db->DeleteRange({}, inbox, inbox_key("alice", 1), inbox_key("alice", 3)).ok());
    REQUIRE(db->Put({}, inbox, inbox_key("alice", 5), row(0, 5)).ok());
    for (auto* h : handles) REQUIRE(db->DestroyColumnFamilyHandle(h).ok());
    delete db;
  }
  {
    auto opened = Store::open(config);
    REQUIRE(opened);
    auto& store = **opened;
    CHECK(inbox_seqs(store, "alice") == std::vector<std::uint64_t>{3, 4, 5});
    Batch more(store);
    more.put_inbox("alice", 6, row(0, 6));
    REQUIRE(store.write(more));
    CHECK(inbox_seqs(store, "alice") == std::vector<std::uint64_t>{3, 4, 5, 6});
  }
  std::filesystem::remove_all(config.data_dir);
}

TEST_CASE("store: a history row keeps its search text beside the Message, and readers see the Message alone") {
  TempStore t;
  Store& store = *t.store;
  v1::Message m;
  m.set_msg_id(9);
  m.set_body("body");
  m.set_server_time_ms(1000);
  const std::string bytes = m.SerializeAsString();
  const std::string long_text(300, 'x');  // a two-byte length
  Batch b(store);
  b.put_history("c:alice:bob", 1, bytes, "明天开会");
  b.put_history("c:alice:bob", 2, bytes);
  b.put_history("c:alice:bob", 3, bytes, long_text);
  REQUIRE(store.write(b));
  CHECK(store.get_history("c:alice:bob", 1).value() == std::optional<std::string>(bytes));
  CHECK(store.get_history("c:alice:bob", 2).value() == std::optional<std::string>(bytes));
  auto row = store.get_history_row("c:alice:bob", 1).value();
  REQUIRE(row);
  CHECK(row->message == bytes);
  CHECK(row->search_text == "明天开会");
  CHECK(store.get_history_row("c:alice:bob", 2).value()->search_text.empty());
  CHECK(store.get_history_row("c:alice:bob", 3).value()->search_text == long_text);
  CHECK_FALSE(store.get_history_row("c:alice:bob", 4).value());
  std::vector<std::string> seen;
  REQUIRE(store.scan_history("c:alice:bob", 1, 4, [&](std::uint64_t, std::string_view message) {
    seen.emplace_back(message);
    return true;
  }));
  CHECK(seen == std::vector<std::string>{bytes, bytes, bytes});
  seen.clear();
  REQUIRE(store.scan_history_back("c:alice:bob", 4, [&](std::uint64_t, std::string_view message) {
    seen.emplace_back(message);
    return true;
  }));
  CHECK(seen == std::vector<std::string>{bytes, bytes, bytes});
  std::vector<std::string> texts;
  REQUIRE(
      store.scan_history_rows("c:alice:bob", 1, 4, [&](std::uint64_t, std::string_view message, std::string_view text) {
        CHECK(message == bytes);
        texts.emplace_back(text);
        return true;
      }));
  CHECK(texts == std::vector<std::string>{"明天开会", "", long_text});
  CHECK(store.last_history_seq("c:alice:bob").value() == 3);
  // Retention reads the Message of each row, text or not: the two old ones go.
  CHECK(store.expire_oldest(Cf::kHistory, [](std::string_view value) {
    v1::Message parsed;
    REQUIRE(parsed.ParseFromArray(value.data(), static_cast<int>(value.size())));
    return parsed.server_time_ms() < 2000;
  }) == 2);
  CHECK_FALSE(store.get_history("c:alice:bob", 1).value());
  CHECK(store.get_history_row("c:alice:bob", 3).value()->search_text == long_text);
}

TEST_CASE("history values: a damaged text header is read as a Message, never past the value") {
  CHECK(decode_history("").message.empty());
  CHECK(decode_history(std::string("\0", 1)).message.size() == 1);  // no length
  CHECK(decode_history(std::string("\0\x05"
                                   "ab",
                                   4))
            .message.size() == 4);                                                          // a length past the end
  CHECK(decode_history(std::string("\0\xff\xff\xff\xff\xff\xff", 7)).search_text.empty());  // an endless length
  const std::string encoded = encode_history("msg", "txt");
  const auto v = decode_history(encoded);
  CHECK(v.message == "msg");
  CHECK(v.search_text == "txt");
  CHECK(encode_history("msg", "") == "msg");
}

TEST_CASE("store: every conversation with history rows is visited once, in id order, until told to stop") {
  TempStore t;
  Store& store = *t.store;
  Batch b(store);
  for (std::uint64_t seq = 1; seq <= 5; ++seq) b.put_history("c:a:b", seq, "x");
  b.put_history("c:a:bb", 1, "x");
  b.put_history("g:team", 3, "x");
  b.put_history("s:a", 1, "x");
  REQUIRE(store.write(b));
  std::vector<std::string> convs;
  REQUIRE(store.scan_history_convs([&](std::string_view conv) {
    convs.emplace_back(conv);
    return true;
  }));
  CHECK(convs == std::vector<std::string>{"c:a:b", "c:a:bb", "g:team", "s:a"});
  convs.clear();
  REQUIRE(store.scan_history_convs([&](std::string_view conv) {
    convs.emplace_back(conv);
    return convs.size() < 2;
  }));
  CHECK(convs.size() == 2);
}

TEST_CASE("a snapshot scan sees every family as of its start, merge rows merged, and none of the writes during it") {
  TempStore t;
  Store& s = *t.store;
  {
    Batch b(s);
    for (std::uint64_t i = 1; i <= 50; ++i) b.put_inbox("u" + std::to_string(i % 3), i, "m" + std::to_string(i));
    b.put_history("c2c:a:b", 1, "h1", "");
    b.merge_read("g1", "u1", 5);
    b.merge_read("g1", "u1", 3);  // MaxMerge: 5 stays
    b.put_meta("applied:0", 50);
    REQUIRE(s.write(b));
  }
  std::map<Cf, int> rows;
  std::optional<std::uint64_t> read_pos;
  bool written = false;
  auto scanned = s.scan_snapshot([&](Cf cf, std::string_view key, std::string_view value) {
    ++rows[cf];
    if (!written) {
      // Writes during the scan (on the first row of the first family), to
      // this family and later ones: a batch the snapshot must not see, not
      // even in part.
      Batch b(s);
      b.put_inbox("u9", 1, "late");
      b.put_meta("applied:0", 51);
      b.put_history("c2c:a:b", 2, "h2", "");
      REQUIRE(s.write(b));
      written = true;
    }
    if (cf == Cf::kReads) read_pos = value.size() == 8 ? std::optional(read_u64(value)) : std::nullopt;
    if (cf == Cf::kMeta && key == "applied:0") CHECK(read_u64(value) == 50);
    return true;
  });
  REQUIRE(scanned);
  CHECK(rows[Cf::kInbox] == 50);
  CHECK(rows[Cf::kHistory] == 1);
  CHECK(rows[Cf::kReads] == 1);
  REQUIRE(read_pos);
  CHECK(*read_pos == 5);
  // The store has them; a new scan sees them, and stops when asked.
  int seen = 0;
  REQUIRE(s.scan_snapshot([&](Cf, std::string_view, std::string_view) { return ++seen < 10; }));
  CHECK(seen == 10);
  CHECK(inbox_seqs(s, "u9").size() == 1);
}

namespace {

v1::Message message_at(std::uint64_t conv_seq, std::int64_t time_ms, std::string body) {
  v1::Message m;
  m.set_msg_id(1000 + conv_seq);
  m.set_conv_type(v1::C2C);
  m.set_from("alice");
  m.set_to("bob");
  m.set_conv_seq(conv_seq);
  m.set_client_msg_id("c" + std::to_string(conv_seq));
  m.set_content_type(1);
  m.set_body(std::move(body));
  m.set_server_time_ms(time_ms);
  return m;
}

// An inbox's rows as readers get them, parsed, in seq order.
std::vector<v1::Message> inbox_messages(Store& s, const std::string& uid) {
  std::vector<v1::Message> out;
  REQUIRE(s.scan_inbox(uid, 0, UINT64_MAX, [&](std::uint64_t, std::string_view r) {
    REQUIRE(out.emplace_back().ParseFromArray(r.data(), static_cast<int>(r.size())));
    return true;
  }));
  return out;
}

}  // namespace

TEST_CASE("inbox references: well formed or read as a Message, never past the value") {
  const std::string ref = encode_inbox_ref("c:alice:bob", 300);
  CHECK(ref.size() == 1 + 1 + 11 + 2);
  const auto decoded = decode_inbox_ref(ref);
  REQUIRE(decoded);
  CHECK(decoded->conv == "c:alice:bob");
  CHECK(decoded->conv_seq == 300);
  CHECK_FALSE(decode_inbox_ref(message_at(1, 1, "x").SerializeAsString()));  // a Message never starts with 0x00
  CHECK_FALSE(decode_inbox_ref(""));
  CHECK_FALSE(decode_inbox_ref(std::string("\0", 1)));  // no length
  CHECK_FALSE(
      decode_inbox_ref(std::string("\0\x05"
                                   "ab",
                                   4)));  // a length past the end
  CHECK_FALSE(
      decode_inbox_ref(std::string("\0\x01"
                                   "a",
                                   3)));  // no conv_seq
  CHECK_FALSE(
      decode_inbox_ref(std::string("\0\x01"
                                   "a\x01\x02",
                                   5)));  // bytes after it
  CHECK_FALSE(
      decode_inbox_ref(std::string("\0\x01"
                                   "a\x00",
                                   4)));                        // conv_seq 0
  CHECK_FALSE(decode_inbox_ref(std::string("\0\x00\x01", 3)));  // no conversation
  CHECK_FALSE(
      decode_inbox_ref(std::string("\0\x01"
                                   "a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                                   14)));  // > 64 bits
  std::string m = message_at(1, 1, "x").SerializeAsString();
  append_inbox_seq(m, 1ull << 40);
  v1::Message parsed;
  REQUIRE(parsed.ParseFromString(m));
  CHECK(parsed.inbox_seq() == 1ull << 40);
  CHECK(parsed.body() == "x");
}

TEST_CASE("store: an inbox row by reference reads as its history row's Message with the row's inbox_seq") {
  TempStore t;
  const v1::Message first = message_at(1, 10, "hello");
  const v1::Message second = message_at(2, 20, "searchable");
  Batch b(*t.store);
  b.put_history("c:alice:bob", 1, first.SerializeAsString());
  b.put_history("c:alice:bob", 2, second.SerializeAsString(), "a search text");
  b.put_inbox_ref("bob", 7, "c:alice:bob", 1);
  v1::Message copy = message_at(9, 15, "a copy");  // rows of both kinds in one inbox
  copy.set_inbox_seq(8);
  b.put_inbox("bob", 8, copy.SerializeAsString());
  b.put_inbox_ref("bob", 9, "c:alice:bob", 2);
  b.put_inbox_ref("bob", 10, "c:alice:bob", 3);  // a history row that is not there
  REQUIRE(t.store->write(b));

  const auto rows = inbox_messages(*t.store, "bob");
  REQUIRE(rows.size() == 3);  // 10 is skipped
  v1::Message expected = first;
  expected.set_inbox_seq(7);
  CHECK(rows[0].SerializeAsString() == expected.SerializeAsString());
  CHECK(rows[1].body() == "a copy");
  CHECK(rows[1].inbox_seq() == 8);
  expected = second;
  expected.set_inbox_seq(9);
  CHECK(rows[2].SerializeAsString() == expected.SerializeAsString());  // no search text
  std::vector<std::uint64_t> back;
  REQUIRE(t.store->scan_inbox_back("bob", UINT64_MAX, [&](std::uint64_t seq, std::string_view r) {
    v1::Message m;
    REQUIRE(m.ParseFromArray(r.data(), static_cast<int>(r.size())));
    CHECK(m.inbox_seq() == seq);
    back.push_back(seq);
    return true;
  }));
  CHECK(back == std::vector<std::uint64_t>{9, 8, 7});
  // The edge keys still count the skipped row: seqs are never reused.
  CHECK(t.store->last_inbox_seq("bob").value() == 10);

  // A history row rewritten (a recall) is what the reference reads from then on.
  v1::Message recalled = first;
  recalled.set_content_type(10005);
  recalled.clear_body();
  Batch recall(*t.store);
  recall.put_history("c:alice:bob", 1, recalled.SerializeAsString());
  REQUIRE(t.store->write(recall));
  CHECK(inbox_messages(*t.store, "bob").front().content_type() == 10005);
}

TEST_CASE("retention: references expire with their messages, a kept newest reference becomes a copy") {
  TempStore t;
  constexpr std::int64_t kDay = 86400000;
  const std::int64_t now = 1'800'000'000'000;
  Batch b(*t.store);
  // alice: two old references and a recent one; bob: only old ones; carol:
  // a reference whose history row is gone, then a recent one.
  for (std::uint64_t i = 1; i <= 5; ++i)
    b.put_history("c:alice:bob", i, message_at(i, now - (i <= 4 ? 40 : 1) * kDay, "m").SerializeAsString());
  b.put_inbox_ref("alice", 1, "c:alice:bob", 1);
  b.put_inbox_ref("alice", 2, "c:alice:bob", 2);
  b.put_inbox_ref("alice", 3, "c:alice:bob", 5);
  b.put_inbox_ref("bob", 1, "c:alice:bob", 3);
  b.put_inbox_ref("bob", 2, "c:alice:bob", 4);
  b.put_inbox_ref("carol", 1, "c:gone", 1);
  b.put_inbox_ref("carol", 2, "c:alice:bob", 5);
  REQUIRE(t.store->write(b));

  core::ChangedMessages changes(*t.store);
  t.config.history_retention_days = 35;  // takes history rows 1-4 (not 5, the newest) after the inboxes
  core::Retention retention(t.config, *t.store, changes);
  CHECK(retention.run_once(now) == 2 + 1 + 1 + 4);
  CHECK(inbox_seqs(*t.store, "alice") == std::vector<std::uint64_t>{3});
  CHECK(inbox_seqs(*t.store, "carol") == std::vector<std::uint64_t>{2});
  CHECK(history_seqs(*t.store, "c:alice:bob") == std::vector<std::uint64_t>{5});
  // bob's newest row was kept and written as the copy it named, before its
  // history row went.
  const auto bobs = inbox_messages(*t.store, "bob");
  REQUIRE(bobs.size() == 1);
  CHECK(bobs[0].conv_seq() == 4);
  CHECK(bobs[0].inbox_seq() == 2);
  CHECK(bobs[0].body() == "m");
  std::string raw;
  REQUIRE(t.store->scan_family(Cf::kInbox, [&](std::string_view key, std::string_view value) {
    if (key == inbox_key("bob", 2)) raw = std::string(value);
    return true;
  }));
  CHECK_FALSE(decode_inbox_ref(raw));
  CHECK(retention.run_once(now) == 0);
}

TEST_CASE("retention: history lowered below inbox retention waits for the inboxes' references, then applies") {
  TempStore t;
  constexpr std::int64_t kDay = 86400000;
  const std::int64_t now = wall_ms();
  CHECK(core::inbox_rows_by_reference(t.config));  // 365 > 30 days
  core::ChangedMessages changes(*t.store);

  // Written by reference while history outlived the inboxes: a 10-day-old
  // message still in alice's inbox. The record that references exist is in
  // the batch, as a shard writes it with its first reference of a run.
  Batch b(*t.store);
  b.put_meta(kInboxRefsKey, kInboxRefsOn);
  b.put_history("c:alice:bob", 1, message_at(1, now - 10 * kDay, "old").SerializeAsString());
  b.put_history("c:alice:bob", 2, message_at(2, now, "new").SerializeAsString());
  b.put_inbox_ref("alice", 1, "c:alice:bob", 1);
  b.put_inbox_ref("alice", 2, "c:alice:bob", 2);
  REQUIRE(t.store->write(b));
  { core::Retention on(t.config, *t.store, changes); }  // a restart, still by reference
  CHECK(t.store->get_meta(kInboxRefsKey).value() == kInboxRefsOn);

  t.config.history_retention_days = 7;
  t.config.inbox_retention_days = 30;
  CHECK_FALSE(core::inbox_rows_by_reference(t.config));
  t.config.history_retention_days = 30;
  CHECK_FALSE(core::inbox_rows_by_reference(t.config));  // equal is not enough: rows come about in time order
  t.config.history_retention_days = 7;
  core::Retention off(t.config, *t.store, changes);
  const auto switched = t.store->get_meta(kInboxRefsKey).value();
  REQUIRE(switched);
  CHECK(*switched != kInboxRefsOn);
  CHECK(static_cast<std::int64_t>(*switched) >= now);
  // The history row a reference names stays while the inbox may hold it.
  CHECK(off.run_once(now) == 0);
  CHECK(inbox_messages(*t.store, "alice").size() == 2);
  CHECK(off.run_once(now + 20 * kDay) == 0);
  CHECK(inbox_messages(*t.store, "alice").front().body() == "old");
  // A month and a day later every inbox row of then is past inbox retention
  // (or kept as a copy): history retention applies as configured again.
  CHECK(off.run_once(now + 32 * kDay) == 1 + 1);  // alice's row 1, then history row 1
  CHECK_FALSE(t.store->get_meta(kInboxRefsKey).value());
  CHECK(history_seqs(*t.store, "c:alice:bob") == std::vector<std::uint64_t>{2});
  const auto kept = inbox_messages(*t.store, "alice");
  REQUIRE(kept.size() == 1);
  CHECK(kept[0].body() == "new");
}

TEST_CASE("retention: while references are on, a switch-off record of an earlier run stays for a shard to replace") {
  TempStore t;
  constexpr std::int64_t kDay = 86400000;
  const std::int64_t now = wall_ms();
  REQUIRE(core::inbox_rows_by_reference(t.config));
  // Left by a run without references that ended long ago.
  Batch b(*t.store);
  b.put_meta(kInboxRefsKey, static_cast<std::uint64_t>(now - 40 * kDay));
  REQUIRE(t.store->write(b));
  core::ChangedMessages changes(*t.store);
  core::Retention retention(t.config, *t.store, changes);
  retention.run_once(now);
  // Not deleted: a shard writing "on" in its first reference batch may
  // race with this pass, and a delete after it would lose that record.
  const auto kept = t.store->get_meta(kInboxRefsKey).value();
  REQUIRE(kept);
  CHECK(*kept == static_cast<std::uint64_t>(now - 40 * kDay));
}

TEST_CASE("store: references to many conversations, interleaved and out of order, read right both ways") {
  TempStore t;
  // 12 conversations (past the reader's 8 iterators), rows 1-5 each; the
  // inbox names them round robin, conv_seqs going back now and then.
  Batch b(*t.store);
  std::vector<std::pair<std::string, std::uint64_t>> named;
  for (int c = 0; c < 12; ++c)
    for (std::uint64_t seq = 1; seq <= 5; ++seq) {
      v1::Message m = message_at(seq, 100, "c" + std::to_string(c) + "/" + std::to_string(seq));
      b.put_history("c:conv" + std::to_string(c), seq, m.SerializeAsString());
    }
  b.put_history("c:conv1x", 1, message_at(1, 100, "a neighbour's id").SerializeAsString());
  std::uint64_t inbox_seq = 0;
  for (std::uint64_t seq : {1, 2, 4, 3, 5, 2, 6})  // 6 is not there
    for (int c = 0; c < 12; ++c) {
      named.emplace_back("c:conv" + std::to_string(c), seq);
      b.put_inbox_ref("alice", ++inbox_seq, named.back().first, seq);
    }
  REQUIRE(t.store->write(b));
  auto expected_body = [&](std::uint64_t s) {
    const auto& [conv, seq] = named[s - 1];
    return seq > 5 ? std::string() : conv.substr(6) + "/" + std::to_string(seq);
  };
  std::vector<std::uint64_t> forward;
  REQUIRE(t.store->scan_inbox("alice", 1, inbox_seq + 1, [&](std::uint64_t s, std::string_view r) {
    v1::Message m;
    REQUIRE(m.ParseFromArray(r.data(), static_cast<int>(r.size())));
    CHECK(m.body() == "c" + expected_body(s));
    CHECK(m.inbox_seq() == s);
    forward.push_back(s);
    return true;
  }));
  CHECK(forward.size() == 12 * 6);  // the 12 rows naming conv_seq 6 are skipped
  std::vector<std::uint64_t> backward;
  REQUIRE(t.store->scan_inbox_back("alice", UINT64_MAX, [&](std::uint64_t s, std::string_view r) {
    v1::Message m;
    REQUIRE(m.ParseFromArray(r.data(), static_cast<int>(r.size())));
    CHECK(m.body() == "c" + expected_body(s));
    backward.insert(backward.begin(), s);
    return true;
  }));
  CHECK(backward == forward);
}
