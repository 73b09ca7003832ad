// PROTOCOL 8.1-8.3 against the real binary: CONV_LIST, CONV_READ,
// CONV_UPDATE, DELETE, RECEIPTS, HISTORY after_seq, the marks in the inbox,
// multi-device convergence, a crash after each answer, the admin endpoints.

#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <thread>
#include <set>

#include <fmt/format.h>

#include "common/base64.h"
#include "http_helpers.h"
#include "messaging.h"
#include "server_process.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

// Four shards, so that users, conversations and groups sit on different
// ones (a receipt then travels by copy record) on any machine.
// The status of a request expected to fail.
StatusCode fail_call(SyncClient& c, Cmd cmd, const google::protobuf::MessageLite& req) {
  auto r = c.call(cmd, &req);
  REQUIRE(r);
  REQUIRE_FALSE(r->ok());
  return static_cast<StatusCode>(r->header.status);
}

v1::ConvReadReq read_req(v1::ConvType type, const std::string& peer, std::uint64_t seq = 0, bool no_receipt = false) {
  v1::ConvReadReq req;
  req.set_conv_type(type);
  req.set_peer(peer);
  req.set_read_seq(seq);
  req.set_no_receipt(no_receipt);
  return req;
}

v1::ConvReadResp conv_read(SyncClient& c, v1::ConvType type, const std::string& peer, std::uint64_t seq = 0,
                           bool no_receipt = false) {
  return call_ok<v1::ConvReadResp>(c, Cmd::kConvRead, read_req(type, peer, seq, no_receipt));
}

bool listed(const v1::ConvListResp& list, const std::string& peer) {
  for (const auto& c : list.conversations())
    if (c.peer() == peer) return true;
  return false;
}

// The PUSHed messages a session receives within `wait` (marks included).
std::vector<v1::Message> pushed(SyncClient& c, std::chrono::milliseconds wait = 500ms) {
  std::vector<v1::Message> out;
  for (int i = 0; i < 1000; ++i) {
    auto f = c.next_frame(wait);
    if (!f) break;
    if (f->header.cmd != Cmd::kPush) continue;
    v1::MessagePush p;
    REQUIRE(f->parse(p));
    for (const auto& m : p.messages()) out.push_back(m);
  }
  return out;
}

v1::SendResp group_send(SyncClient& c, const std::string& gid, const std::string& cmid) {
  auto req = send_req(gid, cmid, "to the group", v1::GROUP);
  return call_ok<v1::SendResp>(c, Cmd::kSend, req);
}

v1::ReceiptsResp receipts(SyncClient& c, const std::string& gid, std::vector<std::uint64_t> seqs,
                          bool with_readers = false) {
  v1::ReceiptsReq req;
  req.set_gid(gid);
  for (auto s : seqs) req.add_conv_seqs(s);
  req.set_with_readers(with_readers);
  return call_ok<v1::ReceiptsResp>(c, Cmd::kReceipts, req);
}

v1::HistoryResp history_page(SyncClient& c, v1::ConvType type, const std::string& peer, std::uint64_t before,
                             std::uint64_t after, std::uint32_t limit = 0) {
  v1::HistoryReq req;
  req.set_conv_type(type);
  req.set_peer(peer);
  req.set_before_seq(before);
  req.set_after_seq(after);
  req.set_limit(limit);
  return call_ok<v1::HistoryResp>(c, Cmd::kHistory, req);
}

std::vector<std::uint64_t> seqs_of(const v1::HistoryResp& h) {
  std::vector<std::uint64_t> out;
  for (const auto& m : h.messages()) out.push_back(m.conv_seq());
  return out;
}

}  // namespace

TEST_CASE("CONV_LIST: unread counts from sequences, own sends read, last_message, inbox_seq") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  for (int i = 1; i <= 3; ++i) send_ok(*alice, "bob", "a" + std::to_string(i), "hi " + std::to_string(i));
  auto list = pull_until(*bob, [](const auto& rows) { return rows.size() == 3; });
  REQUIRE(list.size() == 3);

  v1::ConvListResp b = conv_list(*bob);
  REQUIRE(b.conversations_size() == 1);
  v1::Conversation c = b.conversations(0);
  CHECK(c.conv_type() == v1::C2C);
  CHECK(c.peer() == "alice");
  CHECK(c.unread_count() == 3);
  CHECK(c.read_seq() == 0);
  CHECK(c.last_conv_seq() == 3);
  CHECK(c.last_message().body() == "hi 3");
  CHECK(c.last_message().inbox_seq() == 3);
  CHECK(b.total_unread() == 3);
  CHECK(b.inbox_seq() == 3);
  CHECK_FALSE(b.has_more());

  // The sender's own messages are read by sending.
  v1::ConvListResp a = conv_list(*alice);
  REQUIRE(a.conversations_size() == 1);
  CHECK(a.conversations(0).peer() == "bob");
  CHECK(a.conversations(0).unread_count() == 0);
  CHECK(a.conversations(0).read_seq() == 3);
  CHECK(a.total_unread() == 0);

  // bob answers: he has read up to his own message, and alice has one unread.
  send_ok(*bob, "alice", "b1", "hello");
  c = find_conv(conv_list(*bob), "alice");
  CHECK(c.unread_count() == 0);
  CHECK(c.read_seq() == 4);
  CHECK(find_conv(conv_list(*alice), "bob").unread_count() == 1);
}

