// TYPING (PROTOCOL 8.4) and PRESENCE_WATCH / PRESENCE_PUSH (8.5) against
// the real imserver binary: delivery, the throttle, the per-connection cap,
// every refusal, the watch list's changes and limit, the merging of fast
// changes, and the cleanup when watching sessions end (/metrics).
//
// Where a test shows that something was NOT delivered, it relies on order,
// never on time: frames that take the same path through the same shards
// arrive in the order they were sent, so a marker sent last arrives after
// anything the server would have forwarded before it.

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "http_helpers.h"
#include "im/frame_codec.h"
#include "messaging.h"
#include "server_process.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

Overrides with(Overrides base, const Overrides& more) {
  for (const auto& [k, v] : more) base[k] = v;
  return base;
}

// Small limits so that the tests reach them; four shards so that group
// fan-outs and watch lists cross shards.
const Overrides kLive = {{"sharding.shards", "4"},
                         {"limits.typing_max_members", "4"},
                         {"limits.max_presence_watch", "3"},
                         {"admin.listen", "\"127.0.0.1:0\""}};

v1::TypingReq typing_req(v1::ConvType type, const std::string& peer, v1::TypingState state) {
  v1::TypingReq req;
  req.set_conv_type(type);
  req.set_peer(peer);
  req.set_state(state);
  return req;
}

// A TYPING that succeeds has no answer: sent without waiting for one.
void type(SyncClient& c, v1::ConvType type, const std::string& peer, v1::TypingState state) {
  auto req = typing_req(type, peer, state);
  c.notify(Cmd::kTyping, &req);
}

// The status of a TYPING the server must refuse; a RATE_LIMITED from the
// cap of 5 a second is waited out (its retry_after_ms) and sent again.
StatusCode refused(SyncClient& c, const v1::TypingReq& req) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    auto f = c.call(Cmd::kTyping, &req);
    REQUIRE(f);
    CHECK_FALSE(f->error_message().empty());
    if (f->status() != StatusCode::kRateLimited) return f->status();
    std::this_thread::sleep_for(std::chrono::milliseconds(f->retry_after_ms()));
  }
  FAIL("still RATE_LIMITED after 50 attempts");
  return StatusCode::kOk;
}

// The next frame with `cmd` the server sent (other frames are dropped).
std::optional<Frame> next_of(SyncClient& c, Cmd cmd, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto f = c.next_frame(left);
    if (!f) return std::nullopt;
    if (f->header.cmd == cmd) return f;
  }
}

v1::TypingPush typing_push(SyncClient& c) {
  auto f = next_of(c, Cmd::kTypingPush);
  REQUIRE(f);
  CHECK_FALSE(f->header.is_response());
  CHECK(f->header.seq != 0);
  v1::TypingPush push;
  REQUIRE(f->parse(push));
  return push;
}

// The frames the server has sent to `c` by the time it answers a HEARTBEAT
// sent now (everything the loop answered before it).
std::vector<Frame> frames_until_heartbeat(SyncClient& c) {
  REQUIRE(must(c.call_raw(Cmd::kHeartbeat, "")).ok());
  std::vector<Frame> out;
  while (auto f = c.next_frame(0ms)) out.push_back(std::move(*f));
  return out;
}

std::size_t typing_answers(const std::vector<Frame>& frames) {
  std::size_t n = 0;
  for (const Frame& f : frames) n += f.header.cmd == Cmd::kTyping ? 1 : 0;
  return n;
}

Frame watch(SyncClient& c, const std::vector<std::string>& add, const std::vector<std::string>& remove = {},
            bool clear = false) {
  v1::PresenceWatchReq req;
  for (const auto& u : add) req.add_add(u);
  for (const auto& u : remove) req.add_remove(u);
  req.set_clear(clear);
  return must(c.call(Cmd::kPresenceWatch, &req));
}

v1::PresenceResp watch_ok(SyncClient& c, const std::vector<std::string>& add,
                          const std::vector<std::string>& remove = {}, bool clear = false) {
  Frame f = watch(c, add, remove, clear);
  INFO(f.error_message());
  REQUIRE(f.ok());
  v1::PresenceResp resp;
  REQUIRE(f.parse(resp));
  return resp;
}

