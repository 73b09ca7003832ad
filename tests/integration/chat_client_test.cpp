// ChatClient (include/im/chat_client.h) against the real binary: chat,
// every inbox message once and in order across kill -9 and restarts, the
// outbox across a client restart (FileChatStorage), kickouts, the token
// provider, and the protocol 8 calls.

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http_helpers.h"
#include "im/chat_client.h"
#include "server_process.h"
#include "wait_until.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;

namespace {

// What a client's callbacks saw (they run on its thread).
struct Seen {
  std::mutex mutex;
  std::vector<v1::Message> messages;
  std::vector<ChatState> states;
  std::vector<KickInfo> kicks;
  std::vector<Error> errors;

  std::vector<std::string> bodies(const std::string& from = "") {
    std::lock_guard lock(mutex);
    std::vector<std::string> out;
    for (const auto& m : messages)
      if (m.content_type() == 0 && (from.empty() || m.from() == from)) out.push_back(m.body());
    return out;
  }
  std::vector<std::uint64_t> seqs() {
    std::lock_guard lock(mutex);
    std::vector<std::uint64_t> out;
    for (const auto& m : messages) out.push_back(m.inbox_seq());
    return out;
  }
  std::size_t kick_count() {
    std::lock_guard lock(mutex);
    return kicks.size();
  }
};

ChatOptions options_for(std::uint16_t port, const std::string& uid, v1::DeviceType device = v1::DESKTOP) {
  ChatOptions o;
  o.port = port;
  o.uid = uid;
  o.device_type = device;
  o.token = [uid](TokenReason) { return token_for(uid); };
  o.backoff_base = 50ms;
  o.backoff_max = 400ms;
  return o;
}

std::unique_ptr<ChatClient> make_client(ChatOptions o, Seen& seen) {
  auto c = std::make_unique<ChatClient>(std::move(o));
  c->on_message([&seen](const v1::Message& m) {
    std::lock_guard lock(seen.mutex);
    seen.messages.push_back(m);
  });
  c->on_state([&seen](ChatState s) {
    std::lock_guard lock(seen.mutex);
    seen.states.push_back(s);
  });
  c->on_kicked([&seen](const KickInfo& k) {
    std::lock_guard lock(seen.mutex);
    seen.kicks.push_back(k);
  });
  c->on_error([&seen](const Error& e) {
    std::lock_guard lock(seen.mutex);
    seen.errors.push_back(e);
  });
  return c;
}

template <class T>
T must_ok(std::future<Result<T>> f) {
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  auto r = f.get();
  INFO((r ? "" : r.error().message));
  REQUIRE(r);
  return std::move(*r);
}

bool gapless(const std::vector<std::uint64_t>& seqs) {
  for (std::size_t i = 0; i < seqs.size(); ++i)
    if (seqs[i] != i + 1) return false;
  return true;
}

// A server on a fixed port, so that it comes back where the clients look.
Overrides fixed_port(std::uint16_t port) {
  return {{"server.listen", "\"127.0.0.1:" + std::to_string(port) + "\""}, {"sharding.shards", "2"}};
}

}  // namespace