TEST_CASE("CONV_READ: forward only, marks in both inboxes, no echo, receipts unless no_receipt") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob", v1::IOS);
  auto bob_pc = server.login("bob", v1::DESKTOP);
  for (int i = 1; i <= 4; ++i) send_ok(*alice, "bob", "a" + std::to_string(i));
  (void)pushed(*bob, 300ms);
  (void)pushed(*bob_pc, 300ms);
  (void)pushed(*alice, 100ms);

  v1::ConvReadResp r = conv_read(*bob, v1::C2C, "alice", 2);
  CHECK(r.read_seq() == 2);
  CHECK(r.unread_count() == 2);
  CHECK(r.inbox_seq() == 5);

  // The reader's other device gets the ReadMark; the reading session does not.
  auto pc = pushed(*bob_pc);
  REQUIRE(pc.size() == 1);
  CHECK(pc[0].content_type() == 10006);
  CHECK(pc[0].conv_type() == v1::SYSTEM);
  CHECK(pc[0].conv_seq() == 0);
  CHECK(pc[0].from().empty());
  CHECK(pc[0].inbox_seq() == 5);
  v1::ReadMark mine;
  REQUIRE(mine.ParseFromString(pc[0].body()));
  CHECK(mine.peer() == "alice");
  CHECK(mine.reader() == "bob");
  CHECK(mine.read_seq() == 2);
  CHECK(pushed(*bob, 300ms).empty());

  // The sender gets the receipt, peer from her side.
  auto receipt = pushed(*alice);
  REQUIRE(receipt.size() == 1);
  CHECK(receipt[0].content_type() == 10006);
  v1::ReadMark theirs;
  REQUIRE(theirs.ParseFromString(receipt[0].body()));
  CHECK(theirs.peer() == "bob");
  CHECK(theirs.reader() == "bob");
  CHECK(theirs.read_seq() == 2);
  CHECK(find_conv(conv_list(*alice), "bob").peer_read_seq() == 2);

  // Never back, and nothing written when it does not move.
  r = conv_read(*bob, v1::C2C, "alice", 1);
  CHECK(r.read_seq() == 2);
  CHECK(r.inbox_seq() == 0);
  CHECK(r.unread_count() == 2);
  // Beyond the newest: clamped.
  r = conv_read(*bob, v1::C2C, "alice", 999, true);
  CHECK(r.read_seq() == 4);
  CHECK(r.unread_count() == 0);
  CHECK(r.inbox_seq() == 6);
  // no_receipt: alice learns nothing.
  CHECK(pushed(*alice, 300ms).empty());
  CHECK(find_conv(conv_list(*alice), "bob").peer_read_seq() == 2);
  // The other device's list converges.
  auto bob_list = conv_list(*bob_pc);
  CHECK(find_conv(bob_list, "alice").read_seq() == 4);
  CHECK(bob_list.total_unread() == 0);

  // A conversation that does not exist: nothing moves.
  r = conv_read(*bob, v1::C2C, "nobody", 0);
  CHECK(r.read_seq() == 0);
  CHECK(r.inbox_seq() == 0);
  CHECK(fail_call(*bob, Cmd::kConvRead, read_req(v1::C2C, "bad id!")) == StatusCode::kBadRequest);
  CHECK(fail_call(*bob, Cmd::kConvRead, read_req(v1::CONV_TYPE_UNSPECIFIED, "alice")) == StatusCode::kBadRequest);
}

TEST_CASE("CONV_LIST: order by pin then activity, paging with a cursor, hidden until the next message") {
  ServerProcess server(fast_overrides({{"limits.max_pinned", "2"}}));
  auto me = server.login("me");
  std::vector<std::string> peers = {"p1", "p2", "p3", "p4", "p5"};
  for (const auto& p : peers) {
    auto c = server.login(p);
    send_ok(*c, "me", "from-" + p);
    std::this_thread::sleep_for(5ms);  // distinct activity_ms
  }
  (void)pull_until(*me, [](const auto& rows) { return rows.size() == 5; });
  v1::ConvListResp all = conv_list(*me);
  REQUIRE(all.conversations_size() == 5);
  CHECK(all.conversations(0).peer() == "p5");
  CHECK(all.conversations(4).peer() == "p1");
  CHECK(all.total_unread() == 5);

  // Pages of 2 cover the list once, in order.
  std::vector<std::string> paged;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    auto l = conv_list(*me, 2, cursor);
    for (const auto& c : l.conversations()) paged.push_back(c.peer());
    if (!l.has_more()) break;
    CHECK(l.conversations_size() == 2);
    cursor = l.next_cursor();
  }
  CHECK(paged == std::vector<std::string>{"p5", "p4", "p3", "p2", "p1"});
  v1::ConvListReq bad;
  for (const char* junk : {"not a cursor", "0|9999999999999999999|c:a:b", "0||c:a:b", "2|1|c:a:b"}) {
    INFO(junk);
    bad.set_cursor(junk);
    CHECK(fail_call(*me, Cmd::kConvList, bad) == StatusCode::kBadRequest);
  }

  // Pinned first; one pin over limits.max_pinned is TOO_LARGE.
  auto update = [&](const std::string& peer, std::optional<bool> muted, std::optional<bool> pinned,
                    std::optional<bool> hidden) {
    v1::ConvUpdateReq req;
    req.set_conv_type(v1::C2C);
    req.set_peer(peer);
    if (muted) req.set_muted(*muted);
    if (pinned) req.set_pinned(*pinned);
    if (hidden) req.set_hidden(*hidden);
    return req;
  };
  auto pinned = call_ok<v1::ConvUpdateResp>(*me, Cmd::kConvUpdate, update("p1", {}, true, {}));
  CHECK(pinned.conversation().pinned());
  CHECK(pinned.conversation().peer() == "p1");
  CHECK(pinned.inbox_seq() == 6);
  (void)call_ok<v1::ConvUpdateResp>(*me, Cmd::kConvUpdate, update("p2", {}, true, {}));
  CHECK(fail_call(*me, Cmd::kConvUpdate, update("p3", {}, true, {})) == StatusCode::kTooLarge);
  all = conv_list(*me);
  REQUIRE(all.conversations_size() == 5);
  CHECK(all.conversations(0).peer() == "p2");
  CHECK(all.conversations(1).peer() == "p1");
  CHECK(all.conversations(2).peer() == "p5");

  // Muted: still counts unread, left out of total_unread; an absent field is kept.
  auto muted = call_ok<v1::ConvUpdateResp>(*me, Cmd::kConvUpdate, update("p1", true, {}, {}));
  CHECK(muted.conversation().muted());
  CHECK(muted.conversation().pinned());
  CHECK(muted.conversation().unread_count() == 1);
  CHECK(conv_list(*me).total_unread() == 4);

  // Hidden until a newer message arrives in it.
  (void)call_ok<v1::ConvUpdateResp>(*me, Cmd::kConvUpdate, update("p3", {}, {}, true));
  CHECK_FALSE(listed(conv_list(*me), "p3"));
  CHECK(conv_list(*me).total_unread() == 4);  // hidden still counts
  auto p3 = server.login("p3");
  send_ok(*p3, "me", "again");
  CHECK(wait_until([&] { return listed(conv_list(*me), "p3"); }));
  CHECK(find_conv(conv_list(*me), "p3").unread_count() == 2);

  // A conversation the user has no message in: NOT_FOUND; bad fields: BAD_REQUEST.
  CHECK(fail_call(*me, Cmd::kConvUpdate, update("stranger", true, {}, {})) == StatusCode::kNotFound);
  CHECK(fail_call(*me, Cmd::kConvUpdate, update("", true, {}, {})) == StatusCode::kBadRequest);

  // The 10008 marks reach another device by PULL, with the full settings.
  auto tablet = server.login("me", v1::ANDROID);
  auto rows = pull_all(*tablet);
  int settings = 0;
  for (const auto& m : rows) {
    if (m.content_type() != 10008) continue;
    ++settings;
    v1::ConvSettings s;
    REQUIRE(s.ParseFromString(m.body()));
    if (settings == 3) {  // the mute of p1 keeps its pin
      CHECK(s.peer() == "p1");
      CHECK(s.muted());
      CHECK(s.pinned());
    }
  }
  CHECK(settings == 4);
}

