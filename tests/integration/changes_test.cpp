// PROTOCOL 8.3 RECALL and EDIT against the real binary: who may, the
// windows, every error status, dedupe, the 10003/10004 events, tombstones
// and edited bodies in HISTORY, PULL and CONV_LIST of every participant, a
// moderator's recall through the admin API, and a crash after the answers.

#include <catch2/catch.hpp>
#include <thread>

#include "http_helpers.h"
#include "messaging.h"
#include "server_process.h"
#include "store/store.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

// The answer's status (0 for OK) and, when OK, its SendResp.
std::pair<StatusCode, v1::SendResp> call_change(SyncClient& c, Cmd cmd, const google::protobuf::MessageLite& req) {
  auto r = c.call(cmd, &req);
  REQUIRE(r);
  v1::SendResp resp;
  if (r->ok()) REQUIRE(r->parse(resp));
  return {static_cast<StatusCode>(r->header.status), resp};
}

// The message at `seq` in a conversation's HISTORY as `c` sees it.
v1::Message history_at(SyncClient& c, v1::ConvType type, const std::string& peer, std::uint64_t seq) {
  auto h = history(c, type, peer, seq + 1, 1);
  REQUIRE(h.messages_size() == 1);
  REQUIRE(h.messages(0).conv_seq() == seq);
  return h.messages(0);
}

// The inbox row of `msg_id` in `c`'s inbox.
v1::Message inbox_copy(SyncClient& c, std::uint64_t msg_id) {
  for (const auto& m : pull_all(c))
    if (m.msg_id() == msg_id) return m;
  FAIL("no inbox row of msg_id " << msg_id);
  return {};
}

}  // namespace

TEST_CASE("RECALL C2C: tombstones in HISTORY, PULL and CONV_LIST of both sides, the 10003 event, dedupe") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  const v1::SendResp sent = send_ok(*alice, "bob", "m1", "secret");
  send_ok(*alice, "bob", "m2", "fine");
  (void)pull_until(*bob, [](const auto& rows) { return rows.size() == 2; });
  CHECK(conv_list(*bob).total_unread() == 2);

  const v1::SendResp rc = call_ok<v1::SendResp>(*alice, Cmd::kRecall, recall_req("r1", v1::C2C, "bob", sent.conv_seq()));
  CHECK(rc.conv_seq() == 3);
  CHECK_FALSE(rc.duplicate());
  // Dedupe by client_msg_id, as SEND.
  const v1::SendResp again = call_ok<v1::SendResp>(*alice, Cmd::kRecall, recall_req("r1", v1::C2C, "bob", sent.conv_seq()));
  CHECK(again.duplicate());
  CHECK(again.msg_id() == rc.msg_id());
  // A second recall of it: GONE.
  CHECK(call_change(*alice, Cmd::kRecall, recall_req("r2", v1::C2C, "bob", sent.conv_seq())).first ==
        StatusCode::kGone);

  for (SyncClient* c : {alice.get(), bob.get()}) {
    const std::string peer = c == alice.get() ? "bob" : "alice";
    v1::Message h = history_at(*c, v1::C2C, peer, sent.conv_seq());
    CHECK(h.content_type() == 10005);
    CHECK(h.msg_id() == sent.msg_id());
    CHECK(h.from() == "alice");
    CHECK(h.server_time_ms() == sent.server_time_ms());
    v1::MessageRecall body;
    REQUIRE(body.ParseFromString(h.body()));
    CHECK(body.by() == "alice");
    CHECK(body.target_conv_seq() == sent.conv_seq());
    CHECK(body.target_msg_id() == sent.msg_id());
    v1::Message copy = inbox_copy(*c, sent.msg_id());
    CHECK(copy.content_type() == 10005);
    CHECK(copy.body().find("secret") == std::string::npos);
    CHECK(copy.inbox_seq() > 0);
    // The event itself, a conversation event in both inboxes.
    v1::Message event = inbox_copy(*c, rc.msg_id());
    CHECK(event.content_type() == 10003);
    CHECK(event.conv_seq() == 3);
  }
  // A recalled message stops counting as unread.
  CHECK(conv_list(*bob).total_unread() == 1);
  // The event went to bob by PUSH too.
  bool pushed = false;
  for (int i = 0; i < 20 && !pushed; ++i) {
    auto f = bob->next_frame(2s);
    if (!f) break;
    v1::MessagePush p;
    if (f->header.cmd == Cmd::kPush && f->parse(p))
      for (const auto& m : p.messages()) pushed = pushed || m.content_type() == 10003;
  }
  CHECK(pushed);
}

