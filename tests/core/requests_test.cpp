// core/requests: the field rules of PROTOCOL 4 and 5, each check's accept
// and refuse cases.

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "core/requests.h"

using im::Cmd;
using im::LimitsConfig;
using im::core::check_edit;
using im::core::check_group;
using im::core::check_login;
using im::core::check_presence;
using im::core::check_presence_watch;
using im::core::check_push;
using im::core::check_report;
using im::core::check_search;
using im::core::check_send;
using im::core::check_typing;
using im::core::GroupCommand;
using im::core::history_conv;
namespace v1 = im::v1;

namespace {

template <class T>
std::string status_of(const im::Result<T>& r) {
  return r ? "OK" : std::string(im::status_name(r.error().code));
}

LimitsConfig small_limits() {
  LimitsConfig l;
  l.max_message_bytes = 100;
  l.max_group_members = 10;
  return l;
}

const LimitsConfig kLimits = small_limits();

const std::string kId64(64, 'a');
const std::string kId65(65, 'a');

v1::LoginReq login(const std::string& uid) {
  v1::LoginReq req;
  req.set_uid(uid);
  req.set_token("t");
  req.set_device_type(v1::IOS);
  req.set_device_id("phone-1");
  req.set_client_version("1.0");
  return req;
}

v1::SendReq send(const std::string& to, v1::ConvType type = v1::C2C) {
  v1::SendReq req;
  req.set_client_msg_id("m-1");
  req.set_conv_type(type);
  req.set_to(to);
  req.set_content_type(1);
  req.set_body("hi");
  return req;
}

GroupCommand group_cmd(Cmd cmd, const std::string& gid = "team") {
  GroupCommand c;
  c.cmd = cmd;
  c.actor = {"owner", false};
  c.gid = gid;
  c.create.set_gid(gid);
  c.create.set_name("Team");
  return c;
}

GroupCommand members_cmd(Cmd cmd, const std::vector<std::string>& uids) {
  GroupCommand c = group_cmd(cmd);
  for (const auto& uid : uids) c.members.add_uids(uid);
  return c;
}

std::vector<std::string> uids(std::size_t n) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back("u" + std::to_string(i));
  return out;
}

v1::ReportReq report(const std::string& report_id) {
  v1::ReportReq req;
  req.set_report_id(report_id);
  req.set_topic("crash");
  req.set_payload("trace");
  return req;
}

v1::HistoryReq history(v1::ConvType type, const std::string& peer) {
  v1::HistoryReq req;
  req.set_conv_type(type);
  req.set_peer(peer);
  return req;
}

}  // namespace

// ---------------------------------------------------------------- LOGIN

TEST_CASE("login: a valid request passes") {
  CHECK(check_login(login("alice")));
  CHECK(check_login(login(kId64)));
}

TEST_CASE("login: a uid that breaks the id rule is BAD_REQUEST") {
  CHECK(status_of(check_login(login(""))) == "BAD_REQUEST");
  CHECK(status_of(check_login(login(kId65))) == "BAD_REQUEST");
  CHECK(status_of(check_login(login("al ice"))) == "BAD_REQUEST");
}

TEST_CASE("login: an unknown device_type is BAD_REQUEST") {
  auto req = login("alice");
  req.set_device_type(static_cast<v1::DeviceType>(9));
  CHECK(status_of(check_login(req)) == "BAD_REQUEST");
}

TEST_CASE("login: device_id may be empty, at most 64 bytes, client_version at most 128") {
  auto req = login("alice");
  req.set_device_id("");
  CHECK(check_login(req));
  req.set_device_id(std::string(64, 'd'));
  CHECK(check_login(req));
  req.set_device_id(std::string(65, 'd'));
  CHECK(status_of(check_login(req)) == "BAD_REQUEST");
  req = login("alice");
  req.set_client_version(std::string(128, 'v'));
  CHECK(check_login(req));
  req.set_client_version(std::string(129, 'v'));
  CHECK(status_of(check_login(req)) == "BAD_REQUEST");
}

