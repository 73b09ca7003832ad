// Large groups (PROTOCOL 9) against the real binary, with
// limits.write_fanout_max_members = 3: the one-way switch on create and on
// add, FANOUT_CHANGED in every inbox, messages stored once and pushed with
// inbox_seq 0 to every online session but the sender's, HISTORY after_seq
// catch-up, events in the inboxes of the users they name, CONV_LIST unread
// counts, CONV_READ, RECEIPTS, recall, dedupe, dismissal and a kill -9.

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "messaging.h"
#include "server_process.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

Overrides large_overrides(const Overrides& extra = {}) {
  return fast_overrides(merged({{"limits.write_fanout_max_members", "3"}}, extra));
}

v1::GroupEvent event_of(const v1::Message& m) {
  REQUIRE(m.content_type() == 10001);
  v1::GroupEvent e;
  REQUIRE(e.ParseFromString(m.body()));
  return e;
}

v1::SendResp send_to_group(SyncClient& c, const std::string& gid, const std::string& cmid,
                           const std::string& body = "hi") {
  auto req = send_req(gid, cmid, body, v1::GROUP);
  return call_ok<v1::SendResp>(c, Cmd::kSend, req);
}

// The next pushed message of group `gid` with `conv_seq` (earlier pushes
// skipped); none when it does not come within 5 s.
std::optional<v1::Message> push_of(SyncClient& c, const std::string& gid, std::uint64_t conv_seq) {
  for (int i = 0; i < 1000; ++i) {
    auto f = c.next_frame(5s);
    if (!f) return std::nullopt;
    if (f->header.cmd != Cmd::kPush) continue;
    v1::MessagePush push;
    REQUIRE(f->parse(push));
    for (const auto& m : push.messages())
      if (m.conv_type() == v1::GROUP && m.to() == gid && m.conv_seq() == conv_seq) return m;
  }
  return std::nullopt;
}

// The group messages (not marks) pushed to `c` within `wait`.
std::vector<v1::Message> group_pushes(SyncClient& c, const std::string& gid, std::chrono::milliseconds wait = 500ms) {
  std::vector<v1::Message> out;
  for (int i = 0; i < 1000; ++i) {
    auto f = c.next_frame(wait);
    if (!f) break;
    if (f->header.cmd != Cmd::kPush) continue;
    v1::MessagePush push;
    REQUIRE(f->parse(push));
    for (const auto& m : push.messages())
      if (m.conv_type() == v1::GROUP && m.to() == gid) out.push_back(m);
  }
  return out;
}

std::vector<v1::Message> history_after(SyncClient& c, const std::string& gid, std::uint64_t after) {
  v1::HistoryReq req;
  req.set_conv_type(v1::GROUP);
  req.set_peer(gid);
  req.set_after_seq(after);
  req.set_limit(500);
  auto resp = call_ok<v1::HistoryResp>(c, Cmd::kHistory, req);
  return {resp.messages().begin(), resp.messages().end()};
}

v1::Group group_get(SyncClient& c, const std::string& gid) {
  v1::GroupGetReq req;
  req.set_gid(gid);
  return call_ok<v1::GroupResp>(c, Cmd::kGroupGet, req).group();
}

v1::GroupMembersResp add_members(SyncClient& c, const std::string& gid, std::vector<std::string> uids,
                                 Cmd cmd = Cmd::kGroupAddMembers) {
  v1::GroupMembersReq req;
  req.set_gid(gid);
  for (auto& u : uids) req.add_uids(u);
  return call_ok<v1::GroupMembersResp>(c, cmd, req);
}

// The group rows (messages and events) of an inbox, marks left out.
std::vector<v1::Message> group_rows(const std::vector<v1::Message>& inbox, const std::string& gid) {
  std::vector<v1::Message> out;
  for (const auto& m : inbox)
    if (m.conv_type() == v1::GROUP && m.to() == gid) out.push_back(m);
  return out;
}

StatusCode status_of(SyncClient& c, Cmd cmd, const google::protobuf::MessageLite& req) {
  auto r = c.call(cmd, &req);
  REQUIRE(r);
  return static_cast<StatusCode>(r->header.status);
}

}  // namespace