TEST_CASE("DELETE for me: hidden from HISTORY, CONV_LIST and unread, others unaffected, a 10007 mark") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  for (int i = 1; i <= 6; ++i) send_ok(*alice, "bob", "a" + std::to_string(i), "m" + std::to_string(i));
  (void)pull_until(*bob, [](const auto& rows) { return rows.size() == 6; });

  v1::DeleteReq del;
  del.set_conv_type(v1::C2C);
  del.set_peer("alice");
  del.add_conv_seqs(6);
  del.add_conv_seqs(3);
  auto d = call_ok<v1::DeleteResp>(*bob, Cmd::kDelete, del);
  CHECK(d.inbox_seq() == 7);
  CHECK(seqs_of(history_page(*bob, v1::C2C, "alice", 0, 0)) == std::vector<std::uint64_t>{1, 2, 4, 5});
  CHECK(seqs_of(history_page(*alice, v1::C2C, "bob", 0, 0)) == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6});
  v1::Conversation c = find_conv(conv_list(*bob), "alice");
  CHECK(c.unread_count() == 4);
  CHECK(c.last_conv_seq() == 5);  // 6 was deleted: the newest one left
  CHECK(c.last_message().body() == "m5");
  CHECK(find_conv(conv_list(*alice), "bob").last_conv_seq() == 6);

  // up_to_seq clears everything up to it; again is not an error.
  v1::DeleteReq clear;
  clear.set_conv_type(v1::C2C);
  clear.set_peer("alice");
  clear.set_up_to_seq(4);
  (void)call_ok<v1::DeleteResp>(*bob, Cmd::kDelete, clear);
  (void)call_ok<v1::DeleteResp>(*bob, Cmd::kDelete, clear);
  CHECK(seqs_of(history_page(*bob, v1::C2C, "alice", 0, 0)) == std::vector<std::uint64_t>{5});
  CHECK(seqs_of(history_page(*bob, v1::C2C, "alice", 0, 2)) == std::vector<std::uint64_t>{5});
  c = find_conv(conv_list(*bob), "alice");
  CHECK(c.cleared_seq() == 4);
  CHECK(c.unread_count() == 1);

  // The mark is in bob's inbox (PULL still has the rows before it).
  auto rows = pull_all(*bob);
  REQUIRE(rows.size() == 9);
  CHECK(rows[0].body() == "m1");
  CHECK(rows[6].content_type() == 10007);
  v1::MessageDelete mark;
  REQUIRE(mark.ParseFromString(rows[6].body()));
  CHECK(mark.peer() == "alice");
  CHECK(mark.conv_seqs_size() == 2);

  v1::DeleteReq too_many;
  too_many.set_conv_type(v1::C2C);
  too_many.set_peer("alice");
  for (int i = 1; i <= 101; ++i) too_many.add_conv_seqs(i);
  CHECK(fail_call(*bob, Cmd::kDelete, too_many) == StatusCode::kBadRequest);
  v1::DeleteReq nothing;
  nothing.set_conv_type(v1::C2C);
  nothing.set_peer("alice");
  CHECK(fail_call(*bob, Cmd::kDelete, nothing) == StatusCode::kBadRequest);
  nothing.set_peer("stranger");
  nothing.set_up_to_seq(1);
  CHECK(fail_call(*bob, Cmd::kDelete, nothing) == StatusCode::kNotFound);
}

TEST_CASE("HISTORY after_seq pages forward, both cursors set is BAD_REQUEST") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  for (int i = 1; i <= 7; ++i) send_ok(*alice, "bob", "a" + std::to_string(i));
  auto h = history_page(*alice, v1::C2C, "bob", 0, 2, 3);
  CHECK(seqs_of(h) == std::vector<std::uint64_t>{3, 4, 5});
  CHECK(h.has_more());
  h = history_page(*alice, v1::C2C, "bob", 0, 5, 3);
  CHECK(seqs_of(h) == std::vector<std::uint64_t>{6, 7});
  CHECK_FALSE(h.has_more());
  h = history_page(*alice, v1::C2C, "bob", 0, 7, 3);
  CHECK(h.messages_size() == 0);
  CHECK_FALSE(h.has_more());
  v1::HistoryReq both;
  both.set_conv_type(v1::C2C);
  both.set_peer("bob");
  both.set_before_seq(5);
  both.set_after_seq(1);
  CHECK(fail_call(*alice, Cmd::kHistory, both) == StatusCode::kBadRequest);
}