TEST_CASE("RECALL rules: another's message FORBIDDEN, events BAD_REQUEST, NOT_FOUND, the window EXPIRED") {
  ServerProcess server(fast_overrides({{"limits.recall_window_s", "1"}}));
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  const v1::SendResp sent = send_ok(*alice, "bob", "m1");
  CHECK(call_change(*bob, Cmd::kRecall, recall_req("r1", v1::C2C, "alice", sent.conv_seq())).first ==
        StatusCode::kForbidden);
  CHECK(call_change(*alice, Cmd::kRecall, recall_req("r2", v1::C2C, "bob", 99)).first == StatusCode::kNotFound);
  CHECK(call_change(*alice, Cmd::kRecall, recall_req("r3", v1::C2C, "bad id!", 1)).first ==
        StatusCode::kBadRequest);
  CHECK(call_change(*alice, Cmd::kRecall, recall_req("r4", v1::C2C, "bob", 0)).first == StatusCode::kBadRequest);
  CHECK(call_change(*alice, Cmd::kRecall, recall_req("", v1::C2C, "bob", 1)).first == StatusCode::kBadRequest);
  CHECK(call_change(*alice, Cmd::kRecall, recall_req("r5", v1::SYSTEM, "", 1)).first == StatusCode::kBadRequest);
  std::this_thread::sleep_for(1200ms);  // past limits.recall_window_s
  CHECK(call_change(*alice, Cmd::kRecall, recall_req("r6", v1::C2C, "bob", sent.conv_seq())).first ==
        StatusCode::kExpired);

  // A group: CREATED (an event) is not a message; the owner may recall
  // anyone's, at any time; a member not another's.
  create_group(*alice, "g", {"bob", "carol"});
  auto carol = server.login("carol");
  auto r = call_change(*alice, Cmd::kRecall, recall_req("g0", v1::GROUP, "g", 1));
  CHECK(r.first == StatusCode::kBadRequest);
  auto req = send_req("g", "gm", "carol's", v1::GROUP);
  auto gm = carol->call(Cmd::kSend, &req);
  REQUIRE(gm);
  REQUIRE(gm->ok());
  v1::SendResp carols;
  REQUIRE(gm->parse(carols));
  CHECK(call_change(*bob, Cmd::kRecall, recall_req("g1", v1::GROUP, "g", carols.conv_seq())).first ==
        StatusCode::kForbidden);
  std::this_thread::sleep_for(1200ms);
  CHECK(call_change(*carol, Cmd::kRecall, recall_req("g2", v1::GROUP, "g", carols.conv_seq())).first ==
        StatusCode::kExpired);
  call_ok<v1::SendResp>(*alice, Cmd::kRecall, recall_req("g3", v1::GROUP, "g", carols.conv_seq()));
  auto dave = server.login("dave");
  CHECK(call_change(*dave, Cmd::kRecall, recall_req("g4", v1::GROUP, "g", carols.conv_seq())).first ==
        StatusCode::kForbidden);
  CHECK(call_change(*dave, Cmd::kRecall, recall_req("g5", v1::GROUP, "nope", 1)).first == StatusCode::kNotFound);
  // Every member's copy is a tombstone.
  for (SyncClient* c : {alice.get(), bob.get(), carol.get()}) {
    auto rows = pull_until(*c, [&](const auto& all) {
      for (const auto& m : all)
        if (m.msg_id() == carols.msg_id()) return m.content_type() == 10005u;
      return false;
    });
    bool tomb = false;
    for (const auto& m : rows)
      if (m.msg_id() == carols.msg_id()) tomb = m.content_type() == 10005;
    CHECK(tomb);
  }
}