TEST_CASE("large group: created over the threshold, it switches at once and pushes with inbox_seq 0") {
  ServerProcess server(large_overrides());
  auto a = server.login("lg-a");
  auto a2 = server.login("lg-a", 2);
  auto b = server.login("lg-b");
  auto resp = create_group(*a, "big", {"lg-b", "lg-c", "lg-d"});
  // GROUP_CREATE answers the group as the plan made it; GROUP_GET after it
  // shows the switch.
  CHECK(resp.group().member_count() == 4);
  // CREATED at 1 and FANOUT_CHANGED at 2, in every member's inbox.
  for (auto* c : {a.get(), b.get()}) {
    auto rows = pull_until(*c, [](const auto& r) { return group_rows(r, "big").size() >= 2; });
    auto g = group_rows(rows, "big");
    REQUIRE(g.size() == 2);
    CHECK(event_of(g[0]).type() == v1::CREATED);
    CHECK(g[0].conv_seq() == 1);
    CHECK(event_of(g[1]).type() == v1::FANOUT_CHANGED);
    CHECK(g[1].conv_seq() == 2);
    CHECK(event_of(g[1]).group().large());
    CHECK(event_of(g[1]).group().large_from_seq() == 3);
  }
  auto info = group_get(*a, "big");
  CHECK(info.large());
  CHECK(info.large_from_seq() == 3);
  for (auto* c : {a.get(), a2.get(), b.get()}) (void)group_pushes(*c, "big");  // the events' pushes

  // A message: stored once, SendResp inbox_seq 0, pushed with inbox_seq 0.
  auto sent = send_to_group(*a, "big", "m1", "first");
  CHECK(sent.inbox_seq() == 0);
  CHECK(sent.conv_seq() == 3);
  auto at_b = push_of(*b, "big", 3);
  REQUIRE(at_b);
  CHECK(at_b->inbox_seq() == 0);
  CHECK(at_b->body() == "first");
  CHECK(at_b->from() == "lg-a");
  auto at_a2 = push_of(*a2, "big", 3);  // the sender's other device
  REQUIRE(at_a2);
  CHECK(at_a2->inbox_seq() == 0);
  CHECK(group_pushes(*a, "big").empty());  // never the sending session
  // A retry of the same client_msg_id: the same answer, nothing stored twice.
  auto dup = send_to_group(*a, "big", "m1", "first");
  CHECK(dup.duplicate());
  CHECK(dup.conv_seq() == 3);
  CHECK(dup.inbox_seq() == 0);
  CHECK(dup.msg_id() == sent.msg_id());
  CHECK(group_pushes(*b, "big").empty());

  // No inbox row for it anywhere: the inbox stays gapless and holds events only.
  auto b_rows = group_rows(pull_all(*b), "big");
  CHECK(b_rows.size() == 2);

  // An offline member catches up by HISTORY after_seq, told by CONV_LIST.
  auto d = server.login("lg-d");
  auto list = conv_list(*d);
  auto conv = find_conv(list, "big");
  CHECK(conv.last_conv_seq() == 3);
  CHECK(conv.unread_count() == 1);
  CHECK(conv.last_message().body() == "first");
  CHECK(conv.last_message().inbox_seq() == 0);
  auto caught = history_after(*d, "big", 2);
  REQUIRE(caught.size() == 1);
  CHECK(caught[0].conv_seq() == 3);
  CHECK(caught[0].body() == "first");
  // d is online now: the next message reaches it.
  auto second = send_to_group(*b, "big", "m2", "second");
  CHECK(second.conv_seq() == 4);
  auto at_d = push_of(*d, "big", 4);
  REQUIRE(at_d);
  CHECK(at_d->body() == "second");
  CHECK(push_of(*a, "big", 4));
}