TEST_CASE("RECEIPTS: counts without the sender, later sends count as reading, readers, errors") {
  ServerProcess server(fast_overrides({{"limits.receipts_max_members", "4"}}));
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  auto carol = server.login("carol");
  auto dave = server.login("dave");
  create_group(*alice, "g1", {"bob", "carol"});
  const std::uint64_t m = group_send(*alice, "g1", "g1-1").conv_seq();  // 2: CREATED is 1
  CHECK(m == 2);

  auto r = receipts(*alice, "g1", {m});
  REQUIRE(r.counts_size() == 1);
  CHECK(r.counts(0).conv_seq() == m);
  CHECK(r.counts(0).member_count() == 2);
  CHECK(r.counts(0).read_count() == 0);

  (void)pull_until(*bob, [](const auto& rows) { return rows.size() == 2; });
  CHECK(conv_read(*bob, v1::GROUP, "g1").read_seq() == m);
  CHECK(receipts(*carol, "g1", {m}).counts(0).read_count() == 1);
  // no_receipt: private only.
  (void)pull_until(*carol, [](const auto& rows) { return rows.size() == 2; });
  CHECK(conv_read(*carol, v1::GROUP, "g1", 0, true).read_seq() == m);
  CHECK(receipts(*alice, "g1", {m}).counts(0).read_count() == 1);
  // carol's own later SEND counts as reading m.
  const std::uint64_t later = group_send(*carol, "g1", "c-1").conv_seq();
  r = receipts(*alice, "g1", {m, later});
  CHECK(r.counts(0).read_count() == 2);
  CHECK(r.counts(1).member_count() == 2);  // carol's own message: alice and bob
  CHECK(r.counts(1).read_count() == 0);

  r = receipts(*alice, "g1", {m}, true);
  REQUIRE(r.readers_size() == 3);
  CHECK(r.readers(0).uid() == "alice");
  CHECK(r.readers(1).uid() == "bob");
  CHECK(r.readers(1).read_seq() == m);
  CHECK(r.readers(2).uid() == "carol");
  CHECK(r.readers(2).read_seq() == later);
  CHECK_FALSE(r.readers_more());
  v1::ReceiptsReq page;
  page.set_gid("g1");
  page.add_conv_seqs(m);
  page.set_with_readers(true);
  page.set_readers_after("alice");
  page.set_readers_limit(1);
  r = call_ok<v1::ReceiptsResp>(*alice, Cmd::kReceipts, page);
  REQUIRE(r.readers_size() == 1);
  CHECK(r.readers(0).uid() == "bob");
  CHECK(r.readers_more());

  // Errors.
  v1::ReceiptsReq req;
  req.set_gid("g1");
  req.add_conv_seqs(m);
  CHECK(fail_call(*dave, Cmd::kReceipts, req) == StatusCode::kForbidden);
  CHECK(fail_call(*dave, Cmd::kConvRead, read_req(v1::GROUP, "g1")) == StatusCode::kForbidden);
  req.set_gid("nope");
  CHECK(fail_call(*alice, Cmd::kReceipts, req) == StatusCode::kNotFound);
  req.set_gid("g1");
  for (int i = 0; i < 100; ++i) req.add_conv_seqs(1);
  CHECK(fail_call(*alice, Cmd::kReceipts, req) == StatusCode::kBadRequest);
  create_group(*alice, "big", {"bob", "carol", "dave", "erin"});
  v1::ReceiptsReq big;
  big.set_gid("big");
  big.add_conv_seqs(1);
  CHECK(fail_call(*alice, Cmd::kReceipts, big) == StatusCode::kDisabled);
}

TEST_CASE("conversations converge on a device that was offline, by PULL, and survive a restart") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob", v1::IOS);
  for (int i = 1; i <= 5; ++i) send_ok(*alice, "bob", "a" + std::to_string(i));
  create_group(*alice, "g", {"bob"});
  group_send(*alice, "g", "g-1");
  (void)pull_until(*bob, [](const auto& rows) { return rows.size() == 7; });
  conv_read(*bob, v1::C2C, "alice", 3);
  v1::ConvUpdateReq mute;
  mute.set_conv_type(v1::GROUP);
  mute.set_peer("g");
  mute.set_muted(true);
  (void)call_ok<v1::ConvUpdateResp>(*bob, Cmd::kConvUpdate, mute);
  const v1::ConvListResp phone = conv_list(*bob);

  // A second device logs in later: its listing is the same.
  auto pc = server.login("bob", v1::DESKTOP);
  const v1::ConvListResp desk = conv_list(*pc);
  CHECK(desk.SerializeAsString() == phone.SerializeAsString());
  CHECK(find_conv(desk, "alice").unread_count() == 2);
  CHECK(find_conv(desk, "g").muted());
  CHECK(desk.total_unread() == 2);

  // kill -9 right after the answers: everything acknowledged is there.
  server.kill9();
  server.restart();
  auto again = server.login("bob", v1::IOS);
  const v1::ConvListResp after = conv_list(*again);
  CHECK(after.SerializeAsString() == phone.SerializeAsString());
}

