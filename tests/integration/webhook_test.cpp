// REPORT (c2s) and the durable webhook queue against the real binary: the
// signature, reports, offline pushes, retries after failures, delivery
// across an imserver restart while the receiver was down, and the queue's
// bounds: DISABLED without a url, UNAVAILABLE at webhook.max_queued, events
// refused for good or failing past webhook.max_retry_s dropped and counted.

#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "auth/jwt.h"
#include "common/base64.h"
#include "common/metrics.h"
#include "fault_env.h"
#include "http/webhook_worker.h"
#include "http_helpers.h"
#include "messaging.h"
#include "server_process.h"
#include "store/outbox.h"
#include "store/store.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr const char* kSecret = "hook-secret-for-the-webhook-tests";  // webhook.secret: 32 bytes at least

Overrides hook_config(const WebhookReceiver& receiver, std::uint32_t offline_delay_ms = 60000) {
  return {{"webhook.url", "\"" + receiver.url() + "\""},
          {"webhook.secret", std::string("\"") + kSecret + "\""},
          {"webhook.timeout_ms", "1000"},
          {"push.offline_delay_ms", std::to_string(offline_delay_ms)},
          {"limits.messages_per_second", "100000"},
          {"limits.burst", "100000"},
          {"sharding.shards", "2"}};
}

std::vector<json> bodies(const std::vector<WebhookReceiver::Event>& events) {
  std::vector<json> out;
  for (const auto& e : events) {
    CHECK(e.signature == http::WebhookWorker::signature(kSecret, e.body));
    out.push_back(json::parse(e.body));
  }
  return out;
}

std::string report_id_of(const std::string& body) {
  return json::parse(body).value("report_id", "");
}

// A port nothing listens on (a receiver that is down), free for a receiver later.
// A port for a receiver that comes up later: below the ephemeral range, so
// no outgoing connection takes it meanwhile (a port the kernel picked for a
// probe could be, and the receiver's bind then failed in CI).
std::uint16_t free_port() { return free_loopback_port(); }

Overrides down_config(std::uint16_t port) {
  return {{"webhook.url", "\"http://127.0.0.1:" + std::to_string(port) + "/hook\""},
          {"webhook.secret", std::string("\"") + kSecret + "\""},
          {"webhook.timeout_ms", "500"},
          {"limits.messages_per_second", "100000"},
          {"limits.burst", "100000"},
          {"sharding.shards", "2"},
          {"admin.listen", "\"127.0.0.1:0\""}};
}

// The events left in a stopped server's outbox.
std::uint64_t stored_events(const std::string& data_dir) {
  StorageConfig config;
  config.data_dir = data_dir;
  auto store = store::Store::open(config);
  REQUIRE(store);
  auto n = store::Outbox(**store).count();
  REQUIRE(n);
  CHECK((*store)->outbox_depth() == *n);  // the count taken at open
  return *n;
}

}  // namespace

