// One-to-one messaging against the real binary: delivery online and
// offline, multi-device, dedupe, order, PULL and HISTORY paging, ACK.

#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "http_helpers.h"
#include "messaging.h"
#include "server_process.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

const Overrides kFast = {{"limits.messages_per_second", "1000000"}, {"limits.burst", "1000000"}};

// Logs `session` in again as this device (replacing the session it had) and
// returns its LoginResp.
v1::LoginResp login_again(ServerProcess& server, std::unique_ptr<SyncClient>& session, const std::string& uid,
                          int device_type, const std::string& device_id) {
  Frame login;
  session = server.login(uid, device_type, device_id, &login);
  v1::LoginResp lr;
  REQUIRE(login.parse(lr));
  return lr;
}

// Logs in as this device until its LoginResp's acked_seq is `acked` (an ACK
// has no answer, so when the server has applied it is only seen this way);
// the last LoginResp either way, for the caller's checks.
v1::LoginResp login_until_acked(ServerProcess& server, std::unique_ptr<SyncClient>& session, const std::string& uid,
                                int device_type, const std::string& device_id, std::uint64_t acked) {
  v1::LoginResp lr;
  (void)wait_until(
      [&] {
        lr = login_again(server, session, uid, device_type, device_id);
        return lr.acked_seq() == acked;
      },
      kWaitTimeout, 50ms);
  return lr;
}

}  // namespace

TEST_CASE("online delivery: SendResp to the sender, PUSH to the recipient and to the sender's other devices") {
  ServerProcess server(kFast);
  auto alice_phone = server.login("alice", v1::IOS);
  auto alice_pc = server.login("alice", v1::DESKTOP);
  auto bob = server.login("bob", v1::ANDROID);
  v1::SendResp resp = send_ok(*alice_phone, "bob", "m-1", "hi bob");
  CHECK(resp.msg_id() != 0);
  CHECK(resp.conv_seq() == 1);
  CHECK(resp.inbox_seq() == 1);
  CHECK_FALSE(resp.duplicate());
  CHECK(resp.server_time_ms() > 1'700'000'000'000);

  auto got = next_push(*bob);
  REQUIRE(got.size() == 1);
  const v1::Message& m = got[0];
  CHECK(m.msg_id() == resp.msg_id());
  CHECK(m.conv_type() == v1::C2C);
  CHECK(m.from() == "alice");
  CHECK(m.to() == "bob");
  CHECK(m.conv_seq() == 1);
  CHECK(m.inbox_seq() == 1);
  CHECK(m.client_msg_id() == "m-1");
  CHECK(m.content_type() == 1);
  CHECK(m.body() == "hi bob");
  CHECK(m.server_time_ms() == resp.server_time_ms());

  auto echo = next_push(*alice_pc);
  REQUIRE(echo.size() == 1);
  CHECK(echo[0].msg_id() == resp.msg_id());
  CHECK(echo[0].inbox_seq() == 1);
  // no echo to the sending session
  CHECK(next_push(*alice_phone, 300ms).empty());

  // the reply continues the conversation
  v1::SendResp reply = send_ok(*bob, "alice", "r-1", "hi alice");
  CHECK(reply.conv_seq() == 2);
  CHECK(reply.inbox_seq() == 2);
  auto back = next_push(*alice_phone);
  REQUIRE(back.size() == 1);
  CHECK(back[0].inbox_seq() == 2);
  CHECK(back[0].conv_seq() == 2);
}