// The PRESENCE_PUSHes one session receives, in order.
class PushLog {
 public:
  explicit PushLog(SyncClient& c) : c_(c) {}

  // Reads pushes until `holds()` or 5 s have passed; whether it held.
  template <class Predicate>
  bool wait(Predicate holds, std::chrono::milliseconds timeout = kWaitTimeout) {
    return wait_until(
        [&] {
          read(20ms);
          return holds();
        },
        timeout, 1ms);
  }
  // Reads whatever comes within `quiet` of the last frame.
  void settle(std::chrono::milliseconds quiet) {
    while (read(quiet)) {
    }
  }
  const std::vector<v1::Presence>& all() const { return all_; }
  std::vector<v1::Presence> of(const std::string& uid) const {
    std::vector<v1::Presence> out;
    for (const auto& p : all_)
      if (p.uid() == uid) out.push_back(p);
    return out;
  }

 private:
  // One frame (a PRESENCE_PUSH is kept); false when none came in time.
  bool read(std::chrono::milliseconds timeout) {
    auto f = c_.next_frame(timeout);
    if (!f) return false;
    if (f->header.cmd != Cmd::kPresencePush) return true;
    CHECK_FALSE(f->header.is_response());
    v1::PresencePush push;
    REQUIRE(f->parse(push));
    REQUIRE(push.presences_size() == 1);
    all_.push_back(push.presences(0));
    return true;
  }

  SyncClient& c_;
  std::vector<v1::Presence> all_;
};

std::vector<int> devices_of(const v1::Presence& p) {
  return {p.devices().begin(), p.devices().end()};
}

bool is_state(const v1::Presence& p, bool online, std::vector<int> devices) {
  return p.online() == online && devices_of(p) == devices;
}

double gauge(AdminClient& admin, const std::string& name) {
  return admin.metric(name).value_or(-1);
}

}  // namespace

// ---------------------------------------------------------------- TYPING

TEST_CASE("TYPING C2C reaches every session of the peer, peer set from the receiver's side") {
  ServerProcess server(kLive);
  auto alice = server.login("alice", v1::IOS);
  auto alice_web = server.login("alice", v1::WEB);
  auto bob_phone = server.login("bob", v1::IOS);
  auto bob_web = server.login("bob", v1::WEB);
  type(*alice, v1::C2C, "bob", v1::TYPING);
  for (SyncClient* c : {bob_phone.get(), bob_web.get()}) {
    v1::TypingPush p = typing_push(*c);
    CHECK(p.conv_type() == v1::C2C);
    CHECK(p.peer() == "alice");
    CHECK(p.from() == "alice");
    CHECK(p.state() == v1::TYPING);
    CHECK(p.expires_ms() == 6000);
  }
  CHECK(typing_answers(frames_until_heartbeat(*alice)) == 0);  // no answer when it succeeds
  // Bob answers: both of alice's sessions get it; neither got her own
  // typing (it would have come first).
  type(*bob_web, v1::C2C, "alice", v1::RECORDING);
  for (SyncClient* c : {alice.get(), alice_web.get()}) {
    v1::TypingPush p = typing_push(*c);
    CHECK(p.peer() == "bob");
    CHECK(p.from() == "bob");
    CHECK(p.state() == v1::RECORDING);
  }
}