TEST_CASE("crash safety: SIGKILL right after CONV_READ, CONV_UPDATE and DELETE answers, many times") {
  ServerProcess server(fast_overrides());
  std::map<std::string, std::uint64_t> read;  // peer -> read_seq acknowledged
  std::map<std::string, bool> muted;
  std::uint64_t cleared = 0;
  std::vector<std::string> peers = {"p1", "p2", "p3"};
  for (int cycle = 0; cycle < 6; ++cycle) {
    INFO("cycle " << cycle);
    auto me = server.login("me");
    for (const auto& p : peers) {
      auto c = server.login(p);
      for (int i = 0; i < 3; ++i) send_ok(*c, "me", p + "-" + std::to_string(cycle) + "-" + std::to_string(i));
    }
    const std::string& p = peers[cycle % peers.size()];
    const v1::Conversation before = find_conv(conv_list(*me), p);
    auto r = conv_read(*me, v1::C2C, p, before.last_conv_seq() - 1);
    read[p] = r.read_seq();
    v1::ConvUpdateReq up;
    up.set_conv_type(v1::C2C);
    up.set_peer(peers[(cycle + 1) % peers.size()]);
    up.set_muted(cycle % 2 == 0);
    (void)call_ok<v1::ConvUpdateResp>(*me, Cmd::kConvUpdate, up);
    muted[up.peer()] = up.muted();
    v1::DeleteReq del;
    del.set_conv_type(v1::C2C);
    del.set_peer("p3");
    del.set_up_to_seq(cycle + 1);
    (void)call_ok<v1::DeleteResp>(*me, Cmd::kDelete, del);
    cleared = cycle + 1;
    server.kill9();
    server.restart();
    auto check = server.login("me");
    const v1::ConvListResp list = conv_list(*check);
    std::uint64_t total = 0;
    for (const auto& peer : peers) {
      const v1::Conversation c = find_conv(list, peer);
      if (read.count(peer)) CHECK(c.read_seq() == read[peer]);
      CHECK(c.muted() == muted[peer]);
      // Unread: every message above the larger of read_seq and cleared_seq.
      const std::uint64_t floor = std::max(c.read_seq(), peer == "p3" ? cleared : std::uint64_t{0});
      CHECK(c.unread_count() == c.last_conv_seq() - floor);
      if (peer == "p3") CHECK(c.cleared_seq() == cleared);
      if (!c.muted()) total += c.unread_count();
    }
    CHECK(list.total_unread() == total);
  }
}

TEST_CASE("admin: a user's conversations and a group message's receipts") {
  ServerProcess server(fast_overrides({{"admin.listen", "\"127.0.0.1:0\""}, {"admin.api_key", "\"admin-key-1\""}}));
  AdminClient admin(server.admin_port(), "admin-key-1");
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  send_ok(*alice, "bob", "a1", "hello");
  create_group(*alice, "g", {"bob"});
  const std::uint64_t m = group_send(*alice, "g", "g1").conv_seq();
  (void)pull_until(*bob, [](const auto& rows) { return rows.size() == 3; });
  conv_read(*bob, v1::GROUP, "g");

  HttpReply list = admin.get("/v1/users/bob/conversations?limit=10");
  REQUIRE(list.status == 200);
  REQUIRE(list.body["conversations"].size() == 2);
  // Newest first (the two may share a millisecond: then by id, C2C first).
  const auto& first = list.body["conversations"][0];
  const auto& second = list.body["conversations"][1];
  CHECK(first["activity_ms"].get<std::int64_t>() >= second["activity_ms"].get<std::int64_t>());
  const auto& group = first["peer"] == "g" ? first : second;
  const auto& c2c = first["peer"] == "g" ? second : first;
  CHECK(group["peer"] == "g");
  CHECK(group["conv_type"] == "group");
  CHECK(c2c["peer"] == "alice");
  CHECK(c2c["unread_count"] == 1);
  CHECK(c2c["last_message"]["body"] == "aGVsbG8=");
  CHECK(c2c["last_message"]["conv_seq"] == "1");
  CHECK(list.body["total_unread"] == 1);
  CHECK(list.body["has_more"] == false);

  HttpReply rc = admin.get("/v1/groups/g/receipts?conv_seq=" + std::to_string(m));
  REQUIRE(rc.status == 200);
  CHECK(rc.body["conv_seq"] == std::to_string(m));
  CHECK(rc.body["read_count"] == 1);
  CHECK(rc.body["member_count"] == 1);
  CHECK(admin.get("/v1/groups/g/receipts").status == 400);
  CHECK(admin.get("/v1/groups/g/receipts?conv_seq=x").status == 400);
  CHECK(admin.get("/v1/groups/nope/receipts?conv_seq=1").status == 404);
  CHECK(admin.get("/v1/users/bob/conversations?cursor=junk").status == 400);
  CHECK(admin.get("/v1/users/bob/conversations", false).status == 401);
}

namespace {

// A uid of exactly 64 bytes (the longest id): long conversation ids make
// long CONV_LIST cursors.
std::string long_uid(const std::string& stem) {
  return stem + std::string(64 - stem.size(), 'x');
}

const Overrides kAdmin = {{"admin.listen", "\"127.0.0.1:0\""}, {"admin.api_key", "\"admin-key-1\""}};

// A C2C SEND on behalf of `from` through the admin API (no login needed).
void admin_send(AdminClient& admin, const std::string& from, const std::string& to, const std::string& body) {
  HttpReply r = admin.post("/v1/messages", {{"from", from},
                                            {"conv_type", "c2c"},
                                            {"to", to},
                                            {"content_type", 1},
                                            {"body", base64_encode(body)},
                                            {"client_msg_id", "admin-msg"}});  // dedupe is per sender
  INFO(r.text);
  REQUIRE(r.status == 200);
}

// Every conversation of `c`'s user by CONV_LIST pages of `limit`; each
// answer's body is checked against `max_body` bytes.
std::vector<v1::Conversation> list_all(SyncClient& c, std::uint32_t limit, std::size_t max_body, int* pages = nullptr) {
  std::vector<v1::Conversation> out;
  std::string cursor;
  for (int page = 0; page < 10000; ++page) {
    v1::ConvListReq req;
    req.set_limit(limit);
    req.set_cursor(cursor);
    auto r = c.call(Cmd::kConvList, &req);
    REQUIRE(r);
    REQUIRE(r->ok());
    CHECK(r->body.size() <= max_body);
    v1::ConvListResp resp;
    REQUIRE(r->parse(resp));
    if (pages) ++*pages;
    for (const auto& conv : resp.conversations()) out.push_back(conv);
    if (!resp.has_more()) break;
    REQUIRE(resp.conversations_size() > 0);
    cursor = resp.next_cursor();
  }
  return out;
}

v1::ConvUpdateReq update_req(const std::string& peer, std::optional<bool> muted, std::optional<bool> pinned) {
  v1::ConvUpdateReq req;
  req.set_conv_type(v1::C2C);
  req.set_peer(peer);
  if (muted) req.set_muted(*muted);
  if (pinned) req.set_pinned(*pinned);
  return req;
}

// The answers to requests sent together in one write (so that the server
// takes them in one turn), in the order they come; pushes are skipped.
std::vector<Frame> pipelined(SyncClient& c, Cmd cmd, const std::vector<v1::ConvUpdateReq>& reqs) {
  std::string wire;
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    FrameHeader h;
    h.cmd = cmd;
    h.seq = static_cast<std::uint32_t>(90000 + i);
    wire += encode_frame(h, reqs[i].SerializeAsString());
  }
  c.send_wire(wire);
  std::vector<Frame> out;
  while (out.size() < reqs.size()) {
    auto f = c.next_frame();
    REQUIRE(f);
    if (f->header.is_response() && f->header.cmd == cmd) out.push_back(std::move(*f));
  }
  return out;
}

}  // namespace