TEST_CASE("offline delivery: LoginResp counts the inbox, PULL returns it") {
  ServerProcess server(kFast);
  auto alice = server.login("alice");
  for (int i = 0; i < 3; ++i) send_ok(*alice, "bob", "m" + std::to_string(i), "body" + std::to_string(i));
  Frame login;
  auto bob = server.login("bob", v1::IOS, "dev", &login);
  v1::LoginResp lr;
  REQUIRE(login.parse(lr));
  CHECK(lr.inbox_max_seq() == 3);
  CHECK(lr.acked_seq() == 0);
  v1::PullResp p = pull(*bob, 0);
  REQUIRE(p.messages_size() == 3);
  CHECK_FALSE(p.has_more());
  CHECK(p.inbox_max_seq() == 3);
  CHECK(p.oldest_seq() == 1);
  for (int i = 0; i < 3; ++i) {
    CHECK(p.messages(i).inbox_seq() == static_cast<std::uint64_t>(i + 1));
    CHECK(p.messages(i).body() == "body" + std::to_string(i));
  }
  // an empty inbox
  auto carol = server.login("carol");
  v1::PullResp empty = pull(*carol, 0);
  CHECK(empty.messages_size() == 0);
  CHECK(empty.inbox_max_seq() == 0);
  CHECK(empty.oldest_seq() == 0);
  CHECK_FALSE(empty.has_more());
}

TEST_CASE("every device type of the recipient receives everything") {
  ServerProcess server(kFast);
  auto phone = server.login("bob", v1::IOS);
  auto web = server.login("bob", v1::WEB);
  auto alice = server.login("alice");
  for (int i = 0; i < 20; ++i) send_ok(*alice, "bob", "m" + std::to_string(i));
  for (SyncClient* c : {phone.get(), web.get()}) {
    auto got = pushed(*c, 20);
    REQUIRE(got.size() == 20);
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i].inbox_seq() == i + 1);
  }
}

TEST_CASE("a SEND to oneself is one message with one inbox row") {
  ServerProcess server(kFast);
  auto a = server.login("alice", v1::IOS);
  auto b = server.login("alice", v1::WEB);
  v1::SendResp r = send_ok(*a, "alice", "note-1", "to self");
  CHECK(r.inbox_seq() == 1);
  CHECK(r.conv_seq() == 1);
  auto got = next_push(*b);
  REQUIRE(got.size() == 1);
  auto all = pull_all(*a);
  REQUIRE(all.size() == 1);
  CHECK(history_all(*a, v1::C2C, "alice").size() == 1);
}

TEST_CASE("a retried client_msg_id returns the original ids, across a reconnect and a restart") {
  ServerProcess server(kFast);
  auto bob = server.login("bob");
  v1::SendResp first;
  {
    auto alice = server.login("alice");
    first = send_ok(*alice, "bob", "same-id", "once");
  }
  auto alice = server.login("alice");
  v1::SendResp again = send_ok(*alice, "bob", "same-id", "once");
  CHECK(again.duplicate());
  CHECK(again.msg_id() == first.msg_id());
  CHECK(again.conv_seq() == first.conv_seq());
  CHECK(again.inbox_seq() == first.inbox_seq());
  alice.reset();
  bob.reset();
  server.kill9();
  server.restart();
  auto alice2 = server.login("alice");
  v1::SendResp after = send_ok(*alice2, "bob", "same-id", "once");
  CHECK(after.duplicate());
  CHECK(after.msg_id() == first.msg_id());
  CHECK(after.inbox_seq() == first.inbox_seq());
  auto bob2 = server.login("bob");
  CHECK(pull_all(*bob2).size() == 1);
  // a new id is a new message, continuing the sequences
  v1::SendResp next = send_ok(*alice2, "bob", "other-id");
  CHECK_FALSE(next.duplicate());
  CHECK(next.conv_seq() == 2);
  CHECK(next.inbox_seq() == 2);
}