TEST_CASE("TYPING in a group reaches every member's sessions but the typer's own") {
  ServerProcess server(kLive);
  auto alice = server.login("alice", v1::IOS);
  auto alice_web = server.login("alice", v1::WEB);
  auto bob = server.login("bob");
  auto carol = server.login("carol");
  auto dave = server.login("dave");
  create_group(*alice, "team", {"bob", "carol"});
  type(*alice, v1::GROUP, "team", v1::TYPING);
  for (SyncClient* c : {bob.get(), carol.get()}) {
    v1::TypingPush p = typing_push(*c);
    CHECK(p.conv_type() == v1::GROUP);
    CHECK(p.peer() == "team");
    CHECK(p.from() == "alice");
    CHECK(p.state() == v1::TYPING);
    CHECK(p.expires_ms() == 6000);
  }
  // The typer's other session did not get alice's typing: bob's is its first.
  type(*bob, v1::GROUP, "team", v1::TYPING);
  for (SyncClient* c : {alice_web.get(), alice.get(), carol.get()}) {
    v1::TypingPush p = typing_push(*c);
    CHECK(p.from() == "bob");
    CHECK(p.peer() == "team");
  }
  // A non-member is refused, and got nothing meanwhile.
  CHECK(refused(*dave, typing_req(v1::GROUP, "team", v1::TYPING)) == StatusCode::kForbidden);
  for (const Frame& f : frames_until_heartbeat(*dave)) CHECK(f.header.cmd != Cmd::kTypingPush);
  // No such group, and a dismissed one.
  CHECK(refused(*alice, typing_req(v1::GROUP, "nosuch", v1::TYPING)) == StatusCode::kNotFound);
  v1::GroupIdReq dismiss;
  dismiss.set_gid("team");
  REQUIRE(must(alice->call(Cmd::kGroupDismiss, &dismiss)).ok());
  CHECK(refused(*alice, typing_req(v1::GROUP, "team", v1::STOPPED)) == StatusCode::kNotFound);
}

TEST_CASE("TYPING in a group over limits.typing_max_members is DISABLED") {
  ServerProcess server(kLive);  // typing_max_members = 4
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  create_group(*alice, "four", {"bob", "carol", "dave"});
  create_group(*alice, "five", {"bob", "carol", "dave", "erin"});
  CHECK(refused(*alice, typing_req(v1::GROUP, "five", v1::TYPING)) == StatusCode::kDisabled);
  type(*alice, v1::GROUP, "four", v1::TYPING);  // at the limit: forwarded
  v1::TypingPush p = typing_push(*bob);
  CHECK(p.peer() == "four");
  CHECK(p.from() == "alice");
}

TEST_CASE("TYPING with bad fields is BAD_REQUEST") {
  ServerProcess server(kLive);
  auto alice = server.login("alice");
  CHECK(refused(*alice, typing_req(v1::SYSTEM, "bob", v1::TYPING)) == StatusCode::kBadRequest);
  CHECK(refused(*alice, typing_req(v1::CONV_TYPE_UNSPECIFIED, "bob", v1::TYPING)) == StatusCode::kBadRequest);
  CHECK(refused(*alice, typing_req(v1::C2C, "", v1::TYPING)) == StatusCode::kBadRequest);
  CHECK(refused(*alice, typing_req(v1::C2C, "bad id!", v1::TYPING)) == StatusCode::kBadRequest);
  CHECK(refused(*alice, typing_req(v1::GROUP, std::string(65, 'g'), v1::TYPING)) == StatusCode::kBadRequest);
  CHECK(refused(*alice, typing_req(v1::C2C, "bob", v1::TYPING_STATE_UNSPECIFIED)) == StatusCode::kBadRequest);
  CHECK(refused(*alice, typing_req(v1::C2C, "bob", static_cast<v1::TypingState>(9))) == StatusCode::kBadRequest);
  // Typing to oneself is refused (docs/protocol.md: a choice).
  CHECK(refused(*alice, typing_req(v1::C2C, "alice", v1::TYPING)) == StatusCode::kBadRequest);
  auto garbage = alice->call_raw(Cmd::kTyping, "\xff\xff\xff");
  REQUIRE(garbage);
  CHECK(garbage->status() == StatusCode::kBadRequest);
}