TEST_CASE("chat client: two users chat, each sees every message of the inbox once, in order, own ones included") {
  ServerProcess server(Overrides{{"sharding.shards", "2"}});
  Seen a, b;
  auto alice = make_client(options_for(server.tcp_port(), "alice"), a);
  auto bob = make_client(options_for(server.tcp_port(), "bob"), b);
  must_ok(alice->connect());
  must_ok(bob->connect());
  for (int i = 0; i < 5; ++i) {
    const auto r = must_ok(alice->send("bob", "a" + std::to_string(i)));
    CHECK(r.inbox_seq == static_cast<std::uint64_t>(i + 1));
    CHECK_FALSE(r.duplicate);
  }
  REQUIRE(wait_until([&] { return b.bodies().size() == 5; }));
  const auto list = must_ok(bob->conversations());
  REQUIRE(list.conversations_size() == 1);
  CHECK(list.conversations(0).peer() == "alice");
  CHECK(list.conversations(0).unread_count() == 5);
  must_ok(bob->send("alice", "hi"));  // sending counts as reading
  REQUIRE(wait_until([&] { return b.bodies().size() == 6 && a.bodies().size() == 6; }));
  CHECK(b.bodies("alice") == std::vector<std::string>{"a0", "a1", "a2", "a3", "a4"});
  CHECK(a.bodies("alice") == std::vector<std::string>{"a0", "a1", "a2", "a3", "a4"});
  CHECK(gapless(a.seqs()));
  CHECK(gapless(b.seqs()));
  CHECK(alice->inbox_seq() == 6);
  CHECK(alice->state() == ChatState::kOnline);

  // The protocol 8 calls, typed.
  CHECK(must_ok(bob->conversations()).conversations(0).unread_count() == 0);
  const auto read = must_ok(alice->mark_read(v1::C2C, "bob"));
  CHECK(read.unread_count() == 0);
  // The read mark is a row of alice's own inbox, fetched at once (no PUSH of it to her).
  REQUIRE(read.inbox_seq() == 7);
  REQUIRE(wait_until([&] { return alice->inbox_seq() == 7; }));
  const auto h = must_ok(bob->history(v1::C2C, "alice", 0, 3));
  CHECK(h.messages_size() == 3);
  CHECK(h.has_more());
  v1::GroupCreateReq g;
  g.set_gid("team");
  g.set_name("team");
  g.add_members("bob");
  CHECK(must_ok(alice->create_group(g)).group().gid() == "team");
  CHECK(must_ok(bob->list_groups()).groups_size() == 1);
  SendOptions to_group;
  to_group.conv_type = v1::GROUP;
  must_ok(alice->send("team", "g1", to_group));
  REQUIRE(wait_until([&] { return b.bodies().size() == 7; }));
  const auto recalled = must_ok(alice->recall(v1::GROUP, "team", 2));
  CHECK(recalled.conv_seq() == 3);
  // Errors are values with the protocol status.
  auto refused = alice->get_group("no-such-group").get();
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == StatusCode::kNotFound);
  alice->close();
  bob->close();
  CHECK(alice->state() == ChatState::kClosed);
  CHECK_FALSE(alice->send("bob", "after close").get());
}

TEST_CASE("chat client: kill -9 and restarts mid-conversation lose nothing and double nothing") {
  const std::uint16_t port = free_loopback_port();
  ServerProcess server(fixed_port(port));
  Seen a, b;
  auto alice = make_client(options_for(port, "alice"), a);
  auto bob = make_client(options_for(port, "bob"), b);
  must_ok(alice->connect());
  must_ok(bob->connect());
  constexpr int kMessages = 60;
  std::vector<std::future<Result<SendResult>>> sends;
  for (int i = 0; i < kMessages; ++i) {
    sends.push_back(alice->send("bob", "m" + std::to_string(i)));
    if (i == 20 || i == 40) {
      server.kill9();
      server.restart();
    }
  }
  std::vector<std::string> expected;
  for (int i = 0; i < kMessages; ++i) {
    const auto r = must_ok(std::move(sends[i]));
    CHECK(r.msg_id != 0);
    expected.push_back("m" + std::to_string(i));
  }
  CHECK(alice->outbox_size() == 0);
  {
    std::lock_guard lock(a.mutex);  // the cuts were seen, and came back from
    CHECK(std::count(a.states.begin(), a.states.end(), ChatState::kOffline) >= 2);
    CHECK(a.states.back() == ChatState::kOnline);
  }
  REQUIRE(wait_until([&] { return b.bodies().size() >= kMessages; }, 30s));
  std::this_thread::sleep_for(500ms);  // a doubled one would come within this
  CHECK(b.bodies() == expected);
  CHECK(gapless(b.seqs()));
  CHECK(a.bodies() == expected);  // the sender's own copies too
  CHECK(gapless(a.seqs()));
}