TEST_CASE("dedupe from the senders' inbox rows: past the memory window, across a kill -9, and with no window") {
  // "2": two entries per shard, the rest get dedupe rows; "0" and a window
  // longer than inbox retention: a dedupe row for every SEND; the default
  // holds them all in memory and rebuilds them after the kill.
  const std::string mode = GENERATE("2", "0", "window>retention", "default");
  INFO("mode " << mode);
  constexpr const char* kKey = "dedupe-admin-key";
  Overrides o = merged(kFast, {{"sharding.shards", "2"},
                               {"admin.listen", "\"127.0.0.1:0\""},
                               {"admin.api_key", std::string("\"") + kKey + "\""}});
  if (mode == "2" || mode == "0") o["storage.dedupe_memory_entries"] = mode == "2" ? "4" : "0";
  if (mode == "window>retention") {
    o["storage.dedupe_window_s"] = "172800";
    o["storage.inbox_retention_days"] = "1";
  }
  ServerProcess server(o);
  std::vector<v1::SendResp> first;
  std::vector<v1::SendResp> in_group;
  auto send_group_ok = [](SyncClient& c, const std::string& cmid) {
    auto req = send_req("g", cmid, "to the group", v1::GROUP);
    auto r = c.call(Cmd::kSend, &req);
    REQUIRE(r);
    REQUIRE(r->ok());
    v1::SendResp resp;
    REQUIRE(r->parse(resp));
    return resp;
  };
  {
    auto alice = server.login("alice");
    auto bob = server.login("bob");
    // bob's messages to alice land in her inbox with the same client ids:
    // only her own rows are her SENDs.
    send_ok(*bob, "alice", "c0", "from bob");
    send_ok(*bob, "alice", "bob-only", "from bob");
    for (int i = 0; i < 6; ++i) first.push_back(send_ok(*alice, "bob", fmt::format("c{}", i)));
    create_group(*alice, "g", {"bob", "carol"});
    for (int i = 0; i < 3; ++i) in_group.push_back(send_group_ok(*alice, fmt::format("g{}", i)));
    for (int i = 0; i < 6; ++i) {
      v1::SendResp again = send_ok(*alice, "bob", fmt::format("c{}", i));
      CHECK(again.duplicate());
      CHECK(again.msg_id() == first[i].msg_id());
      CHECK(again.conv_seq() == first[i].conv_seq());
      CHECK(again.inbox_seq() == first[i].inbox_seq());
      CHECK(again.server_time_ms() == first[i].server_time_ms());
    }
  }
  AdminClient admin(server.admin_port(), kKey);
  const double rows = admin.metric("imserver_dedupe_rows_total").value_or(-1);
  if (mode == "default") {
    CHECK(rows == 0);                                                   // no fourth put
    CHECK(admin.metric("imserver_dedupe_entries").value_or(-1) == 11);  // alice's 9 and bob's 2
  } else if (mode == "2") {
    CHECK(rows >= 7);  // 11 SENDs, 2 entries on each of the 2 shards
    CHECK(admin.metric("imserver_dedupe_entries").value_or(-1) <= 4);
  } else {
    CHECK(admin.metric("imserver_dedupe_entries").value_or(-1) == 0);
  }
  server.kill9();
  server.restart();
  auto alice = server.login("alice");
  for (int i = 5; i >= 0; --i) {
    v1::SendResp after = send_ok(*alice, "bob", fmt::format("c{}", i));
    CHECK(after.duplicate());
    CHECK(after.msg_id() == first[i].msg_id());
    CHECK(after.conv_seq() == first[i].conv_seq());
    CHECK(after.inbox_seq() == first[i].inbox_seq());
  }
  for (int i = 0; i < 3; ++i) {
    v1::SendResp after = send_group_ok(*alice, fmt::format("g{}", i));
    CHECK(after.duplicate());
    CHECK(after.msg_id() == in_group[i].msg_id());
    CHECK(after.inbox_seq() == in_group[i].inbox_seq());
  }
  AdminClient admin2(server.admin_port(), kKey);
  if (mode == "default" || mode == "2") CHECK(admin2.metric("imserver_dedupe_rebuild_rows_total").value_or(0) >= 8);
  if (mode == "default") CHECK(admin2.metric("imserver_dedupe_rows_total").value_or(-1) == 0);
  v1::SendResp fresh = send_ok(*alice, "bob", "bob-only");
  CHECK_FALSE(fresh.duplicate());
  CHECK(fresh.conv_seq() == 9);  // after bob's 2 and alice's 6
  auto bob = server.login("bob");
  auto got = pull_all(*bob);
  CHECK(got.size() == 13);  // bob's own 2, alice's 6, the group's event and 3 messages, the new one
}

