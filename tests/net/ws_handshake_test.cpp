// The HTTP side of WebSocket (src/net/ws_handshake): the request-head parser
// fed every prefix, its limits, the server's upgrade checks and answers, and
// the client's request and answer check.

#include <fmt/format.h>
#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "common/base64.h"
#include "net/ws_handshake.h"

using namespace im::ws;

namespace {

// RFC 6455, section 1.3.
constexpr std::string_view kRfcKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kRfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

std::string upgrade_request(const std::vector<std::string>& extra = {}, std::string_view method = "GET",
                            std::string_view target = "/ws", std::string_view version = "HTTP/1.1") {
  std::string r = std::string(method) + " " + std::string(target) + " " + std::string(version) + "\r\n";
  r += "Host: 127.0.0.1:9701\r\n";
  for (const auto& h : extra) r += h + "\r\n";
  r += "\r\n";
  return r;
}

const std::vector<std::string> kGoodHeaders{"Upgrade: websocket", "Connection: Upgrade",
                                            "Sec-WebSocket-Key: " + std::string(kRfcKey), "Sec-WebSocket-Version: 13"};

// The headers of a good upgrade with `name` replaced by `line` ("" drops it).
std::vector<std::string> with(const std::string& name, const std::string& line) {
  std::vector<std::string> out;
  for (const auto& h : kGoodHeaders) {
    if (h.rfind(name + ":", 0) == 0) {
      if (!line.empty()) out.push_back(line);
    } else {
      out.push_back(h);
    }
  }
  return out;
}

// Parses a whole request that must be well-formed; the request views point
// into `storage`, which the caller keeps.
HttpRequest parsed(const std::string& storage) {
  const ParsedRequest p = parse_request(storage);
  REQUIRE(p.status == HeadParse::kDone);
  return p.request;
}

UpgradeAnswer answer(const std::vector<std::string>& headers, const std::vector<std::string>& origins = {},
                     std::string_view method = "GET", std::string_view version = "HTTP/1.1") {
  const std::string storage = upgrade_request(headers, method, "/ws", version);
  const ParsedRequest p = parse_request(storage);
  REQUIRE(p.status == HeadParse::kDone);
  return answer_upgrade(p.request, origins);
}

bool has_header_line(const std::string& response, const std::string& line) {
  const std::size_t end = response.find("\r\n\r\n");
  return response.substr(0, end + 2).find("\r\n" + line + "\r\n") != std::string::npos;
}

int status_of(const std::string& response) {
  REQUIRE(response.rfind("HTTP/1.1 ", 0) == 0);
  return std::stoi(response.substr(9, 3));
}

}  // namespace

// ------------------------------------------------------------- accept_key

TEST_CASE("accept_key: RFC 6455 section 1.3's example") {
  CHECK(accept_key(kRfcKey) == kRfcAccept);
  CHECK(accept_key("x3JJHMbDL1EzLkh9GBhXDw==") == "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");  // another well-known pair
}

// ---------------------------------------------------------- parse_request

TEST_CASE("parse_request: the RFC's example request, its fields and views") {
  const std::string in =
      "GET /chat?room=1 HTTP/1.1\r\n"
      "Host: server.example.com\r\n"
      "Upgrade: websocket\r\n"
      "Connection: keep-alive,  Upgrade \r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Origin: http://example.com\r\n"
      "Sec-WebSocket-Protocol: chat, superchat\r\n"
      "Sec-WebSocket-Version: 13\r\n"
      "X-Empty:\r\n"
      "X-Tabs:\t spaced value \t\r\n"
      "\r\n"
      "\x82\x80"
      "after";
  const ParsedRequest p = parse_request(in);
  REQUIRE(p.status == HeadParse::kDone);
  CHECK(p.consumed == in.find("\r\n\r\n") + 4);
  CHECK(in.substr(p.consumed) ==
        "\x82\x80"
        "after");
  const HttpRequest& r = p.request;
  CHECK(r.method == "GET");
  CHECK(r.target == "/chat?room=1");
  CHECK(r.path() == "/chat");
  CHECK(r.version == "HTTP/1.1");
  CHECK(r.headers.size() == 9);
  CHECK(r.header("host") == "server.example.com");
  CHECK(r.header("SEC-WEBSOCKET-KEY") == kRfcKey);
  CHECK(r.header("X-Empty").empty());
  CHECK(r.header("X-Tabs") == "spaced value");
  CHECK(r.header("Missing").empty());
  CHECK(r.has_token("Connection", "upgrade"));
  CHECK(r.has_token("connection", "KEEP-ALIVE"));
  CHECK_FALSE(r.has_token("Connection", "close"));
  CHECK(r.has_token("Sec-WebSocket-Protocol", "superchat"));
  CHECK_FALSE(r.has_token("Sec-WebSocket-Protocol", "super"));
  CHECK_FALSE(r.has_token("Missing", "x"));
}