TEST_CASE("large group: growing past the threshold switches once, and membership events go to the named users") {
  ServerProcess server(large_overrides());
  auto a = server.login("sw-a");
  auto b = server.login("sw-b");
  auto c = server.login("sw-c");
  create_group(*a, "grow", {"sw-b", "sw-c"});
  auto small = send_to_group(*a, "grow", "s1", "while small");
  CHECK(small.inbox_seq() > 0);  // write fan-out: a row in the sender's inbox
  CHECK(small.conv_seq() == 2);
  CHECK_FALSE(group_get(*a, "grow").large());

  // A fourth member: MEMBERS_ADDED at 3, FANOUT_CHANGED at 4, in every inbox.
  add_members(*a, "grow", {"sw-d"});
  auto d = server.login("sw-d");
  for (auto* s : {a.get(), b.get(), d.get()}) {
    auto rows = group_rows(pull_until(*s,
                                      [](const auto& r) {
                                        auto g = group_rows(r, "grow");
                                        return !g.empty() && g.back().conv_seq() == 4;
                                      }),
                           "grow");
    REQUIRE_FALSE(rows.empty());
    CHECK(rows.back().conv_seq() == 4);
    CHECK(event_of(rows.back()).type() == v1::FANOUT_CHANGED);
    CHECK(event_of(rows.back()).group().large_from_seq() == 5);
    CHECK(event_of(rows[rows.size() - 2]).type() == v1::MEMBERS_ADDED);
  }
  auto info = group_get(*b, "grow");
  CHECK(info.large());
  CHECK(info.large_from_seq() == 5);
  (void)group_pushes(*b, "grow");
  (void)group_pushes(*c, "grow");

  // Adding to a large group: MEMBERS_ADDED goes to the added user's inbox,
  // and to everyone else by push only.
  const auto b_inbox_before = pull_all(*b).size();
  add_members(*a, "grow", {"sw-e"});
  auto at_b = push_of(*b, "grow", 5);
  REQUIRE(at_b);
  CHECK(at_b->inbox_seq() == 0);
  CHECK(event_of(*at_b).type() == v1::MEMBERS_ADDED);
  auto e = server.login("sw-e");
  auto e_rows = group_rows(pull_until(*e, [](const auto& r) { return !group_rows(r, "grow").empty(); }), "grow");
  REQUIRE(e_rows.size() == 1);
  CHECK(e_rows[0].conv_seq() == 5);
  CHECK(e_rows[0].inbox_seq() > 0);
  CHECK(event_of(e_rows[0]).type() == v1::MEMBERS_ADDED);
  CHECK(event_of(e_rows[0]).group().large());
  CHECK(pull_all(*b).size() == b_inbox_before);

  // Nothing from before the join is unread for the new member.
  CHECK(find_conv(conv_list(*e), "grow").unread_count() == 0);
  // The new member is indexed at once: it gets the next message pushed.
  auto m = send_to_group(*c, "grow", "c1", "to all");
  CHECK(m.conv_seq() == 6);
  CHECK(push_of(*e, "grow", 6));
  CHECK(push_of(*b, "grow", 6));
  CHECK(find_conv(conv_list(*e), "grow").unread_count() == 1);

  // Removing: the removed user's inbox gets the event; it gets nothing more
  // and may no longer read the group.
  v1::GroupMembersReq remove;
  remove.set_gid("grow");
  remove.add_uids("sw-c");
  (void)call_ok<v1::GroupMembersResp>(*a, Cmd::kGroupRemoveMembers, remove);
  auto c_rows = group_rows(pull_until(*c,
                                      [](const auto& r) {
                                        auto g = group_rows(r, "grow");
                                        return !g.empty() && g.back().content_type() == 10001 &&
                                               event_of(g.back()).type() == v1::MEMBERS_REMOVED;
                                      }),
                           "grow");
  REQUIRE_FALSE(c_rows.empty());
  CHECK(c_rows.back().conv_seq() == 7);
  CHECK(event_of(c_rows.back()).type() == v1::MEMBERS_REMOVED);
  (void)group_pushes(*c, "grow");
  auto after = send_to_group(*a, "grow", "a2", "without c");
  CHECK(after.conv_seq() == 8);
  CHECK(push_of(*b, "grow", 8));
  CHECK(group_pushes(*c, "grow").empty());
  v1::HistoryReq h;
  h.set_conv_type(v1::GROUP);
  h.set_peer("grow");
  CHECK(status_of(*c, Cmd::kHistory, h) == StatusCode::kForbidden);
  // Nor does CONV_LIST show it what came after the removal.
  auto c_conv = find_conv(conv_list(*c), "grow");
  CHECK(c_conv.last_conv_seq() == 7);
  CHECK(c_conv.last_message().content_type() == 10001);
  CHECK(c_conv.unread_count() == 0);
  CHECK(history_after(*b, "grow", 4).size() == 4);  // 5 .. 8

  // Added again: what was sent while it was out is not unread for it.
  add_members(*b, "grow", {"sw-c"});  // 9
  auto back = group_rows(pull_until(*c,
                                    [](const auto& r) {
                                      auto g = group_rows(r, "grow");
                                      return !g.empty() && g.back().conv_seq() == 9;
                                    }),
                         "grow");
  REQUIRE_FALSE(back.empty());
  CHECK(event_of(back.back()).type() == v1::MEMBERS_ADDED);
  auto rejoined = find_conv(conv_list(*c), "grow");
  CHECK(rejoined.last_conv_seq() == 9);
  CHECK(rejoined.unread_count() == 0);
  send_to_group(*a, "grow", "a3", "with c again");  // 10
  CHECK(find_conv(conv_list(*c), "grow").unread_count() == 1);
}