// ---------------------------------------------------------------- SEND

TEST_CASE("send: valid C2C and GROUP sends pass") {
  CHECK(check_send("alice", send("bob"), kLimits));
  CHECK(check_send("alice", send("team", v1::GROUP), kLimits));
  CHECK(check_send("alice", send("alice"), kLimits));  // to oneself
}

TEST_CASE("send: from and to must be valid ids") {
  CHECK(status_of(check_send("", send("bob"), kLimits)) == "BAD_REQUEST");
  CHECK(status_of(check_send("a/b", send("bob"), kLimits)) == "BAD_REQUEST");
  CHECK(status_of(check_send("alice", send(""), kLimits)) == "BAD_REQUEST");
  CHECK(status_of(check_send("alice", send(kId65), kLimits)) == "BAD_REQUEST");
  CHECK(status_of(check_send("alice", send("b:ob"), kLimits)) == "BAD_REQUEST");
}

TEST_CASE("send: client_msg_id is 1 to 64 bytes of printable ASCII") {
  auto req = send("bob");
  for (const std::string& ok : {std::string("x"), std::string(64, '~'), std::string(" !{}:/ ok")}) {
    req.set_client_msg_id(ok);
    CHECK(check_send("alice", req, kLimits));
  }
  for (const std::string& bad : {std::string(), std::string(65, 'x'), std::string("tab\t"), std::string("\x7f"),
                                 std::string("caf\xC3\xA9"), std::string("a\0b", 3)}) {
    req.set_client_msg_id(bad);
    CHECK(status_of(check_send("alice", req, kLimits)) == "BAD_REQUEST");
  }
}

TEST_CASE("send: conv_type must be C2C or GROUP") {
  CHECK(status_of(check_send("alice", send("bob", v1::CONV_TYPE_UNSPECIFIED), kLimits)) == "BAD_REQUEST");
  CHECK(status_of(check_send("alice", send("bob", v1::SYSTEM), kLimits)) == "BAD_REQUEST");
  CHECK(status_of(check_send("alice", send("bob", static_cast<v1::ConvType>(42)), kLimits)) == "BAD_REQUEST");
}

TEST_CASE("send: content_type 0 to 9999 is the application's, 10000 and above is BAD_REQUEST") {
  auto req = send("bob");
  req.set_content_type(0);
  CHECK(check_send("alice", req, kLimits));
  req.set_content_type(9999);
  CHECK(check_send("alice", req, kLimits));
  req.set_content_type(10000);
  CHECK(status_of(check_send("alice", req, kLimits)) == "BAD_REQUEST");
  req.set_content_type(10001);
  CHECK(status_of(check_send("alice", req, kLimits)) == "BAD_REQUEST");
}

TEST_CASE("send: a body up to max_message_bytes passes, one byte more is TOO_LARGE") {
  auto req = send("bob");
  req.set_body(std::string(kLimits.max_message_bytes, 'b'));
  CHECK(check_send("alice", req, kLimits));
  req.set_body(std::string(kLimits.max_message_bytes + 1, 'b'));
  CHECK(status_of(check_send("alice", req, kLimits)) == "TOO_LARGE");
  req.set_body("");
  CHECK(check_send("alice", req, kLimits));
}

// ---------------------------------------------------------------- groups

TEST_CASE("group: the gid must be a valid id, for every group command") {
  for (Cmd cmd : {Cmd::kGroupCreate, Cmd::kGroupGet, Cmd::kGroupLeave, Cmd::kGroupDismiss, Cmd::kGroupUpdate}) {
    CHECK(status_of(check_group(group_cmd(cmd, "bad gid"), kLimits)) == "BAD_REQUEST");
    CHECK(status_of(check_group(group_cmd(cmd, kId65), kLimits)) == "BAD_REQUEST");
  }
  CHECK(status_of(check_group(members_cmd(Cmd::kGroupAddMembers, {"bob"}), kLimits)) == "OK");
  GroupCommand add = members_cmd(Cmd::kGroupAddMembers, {"bob"});
  add.gid = "";
  CHECK(status_of(check_group(add, kLimits)) == "BAD_REQUEST");
}