TEST_CASE("EDIT: versions, new body everywhere, the limits and every error status") {
  ServerProcess server(fast_overrides({{"limits.max_edits", "2"}, {"limits.max_message_bytes", "100"}}));
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  const v1::SendResp sent = send_ok(*alice, "bob", "m1", "first");
  (void)pull_until(*bob, [](const auto& rows) { return rows.size() == 1; });
  const v1::SendResp e1 = call_ok<v1::SendResp>(*alice, Cmd::kEdit, edit_req("e1", v1::C2C, "bob", sent.conv_seq(), "second"));
  const v1::SendResp e2 = call_ok<v1::SendResp>(*alice, Cmd::kEdit, edit_req("e2", v1::C2C, "bob", sent.conv_seq(), "third"));
  CHECK(call_ok<v1::SendResp>(*alice, Cmd::kEdit, edit_req("e2", v1::C2C, "bob", sent.conv_seq(), "third")).duplicate());
  CHECK(call_change(*alice, Cmd::kEdit, edit_req("e3", v1::C2C, "bob", sent.conv_seq(), "fourth")).first ==
        StatusCode::kExpired);  // limits.max_edits
  for (SyncClient* c : {alice.get(), bob.get()}) {
    const std::string peer = c == alice.get() ? "bob" : "alice";
    v1::Message h = history_at(*c, v1::C2C, peer, sent.conv_seq());
    CHECK(h.body() == "third");
    CHECK(h.content_type() == 1);
    CHECK(h.edit_version() == 2);
    CHECK(h.edited_ms() == e2.server_time_ms());
    v1::Message copy = inbox_copy(*c, sent.msg_id());
    CHECK(copy.body() == "third");
    CHECK(copy.edit_version() == 2);
    v1::Message event = inbox_copy(*c, e1.msg_id());
    CHECK(event.content_type() == 10004);
    v1::MessageEdit body;
    REQUIRE(body.ParseFromString(event.body()));
    CHECK(body.edit_version() == 1);
    CHECK(body.body() == "second");
    CHECK(body.target_msg_id() == sent.msg_id());
  }
  // The conversation list shows the edited body (the newest message is the target here? no: the
  // events are newer; the list's last_message is the newest event).
  CHECK(conv_list(*bob).conversations(0).last_conv_seq() == e2.conv_seq());

  const v1::SendResp other = send_ok(*bob, "alice", "b1", "bob's");
  CHECK(call_change(*alice, Cmd::kEdit, edit_req("x1", v1::C2C, "bob", other.conv_seq(), "no")).first ==
        StatusCode::kForbidden);
  CHECK(call_change(*alice, Cmd::kEdit, edit_req("x2", v1::C2C, "bob", e1.conv_seq(), "no")).first ==
        StatusCode::kBadRequest);
  CHECK(call_change(*alice, Cmd::kEdit, edit_req("x3", v1::C2C, "bob", 999, "no")).first == StatusCode::kNotFound);
  CHECK(call_change(*bob, Cmd::kEdit, edit_req("x4", v1::C2C, "alice", other.conv_seq(), std::string(101, 'x')))
            .first == StatusCode::kTooLarge);
  call_ok<v1::SendResp>(*bob, Cmd::kRecall, recall_req("x5", v1::C2C, "alice", other.conv_seq()));
  CHECK(call_change(*bob, Cmd::kEdit, edit_req("x6", v1::C2C, "alice", other.conv_seq(), "late")).first ==
        StatusCode::kGone);
}

TEST_CASE("RECALL through the admin API: any message, no window") {
  ServerProcess server(fast_overrides({{"admin.listen", "\"127.0.0.1:0\""},
                             {"admin.api_key", "\"admin-key-1\""},
                             {"limits.recall_window_s", "0"}}));
  AdminClient admin(server.admin_port(), "admin-key-1");
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  const v1::SendResp sent = send_ok(*alice, "bob", "m1", "rude");
  std::this_thread::sleep_for(20ms);
  CHECK(call_change(*alice, Cmd::kRecall, recall_req("r1", v1::C2C, "bob", sent.conv_seq())).first ==
        StatusCode::kExpired);
  HttpReply r = admin.post("/v1/messages/recall", {{"from", "bob"},
                                                   {"conv_type", "c2c"},
                                                   {"to", "alice"},
                                                   {"conv_seq", std::to_string(sent.conv_seq())},
                                                   {"client_msg_id", "mod-1"}});
  REQUIRE(r.status == 200);
  CHECK(r.body["conv_seq"] == "2");
  CHECK(r.body["duplicate"] == false);
  CHECK(history_at(*alice, v1::C2C, "bob", sent.conv_seq()).content_type() == 10005);
  r = admin.post("/v1/messages/recall", {{"from", "bob"},
                                         {"conv_type", "c2c"},
                                         {"to", "alice"},
                                         {"conv_seq", std::to_string(sent.conv_seq())},
                                         {"client_msg_id", "mod-2"}});
  CHECK(r.status == 410);
  CHECK(r.body["status"] == "GONE");
  r = admin.post("/v1/messages/recall",
                 {{"from", "bob"}, {"conv_type", "c2c"}, {"to", "alice"}, {"conv_seq", "x"}, {"client_msg_id", "m"}});
  CHECK(r.status == 400);
}