TEST_CASE("the TYPING throttle drops repeated starts and STOPPED without a forwarded start") {
  ServerProcess server(kLive);
  // Two sessions of alice share the throttle (it is per user and
  // conversation), each with its own cap of 5 a second.
  auto phone = server.login("alice", v1::IOS);
  auto web = server.login("alice", v1::WEB);
  auto bob = server.login("bob");
  create_group(*phone, "marker", {"bob"});
  type(*phone, v1::C2C, "bob", v1::STOPPED);    // no start before it: dropped
  type(*phone, v1::C2C, "bob", v1::TYPING);     // forwarded
  type(*phone, v1::C2C, "bob", v1::TYPING);     // a repeat within 3 s: dropped
  type(*phone, v1::C2C, "bob", v1::RECORDING);  // another start within 3 s: dropped
  // PULL runs on alice's shard behind the four: once answered, they are done.
  (void)pull(*phone, 0);
  type(*web, v1::C2C, "bob", v1::STOPPED);  // after a forwarded start: forwarded
  type(*web, v1::C2C, "bob", v1::STOPPED);  // one STOPPED per start: dropped
  // Last, through alice's shard too: a group typing, the marker.
  type(*web, v1::GROUP, "marker", v1::TYPING);
  std::vector<v1::TypingPush> got;
  for (;;) {
    got.push_back(typing_push(*bob));
    if (got.back().conv_type() == v1::GROUP) break;
  }
  REQUIRE(got.size() == 3);
  CHECK(got[0].state() == v1::TYPING);
  CHECK(got[0].peer() == "alice");
  CHECK(got[1].state() == v1::STOPPED);
  CHECK(got[1].peer() == "alice");
  CHECK(got[2].peer() == "marker");
  // Dropped ones are dropped silently: no answer.
  CHECK(typing_answers(frames_until_heartbeat(*phone)) == 0);
  CHECK(typing_answers(frames_until_heartbeat(*web)) == 0);
}

TEST_CASE("TYPING has its own cap of 5 a second per connection, RATE_LIMITED with retry_after_ms") {
  ServerProcess server(kLive);
  auto alice = server.login("alice");
  std::string bytes;
  FrameHeader h;
  h.cmd = Cmd::kTyping;
  const std::string body = typing_req(v1::C2C, "bob", v1::TYPING).SerializeAsString();
  for (std::uint32_t seq = 50001; seq <= 50012; ++seq) {
    h.seq = seq;
    bytes += encode_frame(h, body);
  }
  alice->send_raw(bytes);
  std::size_t limited = 0;
  for (const Frame& f : frames_until_heartbeat(*alice)) {
    if (f.header.cmd != Cmd::kTyping) continue;
    CHECK(f.status() == StatusCode::kRateLimited);
    CHECK(f.retry_after_ms() > 0);
    CHECK(f.retry_after_ms() <= 1000);
    ++limited;
  }
  CHECK(limited >= 1);  // 12 at once: at most the burst of 5 passes, and a few refilled
  CHECK(limited <= 7);
  // Another connection has its own cap.
  auto other = server.login("alice", v1::WEB);
  type(*other, v1::C2C, "carol", v1::TYPING);
  CHECK(typing_answers(frames_until_heartbeat(*other)) == 0);
}

TEST_CASE("TYPING does not count against limits.messages_per_second") {
  ServerProcess server(with(kLive, {{"limits.messages_per_second", "1"}, {"limits.burst", "3"}}));
  auto c = server.connect();
  REQUIRE(must(c->call_raw(Cmd::kLogin, login_body("alice", token_for("alice")))).ok());  // the first of three
  for (int i = 0; i < 5; ++i) type(*c, v1::C2C, "bob", v1::TYPING);                       // the whole TYPING burst
  CHECK(typing_answers(frames_until_heartbeat(*c)) == 0);  // none refused by either limit
  v1::PresenceReq req;
  req.add_uids("alice");
  CHECK(must(c->call(Cmd::kPresence, &req)).ok());
  CHECK(must(c->call(Cmd::kPresence, &req)).ok());
  // ... and the message limit still holds
  bool limited = false;
  for (int i = 0; i < 10 && !limited; ++i)
    limited = must(c->call(Cmd::kPresence, &req)).status() == StatusCode::kRateLimited;
  CHECK(limited);
}

// ---------------------------------------------------------------- PRESENCE_WATCH

