// Groups against the real binary: commands and every permission rule,
// events, fan-out to online and offline members, the member limit, and a
// 2,000-member group whose fan-out survives SIGKILL (and, in cluster mode,
// a rebuild from the streams).

#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include "messaging.h"
#include "server_process.h"
#include "store/store.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

// Large groups and many sends in a burst: the per-user row limit is not what
// these tests are about (tests/integration/bounds_test.cpp is).
const Overrides kFast = {{"limits.messages_per_second", "1000000"},
                         {"limits.burst", "1000000"},
                         {"limits.fanout_rows_per_second", "100000000"},
                         {"sharding.shards", "2"}};

Frame group_call(SyncClient& c, Cmd cmd, const google::protobuf::MessageLite& req) {
  return must(c.call(cmd, &req));
}

v1::GroupMembersReq members_req(const std::string& gid, std::vector<std::string> uids) {
  v1::GroupMembersReq req;
  req.set_gid(gid);
  for (auto& u : uids) req.add_uids(u);
  return req;
}

v1::GroupIdReq id_req(const std::string& gid) {
  v1::GroupIdReq req;
  req.set_gid(gid);
  return req;
}

v1::GroupEvent event_of(const v1::Message& m) {
  REQUIRE(m.content_type() == 10001);
  v1::GroupEvent e;
  REQUIRE(e.ParseFromString(m.body()));
  return e;
}

v1::SendResp send_group(SyncClient& c, const std::string& gid, const std::string& cmid, const std::string& body = "g") {
  auto req = send_req(gid, cmid, body, v1::GROUP);
  Frame f = must(c.call(Cmd::kSend, &req));
  INFO(f.error_message());
  REQUIRE(f.ok());
  v1::SendResp resp;
  REQUIRE(f.parse(resp));
  return resp;
}

StatusCode send_group_status(SyncClient& c, const std::string& gid, const std::string& cmid) {
  auto req = send_req(gid, cmid, "x", v1::GROUP);
  return must(c.call(Cmd::kSend, &req)).status();
}

// The rows of every listed user's inbox in a stopped server's data dir.
std::map<std::string, std::vector<v1::Message>> inboxes(const std::string& data_dir,
                                                        const std::vector<std::string>& uids) {
  StorageConfig config;
  config.data_dir = data_dir;
  auto opened = store::Store::open(config);
  REQUIRE(opened);
  std::map<std::string, std::vector<v1::Message>> out;
  for (const auto& uid : uids) {
    REQUIRE((*opened)->scan_inbox(uid, 0, UINT64_MAX, [&](std::uint64_t, std::string_view v) {
      v1::Message m;
      REQUIRE(m.ParseFromArray(v.data(), static_cast<int>(v.size())));
      out[uid].push_back(m);
      return true;
    }));
  }
  return out;
}

// The steps of the 2,000-member group test.

// The big group is created; CREATED lists 500 members and three
// MEMBERS_ADDED events list the other 1,500. The answer came once they were
// durably queued; the rows follow.
void big_group_created_with_its_events(SyncClient& owner, const std::vector<std::string>& members) {
  v1::GroupResp g = create_group(owner, "big", members);
  CHECK(g.group().member_count() == 2000);
  CHECK(g.members_size() == 500);  // the default listing
  CHECK(g.members_more());
  auto first = pull_until(owner, [](const auto& rows) { return rows.size() >= 4; });
  REQUIRE(first.size() == 4);
  CHECK(event_of(first[0]).type() == v1::CREATED);
  CHECK(event_of(first[0]).uids_size() == 500);
  for (int i = 1; i < 4; ++i) CHECK(event_of(first[i]).type() == v1::MEMBERS_ADDED);
}

// The group SENDs made across the kills.
struct BigGroupSends {
  std::map<std::string, std::uint64_t> acked;  // cmid -> msg_id
  std::set<std::string> unanswered;
  int cmid = 0;
};