TEST_CASE("after a restart a sender's window is read back a slice at a time, its SENDs answered in order") {
  // 9,000 of bob's messages above alice's own 5 in her inbox: her first
  // SEND after the kill reads them back over several shard turns (4,096
  // rows each), her pipelined SENDs waiting in order meanwhile.
  constexpr const char* kKey = "rebuild-admin-key";
  ServerProcess server(merged(kFast, {{"limits.fanout_rows_per_second", "1000000"},
                                      {"admin.listen", "\"127.0.0.1:0\""},
                                      {"admin.api_key", std::string("\"") + kKey + "\""}}));
  constexpr std::uint32_t kFlood = 9000;
  std::vector<v1::SendResp> first;
  {
    auto alice = server.login("alice");
    for (int i = 0; i < 5; ++i) first.push_back(send_ok(*alice, "bob", fmt::format("a{}", i)));
  }
  {
    auto bob = server.login("bob");
    std::string bytes;
    for (std::uint32_t i = 1; i <= kFlood; ++i) {
      FrameHeader h;
      h.cmd = Cmd::kSend;
      h.seq = i;
      bytes += encode_frame(h, send_req("alice", fmt::format("b{}", i), "from bob").SerializeAsString());
    }
    bob->send_raw(bytes);
    std::uint32_t answered = 0;
    for (std::uint32_t i = 0; i < 2 * kFlood && answered < kFlood; ++i) {
      auto f = bob->next_frame();
      REQUIRE(f);
      if (f->header.cmd != Cmd::kSend) continue;  // a PUSH of alice's message
      REQUIRE(f->ok());
      ++answered;
    }
    REQUIRE(answered == kFlood);
  }
  server.kill9();
  server.restart();
  auto alice = server.login("alice");
  // Retries of a0..a4 between new n0..n4, in one write.
  std::string bytes;
  for (std::uint32_t i = 0; i < 5; ++i) {
    FrameHeader h;
    h.cmd = Cmd::kSend;
    h.seq = 2 * i + 1;
    bytes += encode_frame(h, send_req("bob", fmt::format("a{}", i), "again").SerializeAsString());
    h.seq = 2 * i + 2;
    bytes += encode_frame(h, send_req("bob", fmt::format("n{}", i), "new").SerializeAsString());
  }
  alice->send_raw(bytes);
  std::map<std::uint32_t, v1::SendResp> answers;
  for (int i = 0; i < 100 && answers.size() < 10; ++i) {
    auto f = alice->next_frame();
    REQUIRE(f);
    if (f->header.cmd != Cmd::kSend) continue;
    REQUIRE(f->ok());
    REQUIRE(f->parse(answers[f->header.seq]));
  }
  REQUIRE(answers.size() == 10);
  for (std::uint32_t i = 0; i < 5; ++i) {
    const v1::SendResp& retry = answers[2 * i + 1];
    CHECK(retry.duplicate());
    CHECK(retry.msg_id() == first[i].msg_id());
    CHECK(retry.conv_seq() == first[i].conv_seq());
    const v1::SendResp& fresh = answers[2 * i + 2];
    CHECK_FALSE(fresh.duplicate());
    CHECK(fresh.conv_seq() == 5 + kFlood + 1 + i);  // stored in the order sent
  }
  AdminClient admin(server.admin_port(), kKey);
  CHECK(admin.metric("imserver_dedupe_rebuild_rows_total").value_or(0) >= 5 + kFlood);
  CHECK(admin.metric("imserver_dedupe_rebuild_slices_total").value_or(0) >= 3);
  CHECK(admin.metric("imserver_dedupe_rows_total").value_or(-1) == 0);  // all held in memory
}