TEST_CASE("chat client: the outbox outlives the client in a FileChatStorage, a graceful shutdown is waited out") {
  const std::uint16_t port = free_loopback_port();
  const std::string dir = unique_temp_path("imclient-state");
  auto server = std::make_unique<ServerProcess>(fixed_port(port));
  Seen b;
  auto bob = make_client(options_for(port, "bob"), b);
  must_ok(bob->connect());
  const std::string data_dir = server->data_dir();
  {
    Seen a;
    auto o = options_for(port, "alice");
    o.storage = std::make_shared<FileChatStorage>(dir);
    auto alice = make_client(o, a);
    must_ok(alice->connect());
    must_ok(alice->send("bob", "before"));
    CHECK(server->terminate() == 0);  // KICKOUT SERVER_SHUTDOWN: both wait reconnect_after_ms
    REQUIRE(wait_until([&] { return a.kick_count() == 1; }));
    {
      std::lock_guard lock(a.mutex);
      CHECK(a.kicks[0].reason == v1::SERVER_SHUTDOWN);
      CHECK(a.kicks[0].reconnects);
    }
    auto queued = alice->send("bob", "queued while down");
    REQUIRE(wait_until([&] { return alice->outbox_size() == 1; }));
    alice->close();  // its promise breaks; the send stays in the file
    auto r = queued.get();
    CHECK_FALSE(r);
  }
  server->restart();
  Seen a2;
  auto o = options_for(port, "alice");
  o.storage = std::make_shared<FileChatStorage>(dir);
  auto alice = make_client(o, a2);
  CHECK(alice->outbox_size() == 0);  // not read before connect()
  must_ok(alice->connect());
  REQUIRE(wait_until([&] { return alice->outbox_size() == 0 && b.bodies().size() == 2; }, 30s));
  CHECK(b.bodies() == std::vector<std::string>{"before", "queued while down"});
  // The resync point was kept: the restarted client was not given "before" again.
  CHECK(a2.bodies() == std::vector<std::string>{"queued while down"});
  std::filesystem::remove_all(dir);
}

TEST_CASE("chat client: a newer login elsewhere closes the client for good, a refused token is asked again once") {
  ServerProcess server(Overrides{{"sharding.shards", "2"}});
  Seen a;
  int asked = 0;
  auto o = options_for(server.tcp_port(), "alice");
  std::vector<TokenReason> reasons;
  o.token = [&](TokenReason why) {
    reasons.push_back(why);  // on the client's thread; read after connect()
    return ++asked == 1 ? std::string("not-a-token") : token_for("alice");
  };
  auto alice = make_client(o, a);
  must_ok(alice->connect());
  REQUIRE(reasons.size() == 2);
  CHECK(reasons[0] == TokenReason::kLogin);
  CHECK(reasons[1] == TokenReason::kRefused);
  Seen a2;
  auto again = make_client(options_for(server.tcp_port(), "alice"), a2);
  must_ok(again->connect());
  REQUIRE(wait_until([&] { return alice->state() == ChatState::kClosed; }));
  {
    std::lock_guard lock(a.mutex);
    REQUIRE(a.kicks.size() == 1);
    CHECK(a.kicks[0].reason == v1::LOGIN_ELSEWHERE);
    CHECK_FALSE(a.kicks[0].reconnects);
  }
  auto after = alice->send("bob", "x").get();
  REQUIRE_FALSE(after);
  CHECK(after.error().code == StatusCode::kUnauthenticated);  // why it ended
  CHECK(after.error().message.find("kicked out") != std::string::npos);

  // Refused twice: the client closes and says why.
  Seen c;
  auto bad = options_for(server.tcp_port(), "carol");
  bad.token = [](TokenReason) { return std::string("never-valid"); };
  auto carol = make_client(bad, c);
  auto r = carol->connect().get();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == StatusCode::kUnauthenticated);
  CHECK(carol->state() == ChatState::kClosed);
  // Later calls say why the session ended.
  auto later = carol->conversations().get();
  REQUIRE_FALSE(later);
  CHECK(later.error().code == StatusCode::kUnauthenticated);
}