TEST_CASE("large group: unread counts, CONV_READ, sending counts as reading, RECEIPTS and recall") {
  ServerProcess server(large_overrides());
  auto a = server.login("ur-a");
  auto b = server.login("ur-b");
  create_group(*a, "count", {"ur-b", "ur-c", "ur-d"});  // large from 3
  REQUIRE(group_get(*a, "count").large());
  for (int i = 0; i < 5; ++i) send_to_group(*a, "count", "a" + std::to_string(i));  // 3 .. 7
  auto conv = find_conv(conv_list(*b), "count");
  CHECK(conv.last_conv_seq() == 7);
  CHECK(conv.unread_count() == 5);
  CHECK(conv_list(*b).total_unread() == 5);

  // Reading up to 5: two left.
  v1::ConvReadReq read;
  read.set_conv_type(v1::GROUP);
  read.set_peer("count");
  read.set_read_seq(5);
  auto moved = call_ok<v1::ConvReadResp>(*b, Cmd::kConvRead, read);
  CHECK(moved.read_seq() == 5);
  CHECK(moved.unread_count() == 2);
  CHECK(find_conv(conv_list(*b), "count").unread_count() == 2);

  // RECEIPTS: b read up to 5 (a small enough group for receipts).
  v1::ReceiptsReq receipts;
  receipts.set_gid("count");
  receipts.add_conv_seqs(5);
  auto r = call_ok<v1::ReceiptsResp>(*a, Cmd::kReceipts, receipts);
  REQUIRE(r.counts_size() == 1);
  CHECK(r.counts(0).read_count() == 1);  // b (a's own message is not counted for a)

  // A recall takes its message out of the unread count.
  auto recall = recall_req("rc1", v1::GROUP, "count", 7);
  (void)call_ok<v1::SendResp>(*a, Cmd::kRecall, recall);
  CHECK(find_conv(conv_list(*b), "count").unread_count() == 1);

  // Sending counts as reading: after b's own message nothing is unread.
  send_to_group(*a, "count", "a9");  // 9
  CHECK(find_conv(conv_list(*b), "count").unread_count() == 2);
  send_to_group(*b, "count", "b1");  // 10
  auto after_send = find_conv(conv_list(*b), "count");
  CHECK(after_send.unread_count() == 0);
  CHECK(after_send.read_seq() == 10);
  // Reading below one's own message moves nothing and writes nothing.
  read.set_read_seq(8);
  auto below = call_ok<v1::ConvReadResp>(*b, Cmd::kConvRead, read);
  CHECK(below.inbox_seq() == 0);
  CHECK(below.read_seq() == 10);
  send_to_group(*a, "count", "a10");  // 11
  CHECK(find_conv(conv_list(*b), "count").unread_count() == 1);

  // Reading everything (read_seq 0: up to the newest, which only the
  // history knows).
  read.set_read_seq(0);
  auto all = call_ok<v1::ConvReadResp>(*b, Cmd::kConvRead, read);
  CHECK(all.read_seq() == 11);
  CHECK(all.unread_count() == 0);
  // Read up to the newest, the listing still shows the newest message.
  auto read_all = find_conv(conv_list(*b), "count");
  CHECK(read_all.last_conv_seq() == 11);
  CHECK(read_all.last_message().body() == "hi");
  CHECK(read_all.unread_count() == 0);
  // Deleting for oneself a message the inbox never held is allowed.
  v1::DeleteReq del;
  del.set_conv_type(v1::GROUP);
  del.set_peer("count");
  del.add_conv_seqs(11);
  (void)call_ok<v1::DeleteResp>(*b, Cmd::kDelete, del);
  send_to_group(*a, "count", "a11");  // 12
  CHECK(find_conv(conv_list(*b), "count").unread_count() == 1);
}

