// The WebSocket listener (PROTOCOL 5b) against the real binary, over raw
// sockets: the HTTP upgrade and its refusals, the files of GET /, the framing
// rules and their close codes, one IM frame per binary message, and the
// equivalence of WebSocket and TCP sessions (chat, kick, PULL).

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>

#include "im/frame_codec.h"
#include "messaging.h"
#include "proto/im.pb.h"
#include "server_process.h"
#include "wait_until.h"
#include "ws_raw.h"

using namespace im;
using namespace im::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr std::uint16_t kProtocolError = 1002;
constexpr std::uint16_t kUnsupportedData = 1003;
constexpr std::uint16_t kTooBig = 1009;
constexpr std::uint16_t kGoingAway = 1001;
// The largest message: one frame of the default max_frame_bytes (65536), and
// before LOGIN one of the pre-login body limit (PROTOCOL 1).
constexpr std::uint64_t kMessageLimit = 65536 + kHeaderSize;
constexpr std::uint64_t kPreLoginMessage = kMaxPreLoginBody + kHeaderSize;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string im_frame(Cmd cmd, std::uint32_t seq, std::string_view body = {}) {
  FrameHeader h;
  h.cmd = cmd;
  h.seq = seq;
  return encode_frame(h, body);
}

// A PRESENCE request body of exactly `size` bytes (at least 16 KiB): one uid,
// then an unknown bytes field (15) as padding.
std::string padded_presence(std::size_t size) {
  v1::PresenceReq req;
  req.add_uids("alice");
  std::string body = req.SerializeAsString();
  // field 15, wire type 2 (bytes): tag 0x7A, then a 3-byte varint length
  const std::size_t pad = size - body.size() - 4;
  body.push_back(0x7A);
  body.push_back(static_cast<char>(0x80 | (pad & 0x7F)));
  body.push_back(static_cast<char>(0x80 | ((pad >> 7) & 0x7F)));
  body.push_back(static_cast<char>(pad >> 14));
  body.append(pad, 'z');
  return body;
}

// An upgraded connection (not logged in).
std::unique_ptr<WsRaw> upgraded(const ServerProcess& server) {
  auto ws = std::make_unique<WsRaw>(server.ws_port());
  REQUIRE(ws->connected());
  const HttpAnswer a = ws->upgrade();
  REQUIRE(a.status == 101);
  return ws;
}

std::unique_ptr<WsRaw> ws_login(const ServerProcess& server, const std::string& uid, int device_type = v1::WEB,
                                const std::string& device_id = "") {
  auto ws = std::make_unique<WsRaw>(server.ws_port());
  ws->login(uid, device_type, device_id);
  return ws;
}

// The server closes with `code` and ends the TCP connection.
void expect_close(WsRaw& ws, std::uint16_t code) {
  const auto got = ws.read_close();
  REQUIRE(got);
  CHECK(*got == code);
  CHECK(ws.wait_eof());
}

// An HTTP answer that closes: Connection: close, then EOF.
void expect_http_close(WsRaw& ws, const HttpAnswer& a) {
  CHECK(lower(a.header("Connection")) == "close");
  CHECK(ws.wait_eof());
}

void expect_ws_served(const ServerProcess& server) {
  auto ws = ws_login(server, "still-served");
  auto hb = ws->call(Cmd::kHeartbeat, "");
  REQUIRE(hb);
  CHECK(hb->ok());
}

// The messages of the next PUSH on a WebSocket session (other frames skipped).
std::vector<v1::Message> ws_next_push(WsRaw& ws) {
  return next_push_from([&] { return ws.next_im(); });
}

v1::SendResp ws_send_ok(WsRaw& ws, const std::string& to, const std::string& cmid, const std::string& body) {
  const v1::SendReq req = send_req(to, cmid, body);
  auto r = ws.call(Cmd::kSend, req);
  REQUIRE(r);
  INFO(r->error_message());
  REQUIRE(r->ok());
  v1::SendResp resp;
  REQUIRE(r->parse(resp));
  return resp;
}

v1::PullResp ws_pull(WsRaw& ws, std::uint64_t after) {
  v1::PullReq req;
  req.set_after_seq(after);
  req.set_limit(1000);
  auto r = ws.call(Cmd::kPull, req);
  REQUIRE(r);
  INFO(r->error_message());
  REQUIRE(r->ok());
  v1::PullResp resp;
  REQUIRE(r->parse(resp));
  return resp;
}

// A web root with one file of each served type, a directory, and links and
// a file outside it that must never be served.
struct WebRoot {
  fs::path base = unique_temp_path("imtest-web");
  fs::path root = base / "root";
  std::string index = "<!doctype html><title>test web root</title><p>hello from the web root</p>\n";
  std::string secret = "SECRET-OUTSIDE-THE-WEB-ROOT\n";

  WebRoot() {
    fs::create_directories(root / "sub");
    fs::create_directories(base / "outside");
    write(root / "index.html", index);
    write(root / "app.js", "console.log('app');\n");
    write(root / "style.css", "body { color: black; }\n");
    write(root / "data.json", "{\"a\": 1}\n");
    write(root / "icon.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n");
    write(root / "pixel.png", std::string("\x89PNG\r\n\x1a\n", 8));
    write(root / "mod.wasm", std::string("\0asm\x01\0\0\0", 8));
    write(root / "sub" / "page.html", "<p>sub page</p>\n");
    write(base / "secret.txt", secret);
    write(base / "outside" / "file.txt", secret);
    fs::create_symlink(base / "secret.txt", root / "leak.txt");
    fs::create_symlink(base / "outside", root / "linkdir");
  }
  ~WebRoot() {
    std::error_code ec;
    fs::remove_all(base, ec);
  }
  static void write(const fs::path& p, const std::string& content) {
    std::ofstream out(p, std::ios::binary);
    out << content;
  }
  Overrides overrides() const { return {{"server.web_root", "\"" + root.string() + "\""}}; }
};

