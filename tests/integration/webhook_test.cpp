// REPORT (c2s) and the durable webhook queue against the real binary: the
// signature, reports, offline pushes, retries after failures, and delivery
// across an imserver restart while the receiver was down.

#include <catch2/catch.hpp>
#include <set>

#include "auth/jwt.h"
#include "common/base64.h"
#include "http/webhook_worker.h"
#include "http_helpers.h"
#include "messaging.h"
#include "server_process.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr const char* kSecret = "hook-secret";

Overrides hook_config(const WebhookReceiver& receiver, std::uint32_t offline_delay_ms = 60000) {
  return {{"webhook.url", "\"" + receiver.url() + "\""},
          {"webhook.secret", std::string("\"") + kSecret + "\""},
          {"webhook.timeout_ms", "1000"},
          {"push.offline_delay_ms", std::to_string(offline_delay_ms)},
          {"limits.messages_per_second", "100000"},
          {"limits.burst", "100000"},
          {"sharding.shards", "2"}};
}

v1::ReportReq report(const std::string& id, const std::string& topic, const std::string& payload) {
  v1::ReportReq r;
  r.set_report_id(id);
  r.set_topic(topic);
  r.set_payload(payload);
  return r;
}

std::vector<json> bodies(const std::vector<WebhookReceiver::Event>& events) {
  std::vector<json> out;
  for (const auto& e : events) {
    CHECK(e.signature == http::WebhookWorker::signature(kSecret, e.body));
    out.push_back(json::parse(e.body));
  }
  return out;
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
  std::uint16_t port = 0;
  {
    WebhookReceiver probe;  // a free port, then the receiver goes away
    port = probe.port();
  }
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
