// core/outbox_events: the webhook events' JSON (PROTOCOL 7): `id` and
// `msg_id` as strings of decimal digits, enums as lowercase names, binary as
// standard base64, at most 64 bytes of the body in `preview_b64`.

#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "common/base64.h"
#include "core/outbox_events.h"

using im::core::kPreviewBytes;
using im::core::offline_push_event;
using im::core::report_event;
using nlohmann::json;
namespace v1 = im::v1;

namespace {

constexpr std::uint64_t kBigId = std::numeric_limits<std::uint64_t>::max();  // past a double's precision
constexpr std::int64_t kTime = 1'700'000'000'123;

v1::Message message(const std::string& body, v1::ConvType type = v1::C2C) {
  v1::Message m;
  m.set_msg_id((1ull << 62) + 7);
  m.set_conv_type(type);
  m.set_from("alice");
  m.set_to(type == v1::GROUP ? "team" : "bob");
  m.set_content_type(3);
  m.set_body(body);
  return m;
}

json offline_json(const v1::Message& m, std::uint64_t id = 5) {
  const auto event = offline_push_event(id, kTime, "bob", m, false);
  CHECK(event.id == id);
  return json::parse(event.body);
}

std::string preview_of(const v1::Message& m) {
  const json j = offline_json(m);
  REQUIRE(j.at("preview_b64").is_string());
  std::string decoded;
  REQUIRE(im::base64_decode(j.at("preview_b64").get<std::string>(), decoded));
  return decoded;
}

bool decimal_digits(const json& v) {
  if (!v.is_string()) return false;
  const auto s = v.get<std::string>();
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace

// ---------------------------------------------------------------- report

TEST_CASE("report event: the fields of PROTOCOL 7 with their types") {
  v1::ReportReq req;
  req.set_report_id("r-42");
  req.set_topic("crash");
  req.set_payload("hello");
  const auto event = report_event(9, kTime, "alice", 2, req);
  CHECK(event.id == 9);
  const json j = json::parse(event.body);
  CHECK(j.at("id") == "9");
  CHECK(j.at("event") == "report");
  CHECK(j.at("time_ms").is_number_integer());
  CHECK(j.at("time_ms").get<std::int64_t>() == kTime);
  CHECK(j.at("uid") == "alice");
  CHECK(j.at("device_type") == "android");
  CHECK(j.at("report_id") == "r-42");
  CHECK(j.at("topic") == "crash");
  CHECK(j.at("payload") == "aGVsbG8=");  // standard base64 with padding
}

TEST_CASE("report event: id is a string of decimal digits, exact past 2^53") {
  const json j = json::parse(report_event(kBigId, kTime, "alice", 1, v1::ReportReq{}).body);
  CHECK(decimal_digits(j.at("id")));
  CHECK(j.at("id") == "18446744073709551615");
}

TEST_CASE("report event: device types are lowercase names") {
  const auto device_of = [](std::uint8_t t) {
    return json::parse(report_event(1, kTime, "alice", t, v1::ReportReq{}).body).at("device_type");
  };
  CHECK(device_of(v1::IOS) == "ios");
  CHECK(device_of(v1::ANDROID) == "android");
  CHECK(device_of(v1::WEB) == "web");
  CHECK(device_of(v1::DESKTOP) == "desktop");
}

TEST_CASE("report event: a binary payload survives base64") {
  v1::ReportReq req;
  req.set_report_id("r");
  const std::string payload("\x00\xff\x10 bin\x80", 8);
  req.set_payload(payload);
  const json j = json::parse(report_event(1, kTime, "alice", 1, req).body);
  std::string decoded;
  REQUIRE(im::base64_decode(j.at("payload").get<std::string>(), decoded));
  CHECK(decoded == payload);
}

// ---------------------------------------------------------------- offline_push

TEST_CASE("offline_push event: the fields of PROTOCOL 7 with their types") {
  const v1::Message m = message("hello");
  const json j = offline_json(m, 77);
  CHECK(j.at("id") == "77");
  CHECK(j.at("event") == "offline_push");
  CHECK(j.at("time_ms").is_number_integer());
  CHECK(j.at("time_ms").get<std::int64_t>() == kTime);
  CHECK(j.at("uid") == "bob");
  CHECK(j.at("msg_id") == std::to_string(m.msg_id()));
  CHECK(j.at("conv_type") == "c2c");
  CHECK(j.at("from") == "alice");
  CHECK(j.at("to") == "bob");
  CHECK(j.at("content_type").is_number_integer());
  CHECK(j.at("content_type").get<std::uint32_t>() == 3);
  CHECK(j.at("preview_b64") == "aGVsbG8=");
}

TEST_CASE("offline_push event: id and msg_id are strings of decimal digits, exact past 2^53") {
  v1::Message m = message("x");
  m.set_msg_id(kBigId - 1);
  const json j = offline_json(m, kBigId);
  CHECK(decimal_digits(j.at("id")));
  CHECK(decimal_digits(j.at("msg_id")));
  CHECK(j.at("id") == "18446744073709551615");
  CHECK(j.at("msg_id") == "18446744073709551614");
}

TEST_CASE("offline_push event: conv_type is a lowercase name") {
  CHECK(offline_json(message("x", v1::C2C)).at("conv_type") == "c2c");
  CHECK(offline_json(message("x", v1::GROUP)).at("conv_type") == "group");
  CHECK(offline_json(message("x", v1::SYSTEM)).at("conv_type") == "system");
}

TEST_CASE("offline_push event: preview_b64 is the whole body when it has at most 64 bytes") {
  CHECK(preview_of(message("")).empty());
  CHECK(preview_of(message("short")) == "short");
  const std::string exactly(kPreviewBytes, 'e');
  CHECK(preview_of(message(exactly)) == exactly);
}

TEST_CASE("offline_push event: preview_b64 is the first 64 bytes of a longer body") {
  std::string body;
  for (int i = 0; i < 300; ++i) body.push_back(static_cast<char>(i));
  CHECK(kPreviewBytes == 64);
  CHECK(preview_of(message(body)) == body.substr(0, 64));
}

TEST_CASE("offline_push event: binary and non-UTF-8 bodies still make valid JSON") {
  const std::string body("\xff\xfe\x00\x01\xc3(", 6);
  CHECK(preview_of(message(body)) == body);
}