TEST_CASE("crash safety: SIGKILL right after RECALL and EDIT answers, many times") {
  ServerProcess server(fast_overrides());
  std::vector<std::pair<std::uint64_t, std::string>> expect;  // conv_seq -> body ("" = recalled)
  std::vector<std::uint64_t> emptied;                          // edit events of recalled messages
  for (int cycle = 0; cycle < 6; ++cycle) {
    INFO("cycle " << cycle);
    auto alice = server.login("alice");
    const v1::SendResp a = send_ok(*alice, "bob", "a" + std::to_string(cycle), "original");
    const v1::SendResp b = send_ok(*alice, "bob", "b" + std::to_string(cycle), "original");
    call_ok<v1::SendResp>(*alice, Cmd::kRecall, recall_req("r" + std::to_string(cycle), v1::C2C, "bob", a.conv_seq()));
    call_ok<v1::SendResp>(*alice, Cmd::kEdit,
              edit_req("e" + std::to_string(cycle), v1::C2C, "bob", b.conv_seq(), "edited " + std::to_string(cycle)));
    // An edited message recalled: its edit event says nothing after the crash.
    const v1::SendResp c = send_ok(*alice, "bob", "c" + std::to_string(cycle), "original");
    const v1::SendResp ce = call_ok<v1::SendResp>(
        *alice, Cmd::kEdit, edit_req("ce" + std::to_string(cycle), v1::C2C, "bob", c.conv_seq(), "second thoughts"));
    call_ok<v1::SendResp>(*alice, Cmd::kRecall, recall_req("cr" + std::to_string(cycle), v1::C2C, "bob", c.conv_seq()));
    expect.emplace_back(c.conv_seq(), "");
    emptied.push_back(ce.conv_seq());
    expect.emplace_back(a.conv_seq(), "");
    expect.emplace_back(b.conv_seq(), "edited " + std::to_string(cycle));
    server.kill9();
    server.restart();
    auto bob = server.login("bob");
    auto rows = pull_all(*bob);
    for (std::uint64_t seq : emptied) {
      v1::MessageEdit edit;
      REQUIRE(edit.ParseFromString(history_at(*bob, v1::C2C, "alice", seq).body()));
      CHECK(edit.body().empty());
      for (const auto& m : rows)
        if (m.conv_seq() == seq) CHECK(m.body().find("second thoughts") == std::string::npos);
    }
    for (const auto& [seq, body] : expect) {
      v1::Message h = history_at(*bob, v1::C2C, "alice", seq);
      const v1::Message* copy = nullptr;
      for (const auto& m : rows)
        if (m.conv_seq() == seq && m.from() == "alice" && m.content_type() < 10003) copy = &m;
      for (const auto& m : rows)
        if (m.conv_seq() == seq && m.content_type() == 10005) copy = &m;
      REQUIRE(copy);
      if (body.empty()) {
        CHECK(h.content_type() == 10005);
        CHECK(copy->content_type() == 10005);
      } else {
        CHECK(h.body() == body);
        CHECK(copy->body() == body);
      }
    }
  }
}