TEST_CASE("group: get, leave and dismiss need only a valid gid") {
  for (Cmd cmd : {Cmd::kGroupGet, Cmd::kGroupLeave, Cmd::kGroupDismiss}) CHECK(check_group(group_cmd(cmd), kLimits));
}

TEST_CASE("group create: a valid request passes") {
  auto c = group_cmd(Cmd::kGroupCreate);
  c.create.set_announcement("hello");
  c.create.add_members("alice");
  CHECK(check_group(c, kLimits));
}

TEST_CASE("group create: the owner must be a valid uid") {
  auto c = group_cmd(Cmd::kGroupCreate);
  c.actor.uid = "not valid";
  CHECK(status_of(check_group(c, kLimits)) == "BAD_REQUEST");
}

TEST_CASE("group create: the name is 1 to 256 bytes") {
  auto c = group_cmd(Cmd::kGroupCreate);
  c.create.set_name(std::string(256, 'n'));
  CHECK(check_group(c, kLimits));
  c.create.set_name(std::string(257, 'n'));
  CHECK(status_of(check_group(c, kLimits)) == "BAD_REQUEST");
  c.create.set_name("");
  CHECK(status_of(check_group(c, kLimits)) == "BAD_REQUEST");
}

TEST_CASE("group create: the announcement is at most 4096 bytes") {
  auto c = group_cmd(Cmd::kGroupCreate);
  c.create.set_announcement(std::string(4096, 'a'));
  CHECK(check_group(c, kLimits));
  c.create.set_announcement(std::string(4097, 'a'));
  CHECK(status_of(check_group(c, kLimits)) == "BAD_REQUEST");
}

TEST_CASE("group create: every member must be a valid uid") {
  auto c = group_cmd(Cmd::kGroupCreate);
  c.create.add_members("alice");
  c.create.add_members("b@d uid");
  CHECK(status_of(check_group(c, kLimits)) == "BAD_REQUEST");
}

TEST_CASE("group create: members may list max_group_members besides the creator, more is TOO_LARGE") {
  auto c = group_cmd(Cmd::kGroupCreate);
  for (const auto& uid : uids(kLimits.max_group_members + 1)) c.create.add_members(uid);
  CHECK(check_group(c, kLimits));
  c.create.add_members("one-more");
  CHECK(status_of(check_group(c, kLimits)) == "TOO_LARGE");
}

TEST_CASE("group add and remove: uids must not be empty and must be valid") {
  for (Cmd cmd : {Cmd::kGroupAddMembers, Cmd::kGroupRemoveMembers}) {
    CHECK(check_group(members_cmd(cmd, {"alice", "bob"}), kLimits));
    CHECK(status_of(check_group(members_cmd(cmd, {}), kLimits)) == "BAD_REQUEST");
    CHECK(status_of(check_group(members_cmd(cmd, {"alice", ""}), kLimits)) == "BAD_REQUEST");
    CHECK(status_of(check_group(members_cmd(cmd, {kId65}), kLimits)) == "BAD_REQUEST");
  }
}

TEST_CASE("group add and remove: more uids than max_group_members is TOO_LARGE") {
  for (Cmd cmd : {Cmd::kGroupAddMembers, Cmd::kGroupRemoveMembers}) {
    CHECK(check_group(members_cmd(cmd, uids(kLimits.max_group_members)), kLimits));
    CHECK(status_of(check_group(members_cmd(cmd, uids(kLimits.max_group_members + 1)), kLimits)) == "TOO_LARGE");
  }
}