TEST_CASE("PRESENCE_WATCH answers the presence of the uids added and pushes their logins and logouts") {
  ServerProcess server(kLive);
  auto bob = server.login("bob", v1::IOS);
  auto watcher = server.login("watcher");
  v1::PresenceResp resp = watch_ok(*watcher, {"bob", "carol", "bob"});
  REQUIRE(resp.presences_size() == 2);  // each uid once, in request order
  CHECK(resp.presences(0).uid() == "bob");
  CHECK(is_state(resp.presences(0), true, {v1::IOS}));
  CHECK(resp.presences(1).uid() == "carol");
  CHECK(is_state(resp.presences(1), false, {}));
  PushLog log(*watcher);

  auto carol = server.login("carol", v1::ANDROID);
  REQUIRE(log.wait([&] { return !log.of("carol").empty(); }));
  CHECK(is_state(log.of("carol").back(), true, {v1::ANDROID}));

  auto bob_web = server.login("bob", v1::WEB);  // the device set changes
  REQUIRE(log.wait([&] { return !log.of("bob").empty() && is_state(log.of("bob").back(), true, {v1::IOS, v1::WEB}); }));

  REQUIRE(must(carol->call_raw(Cmd::kLogout, "")).ok());
  REQUIRE(log.wait([&] { return is_state(log.of("carol").back(), false, {}); }));
  CHECK(log.of("carol").back().last_seen_ms() > 0);

  bob.reset();  // closed
  bob_web.reset();
  REQUIRE(log.wait([&] { return is_state(log.of("bob").back(), false, {}); }));
}

TEST_CASE("PRESENCE_WATCH remove and clear take uids off the list") {
  // One shard: the changes of different users are pushed in the order made.
  ServerProcess server(with(kLive, {{"sharding.shards", "1"}}));
  AdminClient admin(server.admin_port(), "");
  auto watcher = server.login("watcher");
  CHECK(watch_ok(*watcher, {"bob", "carol"}).presences_size() == 2);
  CHECK(gauge(admin, "imserver_presence_watches") == 2);
  CHECK(watch_ok(*watcher, {}, {"bob", "nobody"}).presences_size() == 0);  // not watched: ignored
  CHECK(gauge(admin, "imserver_presence_watches") == 1);
  PushLog log(*watcher);
  auto bob = server.login("bob");
  auto carol = server.login("carol");
  REQUIRE(log.wait([&] { return !log.all().empty(); }));
  CHECK(log.all().front().uid() == "carol");  // bob's login was not pushed

  // clear, then add: carol leaves, dave comes, a uid both cleared and added stays
  v1::PresenceResp resp = watch_ok(*watcher, {"dave", "erin"}, {}, true);
  REQUIRE(resp.presences_size() == 2);
  CHECK(resp.presences(0).uid() == "dave");
  CHECK(gauge(admin, "imserver_presence_watches") == 2);
  resp = watch_ok(*watcher, {"erin"}, {"erin"}, true);  // clear, remove, add: erin stays, dave goes
  REQUIRE(resp.presences_size() == 1);
  CHECK(gauge(admin, "imserver_presence_watches") == 1);
  REQUIRE(must(carol->call_raw(Cmd::kLogout, "")).ok());
  auto dave = server.login("dave");
  auto erin = server.login("erin");
  REQUIRE(log.wait([&] { return log.all().size() >= 2; }));
  CHECK(log.all()[1].uid() == "erin");  // neither carol's logout nor dave's login
  CHECK(is_state(log.all()[1], true, {v1::IOS}));
}

TEST_CASE("PRESENCE_WATCH over limits.max_presence_watch is TOO_LARGE and changes nothing") {
  ServerProcess server(kLive);  // max_presence_watch = 3
  AdminClient admin(server.admin_port(), "");
  auto watcher = server.login("watcher");
  CHECK(watch_ok(*watcher, {"a", "b", "c"}).presences_size() == 3);
  Frame over = watch(*watcher, {"d"});
  CHECK(over.status() == StatusCode::kTooLarge);
  CHECK_FALSE(over.error_message().empty());
  CHECK(watch(*watcher, {"d", "e"}, {"a"}).status() == StatusCode::kTooLarge);  // would be 4
  CHECK(gauge(admin, "imserver_presence_watches") == 3);
  // "a" is still watched (the refused remove did nothing)
  PushLog log(*watcher);
  auto a = server.login("a");
  REQUIRE(log.wait([&] { return !log.of("a").empty(); }));
  // at the limit exactly, by a swap and by clear + add
  CHECK(watch_ok(*watcher, {"d"}, {"a"}).presences_size() == 1);
  CHECK(watch_ok(*watcher, {"x", "y", "z"}, {}, true).presences_size() == 3);
  CHECK(gauge(admin, "imserver_presence_watches") == 3);
}