TEST_CASE("the webhook signature is sha256= hex HMAC-SHA256 of the body") {
  // RFC 4231 test case 2
  CHECK(http::WebhookWorker::signature("Jefe", "what do ya want for nothing?") ==
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("REPORT: OK once queued, delivered signed as a report event, in order per user") {
  WebhookReceiver receiver;
  ServerProcess server(hook_config(receiver));
  auto alice = server.login("alice", v1::ANDROID);
  for (int i = 0; i < 20; ++i) {
    auto r = report("r" + std::to_string(i), "feedback", "payload " + std::to_string(i));
    Frame f = must(alice->call(Cmd::kReport, &r));
    REQUIRE(f.ok());
    CHECK(f.body.empty());
  }
  auto events = bodies(receiver.wait_for(20));
  REQUIRE(events.size() == 20);
  std::set<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    const json& e = events[i];
    CHECK(e["event"] == "report");
    CHECK(e["uid"] == "alice");
    CHECK(e["device_type"] == "android");
    CHECK(e["report_id"] == "r" + std::to_string(i));  // in order
    CHECK(e["topic"] == "feedback");
    CHECK(e["payload"] == base64_encode("payload " + std::to_string(i)));
    CHECK(e["time_ms"].is_number());
    REQUIRE(e["id"].is_string());
    CHECK(ids.insert(e["id"].get<std::string>()).second);
  }
  // bad reports
  auto bad = report("", "t", "p");
  CHECK(must(alice->call(Cmd::kReport, &bad)).status() == StatusCode::kBadRequest);
  auto big = report("big", "t", std::string(40000, 'x'));
  CHECK(must(alice->call(Cmd::kReport, &big)).status() == StatusCode::kTooLarge);
  auto long_topic = report("lt", std::string(300, 't'), "p");
  CHECK(must(alice->call(Cmd::kReport, &long_topic)).status() == StatusCode::kBadRequest);
}

TEST_CASE("offline_push: once for an unacknowledged message, never for an acknowledged one") {
  constexpr auto kOfflineDelay = 500ms;  // push.offline_delay_ms
  WebhookReceiver receiver;
  ServerProcess server(hook_config(receiver, static_cast<std::uint32_t>(kOfflineDelay.count())));
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  v1::SendResp to_carol = send_ok(*alice, "carol", "m1",
                                  "hello carol, this body is longer than sixty-four bytes, "
                                  "so the preview is cut");
  v1::SendResp to_bob = send_ok(*alice, "bob", "m2");
  auto got = next_push(*bob);
  REQUIRE(got.size() == 1);
  v1::AckReq ack;
  ack.set_inbox_seq(got[0].inbox_seq());
  bob->notify(Cmd::kAck, &ack);
  receiver.wait_for(1);
  // Absence: push.offline_delay_ms names when bob's offline_push would be due
  // had his ACK not counted; his message was sent right after carol's, so
  // three delays past hers it would have come. Waiting for a second event
  // (which would end the wait at once), none may come.
  auto events = bodies(receiver.wait_for(2, 3 * kOfflineDelay));
  REQUIRE(events.size() == 1);
  const json& e = events[0];
  CHECK(e["event"] == "offline_push");
  CHECK(e["uid"] == "carol");
  CHECK(e["msg_id"] == std::to_string(to_carol.msg_id()));
  CHECK(e["conv_type"] == "c2c");
  CHECK(e["from"] == "alice");
  CHECK(e["to"] == "carol");
  CHECK(e["content_type"] == 1);
  std::string preview;
  REQUIRE(base64_decode(e["preview_b64"].get<std::string>(), preview));
  CHECK(preview.size() == 64);
  (void)to_bob;
}

TEST_CASE("offline_push: muted is true for a conversation the user muted (PROTOCOL 8.1)") {
  WebhookReceiver receiver;
  ServerProcess server(hook_config(receiver, 300));
  auto alice = server.login("alice");
  {
    auto carol = server.login("carol");
    send_ok(*alice, "carol", "m1");
    auto got = next_push(*carol);
    REQUIRE(got.size() == 1);
    v1::AckReq ack;
    ack.set_inbox_seq(got[0].inbox_seq());
    carol->notify(Cmd::kAck, &ack);
    v1::ConvUpdateReq mute;
    mute.set_conv_type(v1::C2C);
    mute.set_peer("alice");
    mute.set_muted(true);
    auto r = carol->call(Cmd::kConvUpdate, &mute);
    REQUIRE(r);
    REQUIRE(r->ok());
  }
  send_ok(*alice, "carol", "m2");
  send_ok(*alice, "dave", "m3");
  auto events = bodies(receiver.wait_for(2));
  REQUIRE(events.size() == 2);
  std::map<std::string, bool> muted;
  for (const auto& e : events) {
    CHECK(e["event"] == "offline_push");
    muted[e["uid"].get<std::string>()] = e["muted"].get<bool>();
  }
  CHECK(muted == std::map<std::string, bool>{{"carol", true}, {"dave", false}});
}

TEST_CASE("offline_push: none for a message recalled before it was due, the latest body for an edited one") {
  constexpr auto kOfflineDelay = 1000ms;  // push.offline_delay_ms
  WebhookReceiver receiver;
  ServerProcess server(hook_config(receiver, static_cast<std::uint32_t>(kOfflineDelay.count())));
  auto alice = server.login("alice");
  const v1::SendResp edited = send_ok(*alice, "carol", "m1", "first words");
  const v1::SendResp recalled = send_ok(*alice, "carol", "m2", "regrettable words");
  call_ok<v1::SendResp>(*alice, Cmd::kEdit, edit_req("e1", v1::C2C, "carol", edited.conv_seq(), "second words"));
  call_ok<v1::SendResp>(*alice, Cmd::kRecall, recall_req("r1", v1::C2C, "carol", recalled.conv_seq()));
  const v1::SendResp later = send_ok(*alice, "carol", "m3", "later words");
  // Absence, as above: the recalled one would have come before the later
  // one, well within three delays.
  auto events = bodies(receiver.wait_for(3, 3 * kOfflineDelay));
  REQUIRE(events.size() == 2);
  std::map<std::string, std::string> previews;  // msg_id -> preview
  for (const auto& e : events) {
    CHECK(e["event"] == "offline_push");
    CHECK(e["content_type"] == 1);
    std::string preview;
    REQUIRE(base64_decode(e["preview_b64"].get<std::string>(), preview));
    previews[e["msg_id"].get<std::string>()] = preview;
  }
  CHECK(previews == std::map<std::string, std::string>{{std::to_string(edited.msg_id()), "second words"},
                                                       {std::to_string(later.msg_id()), "later words"}});
}

TEST_CASE("offline_push: muted holds for a user whose conversations are not loaded, after a restart") {
  WebhookReceiver receiver;
  ServerProcess server(hook_config(receiver, 300));
  {
    auto alice = server.login("alice");
    auto carol = server.login("carol");
    send_ok(*alice, "carol", "m1");
    auto got = next_push(*carol);
    REQUIRE(got.size() == 1);
    v1::AckReq ack;
    ack.set_inbox_seq(got[0].inbox_seq());
    carol->notify(Cmd::kAck, &ack);
    v1::ConvUpdateReq mute;
    mute.set_conv_type(v1::C2C);
    mute.set_peer("alice");
    mute.set_muted(true);
    auto r = carol->call(Cmd::kConvUpdate, &mute);
    REQUIRE(r);
    REQUIRE(r->ok());
  }
  // Killed right after the answer: the conversation states (written
  // coalesced) may not hold the mute, and nothing is loaded after the start.
  server.kill9();
  server.restart();
  auto alice = server.login("alice");
  send_ok(*alice, "carol", "m2");
  send_ok(*alice, "dave", "m3");
  auto events = bodies(receiver.wait_for(2));
  REQUIRE(events.size() == 2);
  std::map<std::string, bool> muted;
  for (const auto& e : events) {
    CHECK(e["event"] == "offline_push");
    muted[e["uid"].get<std::string>()] = e["muted"].get<bool>();
  }
  CHECK(muted == std::map<std::string, bool>{{"carol", true}, {"dave", false}});
}

TEST_CASE("a receiver answering 500 a few times still gets everything, in order") {
  WebhookReceiver receiver;
  receiver.refuse(3);
  ServerProcess server(hook_config(receiver));
  auto alice = server.login("alice");
  for (int i = 0; i < 5; ++i) {
    auto r = report("x" + std::to_string(i), "t", "p");
    REQUIRE(must(alice->call(Cmd::kReport, &r)).ok());
  }
  auto events = bodies(receiver.wait_for(5));
  REQUIRE(events.size() == 5);
  for (int i = 0; i < 5; ++i) CHECK(events[i]["report_id"] == "x" + std::to_string(i));
  CHECK(receiver.attempts() >= 8);
}

TEST_CASE("events queued while the receiver is down survive an imserver restart") {
  const std::uint16_t port = free_port();  // the receiver is down at first
  Overrides config = {{"webhook.url", "\"http://127.0.0.1:" + std::to_string(port) + "/hook\""},
                      {"webhook.secret", std::string("\"") + kSecret + "\""},
                      {"webhook.timeout_ms", "500"}};
  ServerProcess server(config);
  {
    auto alice = server.login("alice");
    for (int i = 0; i < 10; ++i) {
      auto r = report("down-" + std::to_string(i), "t", "p");
      REQUIRE(must(alice->call(Cmd::kReport, &r)).ok());
    }
  }
  server.kill9();
  server.restart();
  WebhookReceiver receiver(port);
  auto events = bodies(receiver.wait_for(10, 40s));
  REQUIRE(events.size() == 10);
  for (int i = 0; i < 10; ++i) CHECK(events[i]["report_id"] == "down-" + std::to_string(i));
}

TEST_CASE("webhook answers: 2xx delivered, a 4xx but 408 and 429 refused for good, anything else retried") {
  using A = http::WebhookWorker::Answer;
  for (long st : {200L, 201L, 204L, 299L}) CHECK(http::WebhookWorker::classify(st) == A::kDelivered);
  for (long st : {400L, 401L, 403L, 404L, 410L, 413L, 422L, 499L})
    CHECK(http::WebhookWorker::classify(st) == A::kRefused);
  for (long st : {0L, 100L, 301L, 302L, 408L, 429L, 500L, 502L, 503L, 504L})
    CHECK(http::WebhookWorker::classify(st) == A::kFailed);
}

TEST_CASE("REPORT without webhook.url: DISABLED and nothing stored, also after a restart") {
  ServerProcess server;  // no webhook.url
  {
    auto alice = server.login("alice");
    CHECK(send_report(*alice, "r0", std::string(30000, 'x')).status() == StatusCode::kDisabled);
  }
  REQUIRE(server.terminate() == 0);
  server.restart();
  {
    auto alice = server.login("alice");
    CHECK(send_report(*alice, "r1", std::string(30000, 'x')).status() == StatusCode::kDisabled);
    CHECK(send_report(*alice, "r2").status() == StatusCode::kDisabled);
  }
  REQUIRE(server.terminate() == 0);
  CHECK(stored_events(server.data_dir()) == 0);
}

TEST_CASE("REPORT at webhook.max_queued: UNAVAILABLE with retry_after_ms, also after a restart, until delivered") {
  const std::uint16_t port = free_port();  // the receiver is down at first
  Overrides config = down_config(port);
  config["webhook.max_queued"] = "3";
  ServerProcess server(config);
  {
    auto alice = server.login("alice");
    for (int i = 0; i < 3; ++i) REQUIRE(send_report(*alice, "q" + std::to_string(i)).ok());
    Frame full = send_report(*alice, "over");
    CHECK(full.status() == StatusCode::kUnavailable);
    CHECK(full.retry_after_ms() >= 15000);
    CHECK(full.retry_after_ms() <= 30000);
    AdminClient admin(server.admin_port(), "");
    CHECK(admin.metric("imserver_outbox_depth") == 3.0);
  }
  // The count is the store's after a restart, not 0.
  server.kill9();
  server.restart();
  {
    auto bob = server.login("bob");
    CHECK(send_report(*bob, "after-restart").status() == StatusCode::kUnavailable);
    AdminClient admin(server.admin_port(), "");
    CHECK(admin.metric("imserver_outbox_depth") == 3.0);
  }
  WebhookReceiver receiver(port);
  auto events = bodies(receiver.wait_for(3, 40s));
  REQUIRE(events.size() == 3);
  for (int i = 0; i < 3; ++i) CHECK(events[i]["report_id"] == "q" + std::to_string(i));
  AdminClient admin(server.admin_port(), "");
  REQUIRE(wait_until([&] { return admin.metric("imserver_outbox_depth") == 0.0; }));
  auto alice = server.login("alice");
  CHECK(send_report(*alice, "room-again").ok());
  events = bodies(receiver.wait_for(4));
  REQUIRE(events.size() == 4);
  CHECK(events[3]["report_id"] == "room-again");
}

TEST_CASE("an offline_push finding the queue full is dropped and counted") {
  Overrides config = down_config(free_port());
  config["webhook.max_queued"] = "1";
  config["push.offline_delay_ms"] = "200";
  ServerProcess server(config);
  AdminClient admin(server.admin_port(), "");
  auto alice = server.login("alice");
  for (int i = 0; i < 3; ++i) send_ok(*alice, "bob", "m" + std::to_string(i));  // bob is offline
  // One is queued (the receiver is down: it stays), the two others find the queue full.
  REQUIRE(wait_until([&] { return admin.metric("imserver_offline_pushes_dropped_total") >= 2.0; }, 10s));
  REQUIRE(wait_until([&] { return admin.metric("imserver_offline_pushes_queued_total") >= 1.0; }));
  CHECK(admin.metric("imserver_offline_pushes_dropped_total") == 2.0);
  CHECK(admin.metric("imserver_offline_pushes_queued_total") == 1.0);
  CHECK(admin.metric("imserver_outbox_depth") == 1.0);
  CHECK(send_report(*alice, "r").status() == StatusCode::kUnavailable);
  REQUIRE(server.terminate() == 0);
  CHECK(stored_events(server.data_dir()) == 1);
}

TEST_CASE("an event refused with a 4xx is dropped, logged and counted, each user's next events still go, in order") {
  std::mutex mu;
  std::map<std::string, int> tries;
  WebhookReceiver receiver;  // after what its handler uses: stopped first
  receiver.answer_with([&](const std::string& body) {
    const std::string id = report_id_of(body);
    std::lock_guard lock(mu);
    const int n = ++tries[id];
    if (id.rfind("refused-400", 0) == 0) return 400;
    if (id.rfind("refused-404", 0) == 0) return 404;
    if (id.rfind("busy", 0) == 0) return n == 1 ? 429 : n == 2 ? 408 : 200;  // retried, then delivered
    return 200;
  });
  Overrides config = hook_config(receiver);
  config["admin.listen"] = "\"127.0.0.1:0\"";
  ServerProcess server(config);
  const std::vector<std::string> users = {"alice", "bob", "carol", "dave"};  // over both shards
  std::vector<std::unique_ptr<SyncClient>> clients;
  for (const auto& u : users) clients.push_back(server.login(u));
  std::map<std::string, std::vector<std::string>> expected;
  for (int i = 0; i < 8; ++i) {
    for (std::size_t u = 0; u < users.size(); ++u) {
      std::string id = users[u] + "-" + std::to_string(i);
      if (i == 2) id = "refused-400-" + users[u];
      if (i == 5 && u % 2 == 0) id = "refused-404-" + users[u];
      if (i == 6 && u == 1) id = "busy-" + users[u];
      REQUIRE(send_report(*clients[u], id).ok());
      if (id.rfind("refused", 0) != 0) expected[users[u]].push_back(id);
    }
  }
  std::size_t total = 0;
  for (const auto& [u, ids] : expected) total += ids.size();
  auto events = bodies(receiver.wait_for(total));
  REQUIRE(events.size() == total);
  std::map<std::string, std::vector<std::string>> got;
  for (const json& e : events) got[e["uid"].get<std::string>()].push_back(e["report_id"].get<std::string>());
  CHECK(got == expected);  // every user's events but the refused ones, each user's in order
  AdminClient admin(server.admin_port(), "");
  CHECK(admin.metric("imserver_webhook_dropped_total{reason=\"refused\"}") == 6.0);
  CHECK(admin.metric("imserver_webhook_dropped_total{reason=\"expired\"}") == 0.0);
  // An event is deleted after its POST is answered (in cluster mode
  // through the log): the depth reaches 0 a little after the last POST.
  CHECK(wait_until([&] { return admin.metric("imserver_outbox_depth") == 0.0; }));
  {
    std::lock_guard lock(mu);
    CHECK(tries["refused-400-alice"] == 1);  // never retried
    CHECK(tries["busy-bob"] == 3);
  }
  const std::string log = server.log();
  CHECK(log.find("dropped: " + receiver.url() + " refused it with 400") != std::string::npos);
  CHECK(log.find("dropped: " + receiver.url() + " refused it with 404") != std::string::npos);
}

TEST_CASE("an event still failing after webhook.max_retry_s is dropped and counted, the others are delivered") {
  std::atomic<int> poison_tries{0};
  WebhookReceiver receiver;  // after what its handler uses: stopped first
  receiver.answer_with([&](const std::string& body) {
    if (report_id_of(body) != "poison") return 200;
    ++poison_tries;
    return 500;  // forever
  });
  Overrides config = hook_config(receiver);
  config["admin.listen"] = "\"127.0.0.1:0\"";
  config["webhook.max_retry_s"] = "2";
  ServerProcess server(config);
  auto alice = server.login("alice");
  auto bob = server.login("bob");
  REQUIRE(send_report(*alice, "a0").ok());
  REQUIRE(send_report(*alice, "poison").ok());
  REQUIRE(send_report(*alice, "a1").ok());
  REQUIRE(send_report(*bob, "b0").ok());
  REQUIRE(send_report(*bob, "b1").ok());
  auto events = bodies(receiver.wait_for(4, 30s));
  REQUIRE(events.size() == 4);
  std::map<std::string, std::vector<std::string>> got;
  for (const json& e : events) got[e["uid"].get<std::string>()].push_back(e["report_id"].get<std::string>());
  CHECK(got["alice"] == std::vector<std::string>{"a0", "a1"});
  CHECK(got["bob"] == std::vector<std::string>{"b0", "b1"});
  CHECK(poison_tries.load() >= 2);  // retried before it was dropped
  AdminClient admin(server.admin_port(), "");
  REQUIRE(wait_until([&] { return admin.metric("imserver_outbox_depth") == 0.0; }));
  CHECK(admin.metric("imserver_webhook_dropped_total{reason=\"expired\"}") == 1.0);
  CHECK(admin.metric("imserver_webhook_dropped_total{reason=\"refused\"}") == 0.0);
  CHECK(server.log().find("dropped: still failing") != std::string::npos);
}

TEST_CASE("webhook.max_retry_s counts from an event's first failure, across a restart") {
  std::mutex mu;
  std::condition_variable cv;
  int poison_tries = 0;
  bool hold_second = true;
  std::chrono::steady_clock::time_point first_try{};
  WebhookReceiver receiver;  // after what its handler uses: stopped first
  receiver.answer_with([&](const std::string& body) {
    if (report_id_of(body) != "poison") return 200;
    std::unique_lock lock(mu);
    if (++poison_tries == 1) first_try = std::chrono::steady_clock::now();
    cv.notify_all();
    // The second attempt is held until the server is killed: by then its
    // first failure is recorded, and the event not yet dropped.
    if (poison_tries == 2) cv.wait_for(lock, 30s, [&] { return !hold_second; });
    return 500;
  });
  Overrides config = hook_config(receiver);
  config["webhook.max_retry_s"] = "2";
  config["webhook.timeout_ms"] = "30000";
  ServerProcess server(config);
  {
    auto alice = server.login("alice");
    REQUIRE(send_report(*alice, "poison").ok());
    REQUIRE(send_report(*alice, "after").ok());
  }
  {
    std::unique_lock lock(mu);
    REQUIRE(cv.wait_for(lock, 20s, [&] { return poison_tries >= 2; }));
  }
  server.kill9();
  std::chrono::steady_clock::time_point since;
  {
    std::lock_guard lock(mu);
    hold_second = false;
    poison_tries = 0;
    since = first_try;
  }
  cv.notify_all();
  // Past webhook.max_retry_s after the first failure: the first attempt
  // after the restart fails and drops it at once (had the restart started
  // the 2 s over, it would be retried several times first).
  std::this_thread::sleep_until(since + 2500ms);
  server.restart();
  auto events = bodies(receiver.wait_for(1, 20s));
  REQUIRE(events.size() == 1);
  CHECK(events[0]["report_id"] == "after");
  std::lock_guard lock(mu);
  CHECK(poison_tries == 1);
}

namespace {

// Each of `users` REPORTs "<uid>-<i>" for i in [from, to), round-robin,
// each on its own session; the ids go to `expected`, per user.
void report_rounds(const ServerProcess& server, const std::vector<std::string>& users, int from, int to,
                   std::map<std::string, std::vector<std::string>>& expected) {
  std::vector<std::unique_ptr<SyncClient>> clients;
  for (const auto& u : users) clients.push_back(server.login(u));
  for (int i = from; i < to; ++i) {
    for (std::size_t u = 0; u < users.size(); ++u) {
      const std::string id = users[u] + "-" + std::to_string(i);
      REQUIRE(send_report(*clients[u], id).ok());
      expected[users[u]].push_back(id);
    }
  }
}

// The report_ids delivered, per uid, in the order they arrived.
std::map<std::string, std::vector<std::string>> report_ids_by_user(const std::vector<json>& events) {
  std::map<std::string, std::vector<std::string>> got;
  for (const json& e : events) got[e["uid"].get<std::string>()].push_back(e["report_id"].get<std::string>());
  return got;
}

// `n` uids that webhook.concurrency = `lanes` delivers on `n` different lanes.
std::vector<std::string> users_on_distinct_lanes(std::size_t n, std::size_t lanes) {
  std::vector<std::string> out;
  std::set<std::size_t> used;
  for (int i = 0; out.size() < n && i < 10000; ++i) {
    const std::string uid = "lane" + std::to_string(i);
    if (used.insert(http::WebhookWorker::lane_of(uid, lanes)).second) out.push_back(uid);
  }
  REQUIRE(out.size() == n);
  return out;
}

}  // namespace

TEST_CASE("each user's events are delivered in order, over shards and an imserver restart") {
  const std::uint16_t port = free_port();
  Overrides config = down_config(port);
  config["sharding.shards"] = "3";
  ServerProcess server(config);
  const std::vector<std::string> users = {"u1", "u2", "u3", "u4", "u5", "u6"};
  std::map<std::string, std::vector<std::string>> expected;
  report_rounds(server, users, 0, 10, expected);
  REQUIRE(server.terminate() == 0);
  server.restart();  // the same shards' queues, read again from the store
  report_rounds(server, users, 10, 20, expected);
  WebhookReceiver receiver(port);
  const std::size_t total = users.size() * 20;
  auto events = bodies(receiver.wait_for(total, 40s));
  REQUIRE(events.size() == total);
  CHECK(report_ids_by_user(events) == expected);
}


TEST_CASE("webhook lanes: a uid always maps to the same lane, within range") {
  for (std::size_t lanes : {1u, 2u, 8u, 256u}) {
    std::set<std::size_t> seen;
    for (int i = 0; i < 2000; ++i) {
      const std::string uid = "u" + std::to_string(i);
      const std::size_t lane = http::WebhookWorker::lane_of(uid, lanes);
      CHECK(lane < lanes);
      CHECK(lane == http::WebhookWorker::lane_of(uid, lanes));
      seen.insert(lane);
    }
    CHECK(seen.size() == lanes);  // 2000 uids reach every lane
  }
}

TEST_CASE("webhook.concurrency: several users' events are POSTed at once, each user's in order") {
  // The receiver holds each POST until another one is in flight beside it
  // (at most 10 s): one POST at a time would be held every time.
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  int most = 0;
  WebhookReceiver receiver;  // after what its handler uses: stopped first
  receiver.answer_with([&](const std::string&) {
    std::unique_lock lock(mu);
    most = std::max(most, ++in_flight);
    cv.notify_all();
    cv.wait_for(lock, 10s, [&] { return in_flight > 1 || most > 1; });
    --in_flight;
    return 200;
  });
  Overrides config = hook_config(receiver);
  config["webhook.concurrency"] = "4";
  ServerProcess server(config);
  const auto users = users_on_distinct_lanes(4, 4);
  std::map<std::string, std::vector<std::string>> expected;
  report_rounds(server, users, 0, 10, expected);
  auto events = bodies(receiver.wait_for(40, 60s));
  REQUIRE(events.size() == 40);
  CHECK(report_ids_by_user(events) == expected);
  std::lock_guard lock(mu);
  CHECK(most >= 2);
}

TEST_CASE("webhook: a user whose events keep failing holds back only its own lane") {
  std::atomic<bool> stuck_fails{true};
  const auto users = users_on_distinct_lanes(3, 8);
  const std::string stuck = users[0];
  WebhookReceiver receiver;  // after what its handler uses: stopped first
  receiver.answer_with([&](const std::string& body) {
    return json::parse(body).value("uid", "") == stuck && stuck_fails.load() ? 503 : 200;
  });
  Overrides config = hook_config(receiver);
  config["webhook.concurrency"] = "8";
  config["admin.listen"] = "\"127.0.0.1:0\"";
  ServerProcess server(config);
  std::map<std::string, std::vector<std::string>> expected;
  report_rounds(server, users, 0, 20, expected);
  // Every other user's events arrive while the stuck user's first one is
  // still being refused.
  auto events = bodies(receiver.wait_for(40, 30s));
  REQUIRE(events.size() == 40);
  for (const json& e : events) CHECK(e["uid"].get<std::string>() != stuck);
  AdminClient admin(server.admin_port(), "");
  // The last delivered events are deleted once their answers are read.
  CHECK(wait_until([&] { return admin.metric("imserver_outbox_depth") == 20.0; }, 10s));
  stuck_fails = false;
  events = bodies(receiver.wait_for(60, 60s));
  REQUIRE(events.size() == 60);
  CHECK(report_ids_by_user(events) == expected);
  CHECK(admin.metric("imserver_webhook_dropped_total{reason=\"expired\"}") == 0.0);
}

TEST_CASE("webhook: a stuck user with more events than the worker holds does not hold back its shard's other users") {
  // One shard: every event is in one queue; the stuck user's events come
  // among the others', more of them than a lane and the read-ahead hold
  // together (32 + 64). Also after a restart with the same shard count
  // (the backlog queued while the receiver was down).
  const bool restart = GENERATE(false, true);
  INFO((restart ? "after a restart" : "in one run"));
  const std::uint16_t port = free_port();
  const auto users = users_on_distinct_lanes(3, 8);
  const std::string stuck = users[0];
  Overrides config = down_config(port);
  config["sharding.shards"] = "1";
  config["webhook.concurrency"] = "8";
  std::optional<ServerProcess> server(std::in_place, config);
  std::map<std::string, std::vector<std::string>> expected;
  report_rounds(*server, users, 0, 150, expected);
  if (restart) {
    REQUIRE(server->terminate() == 0);
    server->restart();
  }
  std::atomic<bool> stuck_fails{true};
  WebhookReceiver receiver(port, [&](const std::string& body) {
    return json::parse(body).value("uid", "") == stuck && stuck_fails.load() ? 503 : 200;
  });
  auto events = bodies(receiver.wait_for(300, 60s));
  REQUIRE(events.size() == 300);
  for (const json& e : events) CHECK(e["uid"].get<std::string>() != stuck);
  stuck_fails = false;
  events = bodies(receiver.wait_for(450, 90s));
  REQUIRE(events.size() == 450);
  CHECK(report_ids_by_user(events) == expected);
}

TEST_CASE("each user's events are delivered in order after a restart with fewer shards, with long old queues") {
  // 4 shards, then 2: events of queues 2 and 3 are only "old" ones, more of
  // them per queue than the worker reads ahead; users of those queues write
  // new events into queues 0 and 1.
  const std::uint16_t port = free_port();
  Overrides config = down_config(port);
  config["sharding.shards"] = "4";
  ServerProcess server(config);
  std::vector<std::string> users;
  for (int i = 0; i < 8; ++i) users.push_back("s" + std::to_string(i));
  std::map<std::string, std::vector<std::string>> expected;
  report_rounds(server, users, 0, 90, expected);
  REQUIRE(server.terminate() == 0);
  config["sharding.shards"] = "2";
  ServerProcess fewer(config, server.data_dir());
  report_rounds(fewer, users, 90, 100, expected);
  WebhookReceiver receiver(port);
  const std::size_t total = users.size() * 100;
  auto events = bodies(receiver.wait_for(total, 60s));
  REQUIRE(events.size() == total);
  CHECK(report_ids_by_user(events) == expected);
}

TEST_CASE("webhook worker: a delete that fails is retried, the event is not sent again meanwhile, the lane goes on") {
  test::FaultEnv faults;
  StorageConfig storage;
  storage.data_dir = (std::filesystem::temp_directory_path() / ("imhookfault-" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(storage.data_dir);
  {
    auto opened = store::Store::open(storage, faults.env());
    REQUIRE(opened);
    store::Store& store = **opened;
    store::Batch batch(store);
    for (std::uint64_t id = 1; id <= 3; ++id) {
      REQUIRE(store::Outbox(store).reserve(100));
      store::Outbox::push(batch, {id, json{{"id", std::to_string(id)}, {"event", "report"}, {"uid", "u"}}.dump(), 0});
    }
    REQUIRE(store.write(batch));
    std::atomic<int> posts{0};
    WebhookReceiver receiver;  // after what its handler uses: stopped first
    receiver.answer_with([&](const std::string&) {
      if (++posts == 1) faults.fail_writes(true);  // the disk fills as the first event is answered
      return 200;
    });
    WebhookConfig config;
    config.url = receiver.url();
    config.secret = kSecret;
    config.concurrency = 2;
    const std::uint64_t write_errors = metrics::get().store_write_errors.value();
    http::WebhookWorker worker(config, store, 1);
    REQUIRE(receiver.wait_for(1).size() == 1);
    // Its delete fails while the disk is full (twice: retried), then writes
    // come back (RocksDB's own recovery polls about every 5 s).
    REQUIRE(wait_until([&] { return metrics::get().store_write_errors.value() >= write_errors + 2; }, 20s));
    faults.fail_writes(false);
    auto events = bodies(receiver.wait_for(3, 60s));
    REQUIRE(events.size() == 3);
    std::vector<std::string> ids;
    for (const json& e : events) ids.push_back(e["id"].get<std::string>());
    CHECK(ids == std::vector<std::string>{"1", "2", "3"});  // event 1 once, then the others, in order
    CHECK(posts.load() == 3);
    CHECK(wait_until([&] { return store.outbox_depth() == 0; }, 30s));
  }
  std::filesystem::remove_all(storage.data_dir);
}

TEST_CASE("webhook worker: stopping while a POST hangs returns, and the event is sent again by the next worker") {
  StorageConfig storage;
  storage.data_dir = (std::filesystem::temp_directory_path() / ("imhookstop-" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(storage.data_dir);
  {
    auto opened = store::Store::open(storage);
    REQUIRE(opened);
    store::Store& store = **opened;
    store::Batch batch(store);
    REQUIRE(store::Outbox(store).reserve(100));
    store::Outbox::push(batch, {1, json{{"id", "1"}, {"event", "report"}, {"uid", "u"}}.dump(), 0});
    REQUIRE(store.write(batch));
    std::mutex mu;
    std::condition_variable cv;
    bool hung = false, release = false;
    WebhookReceiver receiver;  // after what its handler uses: stopped first
    receiver.answer_with([&](const std::string&) {
      std::unique_lock lock(mu);
      if (hung) return 200;  // the next worker's attempt
      hung = true;
      cv.notify_all();
      cv.wait_for(lock, 20s, [&] { return release; });  // bounded
      return 200;
    });
    WebhookConfig config;
    config.url = receiver.url();
    config.secret = kSecret;
    config.timeout_ms = 60000;
    {
      http::WebhookWorker worker(config, store, 1);
      std::unique_lock lock(mu);
      REQUIRE(cv.wait_for(lock, 20s, [&] { return hung; }));
    }  // stopped with its POST unanswered
    CHECK(store.outbox_depth() == 1);
    {
      std::lock_guard lock(mu);
      release = true;
    }
    cv.notify_all();
    http::WebhookWorker next(config, store, 1);
    CHECK(wait_until([&] { return store.outbox_depth() == 0; }, 30s));
  }
  std::filesystem::remove_all(storage.data_dir);
}

TEST_CASE("offline_push: none for a large group's messages (PROTOCOL 9), which have no inbox rows") {
  constexpr auto kOfflineDelay = 300ms;  // push.offline_delay_ms
  WebhookReceiver receiver;
  ServerProcess server(merged(hook_config(receiver, static_cast<std::uint32_t>(kOfflineDelay.count())),
                              {{"limits.write_fanout_max_members", "3"}}));
  auto alice = server.login("alice");
  create_group(*alice, "big", {"bob", "carol", "dave"});  // large at once: bob, carol and dave are offline
  auto req = send_req("big", "g1", "to the large group", v1::GROUP);
  auto sent = call_ok<v1::SendResp>(*alice, Cmd::kSend, req);
  CHECK(sent.inbox_seq() == 0);
  // A C2C message after it: its offline_push comes; the group's three would
  // have come before it.
  v1::SendResp c2c = send_ok(*alice, "carol", "c1");
  receiver.wait_for(1);
  auto events = bodies(receiver.wait_for(4, 3 * kOfflineDelay));
  REQUIRE(events.size() == 1);
  CHECK(events[0]["event"] == "offline_push");
  CHECK(events[0]["msg_id"] == std::to_string(c2c.msg_id()));
}