TEST_CASE("group update: absent fields pass, a name set is 1 to 256 bytes, an announcement at most 4096") {
  auto c = group_cmd(Cmd::kGroupUpdate);
  CHECK(check_group(c, kLimits));
  c.update.set_name(std::string(256, 'n'));
  CHECK(check_group(c, kLimits));
  c.update.set_name("");
  CHECK(status_of(check_group(c, kLimits)) == "BAD_REQUEST");
  c.update.set_name(std::string(257, 'n'));
  CHECK(status_of(check_group(c, kLimits)) == "BAD_REQUEST");

  c = group_cmd(Cmd::kGroupUpdate);
  c.update.set_announcement("");
  CHECK(check_group(c, kLimits));
  c.update.set_announcement(std::string(4096, 'a'));
  CHECK(check_group(c, kLimits));
  c.update.set_announcement(std::string(4097, 'a'));
  CHECK(status_of(check_group(c, kLimits)) == "BAD_REQUEST");
}

// ---------------------------------------------------------------- PRESENCE

TEST_CASE("presence: up to 500 valid uids pass, none is fine") {
  CHECK(check_presence({}));
  CHECK(check_presence(uids(500)));
}

TEST_CASE("presence: more than 500 uids is BAD_REQUEST") {
  CHECK(status_of(check_presence(uids(501))) == "BAD_REQUEST");
}

TEST_CASE("presence: an invalid uid is BAD_REQUEST") {
  CHECK(status_of(check_presence({"alice", "not valid"})) == "BAD_REQUEST");
  CHECK(status_of(check_presence({""})) == "BAD_REQUEST");
}

// ---------------------------------------------------------------- REPORT

TEST_CASE("report: a valid report passes") {
  CHECK(check_report(report("r-1"), kLimits));
  CHECK(check_report(report(std::string(64, '#')), kLimits));
}

TEST_CASE("report: report_id is 1 to 64 bytes of printable ASCII") {
  CHECK(status_of(check_report(report(""), kLimits)) == "BAD_REQUEST");
  CHECK(status_of(check_report(report(std::string(65, 'r')), kLimits)) == "BAD_REQUEST");
  CHECK(status_of(check_report(report("new\nline"), kLimits)) == "BAD_REQUEST");
}

TEST_CASE("report: the topic is at most 256 bytes") {
  auto req = report("r-1");
  req.set_topic(std::string(256, 't'));
  CHECK(check_report(req, kLimits));
  req.set_topic(std::string(257, 't'));
  CHECK(status_of(check_report(req, kLimits)) == "BAD_REQUEST");
}

TEST_CASE("report: a payload over max_message_bytes is TOO_LARGE") {
  auto req = report("r-1");
  req.set_payload(std::string(kLimits.max_message_bytes, 'p'));
  CHECK(check_report(req, kLimits));
  req.set_payload(std::string(kLimits.max_message_bytes + 1, 'p'));
  CHECK(status_of(check_report(req, kLimits)) == "TOO_LARGE");
}

// ---------------------------------------------------------------- SERVER_PUSH (admin API)

TEST_CASE("push: a valid push passes") {
  CHECK(check_push("alice", "news", "payload", kLimits));
  CHECK(check_push("alice", "", "", kLimits));
}

TEST_CASE("push: to must be a valid uid") {
  CHECK(status_of(check_push("", "news", "p", kLimits)) == "BAD_REQUEST");
  CHECK(status_of(check_push("al ice", "news", "p", kLimits)) == "BAD_REQUEST");
}

TEST_CASE("push: the topic is at most 256 bytes, the payload at most max_message_bytes") {
  CHECK(check_push("alice", std::string(256, 't'), "p", kLimits));
  CHECK(status_of(check_push("alice", std::string(257, 't'), "p", kLimits)) == "BAD_REQUEST");
  CHECK(check_push("alice", "news", std::string(kLimits.max_message_bytes, 'p'), kLimits));
  CHECK(status_of(check_push("alice", "news", std::string(kLimits.max_message_bytes + 1, 'p'), kLimits)) ==
        "TOO_LARGE");
}