TEST_CASE("CONV_READ: a group read that moves nothing writes the public position again (a lost receipt is repaired)") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  create_group(*alice, "g1", {"bob"});
  const std::uint64_t m = group_send(*alice, "g1", "g1-1").conv_seq();
  (void)pull_until(*bob, [](const auto& rows) { return rows.size() == 2; });
  // The private position moves without the public one: as when the
  // receipt's write failed or a crash came between the two.
  CHECK(conv_read(*bob, v1::GROUP, "g1", 0, true).read_seq() == m);
  CHECK(receipts(*alice, "g1", {m}).counts(0).read_count() == 0);
  // The retry moves nothing (no mark, inbox_seq 0) but records the receipt.
  v1::ConvReadResp again = conv_read(*bob, v1::GROUP, "g1");
  CHECK(again.read_seq() == m);
  CHECK(again.inbox_seq() == 0);
  CHECK(receipts(*alice, "g1", {m}).counts(0).read_count() == 1);
  CHECK(pull_all(*bob).size() == 3);  // the two rows and one ReadMark
  // Repeating it changes nothing.
  CHECK(conv_read(*bob, v1::GROUP, "g1").inbox_seq() == 0);
  CHECK(receipts(*alice, "g1", {m}).counts(0).read_count() == 1);
}

TEST_CASE("CONV_LIST: pages fit server.max_frame_bytes with large messages and long ids, each conversation once") {
  ServerProcess server(fast_overrides({{"server.max_frame_bytes", "6144"},
                             {"limits.max_message_bytes", "5120"},
                             {"admin.listen", "\"127.0.0.1:0\""},
                             {"admin.api_key", "\"admin-key-1\""}}));
  AdminClient admin(server.admin_port(), "admin-key-1");
  const std::string me = long_uid("me");
  // Large and small last messages in turn, the large ones a few bytes
  // apart, so that some page is filled to within a few bytes of the
  // budget by its conversations alone.
  std::set<std::string> peers;
  for (int i = 0; i < 60; ++i) {
    const std::string big = long_uid("big" + std::to_string(i));
    const std::string small = long_uid("small" + std::to_string(i));
    admin_send(admin, big, me, std::string(4400 + 11 * i, 'b'));
    admin_send(admin, small, me, std::string(700, 's'));
    peers.insert(big);
    peers.insert(small);
  }
  auto c = server.login(me);
  for (std::uint32_t limit : {0u, 2u, 3u, 500u}) {
    INFO("limit " << limit);
    int pages = 0;
    const auto all = list_all(*c, limit, 6144, &pages);
    std::multiset<std::string> seen;
    for (const auto& conv : all) {
      seen.insert(conv.peer());
      CHECK(conv.last_message().body().size() >= 700);  // none listed without its message
    }
    CHECK(seen.size() == peers.size());
    CHECK(std::set<std::string>(seen.begin(), seen.end()) == peers);
    CHECK(pages > 40);
  }
}

TEST_CASE("CONV_LIST: the SYSTEM conversation is listed once it holds a stored server push") {
  ServerProcess server(fast_overrides(kAdmin));
  AdminClient admin(server.admin_port(), "admin-key-1");
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  send_ok(*bob, "alice", "b1");
  (void)pull_until(*alice, [](const auto& rows) { return rows.size() == 1; });
  // Marks are SYSTEM rows of the user's inbox but no conversation.
  (void)conv_read(*alice, v1::C2C, "bob");
  HttpReply live = admin.post("/v1/push", {{"to", "alice"}, {"topic", "t"}, {"payload", base64_encode("live")}});
  REQUIRE(live.status == 200);
  v1::ConvListResp list = conv_list(*alice);
  REQUIRE(list.conversations_size() == 1);
  CHECK(list.conversations(0).conv_type() == v1::C2C);

  HttpReply stored = admin.post(
      "/v1/push", {{"to", "alice"}, {"topic", "bill"}, {"payload", base64_encode("due")}, {"persist", true}});
  REQUIRE(stored.status == 200);
  list = conv_list(*alice);
  REQUIRE(list.conversations_size() == 2);
  const v1::Conversation sys = list.conversations(0);  // the newest
  CHECK(sys.conv_type() == v1::SYSTEM);
  CHECK(sys.peer().empty());
  CHECK(sys.last_conv_seq() == 1);
  CHECK(sys.last_message().content_type() == 10002);
  CHECK(sys.last_message().topic() == "bill");
  CHECK(sys.last_message().body() == "due");
  CHECK(sys.unread_count() == 0);  // server pushes are not messages from a user
  CHECK(list.total_unread() == 0);
}