// One member pipelines 20 group SENDs (each a 2,000-row fan-out) and the
// server is SIGKILLed among them, then restarted. The random delay is the
// test's design, not a wait for anything: it moves the kill around so that
// over the cycles it lands before, among and after the fan-outs.
void group_sends_killed_mid_fan_out(ServerProcess& server, std::mt19937& rng, BigGroupSends& sends) {
  auto sender = server.login("u0001");
  std::string bytes;
  std::vector<std::string> ids;
  for (std::uint32_t i = 1; i <= 20; ++i) {
    ids.push_back("big-" + std::to_string(++sends.cmid));
    FrameHeader h;
    h.cmd = Cmd::kSend;
    h.seq = i;
    bytes += encode_frame(h, send_req("big", ids.back(), "m", v1::GROUP).SerializeAsString());
  }
  sender->send_raw(bytes);
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % 40000));
  server.kill9();
  std::set<std::string> answered;
  for (int i = 0; i < 20; ++i) {
    auto f = sender->next_frame(200ms);
    if (!f) break;
    if (f->header.cmd != Cmd::kSend || !f->ok()) continue;
    v1::SendResp r;
    REQUIRE(r.ParseFromString(f->body));
    sends.acked[ids[f->header.seq - 1]] = r.msg_id();
    answered.insert(ids[f->header.seq - 1]);
  }
  for (const auto& id : ids)
    if (!answered.count(id)) sends.unanswered.insert(id);
  sender.reset();
  server.restart();
}

// Retry what was never answered: stored ones come back as duplicates.
void unanswered_sends_retried(ServerProcess& server, BigGroupSends& sends) {
  auto sender = server.login("u0001");
  for (const auto& id : sends.unanswered) sends.acked[id] = send_group(*sender, "big", id, "m").msg_id();
}

// A fan-out still running at a graceful stop is finished by the next start,
// before any client is served: let one start run, and stop it to read.
void fan_outs_finished_by_a_restart(ServerProcess& server) {
  REQUIRE(server.terminate() == 0);
  server.restart();
  REQUIRE(server.terminate() == 0);
}

// Every member's inbox, read from the stopped server's data dir: gapless,
// each message once, every acknowledged one present, and nothing else but
// the 4 creation events.
void every_inbox_holds_every_acknowledged_message_once_gapless(const std::string& data_dir,
                                                               const std::vector<std::string>& everyone,
                                                               const BigGroupSends& sends) {
  auto rows = inboxes(data_dir, everyone);
  std::set<std::uint64_t> expected;
  for (const auto& [id, msg_id] : sends.acked) expected.insert(msg_id);
  for (const auto& uid : everyone) {
    INFO(uid);
    const auto& inbox = rows[uid];
    std::set<std::uint64_t> seen;
    for (std::size_t i = 0; i < inbox.size(); ++i) {
      REQUIRE(inbox[i].inbox_seq() == i + 1);          // no gap
      REQUIRE(seen.insert(inbox[i].msg_id()).second);  // no duplicate
    }
    for (std::uint64_t id : expected) REQUIRE(seen.count(id) == 1);
    REQUIRE(inbox.size() == expected.size() + 4);  // and nothing else but the 4 creation events
  }
}

}  // namespace

TEST_CASE("GROUP_CREATE: owner and members, CREATED as conv_seq 1 to everyone, online and offline") {
  ServerProcess server(kFast);
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  v1::GroupResp g = create_group(*alice, "team1", {"carol", "bob", "alice", "bob"});
  CHECK(g.group().gid() == "team1");
  CHECK(g.group().name() == "team");
  CHECK(g.group().owner() == "alice");
  CHECK(g.group().member_count() == 3);
  CHECK(g.group().created_ms() > 1'700'000'000'000);
  CHECK(std::vector<std::string>(g.members().begin(), g.members().end()) ==
        std::vector<std::string>{"alice", "bob", "carol"});
  CHECK_FALSE(g.members_more());
  for (SyncClient* c : {alice.get(), bob.get()}) {  // the creator's session gets it too: it is not a SEND
    auto got = next_push(*c);
    REQUIRE(got.size() == 1);
    CHECK(got[0].conv_type() == v1::GROUP);
    CHECK(got[0].to() == "team1");
    CHECK(got[0].conv_seq() == 1);
    v1::GroupEvent e = event_of(got[0]);
    CHECK(e.type() == v1::CREATED);
    CHECK(e.actor() == "alice");
    CHECK(e.gid() == "team1");
    CHECK(e.uids_size() == 3);
    CHECK(e.group().member_count() == 3);
  }
  auto carol = server.login("carol");  // offline until now
  auto rows = pull_until(*carol, [](const auto& r) { return !r.empty(); });
  REQUIRE(rows.size() == 1);
  CHECK(event_of(rows[0]).type() == v1::CREATED);
  // an empty gid: the server picks one
  v1::GroupResp auto_id = create_group(*alice, "", {"bob"});
  CHECK(auto_id.group().gid().size() >= 8);
  // the gid is taken now
  v1::GroupCreateReq again;
  again.set_gid("team1");
  again.set_name("x");
  CHECK(group_call(*bob, Cmd::kGroupCreate, again).status() == StatusCode::kConflict);
}