// ---------------------------------------------------------------- HISTORY

TEST_CASE("history: a C2C conversation is the same from either side") {
  auto from_alice = history_conv("alice", history(v1::C2C, "bob"));
  auto from_bob = history_conv("bob", history(v1::C2C, "alice"));
  REQUIRE(from_alice);
  REQUIRE(from_bob);
  CHECK(*from_alice == "c:alice:bob");
  CHECK(*from_bob == *from_alice);
}

TEST_CASE("history: a GROUP conversation is named by its gid, a SYSTEM one by the asking user") {
  auto group = history_conv("alice", history(v1::GROUP, "team"));
  REQUIRE(group);
  CHECK(*group == "g:team");
  auto system = history_conv("alice", history(v1::SYSTEM, ""));
  REQUIRE(system);
  CHECK(*system == "s:alice");
}

TEST_CASE("history: a C2C or GROUP peer that is not a valid id is BAD_REQUEST") {
  CHECK(status_of(history_conv("alice", history(v1::C2C, ""))) == "BAD_REQUEST");
  CHECK(status_of(history_conv("alice", history(v1::C2C, "b:ob"))) == "BAD_REQUEST");
  CHECK(status_of(history_conv("alice", history(v1::GROUP, ""))) == "BAD_REQUEST");
  CHECK(status_of(history_conv("alice", history(v1::GROUP, kId65))) == "BAD_REQUEST");
}

TEST_CASE("history: a conv_type other than C2C, GROUP or SYSTEM is BAD_REQUEST") {
  CHECK(status_of(history_conv("alice", history(v1::CONV_TYPE_UNSPECIFIED, "bob"))) == "BAD_REQUEST");
  CHECK(status_of(history_conv("alice", history(static_cast<v1::ConvType>(9), "bob"))) == "BAD_REQUEST");
}

TEST_CASE("typing: C2C to another valid uid or GROUP to a valid gid, a state") {
  auto req = [](v1::ConvType type, const std::string& peer, int state) {
    v1::TypingReq r;
    r.set_conv_type(type);
    r.set_peer(peer);
    r.set_state(static_cast<v1::TypingState>(state));
    return r;
  };
  CHECK(status_of(check_typing("alice", req(v1::C2C, "bob", v1::TYPING))) == "OK");
  CHECK(status_of(check_typing("alice", req(v1::C2C, "bob", v1::RECORDING))) == "OK");
  CHECK(status_of(check_typing("alice", req(v1::GROUP, "team", v1::STOPPED))) == "OK");
  // a gid may equal the typer's uid; a C2C peer may not
  CHECK(status_of(check_typing("alice", req(v1::GROUP, "alice", v1::TYPING))) == "OK");
  CHECK(status_of(check_typing("alice", req(v1::C2C, "alice", v1::TYPING))) == "BAD_REQUEST");
  CHECK(status_of(check_typing("alice", req(v1::SYSTEM, "bob", v1::TYPING))) == "BAD_REQUEST");
  CHECK(status_of(check_typing("alice", req(v1::CONV_TYPE_UNSPECIFIED, "bob", v1::TYPING))) == "BAD_REQUEST");
  CHECK(status_of(check_typing("alice", req(v1::C2C, "", v1::TYPING))) == "BAD_REQUEST");
  CHECK(status_of(check_typing("alice", req(v1::GROUP, "g 1", v1::TYPING))) == "BAD_REQUEST");
  CHECK(status_of(check_typing("alice", req(v1::C2C, "bob", v1::TYPING_STATE_UNSPECIFIED))) == "BAD_REQUEST");
  CHECK(status_of(check_typing("alice", req(v1::C2C, "bob", 4))) == "BAD_REQUEST");
}