TEST_CASE("crash safety: group receipts and a recall in a group survive SIGKILL right after the answers") {
  ServerProcess server(fast_overrides());
  {
    auto alice = server.login("alice");
    create_group(*alice, "cg", {"bob", "carol"});
  }
  std::uint64_t read_by_bob = 0;
  for (int cycle = 0; cycle < 4; ++cycle) {
    INFO("cycle " << cycle);
    auto alice = server.login("alice");
    auto bob = server.login("bob");
    auto req = send_req("cg", "m" + std::to_string(cycle), "hello", v1::GROUP);
    const v1::SendResp m = call_ok<v1::SendResp>(*alice, Cmd::kSend, req);
    auto gone = send_req("cg", "x" + std::to_string(cycle), "oops", v1::GROUP);
    const v1::SendResp x = call_ok<v1::SendResp>(*alice, Cmd::kSend, gone);
    call_ok<v1::SendResp>(*alice, Cmd::kRecall, recall_req("r" + std::to_string(cycle), v1::GROUP, "cg", x.conv_seq()));
    (void)pull_until(*bob, [&](const auto& rows) {
      return !rows.empty() && rows.back().content_type() == 10003u;
    });
    v1::ConvReadReq read;
    read.set_conv_type(v1::GROUP);
    read.set_peer("cg");
    read.set_read_seq(m.conv_seq());
    read_by_bob = call_ok<v1::ConvReadResp>(*bob, Cmd::kConvRead, read).read_seq();
    REQUIRE(read_by_bob == m.conv_seq());
    server.kill9();
    server.restart();
    auto carol = server.login("carol");
    v1::ReceiptsReq rq;
    rq.set_gid("cg");
    rq.add_conv_seqs(m.conv_seq());
    rq.add_conv_seqs(x.conv_seq());
    const auto counts = call_ok<v1::ReceiptsResp>(*carol, Cmd::kReceipts, rq);
    CHECK(counts.counts(0).read_count() == 1);  // bob
    CHECK(counts.counts(0).member_count() == 2);
    CHECK(counts.counts(1).read_count() == 0);  // bob read up to m only
    // The recalled one is a tombstone in carol's inbox and in the history.
    auto rows = pull_until(*carol, [&](const auto& all) {
      for (const auto& r : all)
        if (r.msg_id() == x.msg_id()) return true;
      return false;
    });
    bool tomb = false;
    for (const auto& r : rows)
      if (r.msg_id() == x.msg_id()) tomb = r.content_type() == 10005;
    CHECK(tomb);
    CHECK(history_at(*carol, v1::GROUP, "cg", x.conv_seq()).content_type() == 10005);
  }
}

TEST_CASE("EDIT and RECALL in a group: every member's copy, HISTORY and CONV_LIST's last_message") {
  ServerProcess server(fast_overrides({{"admin.listen", "\"127.0.0.1:0\""}, {"admin.api_key", "\"admin-key-1\""}}));
  AdminClient admin(server.admin_port(), "admin-key-1");
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  auto carol = server.login("carol");
  create_group(*alice, "g", {"bob", "carol"});
  auto req = send_req("g", "b1", "bob's first", v1::GROUP);
  const v1::SendResp m = call_ok<v1::SendResp>(*bob, Cmd::kSend, req);
  const v1::SendResp e = call_ok<v1::SendResp>(*bob, Cmd::kEdit, edit_req("be", v1::GROUP, "g", m.conv_seq(), "bob's second"));
  for (SyncClient* c : {alice.get(), bob.get(), carol.get()}) {
    auto rows = pull_until(*c, [&](const auto& all) {
      for (const auto& r : all)
        if (r.msg_id() == e.msg_id()) return true;
      return false;
    });
    bool edited = false;
    for (const auto& r : rows)
      if (r.msg_id() == m.msg_id()) edited = r.body() == "bob's second" && r.edit_version() == 1 && r.edited_ms() > 0;
    CHECK(edited);
    CHECK(history_at(*c, v1::GROUP, "g", m.conv_seq()).body() == "bob's second");
  }
  // The newest message of the list: a plain message, then its tombstone.
  auto late = send_req("g", "b2", "bob's last", v1::GROUP);
  const v1::SendResp last = call_ok<v1::SendResp>(*bob, Cmd::kSend, late);
  (void)pull_until(*carol, [&](const auto& all) { return !all.empty() && all.back().msg_id() == last.msg_id(); });
  v1::Conversation c = conv_list(*carol).conversations(0);
  CHECK(c.last_message().body() == "bob's last");
  // A moderator's recall on behalf of a member (not the sender), after which
  // carol's list shows the tombstone; on behalf of a non-member: FORBIDDEN.
  HttpReply r = admin.post("/v1/messages/recall", {{"from", "carol"},
                                                   {"conv_type", "group"},
                                                   {"to", "g"},
                                                   {"conv_seq", std::to_string(last.conv_seq())},
                                                   {"client_msg_id", "mod-1"}});
  REQUIRE(r.status == 200);
  // The newest is now the 10003 event itself; the target a tombstone.
  c = conv_list(*carol).conversations(0);
  CHECK(c.last_message().content_type() == 10003);
  CHECK(c.last_conv_seq() == last.conv_seq() + 1);
  CHECK(history_at(*carol, v1::GROUP, "g", last.conv_seq()).content_type() == 10005);
  // Deleting the event for herself, carol's list shows the tombstone.
  v1::DeleteReq del;
  del.set_conv_type(v1::GROUP);
  del.set_peer("g");
  del.add_conv_seqs(last.conv_seq() + 1);
  (void)call_ok<v1::DeleteResp>(*carol, Cmd::kDelete, del);
  c = conv_list(*carol).conversations(0);
  CHECK(c.last_message().content_type() == 10005);
  CHECK(c.last_message().body().find("bob's last") == std::string::npos);
  r = admin.post("/v1/messages/recall", {{"from", "mallory"},
                                         {"conv_type", "group"},
                                         {"to", "g"},
                                         {"conv_seq", std::to_string(m.conv_seq())},
                                         {"client_msg_id", "mod-2"}});
  CHECK(r.status == 403);
}