TEST_CASE("a retry after storage.dedupe_window_s is a new message, from memory and after a restart") {
  ServerProcess server(merged(kFast, {{"storage.dedupe_window_s", "4"}}));
  auto alice = server.login("alice");
  v1::SendResp first = send_ok(*alice, "bob", "late-1");
  v1::SendResp old = send_ok(*alice, "bob", "late-2");
  CHECK(send_ok(*alice, "bob", "late-1").duplicate());
  // Past the window (a wait, not a timing assertion): both ids are free again.
  const auto past = std::chrono::milliseconds(first.server_time_ms() + 4500);
  while (std::chrono::system_clock::now().time_since_epoch() < past) std::this_thread::sleep_for(50ms);
  v1::SendResp again = send_ok(*alice, "bob", "late-1");
  CHECK_FALSE(again.duplicate());
  CHECK(again.conv_seq() == 3);
  // After a restart the rebuild reads "late-2" as outside the window, and
  // finds the new "late-1" inside it.
  alice.reset();
  server.kill9();
  server.restart();
  alice = server.login("alice");
  v1::SendResp dup = send_ok(*alice, "bob", "late-1");
  const auto now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  if (now_ms < again.server_time_ms() + 4000) {  // else this machine took the whole window to restart
    CHECK(dup.duplicate());
    CHECK(dup.msg_id() == again.msg_id());
  }
  v1::SendResp fresh = send_ok(*alice, "bob", "late-2");
  CHECK_FALSE(fresh.duplicate());
  CHECK(fresh.msg_id() != old.msg_id());
  CHECK(fresh.conv_seq() == (dup.duplicate() ? 4 : 5));
}

TEST_CASE("1,000 pipelined SENDs arrive in order") {
  ServerProcess server(kFast);
  auto bob = server.login("bob");
  auto alice = server.login("alice");
  std::string bytes;
  for (std::uint32_t i = 1; i <= 1000; ++i) {
    FrameHeader h;
    h.cmd = Cmd::kSend;
    h.seq = i;
    bytes += encode_frame(h, send_req("bob", "p" + std::to_string(i), std::to_string(i)).SerializeAsString());
  }
  alice->send_raw(bytes);
  std::set<std::uint32_t> answered;
  for (int i = 0; i < 1000; ++i) {
    auto f = alice->next_frame();
    REQUIRE(f);
    REQUIRE(f->header.cmd == Cmd::kSend);
    REQUIRE(f->ok());
    v1::SendResp r;
    REQUIRE(f->parse(r));
    CHECK(r.conv_seq() == f->header.seq);  // conv_seq in the order sent
    answered.insert(f->header.seq);
  }
  CHECK(answered.size() == 1000);
  auto got = pushed(*bob, 1000);
  REQUIRE(got.size() == 1000);
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].inbox_seq() == i + 1);
    CHECK(got[i].conv_seq() == i + 1);
    CHECK(got[i].body() == std::to_string(i + 1));
  }
}