TEST_CASE("chat client: an expired token is replaced through the provider and the session goes on") {
  ServerProcess server(Overrides{{"sharding.shards", "2"}});
  Seen a;
  std::atomic<int> expired{0};
  auto o = options_for(server.tcp_port(), "alice");
  o.token = [&](TokenReason why) {
    if (why == TokenReason::kExpired) ++expired;
    // The first token lives 2 s; later ones an hour.
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    return token_for("alice", why == TokenReason::kLogin && expired == 0 ? now + 2 : now + 3600);
  };
  auto alice = make_client(o, a);
  must_ok(alice->connect());
  REQUIRE(wait_until([&] { return expired.load() == 1; }, 10s));
  REQUIRE(wait_until([&] { return alice->state() == ChatState::kOnline; }, 10s));
  CHECK(must_ok(alice->send("bob", "after expiry")).msg_id != 0);
}

TEST_CASE("chat client: FileChatStorage keeps any bytes and refuses a damaged file") {
  const std::string dir = unique_temp_path("imclient-file");
  FileChatStorage storage(dir);
  SavedState s;
  s.inbox_seq = 42;
  s.outbox.push_back({"id 1", v1::GROUP, "g with space", 7, std::string("\0\n\xff-", 4), 123});
  s.outbox.push_back({"id2", v1::C2C, "bob", 0, "", 456});
  REQUIRE(storage.save("alice|4|", s));
  auto back = storage.load("alice|4|");
  REQUIRE(back);
  CHECK(back->inbox_seq == 42);
  REQUIRE(back->outbox.size() == 2);
  CHECK(back->outbox[0].client_msg_id == "id 1");
  CHECK(back->outbox[0].conv_type == v1::GROUP);
  CHECK(back->outbox[0].to == "g with space");
  CHECK(back->outbox[0].content_type == 7);
  CHECK(back->outbox[0].body == std::string("\0\n\xff-", 4));
  CHECK(back->outbox[0].created_ms == 123);
  CHECK(back->outbox[1].body.empty());
  CHECK_FALSE(storage.load("someone else"));
  std::ofstream(storage.path_of("alice|4|")) << "imclient-state 1\nsend !!! x\n";
  CHECK_THROWS_WITH(storage.load("alice|4|"), Catch::Contains("damaged"));
  // A key too long for a file name is hashed into one.
  const std::string long_key(400, 'k');
  REQUIRE(storage.save(long_key, s));
  CHECK(storage.path_of(long_key).find("sha256-") != std::string::npos);
  REQUIRE(storage.load(long_key));
  CHECK(storage.load(long_key)->inbox_seq == 42);
  std::filesystem::remove_all(dir);
}

TEST_CASE("chat client: backoff has full jitter under an exponential ceiling") {
  CHECK(backoff_delay(0, 100ms, 1000ms, 0.5) == 50ms);
  CHECK(backoff_delay(3, 100ms, 1000ms, 0.5) == 400ms);
  CHECK(backoff_delay(40, 100ms, 1000ms, 0.999) == 999ms);
  CHECK(backoff_delay(5, 100ms, 1000ms, 0.0) == 0ms);
  CHECK(new_client_msg_id().size() == 32);
  CHECK(new_client_msg_id() != new_client_msg_id());
}