TEST_CASE("RECALL and EDIT reach every copy: a former member's, one far back in a busy inbox, after SIGKILL") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  create_group(*alice, "g", {"bob", "carol"});
  const v1::SendResp edited = call_ok<v1::SendResp>(*alice, Cmd::kSend, send_req("g", "g1", "first", v1::GROUP));
  const v1::SendResp recalled = call_ok<v1::SendResp>(*alice, Cmd::kSend, send_req("g", "g2", "secret", v1::GROUP));
  const v1::SendResp far = send_ok(*alice, "bob", "c1", "far back");
  // carol leaves the group before the changes: no event reaches her inbox.
  v1::GroupMembersReq remove;
  remove.set_gid("g");
  remove.add_uids("carol");
  (void)call_ok<v1::GroupMembersResp>(*alice, Cmd::kGroupRemoveMembers, remove);
  // bob's inbox fills up above alice's C2C message.
  {
    auto dave = server.login("dave");
    for (int i = 0; i < 300; ++i) send_ok(*dave, "bob", "d" + std::to_string(i), "filler");
  }
  call_ok<v1::SendResp>(*alice, Cmd::kEdit, edit_req("e1", v1::GROUP, "g", edited.conv_seq(), "second"));
  call_ok<v1::SendResp>(*alice, Cmd::kRecall, recall_req("r1", v1::GROUP, "g", recalled.conv_seq()));
  call_ok<v1::SendResp>(*alice, Cmd::kRecall, recall_req("r2", v1::C2C, "bob", far.conv_seq()));

  auto check = [&](SyncClient& carol, SyncClient& b) {
    const auto rows = pull_all(carol);
    for (const auto& r : rows) CHECK(r.content_type() != 10003u);  // she never got the events
    const v1::Message e = inbox_copy(carol, edited.msg_id());
    CHECK(e.body() == "second");
    CHECK(e.edit_version() == 1);
    const v1::Message t = inbox_copy(carol, recalled.msg_id());
    CHECK(t.content_type() == 10005);
    CHECK(t.body().find("secret") == std::string::npos);
    CHECK(t.conv_seq() == recalled.conv_seq());
    const v1::Message f = inbox_copy(b, far.msg_id());
    CHECK(f.content_type() == 10005);
    CHECK(f.conv_seq() == far.conv_seq());
    CHECK(f.body().find("far back") == std::string::npos);
  };
  {
    auto carol = server.login("carol");
    check(*carol, *bob);
  }
  alice.reset();
  bob.reset();
  server.kill9();
  server.restart();
  auto carol = server.login("carol");
  auto bob2 = server.login("bob");
  check(*carol, *bob2);
}