TEST_CASE("PULL pages by limit, clamps it, and acknowledges after_seq") {
  ServerProcess server(kFast);
  auto alice = server.login("alice");
  for (int i = 0; i < 250; ++i) send_ok(*alice, "bob", "m" + std::to_string(i));
  auto bob = server.login("bob", v1::IOS, "phone");
  v1::PullResp p1 = pull(*bob, 0, 100);
  CHECK(p1.messages_size() == 100);
  CHECK(p1.has_more());
  CHECK(p1.inbox_max_seq() == 250);
  v1::PullResp p2 = pull(*bob, 100, 0);  // default limit 100
  CHECK(p2.messages_size() == 100);
  CHECK(p2.messages(0).inbox_seq() == 101);
  CHECK(p2.has_more());
  v1::PullResp p3 = pull(*bob, 200, 5000);  // clamped, and 50 left
  CHECK(p3.messages_size() == 50);
  CHECK_FALSE(p3.has_more());
  v1::PullResp none = pull(*bob, 250);
  CHECK(none.messages_size() == 0);
  CHECK_FALSE(none.has_more());
  v1::PullResp beyond = pull(*bob, 900);
  CHECK(beyond.messages_size() == 0);
  // the PULL after 250 acknowledged 250 for this device: a new login of it says so
  bob.reset();
  v1::LoginResp lr = login_until_acked(server, bob, "bob", v1::IOS, "phone", 250);
  CHECK(lr.acked_seq() == 250);
  CHECK(lr.inbox_max_seq() == 250);
}

TEST_CASE("a PULL answer never exceeds the frame limit") {
  ServerProcess server(Overrides{{"server.max_frame_bytes", "8192"},
                                 {"limits.max_message_bytes", "7000"},
                                 {"limits.messages_per_second", "100000"},
                                 {"limits.burst", "100000"}});
  auto alice = server.login("alice");
  for (int i = 0; i < 10; ++i) send_ok(*alice, "bob", "big" + std::to_string(i), std::string(3000, 'x'));
  auto bob = server.login("bob");
  v1::PullResp p = pull(*bob, 0, 1000);
  CHECK(p.messages_size() == 2);
  CHECK(p.has_more());
  CHECK(pull_all(*bob).size() == 10);
}

TEST_CASE("ACK is cumulative per device, persisted, and never moves back") {
  ServerProcess server(kFast);
  auto alice = server.login("alice");
  for (int i = 0; i < 5; ++i) send_ok(*alice, "bob", "m" + std::to_string(i));
  {
    auto bob = server.login("bob", v1::IOS, "phone");
    v1::AckReq ack;
    ack.set_inbox_seq(4);
    bob->notify(Cmd::kAck, &ack);
    ack.set_inbox_seq(2);
    bob->notify(Cmd::kAck, &ack);
    ack.set_inbox_seq(99);
    auto bad = bob->call(Cmd::kAck, &ack);
    REQUIRE(bad);
    CHECK(bad->status() == StatusCode::kBadRequest);
    v1::PullResp p = pull(*bob, 1);  // below the cursor: does not move it back
    CHECK(p.messages_size() == 4);
  }
  std::unique_ptr<SyncClient> bob;
  v1::LoginResp lr = login_until_acked(server, bob, "bob", v1::IOS, "phone", 4);
  CHECK(lr.acked_seq() == 4);
  std::unique_ptr<SyncClient> tablet;
  lr = login_again(server, tablet, "bob", v1::WEB, "tablet");
  CHECK(lr.acked_seq() == 0);  // per device
}

TEST_CASE("HISTORY pages backwards by before_seq, each page ascending") {
  ServerProcess server(kFast);
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  for (int i = 1; i <= 120; ++i) send_ok(i % 2 ? *alice : *bob, i % 2 ? "bob" : "alice", "h" + std::to_string(i));
  v1::HistoryResp newest = history(*alice, v1::C2C, "bob", 0);
  REQUIRE(newest.messages_size() == 50);
  CHECK(newest.has_more());
  CHECK(newest.messages(0).conv_seq() == 71);
  CHECK(newest.messages(49).conv_seq() == 120);
  v1::HistoryResp older = history(*alice, v1::C2C, "bob", 71, 1000);  // clamped to 500
  REQUIRE(older.messages_size() == 70);
  CHECK_FALSE(older.has_more());
  CHECK(older.messages(0).conv_seq() == 1);
  CHECK(older.messages(0).inbox_seq() == 0);
  // both sides see the same conversation
  auto from_bob = history_all(*bob, v1::C2C, "alice");
  REQUIRE(from_bob.size() == 120);
  for (std::size_t i = 0; i < from_bob.size(); ++i) CHECK(from_bob[i].conv_seq() == i + 1);
  CHECK(history(*alice, v1::C2C, "nobody", 0).messages_size() == 0);
}