TEST_CASE("chat client: a send too large for a frame is refused at once, the link stays and the next send goes") {
  ServerProcess server(Overrides{{"sharding.shards", "2"}});
  Seen a;
  auto alice = make_client(options_for(server.tcp_port(), "alice"), a);
  must_ok(alice->connect());
  auto big = alice->send("bob", std::string(70'000, 'x')).get();
  REQUIRE_FALSE(big);
  CHECK(big.error().code == StatusCode::kTooLarge);
  CHECK(alice->outbox_size() == 0);
  CHECK(must_ok(alice->send("bob", "small")).msg_id != 0);
  std::lock_guard lock(a.mutex);
  CHECK(std::count(a.states.begin(), a.states.end(), ChatState::kOffline) == 0);
}

TEST_CASE("chat client: a callback that throws is reported and the client goes on, close() from two threads") {
  ServerProcess server(Overrides{{"sharding.shards", "2"}});
  std::atomic<int> seen{0};  // before bob: his callbacks may run until he is destroyed
  Seen b;
  auto bob = make_client(options_for(server.tcp_port(), "bob"), b);
  bob->on_message([&seen](const v1::Message&) {
    ++seen;
    throw std::runtime_error("the application's bug");
  });
  must_ok(bob->connect());
  Seen a;
  auto alice = make_client(options_for(server.tcp_port(), "alice"), a);
  must_ok(alice->connect());
  must_ok(alice->send("bob", "one"));
  must_ok(alice->send("bob", "two"));
  REQUIRE(wait_until([&] { return seen.load() == 2; }));
  CHECK(bob->state() == ChatState::kOnline);
  {
    std::lock_guard lock(b.mutex);
    REQUIRE_FALSE(b.errors.empty());
    CHECK(b.errors[0].message.find("the application's bug") != std::string::npos);
  }
  std::thread other([&] { bob->close(); });
  bob->close();
  other.join();
  CHECK(bob->state() == ChatState::kClosed);
}

TEST_CASE("chat client: the presence watch is sent again after a reconnect") {
  const std::uint16_t port = free_loopback_port();
  ServerProcess server(fixed_port(port));
  Seen a;
  std::mutex mutex;
  std::vector<std::pair<std::string, bool>> presences;
  auto alice = make_client(options_for(port, "alice"), a);
  alice->on_presence([&](const v1::PresencePush& p) {
    std::lock_guard lock(mutex);
    for (const auto& one : p.presences()) presences.emplace_back(one.uid(), one.online());
  });
  must_ok(alice->connect());
  v1::PresenceWatchReq watch;
  watch.add_add("bob");
  CHECK(must_ok(alice->watch_presence(watch)).presences_size() == 1);
  server.kill9();
  server.restart();
  REQUIRE(wait_until([&] { return alice->state() == ChatState::kOnline; }, 20s));
  {
    std::lock_guard lock(mutex);
    presences.clear();
  }
  Seen b;
  auto bob = make_client(options_for(port, "bob"), b);
  must_ok(bob->connect());
  // Only a watch the new server holds tells alice.
  REQUIRE(wait_until([&] {
    std::lock_guard lock(mutex);
    return std::find(presences.begin(), presences.end(), std::make_pair(std::string("bob"), true)) != presences.end();
  }, 10s));
}

TEST_CASE(
    "chat client: over WebSocket an admission refusal's Retry-After is honoured and the client comes in once there is "
    "room") {
  ServerProcess server(Overrides{{"sharding.shards", "2"}, {"limits.connections_per_ip", "1"}});
  auto first = server.connect();  // holds the one connection 127.0.0.1 may have
  using Clock = std::chrono::steady_clock;
  Clock::time_point refused_at{}, again_at{};  // before bob: his callbacks may run until he is destroyed
  Seen b;
  auto o = options_for(server.ws_port(), "bob");
  o.connection.transport = Transport::kWs;
  auto bob = make_client(o, b);
  bob->on_error([&](const Error& e) {
    std::lock_guard lock(b.mutex);
    if (b.errors.empty()) refused_at = Clock::now();
    b.errors.push_back(e);
  });
  bob->on_state([&](ChatState s) {
    std::lock_guard lock(b.mutex);
    if (s == ChatState::kConnecting && refused_at != Clock::time_point{} && again_at == Clock::time_point{})
      again_at = Clock::now();
  });
  auto joined = bob->connect();
  REQUIRE(wait_until(
      [&] {
        std::lock_guard lock(b.mutex);
        return again_at != Clock::time_point{};
      },
      10s));
  {
    std::lock_guard lock(b.mutex);
    CHECK(b.errors[0].code == StatusCode::kUnavailable);
    CHECK(b.errors[0].message.find("HTTP 503") != std::string::npos);
    CHECK(b.errors[0].retry_after_ms >= 1000);  // Retry-After counts whole seconds
    // A lower bound only: the client starts waiting after its error callback has run.
    CHECK(again_at - refused_at >= std::chrono::milliseconds(b.errors[0].retry_after_ms));
  }
  CHECK(bob->state() != ChatState::kOnline);
  first.reset();
  must_ok(std::move(joined));
  CHECK(bob->state() == ChatState::kOnline);
  // The one connection 127.0.0.1 may have is bob's now: he chats over it.
  CHECK(must_ok(bob->send("carol", "over ws")).msg_id != 0);
  REQUIRE(wait_until([&] { return b.bodies() == std::vector<std::string>{"over ws"}; }));
}

TEST_CASE("chat client: a KICKOUT's reconnect_after_ms is waited out before the next connection") {
  const std::uint16_t port = free_loopback_port();
  ServerProcess server(fixed_port(port));
  // Before alice: her destructor's LOGOUT still calls on_state.
  std::mutex mutex;
  std::chrono::steady_clock::time_point kicked_at{}, connecting_at{};
  std::uint32_t wait_ms = 0;
  Seen a;
  auto alice = make_client(options_for(port, "alice"), a);
  alice->on_kicked([&](const KickInfo& k) {
    std::lock_guard lock(mutex);
    kicked_at = std::chrono::steady_clock::now();
    wait_ms = k.reconnect_after_ms;
  });
  alice->on_state([&](ChatState s) {
    std::lock_guard lock(mutex);
    if (s == ChatState::kConnecting && kicked_at != std::chrono::steady_clock::time_point{} &&
        connecting_at == std::chrono::steady_clock::time_point{})
      connecting_at = std::chrono::steady_clock::now();
  });
  must_ok(alice->connect());
  CHECK(server.terminate() == 0);  // KICKOUT SERVER_SHUTDOWN with a reconnect_after_ms
  server.restart();
  REQUIRE(wait_until([&] { return alice->state() == ChatState::kOnline; }, 30s));
  std::lock_guard lock(mutex);
  REQUIRE(connecting_at != std::chrono::steady_clock::time_point{});
  CHECK(wait_ms >= 1000);
  // A lower bound only: the client starts waiting after its kicked callback has run.
  CHECK(connecting_at - kicked_at >= std::chrono::milliseconds(wait_ms));
}

TEST_CASE("chat client: a server that stops answering (SIGSTOP) is taken for dead from the missing heartbeats") {
  ServerProcess server(
      Overrides{{"sharding.shards", "2"}, {"heartbeat.interval_s", "1"}, {"heartbeat.timeout_s", "60"}});
  Seen a;
  auto alice = make_client(options_for(server.tcp_port(), "alice"), a);
  must_ok(alice->connect());
  ::kill(server.pid(), SIGSTOP);
  // The socket stays open: only the missing heartbeat answers tell.
  const bool dead = wait_until([&] { return alice->state() != ChatState::kOnline; }, 15s);
  ::kill(server.pid(), SIGCONT);
  REQUIRE(dead);
  REQUIRE(wait_until([&] { return alice->state() == ChatState::kOnline; }, 20s));
  CHECK(must_ok(alice->send("bob", "after the stall")).msg_id != 0);
}

namespace {
// Storage holding what an earlier run left: one send from 25 hours ago, one from now.
class EarlierRun : public ChatStorage {
 public:
  std::optional<SavedState> load(const std::string&) override {
    SavedState s;
    const auto now =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    s.outbox.push_back(PendingSend{"old-0123456789abcdef", v1::C2C, "bob", 0, "too old", now - 25 * 3600 * 1000LL});
    s.outbox.push_back(PendingSend{"new-0123456789abcdef", v1::C2C, "bob", 0, "recent", now});
    return s;
  }
  Result<Ok> save(const std::string&, const SavedState& s) override {
    std::lock_guard lock(mutex);
    outbox = s.outbox.size();
    return Ok{};
  }
  std::mutex mutex;
  std::size_t outbox = 2;
};
}  // namespace

TEST_CASE("chat client: an outbox entry older than outbox_max_age is given up with EXPIRED, the next one goes") {
  ServerProcess server(Overrides{{"sharding.shards", "2"}});
  Seen b;
  auto bob = make_client(options_for(server.tcp_port(), "bob"), b);
  must_ok(bob->connect());
  Seen a;
  auto o = options_for(server.tcp_port(), "alice");
  auto storage = std::make_shared<EarlierRun>();
  o.storage = storage;
  auto alice = make_client(o, a);
  must_ok(alice->connect());
  REQUIRE(wait_until([&] { return b.bodies().size() == 1; }));
  CHECK(b.bodies() == std::vector<std::string>{"recent"});
  REQUIRE(wait_until([&] {
    std::lock_guard lock(storage->mutex);
    return storage->outbox == 0;
  }));
  std::lock_guard lock(a.mutex);
  REQUIRE(std::count_if(a.errors.begin(), a.errors.end(),
                        [](const Error& e) { return e.code == StatusCode::kExpired; }) == 1);
}

TEST_CASE("chat client: REPORT is queued for the webhook with a report_id made when empty, DISABLED without one") {
  WebhookReceiver receiver;
  ServerProcess server(Overrides{{"sharding.shards", "2"},
                                 {"webhook.url", "\"" + receiver.url() + "\""},
                                 {"webhook.secret", "\"a-webhook-secret-of-32-bytes-at-least\""}});
  Seen a;
  auto alice = make_client(options_for(server.tcp_port(), "alice"), a);
  must_ok(alice->connect());
  v1::ReportReq mine;
  mine.set_report_id("r-1");
  mine.set_topic("feedback");
  mine.set_payload("it works");
  must_ok(alice->report(mine));
  v1::ReportReq anonymous;
  anonymous.set_topic("feedback");
  anonymous.set_payload("no id");
  must_ok(alice->report(anonymous));
  const auto events = receiver.wait_for(2);
  REQUIRE(events.size() == 2);
  const auto first = nlohmann::json::parse(events[0].body), second = nlohmann::json::parse(events[1].body);
  CHECK(first["report_id"] == "r-1");
  CHECK(first["uid"] == "alice");
  CHECK(second["report_id"].get<std::string>().size() == 32);

  ServerProcess plain(Overrides{{"sharding.shards", "2"}});  // no webhook.url
  Seen b;
  auto bob = make_client(options_for(plain.tcp_port(), "bob"), b);
  must_ok(bob->connect());
  auto r = bob->report(mine).get();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == StatusCode::kDisabled);
}

namespace {
// A listener on 127.0.0.1:port whose accept queue is full: the kernel drops
// further SYNs, so a connect there neither succeeds nor fails.
struct SilentAddress {
  explicit SilentAddress(std::uint16_t port) {
    listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    const int one = 1;
    ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ok = ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::listen(listener, 0) == 0;
    for (int i = 0; ok && i < 3; ++i) {  // fills the queue (backlog 0 holds one); the rest wait on SYN retries
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      fillers.push_back(fd);
    }
    std::this_thread::sleep_for(200ms);  // the handshakes of the first ones complete
  }
  ~SilentAddress() {
    for (int fd : fillers) ::close(fd);
    ::close(listener);
  }
  int listener = -1;
  bool ok = false;
  std::vector<int> fillers;
};

bool ipv6_loopback() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}
}  // namespace