TEST_CASE("RECALL after EDITs: no answer returns any of the texts, the edit events' bodies emptied too") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  create_group(*alice, "g", {"bob"});
  for (const v1::ConvType type : {v1::C2C, v1::GROUP}) {
    INFO((type == v1::C2C ? "c2c" : "group"));
    const std::string peer = type == v1::C2C ? "bob" : "g";
    const std::string bobs_peer = type == v1::C2C ? "alice" : "g";
    const std::string tag = type == v1::C2C ? "c" : "g";
    auto req = send_req(peer, tag + "m", "text zero", type);
    const v1::SendResp m = call_ok<v1::SendResp>(*alice, Cmd::kSend, req);
    const v1::SendResp e1 =
        call_ok<v1::SendResp>(*alice, Cmd::kEdit, edit_req(tag + "e1", type, peer, m.conv_seq(), "text one"));
    const v1::SendResp e2 =
        call_ok<v1::SendResp>(*alice, Cmd::kEdit, edit_req(tag + "e2", type, peer, m.conv_seq(), "text two"));
    const v1::SendResp r = call_ok<v1::SendResp>(*alice, Cmd::kRecall, recall_req(tag + "r", type, peer, m.conv_seq()));
    auto says_nothing = [](const v1::Message& row) {
      for (const char* text : {"text zero", "text one", "text two"}) CHECK(row.body().find(text) == std::string::npos);
    };
    for (SyncClient* c : {alice.get(), bob.get()}) {
      const std::string& p = c == alice.get() ? peer : bobs_peer;
      for (const auto& row : history_all(*c, type, p)) says_nothing(row);
      const auto rows = pull_until(*c, [&](const auto& all) {
        for (const auto& row : all)
          if (row.msg_id() == r.msg_id()) return true;
        return false;
      });
      for (const auto& row : rows) says_nothing(row);
      const v1::Message event = history_at(*c, type, p, e2.conv_seq());
      CHECK(event.content_type() == 10004);
      v1::MessageEdit edit;
      REQUIRE(edit.ParseFromString(event.body()));
      CHECK(edit.body().empty());
      CHECK(edit.edit_version() == 2);
      CHECK(edit.target_msg_id() == m.msg_id());
    }
    // bob deletes the recall event for himself: his list falls back to the
    // second edit event, which says nothing either.
    v1::DeleteReq del;
    del.set_conv_type(type);
    del.set_peer(bobs_peer);
    del.add_conv_seqs(r.conv_seq());
    (void)call_ok<v1::DeleteResp>(*bob, Cmd::kDelete, del);
    const v1::Conversation c = find_conv(conv_list(*bob), bobs_peer);
    CHECK(c.last_conv_seq() == e2.conv_seq());
    CHECK(c.last_message().msg_id() == e2.msg_id());
    says_nothing(c.last_message());
    (void)e1;
  }
}

TEST_CASE("C2C peer_read_seq: the peer's own message counts as reading") {
  ServerProcess server(fast_overrides());
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  send_ok(*alice, "bob", "a1", "one");
  send_ok(*alice, "bob", "a2", "two");
  const v1::SendResp reply = send_ok(*bob, "alice", "b1", "three");
  (void)pull_until(*alice, [&](const auto& all) { return !all.empty() && all.back().msg_id() == reply.msg_id(); });
  CHECK(find_conv(conv_list(*alice), "bob").peer_read_seq() == reply.conv_seq());
}

TEST_CASE("RECALL of an edited message whose change row is gone finds the edit events in the history") {
  // As after the change row's retention, or on a store from before it.
  ServerProcess server(fast_overrides());
  v1::SendResp m, e2;
  {
    auto alice = server.login("alice");
    m = send_ok(*alice, "bob", "m", "text zero");
    call_ok<v1::SendResp>(*alice, Cmd::kEdit, edit_req("e1", v1::C2C, "bob", m.conv_seq(), "text one"));
    send_ok(*alice, "bob", "n", "between");
    e2 = call_ok<v1::SendResp>(*alice, Cmd::kEdit, edit_req("e2", v1::C2C, "bob", m.conv_seq(), "text two"));
  }
  REQUIRE(server.terminate() == 0);
  {
    StorageConfig config;
    config.data_dir = server.data_dir();
    auto store = store::Store::open(config);
    REQUIRE(store);
    REQUIRE((*store)->get_change(m.msg_id()).value());
    REQUIRE((*store)->del_changes_below(UINT64_MAX));
    REQUIRE_FALSE((*store)->get_change(m.msg_id()).value());
  }
  server.restart();
  auto alice = server.login("alice");
  call_ok<v1::SendResp>(*alice, Cmd::kRecall, recall_req("r", v1::C2C, "bob", m.conv_seq()));
  int edits = 0;
  for (const auto& row : history_all(*alice, v1::C2C, "bob")) {
    for (const char* text : {"text zero", "text one", "text two"}) CHECK(row.body().find(text) == std::string::npos);
    if (row.content_type() == 10004) ++edits;
  }
  CHECK(edits == 2);
  auto bob = server.login("bob");
  for (const auto& row : pull_all(*bob))
    for (const char* text : {"text zero", "text one", "text two"}) CHECK(row.body().find(text) == std::string::npos);
  (void)e2;
}