TEST_CASE("PRESENCE_WATCH with more than 500 uids or an invalid id is BAD_REQUEST") {
  ServerProcess server(with(kLive, {{"limits.max_presence_watch", "1000"}}));
  AdminClient admin(server.admin_port(), "");
  auto watcher = server.login("watcher");
  std::vector<std::string> many;
  for (int i = 0; i < 501; ++i) many.push_back(fmt::format("u{}", i));
  CHECK(watch(*watcher, many).status() == StatusCode::kBadRequest);
  CHECK(watch(*watcher, {}, many).status() == StatusCode::kBadRequest);
  CHECK(watch(*watcher, {"ok", "bad id!"}).status() == StatusCode::kBadRequest);
  CHECK(watch(*watcher, {}, {""}).status() == StatusCode::kBadRequest);
  CHECK(gauge(admin, "imserver_presence_watches") == 0);
  many.pop_back();
  CHECK(watch_ok(*watcher, many).presences_size() == 500);
  CHECK(gauge(admin, "imserver_presence_watches") == 500);
}

TEST_CASE("fast changes of a watched user are merged into fewer pushes ending with the final state") {
  ServerProcess server(kLive);
  auto watcher = server.login("watcher");
  watch_ok(*watcher, {"bob"});
  PushLog log(*watcher);
  // 12 changes in quick succession (six logins and six logouts) ...
  for (int i = 0; i < 6; ++i) {
    auto bob = server.login("bob", v1::IOS);
    REQUIRE(must(bob->call_raw(Cmd::kLogout, "")).ok());
  }
  // ... and a 13th, to a state no earlier push can have carried.
  auto bob = server.login("bob", v1::DESKTOP);
  REQUIRE(log.wait([&] { return !log.of("bob").empty() && is_state(log.of("bob").back(), true, {v1::DESKTOP}); }));
  log.settle(1500ms);  // a merged push is due within a second of the last one
  const auto pushes = log.of("bob");
  CHECK(pushes.size() < 13);
  CHECK(is_state(pushes.back(), true, {v1::DESKTOP}));
  // and the next change is pushed too
  bob.reset();
  REQUIRE(log.wait([&] { return is_state(log.of("bob").back(), false, {}); }));
}

TEST_CASE("watch lists are dropped when the watching sessions end: the gauge returns to 0") {
  ServerProcess server(kLive);
  AdminClient admin(server.admin_port(), "");
  auto closer = server.login("w1");
  auto leaver = server.login("w2");
  auto kicked = server.login("w3", v1::IOS);
  watch_ok(*closer, {"a", "b", "c"});
  watch_ok(*leaver, {"a", "b"});
  watch_ok(*kicked, {"c"});
  CHECK(gauge(admin, "imserver_presence_watches") == 6);
  closer->close();
  REQUIRE(must(leaver->call_raw(Cmd::kLogout, "")).ok());
  auto replacement = server.login("w3", v1::IOS);  // kicks the older session
  REQUIRE(next_of(*kicked, Cmd::kKickout));
  CHECK(wait_until([&] { return gauge(admin, "imserver_presence_watches") == 0; }));
  // the users still change state with nobody watching
  auto a = server.login("a");
  CHECK(gauge(admin, "imserver_presence_watches") == 0);
}

TEST_CASE("a watching session closed by the heartbeat timeout drops its watch list") {
  ServerProcess server(with(kLive, {{"heartbeat.interval_s", "1"}, {"heartbeat.timeout_s", "3"}}));
  AdminClient admin(server.admin_port(), "");
  auto watcher = server.login("watcher");
  watch_ok(*watcher, {"a", "b"});
  CHECK(gauge(admin, "imserver_presence_watches") == 2);
  CHECK(watcher->wait_closed(10s));  // silent: closed by the server
  CHECK(wait_until([&] { return gauge(admin, "imserver_presence_watches") == 0; }));
}