TEST_CASE(
    "chat client: localhost is 127.0.0.1 then ::1, without the resolver, a refused or silent first address is got "
    "past") {
  if (!ipv6_loopback()) {
    WARN("no IPv6 loopback on this machine: not run");
    return;
  }
  const std::uint16_t port = free_loopback_port();
  ServerProcess server(
      Overrides{{"server.listen", "\"[::1]:" + std::to_string(port) + "\""}, {"sharding.shards", "2"}});
  {
    Seen a;  // 127.0.0.1:port refuses
    auto o = options_for(port, "alice");
    o.host = "LocalHost.";
    auto alice = make_client(o, a);
    must_ok(alice->connect());
    CHECK(must_ok(alice->send("bob", "over ::1")).msg_id != 0);
  }
  SilentAddress silent(port);
  REQUIRE(silent.ok);
  Seen b;  // 127.0.0.1:port is silent: its share of request_timeout, then ::1
  auto o = options_for(port, "bob");
  o.host = "localhost";
  o.request_timeout = 4s;
  auto bob = make_client(o, b);
  must_ok(bob->connect());
  CHECK(bob->state() == ChatState::kOnline);
  std::lock_guard lock(b.mutex);
  CHECK(std::count(b.states.begin(), b.states.end(), ChatState::kOffline) == 0);  // one attempt, two addresses
}