TEST_CASE("inbox rows by reference: pulled whole, changed as their history row, after a restart, copies otherwise") {
  // History kept as long as inboxes (the default): rows by reference.
  // Kept shorter: copies, read the same way.
  const bool by_reference = GENERATE(true, false);
  ServerProcess server(fast_overrides(
      {{"admin.listen", "\"127.0.0.1:0\""}, {"storage.history_retention_days", by_reference ? "365" : "7"}}));
  AdminClient admin(server.admin_port(), "");
  std::vector<std::uint64_t> sent;
  {
    auto alice = server.login("alice");
    auto bob = server.login("bob");
    for (int i = 0; i < 3; ++i)
      sent.push_back(send_ok(*alice, "bob", "m" + std::to_string(i), "c2c " + std::to_string(i)).msg_id());
    sent.push_back(send_ok(*alice, "alice", "self", "to myself").msg_id());
    create_group(*alice, "g1", {"bob", "carol"});
    sent.push_back(send_ok(*bob, send_req("g1", "g", "to the group", v1::GROUP)).msg_id());
    const auto edited = send_ok(*alice, "bob", "m3", "before");
    sent.push_back(edited.msg_id());
    CHECK(call_change(*alice, Cmd::kEdit, edit_req("e1", v1::C2C, "bob", edited.conv_seq(), "after")).first ==
          StatusCode::kOk);
    CHECK(call_change(*alice, Cmd::kRecall, recall_req("r1", v1::C2C, "bob", 1)).first == StatusCode::kOk);
  }
  // Every user's inbox: exactly what the messages are, each row with its own
  // inbox_seq, as HISTORY has them.
  auto check_inboxes = [&] {
    for (const std::string uid : {"alice", "bob", "carol"}) {
      auto c = server.login(uid);
      const auto rows = pull_all(*c);
      std::uint64_t expected_seq = 0;
      for (const auto& m : rows) {
        CHECK(m.inbox_seq() == ++expected_seq);  // gapless
        if (m.content_type() >= 10000) continue;
        const bool group = m.conv_type() == v1::GROUP;
        const std::string peer = group ? m.to() : (m.from() == uid ? m.to() : m.from());
        auto h = history(*c, m.conv_type(), peer, m.conv_seq() + 1, 1);
        REQUIRE(h.messages_size() == 1);
        v1::Message in_history = h.messages(0);
        in_history.set_inbox_seq(m.inbox_seq());
        CHECK(m.SerializeAsString() == in_history.SerializeAsString());
      }
      if (uid == "bob") {
        REQUIRE(rows.size() >= 6);
        CHECK(inbox_copy(*c, sent[0]).content_type() == 10005);  // recalled
        CHECK(inbox_copy(*c, sent[1]).body() == "c2c 1");
        CHECK(inbox_copy(*c, sent[4]).body() == "to the group");
        CHECK(inbox_copy(*c, sent[5]).body() == "after");  // edited
      }
      if (uid == "carol") CHECK(inbox_copy(*c, sent[4]).from() == "bob");
    }
  };
  check_inboxes();
  const double refs = admin.metric("imserver_inbox_refs_total").value_or(-1);
  if (by_reference) {
    CHECK(refs >= 10);  // alice 5 + self 1 + group 1, bob 4 + group 1, carol 1, the events
  } else {
    CHECK(refs == 0);
  }
  server.restart();
  check_inboxes();
  AdminClient again(server.admin_port(), "");  // a port of its own after the restart
  CHECK(again.metric("imserver_inbox_refs_expired_total").value_or(-1) == 0);
}