TEST_CASE("SEND validation") {
  ServerProcess server(Overrides{{"limits.max_message_bytes", "100"}});
  auto alice = server.login("alice");
  auto status = [&](const v1::SendReq& req) {
    auto r = alice->call(Cmd::kSend, &req);
    REQUIRE(r);
    return r->status();
  };
  CHECK(status(send_req("bob", "a", std::string(101, 'x'))) == StatusCode::kTooLarge);
  CHECK(status(send_req("bob", "b", std::string(100, 'x'))) == StatusCode::kOk);
  CHECK(status(send_req("bob", "")) == StatusCode::kBadRequest);
  CHECK(status(send_req("bob", std::string(65, 'c'))) == StatusCode::kBadRequest);
  CHECK(status(send_req("bob", "tab\tid")) == StatusCode::kBadRequest);
  CHECK(status(send_req("bad uid", "c")) == StatusCode::kBadRequest);
  CHECK(status(send_req("", "c")) == StatusCode::kBadRequest);
  CHECK(status(send_req("bob", "d", "x", v1::C2C, 10000)) == StatusCode::kBadRequest);
  CHECK(status(send_req("bob", "e", "x", v1::C2C, 0)) == StatusCode::kOk);
  CHECK(status(send_req("bob", "f", "x", v1::SYSTEM)) == StatusCode::kBadRequest);
  CHECK(status(send_req("nogroup", "g", "x", v1::GROUP)) == StatusCode::kNotFound);
  auto bad = alice->call_raw(Cmd::kSend, "\xff\xff");
  REQUIRE(bad);
  CHECK(bad->status() == StatusCode::kBadRequest);
}

TEST_CASE("a reader that stops reading is disconnected and resyncs by PULL without loss") {
  ServerProcess server(Overrides{
      {"server.max_pending_bytes", "70000"}, {"limits.messages_per_second", "1000000"}, {"limits.burst", "1000000"}});
  // bob logs in on a raw socket with a small receive buffer, then never reads
  int fd = connect_raw(server.tcp_port(), 4096);
  REQUIRE(fd >= 0);
  FrameHeader h;
  h.cmd = Cmd::kLogin;
  h.seq = 1;
  const std::string login = encode_frame(h, login_body("bob", token_for("bob")));
  REQUIRE(::send(fd, login.data(), login.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(login.size()));
  auto alice = server.login("alice");
  for (int i = 0; i < 2000; ++i) send_ok(*alice, "bob", "s" + std::to_string(i), std::string(2000, 'y'));
  CHECK(server.log().find("slow consumer") != std::string::npos);
  ::close(fd);
  auto again = server.login("bob", v1::WEB);
  auto all = pull_all(*again);
  REQUIRE(all.size() == 2000);
  for (std::size_t i = 0; i < all.size(); ++i) CHECK(all[i].inbox_seq() == i + 1);
}

// [embedded]: cluster mode refuses storage.fsync = true (docs/cluster.md).
TEST_CASE("with storage.fsync = true messages are stored, acknowledged and pulled as ever", "[embedded]") {
  ServerProcess server(
      Overrides{{"storage.fsync", "true"}, {"limits.messages_per_second", "100000"}, {"limits.burst", "100000"}});
  auto alice = server.login("alice");
  for (int i = 0; i < 50; ++i) CHECK(send_ok(*alice, "bob", "f" + std::to_string(i)).inbox_seq() == i + 1u);
  server.kill9();
  server.restart();
  auto bob = server.login("bob");
  auto rows = pull_all(*bob);
  REQUIRE(rows.size() == 50);
  CHECK(rows.back().inbox_seq() == 50);
}