TEST_CASE("parse_request: a header listed twice: header() gives the first, has_token looks at all") {
  const std::string in = "GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n\r\n";
  const HttpRequest r = parsed(in);
  CHECK(r.header("Connection") == "keep-alive");
  CHECK(r.has_token("Connection", "upgrade"));
}

TEST_CASE("parse_request: a target without a query, and a request with no header") {
  const std::string in = "HEAD /index.html HTTP/1.0\r\n\r\n";
  const HttpRequest r = parsed(in);
  CHECK(r.method == "HEAD");
  CHECK(r.path() == "/index.html");
  CHECK(r.version == "HTTP/1.0");
  CHECK(r.headers.empty());
}

TEST_CASE("parse_request: every prefix of a head asks for more, consuming nothing") {
  const std::string in = upgrade_request(kGoodHeaders);
  for (std::size_t k = 0; k < in.size(); ++k) {
    const ParsedRequest p = parse_request(std::string_view(in).substr(0, k));
    INFO("prefix " << k);
    CHECK(p.status == HeadParse::kNeedMore);
    CHECK(p.consumed == 0);
  }
  CHECK(parse_request(in).status == HeadParse::kDone);
  // and the same head after random cuts, as a connection accumulates it
  std::mt19937 rng(1455);
  for (int round = 0; round < 50; ++round) {
    std::string acc;
    std::size_t pos = 0;
    ParsedRequest p;
    for (int guard = 0; guard < 10000 && pos < in.size(); ++guard) {
      const std::size_t n = std::min<std::size_t>(1 + rng() % 40, in.size() - pos);
      acc.append(in, pos, n);
      pos += n;
      p = parse_request(acc);
      if (pos < in.size()) REQUIRE(p.status == HeadParse::kNeedMore);
    }
    REQUIRE(p.status == HeadParse::kDone);
    CHECK(p.consumed == in.size());
    CHECK(answer_upgrade(p.request, {}).status == 101);
  }
}

TEST_CASE("parse_request: a garbage request line is 400") {
  for (const std::string line :
       {"GARBAGE", "GET /ws", "GET  HTTP/1.1", " /ws HTTP/1.1", "GET /ws HTTP/1.1 extra", "GET /ws FTP/1.0",
        "GET /ws http/1.1", "", "\x16\x03\x01\x02\x01\x01\xfc\x03\x03" /* a TLS ClientHello */}) {
    INFO("line '" << line << "'");
    const std::string in = line + "\r\nHost: x\r\n\r\n";
    const ParsedRequest p = parse_request(in);
    CHECK(p.status == HeadParse::kBad);
    CHECK(p.error_status == 400);
  }
}

TEST_CASE("parse_request: a malformed header line is 400") {
  for (const std::string line : {"NoColon", ": no name", "Bad Name: x", "Bad\tName: x", "Name : x", " folded: x",
                                 "\tfolded: x", "Na(me: x", "Na\"me: x"}) {
    INFO("header '" << line << "'");
    const std::string in = "GET /ws HTTP/1.1\r\nHost: x\r\n" + line + "\r\n\r\n";
    const ParsedRequest p = parse_request(in);
    CHECK(p.status == HeadParse::kBad);
    CHECK(p.error_status == 400);
  }
  // every token character is allowed in a name
  const std::string ok = "GET /ws HTTP/1.1\r\nA-z0!#$%&'*+-.^_`|~9: v\r\n\r\n";
  CHECK(parse_request(ok).status == HeadParse::kDone);
}