TEST_CASE("large group: after kill -9 the group is still large, new sessions get pushes, dismissal ends them") {
  ServerProcess server(large_overrides());
  v1::SendResp k1;
  {
    auto a = server.login("kr-a");
    create_group(*a, "crash", {"kr-b", "kr-c", "kr-d"});
    k1 = send_to_group(*a, "crash", "k1", "before the crash");  // 3
  }
  server.kill9();
  server.restart();
  // The switch was one batch with its events' fan-out records: every
  // member's inbox holds CREATED and FANOUT_CHANGED after the restart.
  for (const char* uid : {"kr-b", "kr-c", "kr-d"}) {
    auto s = server.login(uid, 3);
    auto rows = group_rows(pull_until(*s, [](const auto& r) { return group_rows(r, "crash").size() >= 2; }), "crash");
    REQUIRE(rows.size() == 2);
    CHECK(event_of(rows[1]).type() == v1::FANOUT_CHANGED);
  }
  auto a = server.login("kr-a");
  auto b = server.login("kr-b");
  auto info = group_get(*b, "crash");
  CHECK(info.large());
  CHECK(info.large_from_seq() == 3);
  auto before = history_after(*b, "crash", 2);
  REQUIRE(before.size() == 1);
  CHECK(before[0].body() == "before the crash");
  // A retry of k1: its dedupe record (a dedupe row: no inbox row carries a
  // large group's message) survived the kill.
  auto again = send_to_group(*a, "crash", "k1", "before the crash");
  CHECK(again.duplicate());
  CHECK(again.msg_id() == k1.msg_id());
  CHECK(again.conv_seq() == 3);
  CHECK(again.inbox_seq() == 0);
  // The index is built from the stored marker at start-up and b's login.
  auto sent = send_to_group(*a, "crash", "k2", "after the restart");
  CHECK(sent.conv_seq() == 4);
  CHECK(sent.inbox_seq() == 0);
  auto at_b = push_of(*b, "crash", 4);
  REQUIRE(at_b);
  CHECK(at_b->body() == "after the restart");

  // Dismissal: pushed to the online members, then the group is gone.
  v1::GroupIdReq dismiss;
  dismiss.set_gid("crash");
  {
    auto r = a->call(Cmd::kGroupDismiss, &dismiss);
    REQUIRE(r);
    REQUIRE(r->ok());
  }
  auto gone = push_of(*b, "crash", 5);
  REQUIRE(gone);
  CHECK(event_of(*gone).type() == v1::DISMISSED);
  CHECK(gone->inbox_seq() > 0);  // in every member's inbox
  auto req = send_req("crash", "k3", "x", v1::GROUP);
  CHECK(status_of(*a, Cmd::kSend, req) == StatusCode::kNotFound);
  // A member offline meanwhile learns it from its inbox.
  auto c = server.login("kr-c");
  auto c_rows = group_rows(pull_until(*c,
                                      [](const auto& r) {
                                        auto g = group_rows(r, "crash");
                                        return !g.empty() && g.back().conv_seq() == 5;
                                      }),
                           "crash");
  REQUIRE_FALSE(c_rows.empty());
  CHECK(event_of(c_rows.back()).type() == v1::DISMISSED);
  auto c_conv = find_conv(conv_list(*c), "crash");
  CHECK(c_conv.last_conv_seq() == 5);
  CHECK(c_conv.unread_count() == 2);  // 3 and 4, sent after the switch, stay unread as in any group
}