TEST_CASE("GROUP_CREATE validation and the member limit") {
  ServerProcess server(Overrides{{"limits.max_group_members", "5"}});
  auto alice = server.login("alice");
  auto status = [&](const std::string& gid, const std::string& name, std::vector<std::string> members) {
    v1::GroupCreateReq req;
    req.set_gid(gid);
    req.set_name(name);
    for (auto& m : members) req.add_members(m);
    return group_call(*alice, Cmd::kGroupCreate, req).status();
  };
  CHECK(status("g 1", "n", {}) == StatusCode::kBadRequest);
  CHECK(status("g1", "", {}) == StatusCode::kBadRequest);
  CHECK(status("g1", std::string(257, 'n'), {}) == StatusCode::kBadRequest);
  CHECK(status("g1", "n", {"bad uid"}) == StatusCode::kBadRequest);
  CHECK(status("g1", "n", {"b", "c", "d", "e", "f"}) == StatusCode::kTooLarge);  // 6 with the creator
  CHECK(status("g1", "n", {"b", "c", "d", "e"}) == StatusCode::kOk);
  CHECK(group_call(*alice, Cmd::kGroupAddMembers, members_req("g1", {"x"})).status() == StatusCode::kTooLarge);
  CHECK(must(alice->call_raw(Cmd::kGroupCreate, "\xff\xff")).status() == StatusCode::kBadRequest);
}

TEST_CASE("group permission rules") {
  ServerProcess server(kFast);
  auto owner = server.login("owner");
  auto member = server.login("member");
  auto outsider = server.login("outsider");
  create_group(*owner, "g", {"member"});
  // unknown group: NOT_FOUND for every command
  for (Cmd cmd : {Cmd::kGroupGet, Cmd::kGroupLeave, Cmd::kGroupDismiss}) {
    v1::GroupGetReq get;
    get.set_gid("nope");
    CHECK(group_call(*owner, cmd, get).status() == StatusCode::kNotFound);
  }
  CHECK(group_call(*owner, Cmd::kGroupAddMembers, members_req("nope", {"x"})).status() == StatusCode::kNotFound);
  // outsiders can do nothing
  v1::GroupGetReq get;
  get.set_gid("g");
  CHECK(group_call(*outsider, Cmd::kGroupGet, get).status() == StatusCode::kForbidden);
  CHECK(group_call(*outsider, Cmd::kGroupAddMembers, members_req("g", {"outsider"})).status() ==
        StatusCode::kForbidden);
  CHECK(group_call(*outsider, Cmd::kGroupLeave, id_req("g")).status() == StatusCode::kForbidden);
  CHECK(send_group_status(*outsider, "g", "o1") == StatusCode::kForbidden);
  CHECK(history(*owner, v1::GROUP, "g", 0).messages_size() == 1);
  {
    v1::HistoryReq h;
    h.set_conv_type(v1::GROUP);
    h.set_peer("g");
    CHECK(must(outsider->call(Cmd::kHistory, &h)).status() == StatusCode::kForbidden);
    h.set_peer("nope");
    CHECK(must(owner->call(Cmd::kHistory, &h)).status() == StatusCode::kNotFound);
  }
  // any member may add; only the owner removes, updates, dismisses
  Frame added = group_call(*member, Cmd::kGroupAddMembers, members_req("g", {"newbie", "member", "owner"}));
  REQUIRE(added.ok());
  v1::GroupMembersResp ar;
  REQUIRE(added.parse(ar));
  CHECK(std::vector<std::string>(ar.changed().begin(), ar.changed().end()) == std::vector<std::string>{"newbie"});
  CHECK(ar.member_count() == 3);
  CHECK(group_call(*member, Cmd::kGroupRemoveMembers, members_req("g", {"newbie"})).status() == StatusCode::kForbidden);
  v1::GroupUpdateReq upd;
  upd.set_gid("g");
  upd.set_name("renamed");
  CHECK(group_call(*member, Cmd::kGroupUpdate, upd).status() == StatusCode::kForbidden);
  CHECK(group_call(*member, Cmd::kGroupDismiss, id_req("g")).status() == StatusCode::kForbidden);
  CHECK(group_call(*owner, Cmd::kGroupLeave, id_req("g")).status() == StatusCode::kForbidden);
  CHECK(group_call(*owner, Cmd::kGroupRemoveMembers, members_req("g", {"owner"})).status() == StatusCode::kBadRequest);
  Frame removed = group_call(*owner, Cmd::kGroupRemoveMembers, members_req("g", {"newbie", "stranger"}));
  REQUIRE(removed.ok());
  v1::GroupMembersResp rr;
  REQUIRE(removed.parse(rr));
  CHECK(std::vector<std::string>(rr.changed().begin(), rr.changed().end()) == std::vector<std::string>{"newbie"});
  CHECK(rr.member_count() == 2);
  Frame updated = group_call(*owner, Cmd::kGroupUpdate, upd);
  REQUIRE(updated.ok());
  v1::GroupResp ur;
  REQUIRE(updated.parse(ur));
  CHECK(ur.group().name() == "renamed");
  upd.set_name("");
  CHECK(group_call(*owner, Cmd::kGroupUpdate, upd).status() == StatusCode::kBadRequest);
  CHECK(group_call(*member, Cmd::kGroupLeave, id_req("g")).ok());
  CHECK(group_call(*member, Cmd::kGroupLeave, id_req("g")).status() == StatusCode::kForbidden);
  CHECK(group_call(*owner, Cmd::kGroupDismiss, id_req("g")).ok());
  CHECK(send_group_status(*owner, "g", "after") == StatusCode::kNotFound);
  CHECK(group_call(*owner, Cmd::kGroupGet, get).status() == StatusCode::kNotFound);
  v1::GroupCreateReq reuse;
  reuse.set_gid("g");
  reuse.set_name("again");
  CHECK(group_call(*owner, Cmd::kGroupCreate, reuse).status() == StatusCode::kConflict);
}