TEST_CASE("parse_request: a head over 8 KiB is 431, decided without its end") {
  std::string head = "GET /ws HTTP/1.1\r\n";
  while (head.size() < kMaxRequestHead) head += "X-Filler: " + std::string(60, 'f') + "\r\n";
  // no blank line ever comes: at 8 KiB it is refused
  const ParsedRequest p = parse_request(head);
  CHECK(p.status == HeadParse::kBad);
  CHECK(p.error_status == 431);
  CHECK(parse_request(head.substr(0, kMaxRequestHead - 1)).status == HeadParse::kNeedMore);
  const ParsedRequest at = parse_request(head.substr(0, kMaxRequestHead));
  CHECK(at.status == HeadParse::kBad);
  CHECK(at.error_status == 431);
  // 10 MiB of one header line: the same, looking at the first 8 KiB only
  const std::string huge = "GET /ws HTTP/1.1\r\nX: " + std::string(10 << 20, 'h');
  CHECK(parse_request(huge).error_status == 431);
}

TEST_CASE("parse_request: a head of exactly 8 KiB is read, one byte more is 431") {
  auto head_of = [](std::size_t total) {
    std::string h = "GET /ws HTTP/1.1\r\nX: ";
    h += std::string(total - h.size() - 4, 'v');
    h += "\r\n\r\n";
    REQUIRE(h.size() == total);
    return h;
  };
  const ParsedRequest fits = parse_request(head_of(kMaxRequestHead));
  CHECK(fits.status == HeadParse::kDone);
  CHECK(fits.consumed == kMaxRequestHead);
  const ParsedRequest over = parse_request(head_of(kMaxRequestHead + 1));
  CHECK(over.status == HeadParse::kBad);
  CHECK(over.error_status == 431);
  // a smaller limit, as a caller may pass
  CHECK(parse_request(head_of(100), 100).status == HeadParse::kDone);
  CHECK(parse_request(head_of(101), 100).error_status == 431);
}

TEST_CASE("parse_request: 100 headers are read, more are 431") {
  auto with_headers = [](int n) {
    std::string h = "GET /ws HTTP/1.1\r\n";
    for (int i = 0; i < n; ++i) h += "X" + std::to_string(i) + ": v\r\n";
    return h + "\r\n";
  };
  const std::string hundred = with_headers(100);
  CHECK(parse_request(hundred).status == HeadParse::kDone);
  const ParsedRequest more = parse_request(with_headers(101));
  CHECK(more.status == HeadParse::kBad);
  CHECK(more.error_status == 431);
}

// --------------------------------------------------------- answer_upgrade

TEST_CASE("answer_upgrade: a valid version 13 upgrade is 101 with the RFC's accept value") {
  const UpgradeAnswer a = answer(kGoodHeaders);
  CHECK(a.status == 101);
  CHECK(status_of(a.response) == 101);
  CHECK(a.response.size() >= 4);
  CHECK(a.response.substr(a.response.size() - 4) == "\r\n\r\n");
  CHECK(a.response.find("\r\n\r\n") == a.response.size() - 4);  // a head only, no body
  CHECK(has_header_line(a.response, "Upgrade: websocket"));
  CHECK(has_header_line(a.response, "Connection: Upgrade"));
  CHECK(has_header_line(a.response, "Sec-WebSocket-Accept: " + std::string(kRfcAccept)));
}

TEST_CASE("answer_upgrade: header names and tokens are case-insensitive, Connection may list more") {
  CHECK(answer({"upgrade: WebSocket", "connection: keep-alive, upgrade", "sec-websocket-key: " + std::string(kRfcKey),
                "SEC-WEBSOCKET-VERSION: 13"})
            .status == 101);
  CHECK(answer(with("Connection", "Connection: Upgrade, keep-alive")).status == 101);
}