TEST_CASE("large group: a create of 1,200 members killed right after its answer: each member's events, once") {
  // CREATED names the first 500 (the owner first), two MEMBERS_ADDED the
  // rest; each goes to the users it names (no one was a member before),
  // then FANOUT_CHANGED to all 1,201. The answer comes once the batch is
  // written; the kill -9 right after it leaves the inbox rows to the
  // recovery of the fan-out records at start.
  ServerProcess server(large_overrides());
  std::vector<std::string> members;
  for (int i = 0; i < 1200; ++i) members.push_back(fmt::format("m{:04}", i));
  {
    auto owner = server.login("big-owner");
    auto resp = create_group(*owner, "huge", members);
    CHECK(resp.group().member_count() == 1201);
  }
  server.kill9();
  server.restart();
  // The owner and m0000-m0498 are in CREATED (1), m0499-m0998 in the first
  // MEMBERS_ADDED (2), m0999-m1199 in the second (3); FANOUT_CHANGED at 4.
  const std::vector<std::pair<std::string, std::uint64_t>> sample = {
      {"big-owner", 1}, {"m0000", 1}, {"m0498", 1}, {"m0499", 2}, {"m0998", 2}, {"m0999", 3}, {"m1199", 3}};
  for (const auto& [uid, named_at] : sample) {
    INFO(uid);
    auto s = server.login(uid, 3);
    auto rows = group_rows(pull_until(*s, [](const auto& r) { return group_rows(r, "huge").size() >= 2; }), "huge");
    REQUIRE(rows.size() == 2);  // its own event and FANOUT_CHANGED, each once
    CHECK(rows[0].conv_seq() == named_at);
    const auto named = event_of(rows[0]);
    CHECK(std::find(named.uids().begin(), named.uids().end(), uid) != named.uids().end());
    CHECK(rows[1].conv_seq() == 4);
    CHECK(event_of(rows[1]).type() == v1::FANOUT_CHANGED);
    CHECK(event_of(rows[1]).group().large_from_seq() == 5);
  }
  // Read fan-out from 5 on: a message is pushed with inbox_seq 0 and counted unread.
  auto owner = server.login("big-owner");
  auto reader = server.login("m0700");
  auto sent = send_to_group(*owner, "huge", "h1", "to all 1,201");
  CHECK(sent.conv_seq() == 5);
  CHECK(sent.inbox_seq() == 0);
  auto at_reader = push_of(*reader, "huge", 5);
  REQUIRE(at_reader);
  CHECK(at_reader->inbox_seq() == 0);
  auto conv = find_conv(conv_list(*reader), "huge");
  CHECK(conv.last_conv_seq() == 5);
  CHECK(conv.unread_count() == 1);  // its join is its MEMBERS_ADDED (2): 3 and 4 are events
}

TEST_CASE("large group: a first session finds its large groups whether there are few or many of them") {
  // Up to 64 large groups a login looks each one up; past that it scans the
  // user's groups. Both ways the user's session is indexed.
  ServerProcess server(large_overrides());
  auto owner = server.login("many-owner");
  for (int i = 0; i < 70; ++i) {
    const std::string gid = "many" + std::to_string(i);
    create_group(*owner, gid, {"many-x" + std::to_string(i % 2), "many-y", "many-z"});
    if (i == 0 || i == 69) {
      // A member logs in with i + 1 large groups in the server.
      auto x = server.login("many-x" + std::to_string(i % 2), 1, "d" + std::to_string(i));
      (void)group_pushes(*x, gid, 200ms);
      auto sent = send_to_group(*owner, gid, "s" + std::to_string(i), "hello");
      INFO("large groups: " << i + 1);
      CHECK(push_of(*x, gid, sent.conv_seq()));
    }
  }
}