TEST_CASE("group SEND: every member's inbox, PUSH to every session but the sender's, events in order") {
  ServerProcess server(kFast);
  auto alice = server.login("alice", v1::IOS);
  auto alice_pc = server.login("alice", v1::DESKTOP);
  auto bob = server.login("bob");
  create_group(*alice, "g", {"bob", "carol"});
  for (SyncClient* c : {alice.get(), alice_pc.get(), bob.get()}) REQUIRE(next_push(*c).size() == 1);  // CREATED
  v1::SendResp r = send_group(*alice, "g", "hello-1", "hi all");
  CHECK(r.conv_seq() == 2);
  CHECK(r.inbox_seq() == 2);
  auto at_bob = next_push(*bob);
  REQUIRE(at_bob.size() == 1);
  CHECK(at_bob[0].msg_id() == r.msg_id());
  CHECK(at_bob[0].body() == "hi all");
  CHECK(at_bob[0].from() == "alice");
  CHECK(at_bob[0].conv_type() == v1::GROUP);
  CHECK(next_push(*alice_pc).size() == 1);
  CHECK(next_push(*alice, 300ms).empty());
  // dedupe applies to groups too
  v1::SendResp dup = send_group(*alice, "g", "hello-1", "hi all");
  CHECK(dup.duplicate());
  CHECK(dup.msg_id() == r.msg_id());
  // carol, offline, pulls the event and the message
  auto carol = server.login("carol");
  auto rows = pull_until(*carol, [](const auto& got_rows) { return got_rows.size() >= 2; });
  REQUIRE(rows.size() == 2);
  CHECK(event_of(rows[0]).type() == v1::CREATED);
  CHECK(rows[1].msg_id() == r.msg_id());
  // removal: the removed member gets the event that removed it, and nothing after
  REQUIRE(group_call(*alice, Cmd::kGroupRemoveMembers, members_req("g", {"bob"})).ok());
  auto removal = next_push(*bob);
  REQUIRE(removal.size() == 1);
  v1::GroupEvent e = event_of(removal[0]);
  CHECK(e.type() == v1::MEMBERS_REMOVED);
  CHECK(e.uids(0) == "bob");
  send_group(*alice, "g", "after-removal");
  CHECK(next_push(*bob, 300ms).empty());
  CHECK(send_group_status(*bob, "g", "b1") == StatusCode::kForbidden);
  // history of the group: creation, message, removal, message
  auto h = history_all(*alice, v1::GROUP, "g");
  REQUIRE(h.size() == 4);
  for (std::size_t i = 0; i < h.size(); ++i) CHECK(h[i].conv_seq() == i + 1);
  // LEAVE and DISMISS events reach the members
  auto dave = server.login("dave");
  REQUIRE(group_call(*alice, Cmd::kGroupAddMembers, members_req("g", {"dave"})).ok());
  auto added = next_push(*dave);
  REQUIRE(added.size() == 1);
  CHECK(event_of(added[0]).type() == v1::MEMBERS_ADDED);
  REQUIRE(group_call(*dave, Cmd::kGroupLeave, id_req("g")).ok());
  auto left = next_push(*dave);
  REQUIRE(left.size() == 1);
  CHECK(event_of(left[0]).type() == v1::MEMBER_LEFT);
  REQUIRE(group_call(*alice, Cmd::kGroupDismiss, id_req("g")).ok());
  auto carol_rows = pull_until(
      *carol,
      [](const auto& got_rows) {
        // The events follow the answers: the newest row so far may be the message.
        return !got_rows.empty() && got_rows.back().content_type() == 10001 &&
               event_of(got_rows.back()).type() == v1::DISMISSED;
      },
      2);
  REQUIRE(carol_rows.size() >= 4);
  CHECK(event_of(carol_rows.back()).type() == v1::DISMISSED);
}