TEST_CASE("chat client: with compression asked, a resync and a live message arrive whole, sent compressed") {
  ServerProcess server(
      Overrides{{"admin.listen", "\"127.0.0.1:0\""}, {"admin.api_key", "\"k-0123456789abcdef-0123456789\""}});
  AdminClient admin(server.admin_port(), "k-0123456789abcdef-0123456789");
  auto alice = server.login("alice");
  std::string text;
  while (text.size() < 2000) text += "shall we move the budget review to friday afternoon? ";
  std::vector<std::string> sent;
  for (int i = 0; i < 30; ++i) {  // waiting for bob: about 60 KB, one PULL page
    sent.push_back(std::to_string(i) + " " + text);
    auto req = v1::SendReq();
    req.set_client_msg_id("m" + std::to_string(i));
    req.set_conv_type(v1::C2C);
    req.set_to("bob");
    req.set_body(sent.back());
    auto r = alice->call(Cmd::kSend, &req);
    REQUIRE(r);
    REQUIRE(r->ok());
  }
  REQUIRE(admin.metric("imserver_frames_compressed_total") == 0);
  Seen b;
  auto o = options_for(server.tcp_port(), "bob");
  o.compression = true;
  auto bob = make_client(std::move(o), b);
  must_ok(bob->connect());
  REQUIRE(wait_until([&] { return b.bodies().size() == 30; }));
  CHECK(b.bodies() == sent);
  const double after_resync = admin.metric("imserver_frames_compressed_total").value_or(0);
  CHECK(after_resync >= 1);           // the PULL answer
  must_ok(bob->send("alice", text));  // bob's own, 2 KB: its PUSH to alice is plain
  auto req = v1::SendReq();
  req.set_client_msg_id("live");
  req.set_conv_type(v1::C2C);
  req.set_to("bob");
  req.set_body("live " + text);
  auto r = alice->call(Cmd::kSend, &req);
  REQUIRE(r);
  REQUIRE(r->ok());
  REQUIRE(wait_until([&] { return b.bodies("alice").size() == 31; }));
  CHECK(b.bodies("alice").back() == "live " + text);
  CHECK(gapless(b.seqs()));
  CHECK(admin.metric("imserver_frames_compressed_total").value_or(0) > after_resync);
}