TEST_CASE("CONV_LIST: limit 100 by default, at most 500") {
  ServerProcess server(fast_overrides(kAdmin));
  AdminClient admin(server.admin_port(), "admin-key-1");
  for (int i = 0; i < 501; ++i) admin_send(admin, "s" + std::to_string(i), "me", "x");
  auto me = server.login("me");
  v1::ConvListResp first = conv_list(*me);
  CHECK(first.conversations_size() == 100);
  CHECK(first.has_more());
  v1::ConvListResp capped = conv_list(*me, 1000);
  CHECK(capped.conversations_size() == 500);
  CHECK(capped.has_more());
  v1::ConvListResp rest = conv_list(*me, 1000, capped.next_cursor());
  CHECK(rest.conversations_size() == 1);
  CHECK_FALSE(rest.has_more());
  std::set<std::string> peers;
  for (const auto& c : capped.conversations()) peers.insert(c.peer());
  for (const auto& c : rest.conversations()) peers.insert(c.peer());
  CHECK(peers.size() == 501);
  CHECK(capped.total_unread() == 501);
}

TEST_CASE("RECEIPTS: readers_limit is capped at 1000, paging past the end is empty") {
  ServerProcess server(fast_overrides({{"limits.receipts_max_members", "2000"}}));
  auto alice = server.login("alice");
  std::vector<std::string> members;
  for (int i = 0; i < 1004; ++i) members.push_back(fmt::format("m{:04}", i));
  create_group(*alice, "big", members);
  v1::ReceiptsReq req;
  req.set_gid("big");
  req.add_conv_seqs(1);
  req.set_with_readers(true);
  req.set_readers_limit(5000);
  auto r = call_ok<v1::ReceiptsResp>(*alice, Cmd::kReceipts, req);
  REQUIRE(r.readers_size() == 1000);
  CHECK(r.readers(0).uid() == "alice");
  CHECK(r.readers(999).uid() == "m0998");
  CHECK(r.readers_more());
  CHECK(r.counts(0).member_count() == 1004);  // the CREATED event is alice's: every member but her

  req.set_readers_after(r.readers(999).uid());
  r = call_ok<v1::ReceiptsResp>(*alice, Cmd::kReceipts, req);
  REQUIRE(r.readers_size() == 5);
  CHECK(r.readers(0).uid() == "m0999");
  CHECK(r.readers(4).uid() == "m1003");
  CHECK_FALSE(r.readers_more());

  req.set_readers_after("m1003");
  r = call_ok<v1::ReceiptsResp>(*alice, Cmd::kReceipts, req);
  CHECK(r.readers_size() == 0);
  CHECK_FALSE(r.readers_more());
  req.set_readers_after("zzz");
  r = call_ok<v1::ReceiptsResp>(*alice, Cmd::kReceipts, req);
  CHECK(r.readers_size() == 0);
  CHECK_FALSE(r.readers_more());

  req.clear_readers_after();
  req.set_readers_limit(0);
  r = call_ok<v1::ReceiptsResp>(*alice, Cmd::kReceipts, req);
  CHECK(r.readers_size() == 500);
  CHECK(r.readers_more());
}

TEST_CASE("HISTORY after_seq skips what the user deleted, has_more only for rows still to show") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  for (int i = 1; i <= 10; ++i) send_ok(*alice, "bob", "a" + std::to_string(i));
  (void)pull_until(*bob, [](const auto& rows) { return rows.size() == 10; });
  v1::DeleteReq del;
  del.set_conv_type(v1::C2C);
  del.set_peer("alice");
  del.add_conv_seqs(5);
  del.add_conv_seqs(6);
  del.set_up_to_seq(2);
  (void)call_ok<v1::DeleteResp>(*bob, Cmd::kDelete, del);

  auto h = history_page(*bob, v1::C2C, "alice", 0, 1, 3);  // after_seq below cleared_seq
  CHECK(seqs_of(h) == std::vector<std::uint64_t>{3, 4, 7});
  CHECK(h.has_more());
  h = history_page(*bob, v1::C2C, "alice", 0, 4, 3);
  CHECK(seqs_of(h) == std::vector<std::uint64_t>{7, 8, 9});
  CHECK(h.has_more());
  h = history_page(*bob, v1::C2C, "alice", 0, 9, 3);
  CHECK(seqs_of(h) == std::vector<std::uint64_t>{10});
  CHECK_FALSE(h.has_more());

  // Only deleted rows after the page: no has_more.
  v1::DeleteReq tail;
  tail.set_conv_type(v1::C2C);
  tail.set_peer("alice");
  tail.add_conv_seqs(9);
  tail.add_conv_seqs(10);
  (void)call_ok<v1::DeleteResp>(*bob, Cmd::kDelete, tail);
  h = history_page(*bob, v1::C2C, "alice", 0, 7, 1);
  CHECK(seqs_of(h) == std::vector<std::uint64_t>{8});
  CHECK_FALSE(h.has_more());
  h = history_page(*bob, v1::C2C, "alice", 0, 8, 5);
  CHECK(h.messages_size() == 0);
  CHECK_FALSE(h.has_more());
  CHECK(seqs_of(history_page(*bob, v1::C2C, "alice", 0, 0)) == std::vector<std::uint64_t>{3, 4, 7, 8});
  CHECK(seqs_of(history_page(*bob, v1::C2C, "alice", 8, 0, 2)) == std::vector<std::uint64_t>{4, 7});

  // Clearing past the deleted seqs: the same view (their rows are dropped with the clear).
  v1::DeleteReq clear;
  clear.set_conv_type(v1::C2C);
  clear.set_peer("alice");
  clear.set_up_to_seq(6);
  (void)call_ok<v1::DeleteResp>(*bob, Cmd::kDelete, clear);
  CHECK(seqs_of(history_page(*bob, v1::C2C, "alice", 0, 0)) == std::vector<std::uint64_t>{7, 8});
  CHECK(seqs_of(history_page(*bob, v1::C2C, "alice", 0, 3, 5)) == std::vector<std::uint64_t>{7, 8});
  const v1::Conversation c = find_conv(conv_list(*bob), "alice");
  CHECK(c.last_conv_seq() == 8);
  CHECK(c.cleared_seq() == 6);
  CHECK(c.unread_count() == 2);
}