TEST_CASE("GROUP_LIST and GROUP_GET member paging") {
  ServerProcess server(kFast);
  auto alice = server.login("alice");
  std::vector<std::string> many;
  for (int i = 0; i < 30; ++i) many.push_back(fmt::format("m{:02}", i));
  create_group(*alice, "b-group", many);
  create_group(*alice, "a-group", {});
  create_group(*alice, "c-group", {});
  REQUIRE(group_call(*alice, Cmd::kGroupDismiss, id_req("c-group")).ok());
  Frame list = must(alice->call_raw(Cmd::kGroupList, ""));
  REQUIRE(list.ok());
  v1::GroupListResp lr;
  REQUIRE(list.parse(lr));
  REQUIRE(lr.groups_size() == 2);
  CHECK(lr.groups(0).gid() == "a-group");
  CHECK(lr.groups(1).gid() == "b-group");
  CHECK(lr.groups(1).member_count() == 31);
  v1::GroupGetReq get;
  get.set_gid("b-group");
  get.set_with_members(true);
  get.set_members_limit(10);
  v1::GroupResp page;
  REQUIRE(group_call(*alice, Cmd::kGroupGet, get).parse(page));
  REQUIRE(page.members_size() == 10);
  CHECK(page.members(0) == "alice");
  CHECK(page.members_more());
  get.set_members_after(page.members(9));
  get.set_members_limit(100);
  v1::GroupResp rest;
  REQUIRE(group_call(*alice, Cmd::kGroupGet, get).parse(rest));
  CHECK(rest.members_size() == 21);
  CHECK_FALSE(rest.members_more());
  get.set_with_members(false);
  v1::GroupResp bare;
  REQUIRE(group_call(*alice, Cmd::kGroupGet, get).parse(bare));
  CHECK(bare.members_size() == 0);
  CHECK(bare.group().member_count() == 31);
}

TEST_CASE("a 2,000-member group: creation events, fan-out to everyone, and SIGKILL during fan-outs") {
  ServerProcess server(kFast);
  std::vector<std::string> members;
  for (int i = 0; i < 1999; ++i) members.push_back(fmt::format("u{:04}", i));
  std::vector<std::string> everyone = members;
  everyone.push_back("owner");
  auto owner = server.login("owner");
  big_group_created_with_its_events(*owner, members);
  std::mt19937 rng(7);
  BigGroupSends sends;
  for (int cycle = 0; cycle < 6; ++cycle) group_sends_killed_mid_fan_out(server, rng, sends);
  unanswered_sends_retried(server, sends);
  owner.reset();
  fan_outs_finished_by_a_restart(server);
  every_inbox_holds_every_acknowledged_message_once_gapless(server.data_dir(), everyone, sends);
  if (server.on_suite_streams()) {
    // In cluster mode a node rebuilt from the streams alone holds the same.
    std::filesystem::remove_all(server.data_dir());
    server.restart();
    REQUIRE(server.terminate() == 0);
    every_inbox_holds_every_acknowledged_message_once_gapless(server.data_dir(), everyone, sends);
  }
  WARN("2,000-member crash test: " << sends.acked.size() << " messages, " << sends.unanswered.size()
                                   << " unanswered before a kill and retried");
}