TEST_CASE("answer_upgrade: refusals carry their status and close the connection") {
  struct Case {
    const char* what;
    std::vector<std::string> headers;
    int status;
  };
  const std::vector<Case> cases{
      {"no key", with("Sec-WebSocket-Key", ""), 400},
      {"an empty key", with("Sec-WebSocket-Key", "Sec-WebSocket-Key: "), 400},
      {"a key that is not base64", with("Sec-WebSocket-Key", "Sec-WebSocket-Key: not*base64*at*all!!!!="), 400},
      {"a key of 15 bytes", with("Sec-WebSocket-Key", "Sec-WebSocket-Key: " + im::base64_encode(std::string(15, 'k'))),
       400},
      {"a key of 17 bytes", with("Sec-WebSocket-Key", "Sec-WebSocket-Key: " + im::base64_encode(std::string(17, 'k'))),
       400},
      {"a key without padding", with("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"), 400},
      {"no Upgrade", with("Upgrade", ""), 400},
      {"Upgrade: h2c", with("Upgrade", "Upgrade: h2c"), 400},
      {"no Connection", with("Connection", ""), 400},
      {"Connection: keep-alive", with("Connection", "Connection: keep-alive"), 400},
      {"version 8", with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"), 426},
      {"version 14", with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 14"), 426},
      {"no version", with("Sec-WebSocket-Version", ""), 400},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const UpgradeAnswer a = answer(c.headers);
    CHECK(a.status == c.status);
    CHECK(status_of(a.response) == c.status);
    CHECK(has_header_line(a.response, "Connection: close"));
    CHECK_FALSE(has_header_line(a.response, "Upgrade: websocket"));
    CHECK(a.response.find("Sec-WebSocket-Accept") == std::string::npos);
  }
  const UpgradeAnswer v8 = answer(with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"));
  CHECK(has_header_line(v8.response, "Sec-WebSocket-Version: 13"));
}

TEST_CASE("answer_upgrade: a method other than GET is 405, HTTP/1.0 is 400") {
  for (const char* method : {"POST", "PUT", "HEAD", "DELETE", "OPTIONS"}) {
    INFO(method);
    const UpgradeAnswer a = answer(kGoodHeaders, {}, method);
    CHECK(a.status == 405);
    CHECK(status_of(a.response) == 405);
    CHECK(has_header_line(a.response, "Allow: GET"));
    CHECK(has_header_line(a.response, "Connection: close"));
  }
  const UpgradeAnswer old = answer(kGoodHeaders, {}, "GET", "HTTP/1.0");
  CHECK(old.status == 400);
  CHECK(has_header_line(old.response, "Connection: close"));
}

TEST_CASE("answer_upgrade: with allowed origins, only those Origins are upgraded") {
  const std::vector<std::string> origins{"https://chat.example.com", "http://127.0.0.1:8080"};
  auto headers = kGoodHeaders;
  CHECK(answer(headers, {}).status == 101);  // no list: any Origin, or none
  headers.push_back("Origin: https://evil.example.com");
  CHECK(answer(headers, {}).status == 101);
  const UpgradeAnswer evil = answer(headers, origins);
  CHECK(evil.status == 403);
  CHECK(status_of(evil.response) == 403);
  CHECK(has_header_line(evil.response, "Connection: close"));
  CHECK(answer(kGoodHeaders, origins).status == 403);  // a list and no Origin
  auto good = kGoodHeaders;
  good.push_back("Origin: https://chat.example.com");
  CHECK(answer(good, origins).status == 101);
  auto other = kGoodHeaders;
  other.push_back("Origin: http://127.0.0.1:8080");
  CHECK(answer(other, origins).status == 101);
  auto prefix = kGoodHeaders;
  prefix.push_back("Origin: https://chat.example.com.evil.net");
  CHECK(answer(prefix, origins).status == 403);
}

// ---------------------------------------------------------- http_response

TEST_CASE("http_response: status line, length, Connection: close, HEAD keeps the length, drops the body") {
  const std::string r = http_response(404, "text/plain; charset=utf-8", "not here\n");
  CHECK(r.rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
  CHECK(has_header_line(r, "Content-Type: text/plain; charset=utf-8"));
  CHECK(has_header_line(r, "Content-Length: 9"));
  CHECK(has_header_line(r, "Connection: close"));
  CHECK(r.substr(r.find("\r\n\r\n") + 4) == "not here\n");
  const std::string head = http_response(200, "text/html; charset=utf-8", "<html></html>", true);
  CHECK(head.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(has_header_line(head, "Content-Length: 13"));
  CHECK(head.substr(head.size() - 4) == "\r\n\r\n");
  CHECK(head.find("<html>") == std::string::npos);
  const std::string extra = http_response(405, "", "", false, "Allow: GET\r\n");
  CHECK(has_header_line(extra, "Allow: GET"));
  CHECK(has_header_line(extra, "Content-Length: 0"));
  CHECK(extra.find("\r\nContent-Type:") == std::string::npos);
  CHECK(http_response(431, "", "").rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0) == 0);
  CHECK(http_response(426, "", "").rfind("HTTP/1.1 426 Upgrade Required\r\n", 0) == 0);
}

// ------------------------------------------------------------ client side

TEST_CASE("random_key: 16 random bytes in base64") {
  const std::string a = random_key(), b = random_key();
  CHECK(a.size() == 24);
  std::string raw;
  REQUIRE(im::base64_decode(a, raw));
  CHECK(raw.size() == 16);
  CHECK(a != b);
}

TEST_CASE("client_request is an upgrade the server accepts, its answer passes parse_answer") {
  const std::string key = random_key();
  const std::string req = client_request("127.0.0.1:9701", "/ws", key, "http://localhost");
  const ParsedRequest p = parse_request(req);
  REQUIRE(p.status == HeadParse::kDone);
  CHECK(p.consumed == req.size());
  CHECK(p.request.path() == "/ws");
  CHECK(p.request.header("Host") == "127.0.0.1:9701");
  CHECK(p.request.header("Origin") == "http://localhost");
  const UpgradeAnswer a = answer_upgrade(p.request, {"http://localhost"});
  REQUIRE(a.status == 101);
  const std::string with_frame = a.response + "\x82\x01x";
  const ParsedAnswer ok = parse_answer(with_frame, key);
  CHECK(ok.status == HeadParse::kDone);
  CHECK(ok.http_status == 101);
  CHECK(ok.consumed == a.response.size());
  // no Origin header when none is given
  CHECK(parse_request(client_request("h", "/ws", key)).request.header("Origin").empty());
  // every prefix asks for more
  for (std::size_t k = 0; k < a.response.size(); ++k)
    CHECK(parse_answer(std::string_view(a.response).substr(0, k), key).status == HeadParse::kNeedMore);
}

TEST_CASE("parse_answer refuses anything but a 101 that accepts this key") {
  const std::string key(kRfcKey);
  const std::string good =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      std::string(kRfcAccept) + "\r\n\r\n";
  CHECK(parse_answer(good, key).status == HeadParse::kDone);
  const ParsedAnswer other_key = parse_answer(good, random_key());
  CHECK(other_key.status == HeadParse::kBad);
  CHECK(other_key.http_status == 101);
  const ParsedAnswer refused = parse_answer(http_response(403, "text/plain", "no\n"), key);
  CHECK(refused.status == HeadParse::kBad);
  CHECK(refused.http_status == 403);
  CHECK(parse_answer("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
                         std::string(kRfcAccept) + "\r\n\r\n",
                     key)
            .status == HeadParse::kBad);  // no Upgrade
  CHECK(parse_answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " +
                         std::string(kRfcAccept) + "\r\n\r\n",
                     key)
            .status == HeadParse::kBad);  // no Connection (RFC 6455, 4.1)
  CHECK(parse_answer("HTTP/1.0 101 Switching Protocols\r\n\r\n", key).status == HeadParse::kBad);
  CHECK(parse_answer("SSH-2.0-OpenSSH\r\n\r\n", key).status == HeadParse::kBad);
  CHECK(parse_answer(std::string(kMaxRequestHead, 'x'), key).status == HeadParse::kBad);
  CHECK(parse_answer(std::string(kMaxRequestHead - 1, 'x'), key).status == HeadParse::kNeedMore);
}

TEST_CASE("parse_answer takes a refusal's Retry-After in seconds, and nothing else for one") {
  const std::string key(kRfcKey);
  auto retry_after = [&](std::string_view value) {
    return parse_answer(http_response(503, "text/plain", "busy\n", false, fmt::format("Retry-After: {}\r\n", value)),
                        key)
        .retry_after_s;
  };
  CHECK(retry_after("2") == 2);
  CHECK(retry_after(" 30 ") == 30);
  CHECK(retry_after("9999999") == 86400);                    // capped at a day
  CHECK(retry_after("Wed, 21 Oct 2026 07:28:00 GMT") == 0);  // a date: not followed
  CHECK(retry_after("-1") == 0);
  CHECK(retry_after("1e9") == 0);
  CHECK(retry_after("99999999999999999999") == 0);
  CHECK(parse_answer(http_response(503, "text/plain", "busy\n"), key).retry_after_s == 0);
}