TEST_CASE("presence watch: at most 500 valid uids in add and in remove") {
  v1::PresenceWatchReq req;
  CHECK(status_of(check_presence_watch(req)) == "OK");  // nothing to do is fine
  for (int i = 0; i < 500; ++i) {
    req.add_add("u" + std::to_string(i));
    req.add_remove("v" + std::to_string(i));
  }
  CHECK(status_of(check_presence_watch(req)) == "OK");
  auto more_add = req;
  more_add.add_add("one-more");
  CHECK(status_of(check_presence_watch(more_add)) == "BAD_REQUEST");
  auto more_remove = req;
  more_remove.add_remove("one-more");
  CHECK(status_of(check_presence_watch(more_remove)) == "BAD_REQUEST");
  v1::PresenceWatchReq bad;
  bad.add_add("bad id!");
  CHECK(status_of(check_presence_watch(bad)) == "BAD_REQUEST");
  bad.clear_add();
  bad.add_remove(std::string(65, 'x'));
  CHECK(status_of(check_presence_watch(bad)) == "BAD_REQUEST");
}

// ---------------------------------------------------------------- search (PROTOCOL 8.6)

TEST_CASE("search_text: at most 4096 bytes of UTF-8 on SEND and EDIT, else BAD_REQUEST") {
  auto req = send("bob");
  req.set_search_text(std::string(4096, 's'));
  CHECK(check_send("alice", req, kLimits));
  req.set_search_text(std::string(4097, 's'));
  CHECK(status_of(check_send("alice", req, kLimits)) == "BAD_REQUEST");
  req.set_search_text("bad \xC3\x28 utf-8");
  CHECK(status_of(check_send("alice", req, kLimits)) == "BAD_REQUEST");
  req.set_search_text("明天开会");
  CHECK(check_send("alice", req, kLimits));
  v1::EditReq edit;
  edit.set_client_msg_id("e1");
  edit.set_conv_type(v1::C2C);
  edit.set_peer("bob");
  edit.set_conv_seq(1);
  edit.set_search_text(std::string(4096, 'e'));
  CHECK(check_edit(edit, kLimits));
  edit.set_search_text(std::string(4097, 'e'));
  CHECK(status_of(check_edit(edit, kLimits)) == "BAD_REQUEST");
  edit.set_search_text("\xFF");
  CHECK(status_of(check_edit(edit, kLimits)) == "BAD_REQUEST");
}

TEST_CASE("search: a query of 1 to 256 bytes of UTF-8, every conversation or one named by conv_type and peer") {
  v1::SearchReq req;
  req.set_query("开会");
  CHECK(check_search(req));
  req.set_query("");
  CHECK(status_of(check_search(req)) == "BAD_REQUEST");
  req.set_query(std::string(256, 'q'));
  CHECK(check_search(req));
  req.set_query(std::string(257, 'q'));
  CHECK(status_of(check_search(req)) == "BAD_REQUEST");
  req.set_query("\xE5\xBC");  // cut in the middle of a character
  CHECK(status_of(check_search(req)) == "BAD_REQUEST");
  req.set_query("a* b* c*");
  CHECK(check_search(req));
  req.set_query("a* b* c* d*");
  CHECK(status_of(check_search(req)) == "BAD_REQUEST");  // at most 3 prefixes
  req.set_query("q");
  req.set_conv_type(v1::C2C);
  CHECK(status_of(check_search(req)) == "BAD_REQUEST");  // no peer
  req.set_peer("bob");
  CHECK(check_search(req));
  req.set_conv_type(v1::GROUP);
  CHECK(check_search(req));
  req.set_conv_type(v1::SYSTEM);
  CHECK(status_of(check_search(req)) == "BAD_REQUEST");
  req.set_conv_type(v1::CONV_TYPE_UNSPECIFIED);
  CHECK(status_of(check_search(req)) == "BAD_REQUEST");  // a peer without a type
  req.set_conv_type(v1::C2C);
  req.set_peer("bad id!");
  CHECK(status_of(check_search(req)) == "BAD_REQUEST");
}