TEST_CASE("DELETE: up_to_seq is clamped to the newest message, conv_seqs beyond it are BAD_REQUEST") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  for (int i = 1; i <= 3; ++i) send_ok(*alice, "bob", "a" + std::to_string(i));
  (void)pull_until(*bob, [](const auto& rows) { return rows.size() == 3; });
  v1::DeleteReq del;
  del.set_conv_type(v1::C2C);
  del.set_peer("alice");
  del.add_conv_seqs(4);
  CHECK(fail_call(*bob, Cmd::kDelete, del) == StatusCode::kBadRequest);
  del.clear_conv_seqs();
  del.set_up_to_seq(UINT64_MAX);
  (void)call_ok<v1::DeleteResp>(*bob, Cmd::kDelete, del);
  CHECK(find_conv(conv_list(*bob), "alice").cleared_seq() == 3);
  send_ok(*alice, "bob", "a4", "after the clear");
  CHECK(wait_until([&] { return find_conv(conv_list(*bob), "alice").unread_count() == 1; }));
  const v1::Conversation c = find_conv(conv_list(*bob), "alice");
  CHECK(c.last_conv_seq() == 4);
  CHECK(c.last_message().body() == "after the clear");
  CHECK(seqs_of(history_page(*bob, v1::C2C, "alice", 0, 0)) == std::vector<std::uint64_t>{4});
}

TEST_CASE("CONV_UPDATE: requests pipelined keep every field, and pipelined pins stop at limits.max_pinned") {
  ServerProcess server(fast_overrides({{"limits.max_pinned", "5"}}));
  auto me = server.login("me");
  const std::vector<std::string> peers = {"p1", "p2", "p3", "p4", "p5", "p6", "p7"};
  for (const auto& p : peers) {
    auto c = server.login(p);
    send_ok(*c, "me", "from-" + p);
  }
  (void)pull_until(*me, [](const auto& rows) { return rows.size() == 7; });

  // Each conversation muted by one request and pinned by the next, all in
  // one write: requests taken in one turn of the user's shard must each
  // see the ones before them.
  std::vector<v1::ConvUpdateReq> reqs;
  for (int i = 0; i < 4; ++i) {
    reqs.push_back(update_req(peers[i], true, {}));
    reqs.push_back(update_req(peers[i], {}, true));
  }
  for (const auto& a : pipelined(*me, Cmd::kConvUpdate, reqs)) {
    INFO(a.error_message());
    CHECK(a.ok());
  }
  v1::ConvListResp list = conv_list(*me);
  for (int i = 0; i < 4; ++i) {
    INFO(peers[i]);
    CHECK(find_conv(list, peers[i]).muted());
    CHECK(find_conv(list, peers[i]).pinned());
  }

  // Four pinned, limits.max_pinned 5: of three pins in one write, one passes.
  auto answers = pipelined(*me, Cmd::kConvUpdate,
                           {update_req("p5", {}, true), update_req("p6", {}, true), update_req("p7", {}, true)});
  int ok = 0;
  int too_large = 0;
  for (const auto& a : answers) {
    ok += a.ok() ? 1 : 0;
    too_large += a.status() == StatusCode::kTooLarge ? 1 : 0;
  }
  CHECK(ok == 1);
  CHECK(too_large == 2);
  list = conv_list(*me);
  int pinned = 0;
  for (const auto& c : list.conversations()) pinned += c.pinned() ? 1 : 0;
  CHECK(pinned == 5);
}

TEST_CASE("RECEIPTS: a member removed and added again starts with no read position") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  create_group(*alice, "g1", {"bob", "carol"});
  const std::uint64_t m = group_send(*alice, "g1", "g1-1").conv_seq();
  (void)pull_until(*bob, [](const auto& rows) { return rows.size() == 2; });
  (void)conv_read(*bob, v1::GROUP, "g1");
  CHECK(receipts(*alice, "g1", {m}).counts(0).read_count() == 1);
  v1::GroupMembersReq change;
  change.set_gid("g1");
  change.add_uids("bob");
  (void)call_ok<v1::GroupMembersResp>(*alice, Cmd::kGroupRemoveMembers, change);
  (void)call_ok<v1::GroupMembersResp>(*alice, Cmd::kGroupAddMembers, change);
  auto r = receipts(*alice, "g1", {m}, true);
  CHECK(r.counts(0).read_count() == 0);
  CHECK(r.counts(0).member_count() == 2);
  REQUIRE(r.readers_size() == 3);
  CHECK(r.readers(1).uid() == "bob");
  CHECK(r.readers(1).read_seq() == 0);
}

TEST_CASE("CONV_LIST: last_message looks at the 20 newest messages past the deleted ones") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  for (int i = 1; i <= 25; ++i) send_ok(*alice, "bob", "a" + std::to_string(i), "m" + std::to_string(i));
  (void)pull_until(*bob, [](const auto& rows) { return rows.size() == 25; });
  v1::DeleteReq del;
  del.set_conv_type(v1::C2C);
  del.set_peer("alice");
  for (int seq = 7; seq <= 25; ++seq) del.add_conv_seqs(seq);
  (void)call_ok<v1::DeleteResp>(*bob, Cmd::kDelete, del);
  v1::Conversation c = find_conv(conv_list(*bob), "alice");
  CHECK(c.last_conv_seq() == 6);  // the 20th newest
  CHECK(c.last_message().body() == "m6");
  CHECK(c.unread_count() == 6);
  del.clear_conv_seqs();
  del.add_conv_seqs(6);
  (void)call_ok<v1::DeleteResp>(*bob, Cmd::kDelete, del);
  c = find_conv(conv_list(*bob), "alice");
  CHECK(c.last_conv_seq() == 0);  // all 20 deleted: none shown
  CHECK_FALSE(c.has_last_message());
  CHECK(c.unread_count() == 5);
  CHECK(seqs_of(history_page(*bob, v1::C2C, "alice", 0, 0)) == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
}