HttpAnswer get(const ServerProcess& server, std::string_view method, std::string_view target) {
  WsRaw c(server.ws_port());
  REQUIRE(c.connected());
  HttpAnswer a = c.http(method, target);
  INFO(method << " " << target << " -> " << a.status);
  expect_http_close(c, a);
  return a;
}

}  // namespace

// ------------------------------------------------------------------ upgrade

TEST_CASE("ws: a version 13 upgrade of /ws is 101 with the RFC's accept value, IM frames then flow") {
  ServerProcess server;
  REQUIRE(server.ws_port() != 0);
  REQUIRE(server.ws_port() != server.tcp_port());
  WsRaw ws(server.ws_port());
  REQUIRE(ws.connected());
  const HttpAnswer a = ws.upgrade();
  REQUIRE(a.status == 101);
  CHECK(a.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  CHECK(lower(a.header("Upgrade")) == "websocket");
  CHECK(lower(a.header("Connection")).find("upgrade") != std::string::npos);
  // before LOGIN: HEARTBEAT served, the rest UNAUTHENTICATED, as over TCP
  auto hb = ws.call(Cmd::kHeartbeat, "");
  REQUIRE(hb);
  CHECK(hb->ok());
  CHECK(hb->header.is_response());
  auto early = ws.call(Cmd::kPresence, "");
  REQUIRE(early);
  CHECK(early->status() == StatusCode::kUnauthenticated);
  auto login = ws.call(Cmd::kLogin, login_body("alice", token_for("alice"), v1::WEB, "browser-1"));
  REQUIRE(login);
  INFO(login->error_message());
  REQUIRE(login->ok());
  v1::LoginResp resp;
  REQUIRE(login->parse(resp));
  CHECK(resp.heartbeat_interval_s() > 0);
  CHECK_FALSE(resp.session_id().empty());
  // every frame the server sent was unmasked, FIN set, binary
  auto again = ws.call(Cmd::kHeartbeat, "");
  REQUIRE(again);
  CHECK(again->ok());
}

TEST_CASE("ws: the server's frames are unmasked binary frames, one IM frame each") {
  ServerProcess server;
  auto ws = upgraded(server);
  ws->send_im(Cmd::kHeartbeat, 7, "");
  auto f = ws->read_frame();
  REQUIRE(f);
  CHECK(f->fin);
  CHECK(f->rsv == 0);
  CHECK_FALSE(f->masked);
  CHECK(f->opcode == ws_op::kBinary);
  const Decoded d = decode_frame(f->payload, 1 << 20);
  REQUIRE(d.status == DecodeStatus::kFrame);
  CHECK(d.consumed == f->payload.size());
  CHECK(d.header.seq == 7);
  CHECK(d.header.cmd == Cmd::kHeartbeat);
}

TEST_CASE("ws: an upgrade sent a byte at a time, then a LOGIN a byte at a time, is served") {
  ServerProcess server;
  WsRaw ws(server.ws_port());
  REQUIRE(ws.connected());
  const std::string request =
      "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  for (char c : request) ws.send_raw(std::string_view(&c, 1));
  const HttpAnswer a = ws.read_answer();
  REQUIRE(a.status == 101);
  const std::array<std::uint8_t, 4> mask{0xA1, 0xB2, 0xC3, 0xD4};
  const std::string frame = ws_client_frame(
      ws_op::kBinary, im_frame(Cmd::kLogin, 42, login_body("alice", token_for("alice"), v1::WEB)), true, &mask);
  for (char c : frame) ws.send_raw(std::string_view(&c, 1));
  auto r = ws.next_im();
  REQUIRE(r);
  CHECK(r->header.seq == 42);
  CHECK(r->ok());
}

TEST_CASE("ws: upgrade refusals carry their status, Connection: close, and the server closes") {
  ServerProcess server;
  const std::string key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
  struct Case {
    const char* what;
    std::string method;
    std::vector<std::string> headers;
    int status;
  };
  const std::vector<Case> cases{
      {"no key", "GET", {"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"}, 400},
      {"a key of 15 bytes",
       "GET",
       {"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2Rl",
        "Sec-WebSocket-Version: 13"},
       400},
      {"a key that is not base64",
       "GET",
       {"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: !!!!not~base64~at~all!!!",
        "Sec-WebSocket-Version: 13"},
       400},
      {"no Upgrade", "GET", {"Connection: Upgrade", key, "Sec-WebSocket-Version: 13"}, 400},
      {"no Connection: Upgrade", "GET", {"Upgrade: websocket", key, "Sec-WebSocket-Version: 13"}, 400},
      {"Connection: keep-alive",
       "GET",
       {"Upgrade: websocket", "Connection: keep-alive", key, "Sec-WebSocket-Version: 13"},
       400},
      {"no Sec-WebSocket-Version", "GET", {"Upgrade: websocket", "Connection: Upgrade", key}, 400},
      {"version 8", "GET", {"Upgrade: websocket", "Connection: Upgrade", key, "Sec-WebSocket-Version: 8"}, 426},
      {"version 14", "GET", {"Upgrade: websocket", "Connection: Upgrade", key, "Sec-WebSocket-Version: 14"}, 426},
      {"POST", "POST", {"Upgrade: websocket", "Connection: Upgrade", key, "Sec-WebSocket-Version: 13"}, 405},
      {"PUT", "PUT", {"Content-Length: 0"}, 405},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    WsRaw ws(server.ws_port());
    REQUIRE(ws.connected());
    const HttpAnswer a = ws.http(c.method, "/ws", c.headers);
    CHECK(a.status == c.status);
    CHECK(a.header("Sec-WebSocket-Accept").empty());
    if (c.status == 426) CHECK(a.header("Sec-WebSocket-Version") == "13");
    expect_http_close(ws, a);
  }
  expect_ws_served(server);
}

TEST_CASE("ws: an upgrade without a Host header is 400, and HEAD /ws is 405 with no body") {
  ServerProcess server;
  {
    WsRaw ws(server.ws_port());
    REQUIRE(ws.connected());
    ws.send_raw(
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    const HttpAnswer a = ws.read_answer();
    CHECK(a.status == 400);
    CHECK(a.header("Sec-WebSocket-Accept").empty());
    expect_http_close(ws, a);
  }
  // the same request with a Host header is upgraded (the control)
  {
    WsRaw ws(server.ws_port());
    REQUIRE(ws.connected());
    CHECK(ws.upgrade().status == 101);
  }
  for (const bool with_upgrade_headers : {false, true}) {
    INFO("with the upgrade headers: " << with_upgrade_headers);
    WsRaw ws(server.ws_port());
    REQUIRE(ws.connected());
    std::vector<std::string> headers;
    if (with_upgrade_headers)
      headers = {"Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"};
    const HttpAnswer a = ws.http("HEAD", "/ws", headers);
    CHECK(a.status == 405);
    CHECK(a.header("Sec-WebSocket-Accept").empty());
    CHECK(lower(a.header("Connection")) == "close");
    // no body: the next thing after the head is the end of the connection
    CHECK(ws.read_to_eof().empty());
    CHECK(ws.eof());
  }
  expect_ws_served(server);
}

TEST_CASE("ws port, HTTP: a request with bare LF line endings is answered 400, not left waiting") {
  // A long auth timeout: the answer must come from the request itself, not
  // from the timeout (which closes without an answer).
  ServerProcess server(Overrides{{"server.auth_timeout_ms", "60000"}});
  for (const std::string& request :
       {std::string("GET / HTTP/1.1\n\n"), std::string("GET /ws HTTP/1.1\nHost: 127.0.0.1\n\n"),
        std::string("GET / HTTP/1.1\r\nHost: 127.0.0.1\n\r\n"),
        std::string("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")}) {
    INFO(request);
    WsRaw ws(server.ws_port());
    REQUIRE(ws.connected());
    ws.send_raw(request);
    const HttpAnswer a = ws.read_answer(false, 30s);
    CHECK(a.status == 400);
    expect_http_close(ws, a);
  }
  REQUIRE(server.running());
  expect_ws_served(server);
}

TEST_CASE("ws: a request head over 8 KiB is 431, a garbage request line is 400") {
  ServerProcess server;
  {
    WsRaw ws(server.ws_port());
    REQUIRE(ws.connected());
    std::vector<std::string> filler{"Upgrade: websocket", "Connection: Upgrade",
                                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"};
    for (int i = 0; i < 100; ++i) filler.push_back("X-Filler-" + std::to_string(i) + ": " + std::string(90, 'f'));
    const HttpAnswer a = ws.http("GET", "/ws", filler);
    CHECK(a.status == 431);
    expect_http_close(ws, a);
  }
  {
    // no end of head ever comes: refused once 8 KiB are in
    WsRaw ws(server.ws_port());
    REQUIRE(ws.connected());
    ws.send_raw("GET /ws HTTP/1.1\r\nX-Long: " + std::string(9000, 'l'));
    const HttpAnswer a = ws.read_answer();
    CHECK(a.status == 431);
    expect_http_close(ws, a);
  }
  for (const std::string garbage :
       {"HELLO\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/1.1 x\r\n\r\n", " / HTTP/1.1\r\n\r\n", "GET / SPDY/3\r\n\r\n"}) {
    INFO(garbage);
    WsRaw ws(server.ws_port());
    REQUIRE(ws.connected());
    ws.send_raw(garbage);
    const HttpAnswer a = ws.read_answer();
    CHECK(a.status == 400);
    expect_http_close(ws, a);
  }
  REQUIRE(server.running());
  expect_ws_served(server);
}

TEST_CASE("ws: with server.ws_allowed_origins, only a listed Origin is upgraded") {
  ServerProcess server(
      Overrides{{"server.ws_allowed_origins", "[\"https://chat.example.com\", \"http://localhost:8080\"]"}});
  {
    WsRaw ws(server.ws_port());
    const HttpAnswer a = ws.upgrade({"Origin: https://evil.example.com"});
    CHECK(a.status == 403);
    expect_http_close(ws, a);
  }
  {
    WsRaw ws(server.ws_port());
    const HttpAnswer a = ws.upgrade({"Origin: https://chat.example.com.evil.example.com"});
    CHECK(a.status == 403);
    expect_http_close(ws, a);
  }
  for (const char* origin : {"Origin: https://chat.example.com", "Origin: http://localhost:8080"}) {
    INFO(origin);
    WsRaw ws(server.ws_port());
    const HttpAnswer a = ws.upgrade({origin});
    CHECK(a.status == 101);
    auto hb = ws.call(Cmd::kHeartbeat, "");
    REQUIRE(hb);
    CHECK(hb->ok());
  }
}

TEST_CASE("ws: without allowed origins, any Origin is upgraded") {
  ServerProcess server;
  WsRaw ws(server.ws_port());
  CHECK(ws.upgrade({"Origin: https://anywhere.example.net"}).status == 101);
}

// -------------------------------------------------------------- web files

TEST_CASE("ws port, HTTP: GET / and the web root's files, with their content types") {
  WebRoot web;
  ServerProcess server(web.overrides());
  const HttpAnswer index = get(server, "GET", "/");
  CHECK(index.status == 200);
  CHECK(lower(index.header("Content-Type")) == "text/html; charset=utf-8");
  CHECK(index.body == web.index);
  CHECK(index.header("Content-Length") == std::to_string(web.index.size()));
  const HttpAnswer named = get(server, "GET", "/index.html");
  CHECK(named.status == 200);
  CHECK(named.body == web.index);
  struct Typed {
    const char* path;
    const char* type;  // what Content-Type starts with, lower case
  };
  for (const Typed t :
       {Typed{"/app.js", "text/javascript; charset=utf-8"}, Typed{"/style.css", "text/css; charset=utf-8"},
        Typed{"/data.json", "application/json"}, Typed{"/icon.svg", "image/svg+xml"}, Typed{"/pixel.png", "image/png"},
        Typed{"/mod.wasm", "application/wasm"}, Typed{"/sub/page.html", "text/html; charset=utf-8"}}) {
    INFO(t.path);
    const HttpAnswer a = get(server, "GET", t.path);
    CHECK(a.status == 200);
    CHECK(lower(a.header("Content-Type")).rfind(t.type, 0) == 0);
    std::ifstream in(web.root.string() + t.path, std::ios::binary);
    const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(a.body == content);
  }
}

TEST_CASE("ws port, HTTP: HEAD answers the headers of GET without the body") {
  WebRoot web;
  ServerProcess server(web.overrides());
  WsRaw c(server.ws_port());
  const HttpAnswer a = c.http("HEAD", "/");
  CHECK(a.status == 200);
  CHECK(lower(a.header("Content-Type")) == "text/html; charset=utf-8");
  CHECK(a.header("Content-Length") == std::to_string(web.index.size()));
  // nothing follows the head: the next thing is the end of the connection
  CHECK(lower(a.header("Connection")) == "close");
  CHECK(c.read_to_eof().empty());
  CHECK(c.eof());
}

TEST_CASE("ws port, HTTP: missing files, directories and everything outside the web root are 404") {
  WebRoot web;
  ServerProcess server(web.overrides());
  for (const char* target : {"/missing",
                             "/missing.html",
                             "/sub",
                             "/sub/",
                             "/linkdir",
                             "/linkdir/",
                             "/linkdir/file.txt",
                             "/leak.txt",
                             "/../secret.txt",
                             "/%2e%2e/secret.txt",
                             "/%2E%2E/secret.txt",
                             "/..%2fsecret.txt",
                             "/..%2Fsecret.txt",
                             "/%2e%2e%2fsecret.txt",
                             "/sub/../../secret.txt",
                             "/sub/%2e%2e/%2e%2e/secret.txt",
                             "/./../secret.txt",
                             "/../x",
                             "/%2e%2e/etc/passwd",
                             "/../../../../../../etc/passwd",
                             "/..\\secret.txt",
                             "//etc/passwd",
                             "/sub/..%2f..%2fsecret.txt",
                             "/%00",
                             "/index.html%00.js"}) {
    INFO(target);
    const HttpAnswer a = get(server, "GET", target);
    CHECK(a.status == 404);
    CHECK(a.body.find("SECRET") == std::string::npos);
    CHECK(a.body.find("root:") == std::string::npos);
  }
  REQUIRE(server.running());
}

TEST_CASE("ws port, HTTP: a path segment starting with a dot is 404, even for a file in the web root") {
  WebRoot web;
  fs::create_directories(web.root / ".git");
  WebRoot::write(web.root / ".git" / "config", "[core]\n\trepositoryformatversion = 0 SECRET-GIT\n");
  WebRoot::write(web.root / ".hidden", "SECRET-HIDDEN\n");
  WebRoot::write(web.root / "sub" / ".env", "SECRET-ENV\n");
  fs::create_directories(web.root / ".well-hidden");
  WebRoot::write(web.root / ".well-hidden" / "page.html", "<p>SECRET-DIR</p>\n");
  ServerProcess server(web.overrides());
  // the control: a plain file beside them is served
  CHECK(get(server, "GET", "/sub/page.html").status == 200);
  for (const char* target : {"/.git/config", "/.hidden", "/sub/.env", "/.well-hidden/page.html", "/%2egit/config",
                             "/%2Ehidden", "/sub/%2eenv", "/.git/", "/.git"}) {
    for (const char* method : {"GET", "HEAD"}) {
      INFO(method << " " << target);
      const HttpAnswer a = get(server, method, target);
      CHECK(a.status == 404);
      CHECK(a.body.find("SECRET") == std::string::npos);
    }
  }
  REQUIRE(server.running());
}

TEST_CASE("ws port, HTTP: with no web root, GET / is a placeholder page") {
  ServerProcess server(Overrides{{"server.web_root", "\"\""}});
  const HttpAnswer a = get(server, "GET", "/");
  CHECK(a.status == 200);
  CHECK(lower(a.header("Content-Type")) == "text/html; charset=utf-8");
  CHECK(lower(a.body).find("<html") != std::string::npos);
  CHECK(lower(a.body).find("not installed") != std::string::npos);
  CHECK(get(server, "GET", "/missing").status == 404);
  CHECK(get(server, "GET", "/../etc/passwd").status == 404);
}

TEST_CASE("ws port: a handshake not completed within server.auth_timeout_ms is closed") {
  ServerProcess server(Overrides{{"server.auth_timeout_ms", "1000"}});
  WsRaw silent(server.ws_port());
  WsRaw partial(server.ws_port());
  REQUIRE(silent.connected());
  REQUIRE(partial.connected());
  partial.send_raw("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  // upgraded but never logged in: the login timeout of every session
  auto unlogged = upgraded(server);
  CHECK(silent.wait_eof(15s));
  CHECK(partial.wait_eof(15s));
  CHECK(unlogged->wait_eof(15s));
  expect_ws_served(server);
}

// ---------------------------------------------------------------- framing

TEST_CASE("ws framing violations close with the RFC's codes and end the connection") {
  ServerProcess server;
  const std::string hb = im_frame(Cmd::kHeartbeat, 1);
  struct Case {
    const char* what;
    std::function<void(WsRaw&)> send;
    std::uint16_t code;
  };
  const std::vector<Case> cases{
      {"an unmasked frame", [&](WsRaw& ws) { ws.send_frame(ws_op::kBinary, hb, true, false); }, kProtocolError},
      {"RSV1 set", [&](WsRaw& ws) { ws.send_frame(ws_op::kBinary, hb, true, true, 0x40); }, kProtocolError},
      {"RSV2 set", [&](WsRaw& ws) { ws.send_frame(ws_op::kBinary, hb, true, true, 0x20); }, kProtocolError},
      {"RSV3 set", [&](WsRaw& ws) { ws.send_frame(ws_op::kBinary, hb, true, true, 0x10); }, kProtocolError},
      {"opcode 0x3", [&](WsRaw& ws) { ws.send_frame(0x3, hb); }, kProtocolError},
      {"opcode 0xB", [&](WsRaw& ws) { ws.send_frame(0xB, ""); }, kProtocolError},
      {"a continuation without a message", [&](WsRaw& ws) { ws.send_frame(ws_op::kContinuation, hb); }, kProtocolError},
      {"a new data frame inside a fragmented message",
       [&](WsRaw& ws) {
         ws.send_frame(ws_op::kBinary, hb.substr(0, 5), false);
         ws.send_frame(ws_op::kBinary, hb);
       },
       kProtocolError},
      {"a ping of 126 bytes", [&](WsRaw& ws) { ws.send_frame(ws_op::kPing, std::string(126, 'p')); }, kProtocolError},
      {"a fragmented ping", [&](WsRaw& ws) { ws.send_frame(ws_op::kPing, "p", false); }, kProtocolError},
      {"a text message", [&](WsRaw& ws) { ws.send_frame(ws_op::kText, "{\"cmd\": \"login\"}"); }, kUnsupportedData},
      // Before LOGIN the limit is the pre-login one (16384 + 20); after
      // LOGIN it is max_frame_bytes + 20: see the test after this one.
      {"a frame over the pre-login limit, from its header alone",
       [&](WsRaw& ws) { ws.send_head_claim(ws_op::kBinary, kPreLoginMessage + 1); }, kTooBig},
      {"a 1 TiB length claim", [&](WsRaw& ws) { ws.send_head_claim(ws_op::kBinary, 1ull << 40); }, kTooBig},
      {"fragments each under the pre-login limit adding up to one byte more",
       [&](WsRaw& ws) {
         ws.send_frame(ws_op::kBinary, std::string(10000, 'x'), false);
         ws.send_head_claim(ws_op::kContinuation, kPreLoginMessage + 1 - 10000);
       },
       kTooBig},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    auto ws = upgraded(server);
    c.send(*ws);
    expect_close(*ws, c.code);
  }
  REQUIRE(server.running());
  expect_ws_served(server);
}

TEST_CASE("ws after LOGIN: messages are limited to max_frame_bytes + 20, whole or in fragments") {
  ServerProcess server;
  std::uint32_t seq = 100;
  // A PRESENCE request of exactly `size` message bytes, as the server must answer it.
  auto presence_of = [&](std::uint64_t size) {
    return im_frame(Cmd::kPresence, ++seq, padded_presence(static_cast<std::size_t>(size) - kHeaderSize));
  };
  auto expect_answered = [&](WsRaw& ws) {
    auto r = ws.next_im();
    REQUIRE(r);
    CHECK(r->header.is_response());
    CHECK(r->header.seq == seq);
    INFO(r->error_message());
    CHECK(r->ok());
  };
  {
    INFO("one frame claiming max_frame_bytes + 21: 1009 from its header alone");
    auto ws = ws_login(server, "alice");
    ws->send_head_claim(ws_op::kBinary, kMessageLimit + 1);
    expect_close(*ws, kTooBig);
  }
  {
    INFO("one frame of exactly max_frame_bytes + 20 carrying a frame: answered");
    auto ws = ws_login(server, "alice");
    const std::string message = presence_of(kMessageLimit);
    REQUIRE(message.size() == kMessageLimit);
    ws->send_frame(ws_op::kBinary, message);
    expect_answered(*ws);
  }
  {
    INFO("fragments each under the limit adding up to max_frame_bytes + 21: 1009");
    auto ws = ws_login(server, "alice");
    ws->send_frame(ws_op::kBinary, std::string(30000, 'x'), false);
    ws->send_frame(ws_op::kPing, "between");  // a control frame does not count
    ws->send_frame(ws_op::kContinuation, std::string(30000, 'x'), false);
    ws->send_head_claim(ws_op::kContinuation, kMessageLimit + 1 - 60000);
    expect_close(*ws, kTooBig);
  }
  {
    INFO("fragments whose last one is whole, adding up to max_frame_bytes + 21: 1009");
    auto ws = ws_login(server, "alice");
    const std::string message = presence_of(kMessageLimit) + "z";
    ws->send_frame(ws_op::kBinary, message.substr(0, 40000), false);
    ws->send_frame(ws_op::kContinuation, message.substr(40000), true);
    expect_close(*ws, kTooBig);
  }
  {
    INFO("fragments each under the limit adding up to exactly max_frame_bytes + 20: answered");
    auto ws = ws_login(server, "alice");
    const std::string message = presence_of(kMessageLimit);
    ws->send_frame(ws_op::kBinary, message.substr(0, 30000), false);
    ws->send_frame(ws_op::kContinuation, message.substr(30000, 30000), false);
    ws->send_frame(ws_op::kContinuation, message.substr(60000), true);
    expect_answered(*ws);
    // and the session goes on
    auto hb = ws->call(Cmd::kHeartbeat, "");
    REQUIRE(hb);
    CHECK(hb->ok());
  }
  REQUIRE(server.running());
  expect_ws_served(server);
}

TEST_CASE("ws: a 1 TiB length claim after LOGIN closes with 1009 at once, the server goes on") {
  ServerProcess server;
  auto ws = ws_login(server, "alice");
  ws->send_head_claim(ws_op::kBinary, 1ull << 40);
  expect_close(*ws, kTooBig);
  REQUIRE(server.running());
  expect_ws_served(server);
}

TEST_CASE("ws: a logged-in client that floods pings and never reads is closed as a slow consumer") {
  // The smallest max_pending_bytes the config allows (one whole frame).
  ServerProcess server(Overrides{{"server.max_pending_bytes", std::to_string(kMessageLimit)}});
  WsRaw ws(server.ws_port(), 4096);  // a small receive buffer, never read below
  ws.login("flooder");
  // Every send waits at most a second: a server that stopped reading
  // without closing must not hang the test.
  timeval send_timeout{1, 0};
  REQUIRE(::setsockopt(ws.fd(), SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout) == 0);
  const std::array<std::uint8_t, 4> mask{0x11, 0x22, 0x33, 0x44};
  const std::string ping = ws_client_frame(ws_op::kPing, std::string(125, 'p'), true, &mask);
  std::string batch;
  for (int i = 0; i < 500; ++i) batch += ping;  // 65,500 bytes: 500 pongs of 127 bytes each to answer
  bool refused = false;                         // a send failed: the server closed
  std::size_t sent = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (int round = 0; round < 2000 && !refused && std::chrono::steady_clock::now() < deadline; ++round) {
    std::string_view rest(batch);
    for (int tries = 0; tries < 1000 && !rest.empty(); ++tries) {
      const ssize_t n = ::send(ws.fd(), rest.data(), rest.size(), MSG_NOSIGNAL);
      if (n > 0) {
        rest.remove_prefix(static_cast<std::size_t>(n));
        sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;  // full for a second: next round
      refused = true;                                                 // EPIPE, ECONNRESET
      break;
    }
  }
  INFO("bytes of pings sent: " << sent);
  // Only now read: whatever pongs came, then the end of the connection.
  CHECK(ws.wait_eof(10s));
  CHECK(server.log().find("slow consumer") != std::string::npos);
  REQUIRE(server.running());
  expect_ws_served(server);
}

TEST_CASE("ws: pings do not keep a half-received message alive past heartbeat.timeout_s") {
  ServerProcess server(Overrides{{"heartbeat.interval_s", "1"}, {"heartbeat.timeout_s", "3"}});
  auto ws = ws_login(server, "alice");
  const std::string hb = im_frame(Cmd::kHeartbeat, 77);
  ws->send_frame(ws_op::kBinary, hb.substr(0, 10), false);  // the rest never comes
  // A ping every 500 ms until the server ends the connection, for at most 15 s.
  bool ended = false;
  int pongs = 0;
  std::optional<std::uint16_t> close_code;
  for (int i = 0; i < 30 && !ended; ++i) {
    ws->send_frame(ws_op::kPing, "still here");
    const auto step_end = std::chrono::steady_clock::now() + 500ms;
    for (int k = 0; k < 100 && !ended; ++k) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(step_end - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      auto f = ws->read_frame(left);
      if (!f) {
        ended = ws->eof();
        break;
      }
      if (f->opcode == ws_op::kPong) ++pongs;
      if (f->opcode == ws_op::kClose) {
        close_code = f->close_code();
        ended = ws->wait_eof(5s);
      }
    }
  }
  INFO("pongs: " << pongs << ", close code: " << (close_code ? std::to_string(*close_code) : "none"));
  CHECK(ended);
  CHECK(pongs > 0);  // the pings were read and answered meanwhile
  REQUIRE(server.running());
  expect_ws_served(server);
}

TEST_CASE("ws: a silent logged-in session closed by heartbeat.timeout_s gets a close 1001 first") {
  ServerProcess server(Overrides{{"heartbeat.interval_s", "1"}, {"heartbeat.timeout_s", "2"}});
  auto ws = ws_login(server, "alice");
  const auto code = ws->read_close(15s);
  REQUIRE(code);
  CHECK(*code == kGoingAway);
  CHECK(ws->wait_eof(10s));
}

TEST_CASE("ws: on SIGTERM a logged-in WebSocket session gets KICKOUT SERVER_SHUTDOWN, then a close 1001") {
  ServerProcess server;
  auto ws = ws_login(server, "alice", v1::WEB, "browser-1");
  CHECK(server.terminate() == 0);
  auto kick = ws->next_im();
  REQUIRE(kick);
  CHECK(kick->header.cmd == Cmd::kKickout);
  v1::Kickout k;
  REQUIRE(kick->parse(k));
  CHECK(k.reason() == v1::SERVER_SHUTDOWN);
  const auto code = ws->read_close();
  REQUIRE(code);
  CHECK(*code == kGoingAway);
  CHECK(ws->wait_eof());
}

TEST_CASE("ws: a message of exactly max_frame_bytes + 20 is accepted") {
  ServerProcess server;
  auto ws = ws_login(server, "alice");
  const std::string body = padded_presence(65536);
  REQUIRE(body.size() == 65536);
  auto r = ws->call(Cmd::kPresence, body);
  REQUIRE(r);
  CHECK(r->ok());
}

TEST_CASE("ws: fragmented messages are reassembled, pings between fragments get pongs with their payload") {
  ServerProcess server;
  auto ws = upgraded(server);
  const std::string login = im_frame(Cmd::kLogin, 9, login_body("alice", token_for("alice"), v1::WEB));
  std::string ping_payload;
  for (int i = 0; i < 125; ++i) ping_payload.push_back(static_cast<char>(255 - i));
  const std::size_t third = login.size() / 3;
  ws->send_frame(ws_op::kBinary, login.substr(0, third), false);
  ws->send_frame(ws_op::kPing, "first");
  ws->send_frame(ws_op::kContinuation, "", false);
  ws->send_frame(ws_op::kContinuation, login.substr(third, third), false);
  ws->send_frame(ws_op::kPing, ping_payload);
  ws->send_frame(ws_op::kPong, "unsolicited");
  ws->send_frame(ws_op::kContinuation, login.substr(2 * third), true);
  std::vector<std::string> pongs;
  std::optional<Frame> answer;
  for (int i = 0; i < 20 && !(answer && pongs.size() == 2); ++i) {
    auto f = ws->read_frame();
    REQUIRE(f);
    CHECK_FALSE(f->masked);
    if (f->opcode == ws_op::kPong) {
      pongs.push_back(f->payload);
    } else {
      REQUIRE(f->opcode == ws_op::kBinary);
      const Decoded d = decode_frame(f->payload, 1 << 20);
      REQUIRE(d.status == DecodeStatus::kFrame);
      answer = Frame{d.header, std::string(d.body)};
    }
  }
  CHECK(pongs == std::vector<std::string>{"first", ping_payload});
  REQUIRE(answer);
  CHECK(answer->header.seq == 9);
  CHECK(answer->ok());
  // an empty ping too, then a request in two fragments
  ws->send_frame(ws_op::kPing, "");
  auto pong = ws->read_frame();
  REQUIRE(pong);
  CHECK(pong->opcode == ws_op::kPong);
  CHECK(pong->payload.empty());
  const std::string hb = im_frame(Cmd::kHeartbeat, 10);
  ws->send_frame(ws_op::kBinary, hb.substr(0, 1), false);
  ws->send_frame(ws_op::kContinuation, hb.substr(1), true);
  auto r = ws->next_im();
  REQUIRE(r);
  CHECK(r->header.seq == 10);
  CHECK(r->ok());
}

TEST_CASE("ws: a close from the client is answered with a close echoing its code, then the connection ends") {
  ServerProcess server;
  for (std::uint16_t code : {1000, 1001, 4000}) {
    INFO(code);
    auto ws = ws_login(server, "alice");
    ws->send_close(code, "bye");
    expect_close(*ws, code);
  }
  // before LOGIN too
  auto ws = upgraded(server);
  ws->send_close(1000);
  expect_close(*ws, 1000);
  expect_ws_served(server);
}

TEST_CASE("ws: a message that is not one well-formed IM frame: an ERROR frame, then a close") {
  ServerProcess server;
  const std::string hb = im_frame(Cmd::kHeartbeat, 1);
  struct Case {
    const char* what;
    std::string message;
    StatusCode status;
    std::uint16_t code;
  };
  const std::vector<Case> cases{
      {"wrong magic", forged_header(0x1234, 1, 0), StatusCode::kBadFrame, kProtocolError},
      {"HTTP in a binary message", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", StatusCode::kBadFrame, kProtocolError},
      {"version 2", forged_header(kMagic, 2, 0), StatusCode::kUnsupportedVersion, kProtocolError},
      {"a header claiming max_frame_bytes + 1", forged_header(kMagic, 1, 65537), StatusCode::kFrameTooLarge, kTooBig},
      {"a header claiming 2 GiB", forged_header(kMagic, 1, 0x80000000u), StatusCode::kFrameTooLarge, kTooBig},
      {"two frames in one message", hb + hb, StatusCode::kBadFrame, kProtocolError},
      {"a frame and a byte more", hb + "x", StatusCode::kBadFrame, kProtocolError},
      {"a truncated body", forged_header(kMagic, 1, 10) + "12345", StatusCode::kBadFrame, kProtocolError},
      {"a truncated header", hb.substr(0, 5), StatusCode::kBadFrame, kProtocolError},
      {"an empty message", "", StatusCode::kBadFrame, kProtocolError},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    auto ws = upgraded(server);
    ws->send_frame(ws_op::kBinary, c.message);
    auto f = ws->read_frame();
    REQUIRE(f);
    REQUIRE(f->opcode == ws_op::kBinary);
    const Decoded d = decode_frame(f->payload, 1 << 20);
    REQUIRE(d.status == DecodeStatus::kFrame);
    CHECK(d.header.cmd == Cmd::kError);
    CHECK(d.header.seq == 0);
    CHECK(d.header.status == c.status);
    expect_close(*ws, c.code);
  }
  // the same after LOGIN
  auto ws = ws_login(server, "alice");
  ws->send_frame(ws_op::kBinary, forged_header(0x1234, 1, 0));
  auto f = ws->next_im();
  REQUIRE(f);
  CHECK(f->header.cmd == Cmd::kError);
  CHECK(f->status() == StatusCode::kBadFrame);
  expect_close(*ws, kProtocolError);
  expect_ws_served(server);
}

TEST_CASE("before LOGIN, a frame body over 16384 bytes is FRAME_TOO_LARGE over TCP and WebSocket (PROTOCOL 1)") {
  ServerProcess server;
  const std::string big_login = im_frame(Cmd::kLogin, 1, std::string(16385, 'b'));
  SECTION("over WebSocket: ERROR, then close 1009") {
    auto ws = upgraded(server);
    ws->send_frame(ws_op::kBinary, big_login);
    auto f = ws->next_im();
    REQUIRE(f);
    CHECK(f->header.cmd == Cmd::kError);
    CHECK(f->status() == StatusCode::kFrameTooLarge);
    expect_close(*ws, kTooBig);
  }
  SECTION("over TCP: ERROR, then the connection closes") {
    auto c = server.connect();
    c->send_raw(big_login);
    auto f = c->next_frame();
    REQUIRE(f);
    CHECK(f->header.cmd == Cmd::kError);
    CHECK(f->status() == StatusCode::kFrameTooLarge);
    CHECK(c->wait_closed(3s));
  }
}

// ------------------------------------------------------ TCP and WebSocket

TEST_CASE("ws and tcp: a WebSocket client and a TCP client chat both ways") {
  ServerProcess server;
  auto bob = server.login("bob", v1::IOS);
  auto alice = ws_login(server, "alice", v1::WEB, "browser-1");
  const v1::SendResp sent = ws_send_ok(*alice, "bob", "ws-1", "from the browser");
  CHECK(sent.msg_id() != 0);
  auto at_bob = next_push(*bob);
  REQUIRE(at_bob.size() == 1);
  CHECK(at_bob[0].from() == "alice");
  CHECK(at_bob[0].body() == "from the browser");
  CHECK(at_bob[0].msg_id() == sent.msg_id());
  const v1::SendResp back = send_ok(*bob, "alice", "tcp-1", "from the phone");
  auto at_alice = ws_next_push(*alice);
  REQUIRE(at_alice.size() == 1);
  CHECK(at_alice[0].from() == "bob");
  CHECK(at_alice[0].body() == "from the phone");
  CHECK(at_alice[0].msg_id() == back.msg_id());
  CHECK(at_alice[0].conv_seq() == 2);
  // and a burst, in order
  for (int i = 0; i < 20; ++i) ws_send_ok(*alice, "bob", "ws-burst-" + std::to_string(i), "m" + std::to_string(i));
  auto burst = pushed(*bob, 20);
  REQUIRE(burst.size() == 20);
  for (int i = 0; i < 20; ++i) CHECK(burst[static_cast<std::size_t>(i)].body() == "m" + std::to_string(i));
}

TEST_CASE("ws and tcp: two WebSocket clients chat") {
  ServerProcess server;
  auto alice = ws_login(server, "alice");
  auto bob = ws_login(server, "bob");
  ws_send_ok(*alice, "bob", "a-1", "hi bob");
  auto at_bob = ws_next_push(*bob);
  REQUIRE(at_bob.size() == 1);
  CHECK(at_bob[0].body() == "hi bob");
  ws_send_ok(*bob, "alice", "b-1", "hi alice");
  auto at_alice = ws_next_push(*alice);
  REQUIRE(at_alice.size() == 1);
  CHECK(at_alice[0].body() == "hi alice");
}

TEST_CASE("ws and tcp: the same uid and device type over TCP then WebSocket: the TCP session is kicked") {
  ServerProcess server;
  auto tcp = server.login("alice", v1::WEB, "tab-1");
  auto ws = ws_login(server, "alice", v1::WEB, "tab-2");
  auto kick = tcp->next_frame();
  REQUIRE(kick);
  CHECK(kick->header.cmd == Cmd::kKickout);
  v1::Kickout k;
  REQUIRE(kick->parse(k));
  CHECK(k.reason() == v1::LOGIN_ELSEWHERE);
  CHECK(k.by_device_id() == "tab-2");
  CHECK(tcp->wait_closed(3s));
  auto hb = ws->call(Cmd::kHeartbeat, "");
  REQUIRE(hb);
  CHECK(hb->ok());
}

TEST_CASE("ws and tcp: the same uid and device type over WebSocket then TCP: the WebSocket session is kicked") {
  ServerProcess server;
  auto ws = ws_login(server, "alice", v1::IOS, "phone-1");
  auto tcp = server.login("alice", v1::IOS, "phone-2");
  auto kick = ws->next_im();
  REQUIRE(kick);
  CHECK(kick->header.cmd == Cmd::kKickout);
  v1::Kickout k;
  REQUIRE(kick->parse(k));
  CHECK(k.reason() == v1::LOGIN_ELSEWHERE);
  CHECK(k.by_device_id() == "phone-2");
  CHECK(ws->wait_eof(3s));
  CHECK(must(tcp->call_raw(Cmd::kHeartbeat, "")).ok());
  // two WebSocket sessions kick each other too
  auto first = ws_login(server, "carol", v1::WEB);
  auto second = ws_login(server, "carol", v1::WEB);
  auto kick2 = first->next_im();
  REQUIRE(kick2);
  CHECK(kick2->header.cmd == Cmd::kKickout);
  CHECK(first->wait_eof(3s));
  CHECK(must(second->call(Cmd::kHeartbeat, "")).ok());
}

TEST_CASE("ws and tcp: other device types stay, a message reaches the user's TCP and WebSocket sessions") {
  ServerProcess server;
  auto phone = server.login("alice", v1::IOS);
  auto browser = ws_login(server, "alice", v1::WEB);
  auto bob = server.login("bob", v1::ANDROID);
  const v1::SendResp sent = send_ok(*bob, "alice", "b-1", "to both");
  auto at_phone = next_push(*phone);
  auto at_browser = ws_next_push(*browser);
  REQUIRE(at_phone.size() == 1);
  REQUIRE(at_browser.size() == 1);
  CHECK(at_phone[0].msg_id() == sent.msg_id());
  CHECK(at_browser[0].msg_id() == sent.msg_id());
  CHECK(at_phone[0].inbox_seq() == at_browser[0].inbox_seq());
  // the sender's other device sees its own message: alice's browser sends, her phone gets it
  const v1::SendResp own = ws_send_ok(*browser, "bob", "a-1", "from the browser");
  auto own_at_phone = next_push(*phone);
  REQUIRE(own_at_phone.size() == 1);
  CHECK(own_at_phone[0].msg_id() == own.msg_id());
  CHECK(own_at_phone[0].inbox_seq() == own.inbox_seq());
}

TEST_CASE("ws and tcp: PULL over WebSocket sees the same inbox as over TCP") {
  ServerProcess server;
  {
    auto bob = server.login("bob");
    for (int i = 0; i < 5; ++i) send_ok(*bob, "alice", "b-" + std::to_string(i), "offline " + std::to_string(i));
  }
  auto tcp = server.login("alice", v1::IOS);
  auto ws = ws_login(server, "alice", v1::WEB);
  const auto over_tcp = pull_all(*tcp, 0);
  const v1::PullResp over_ws = ws_pull(*ws, 0);
  REQUIRE(over_tcp.size() == 5);
  REQUIRE(over_ws.messages_size() == 5);
  CHECK_FALSE(over_ws.has_more());
  for (int i = 0; i < 5; ++i) {
    const auto& a = over_tcp[static_cast<std::size_t>(i)];
    const auto& b = over_ws.messages(i);
    CHECK(a.msg_id() == b.msg_id());
    CHECK(a.inbox_seq() == b.inbox_seq());
    CHECK(b.body() == "offline " + std::to_string(i));
  }
  CHECK(over_ws.inbox_max_seq() == 5);
  // a message sent over WebSocket is in the sender's inbox for its TCP device
  const v1::SendResp sent = ws_send_ok(*ws, "bob", "a-1", "reply");
  CHECK(sent.inbox_seq() == 6);
  const auto after = pull_all(*tcp, 5);
  REQUIRE(after.size() == 1);
  CHECK(after[0].msg_id() == sent.msg_id());
}
