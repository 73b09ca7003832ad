// The admin API's JSON bodies: JsonBody (src/http/json_body.h) directly, and
// every route of src/http/admin_server.cpp through the real AdminServer on
// 127.0.0.1 over the fixture's core Service (support/core_fixture.h).
//
// Input: [sel] [bytes]. sel bit 7 set: the bytes are a body read with every
// getter JsonBody has, under the keys the routes use. Clear: sel's low bits
// pick a route (kRoutes); bit 6 sends a wrong key; the bytes are a path
// parameter up to the first '\n' (percent-encoded), then the body. Every
// answer is JSON; an error answer is PROTOCOL 6's {"error", "status"}.

#include <httplib.h>

#include <string>

#include <nlohmann/json.hpp>

#include "fuzz.h"
#include "http/json_body.h"
#include "support/core_fixture.h"

namespace {

struct Route {
  const char* method;
  const char* before;  // the path before the parameter, or the whole path
  const char* after;   // nullptr: no parameter
};

constexpr Route kRoutes[] = {
    {"POST", "/v1/tokens", nullptr},
    {"POST", "/v1/messages", nullptr},
    {"POST", "/v1/push", nullptr},
    {"POST", "/v1/groups", nullptr},
    {"POST", "/v1/groups/", "/members"},
    {"GET", "/v1/users/", "/presence"},
    {"POST", "/v1/users/", "/kick"},
    {"GET", "/v1/groups/", ""},
    {"DELETE", "/v1/groups/", ""},
    {"GET", "/healthz", nullptr},
    {"POST", "/v1/tokens/", ""},  // no such route
};

constexpr const char* kKeys[] = {"uid",  "ttl_s",   "from",    "conv_type", "to",      "content_type",
                                 "body", "client_msg_id", "topic", "payload", "persist", "gid",
                                 "name", "owner",   "members", "announcement", "add",  "remove"};

std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                       c == '_' || c == '-' || c == '@';
    if (plain) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

void fuzz_json_body(std::string_view text) {
  auto body = im::http::JsonBody::parse(std::string(text));
  if (!body) {
    FUZZ_CHECK(body.error().code == im::StatusCode::kBadRequest);
    return;
  }
  for (const char* key : kKeys) {
    (void)body->str(key);
    (void)body->str(key, false);
    (void)body->integer(key);
    (void)body->boolean(key);
    (void)body->strings(key);
    (void)body->bytes(key);
  }
  auto status = body->status();
  if (!status) FUZZ_CHECK(status.error().code == im::StatusCode::kBadRequest && !status.error().message.empty());
}

void fuzz_route(std::uint8_t sel, im::fuzz::Reader& in) {
  static httplib::Client* client = [] {
    auto& admin = im::fuzz::CoreFixture::get().admin();
    auto* c = new httplib::Client(admin.host(), admin.port());
    c->set_keep_alive(false);  // a new connection each: no delayed-ACK stalls between requests
    c->set_tcp_nodelay(true);
    c->set_read_timeout(30, 0);
    return c;
  }();
  const Route& r = kRoutes[(sel & 0x3F) % std::size(kRoutes)];
  std::string path = r.before;
  if (r.after) {
    path += percent_encode(in.until('\n'));
    path += r.after;
  }
  const std::string body(in.rest());
  httplib::Headers headers = {
      {"Authorization", std::string("Bearer ") + ((sel & 0x40) ? "wrong-key" : im::fuzz::CoreFixture::kAdminKey)}};
  const std::string method = r.method;
  httplib::Result res = method == "GET"      ? client->Get(path, headers)
                        : method == "DELETE" ? client->Delete(path, headers, body, "application/json")
                                             : client->Post(path, headers, body, "application/json");
  FUZZ_CHECK(res);  // the server answers every request
  const int status = res->status;
  FUZZ_CHECK(status == 200 || status == 400 || status == 401 || status == 403 || status == 404 || status == 409 ||
             status == 410 || status == 413 || status == 429 || status == 501 || status == 503);
  if (sel & 0x40) FUZZ_CHECK(status == 401 || path == "/healthz" || status == 404);
  auto doc = nlohmann::json::parse(res->body, nullptr, false);
  FUZZ_CHECK(doc.is_object());
  if (status >= 400 && status != 503) FUZZ_CHECK(doc.contains("error") && doc.contains("status"));
}

}  // namespace

int fuzz_one(const std::uint8_t* data, std::size_t size) {
  im::fuzz::Reader in(data, size);
  const std::uint8_t sel = in.byte();
  if (sel & 0x80) {
    fuzz_json_body(in.rest());
  } else {
    fuzz_route(sel, in);
  }
  return 0;
}
