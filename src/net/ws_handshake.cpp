#include "net/ws_handshake.h"

#include <algorithm>
#include <array>
#include <cctype>

#include <fmt/format.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "common/base64.h"

namespace im::ws {
namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
constexpr std::size_t kMaxHeaders = 100;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Retry-After's delay-seconds form (a date is not worth a clock here).
std::uint32_t retry_after_seconds(std::string_view v) {
  constexpr std::uint32_t kDay = 86400;
  v = trim(v);
  if (v.empty() || v.size() > 9 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return 0;
  return std::min<std::uint32_t>(static_cast<std::uint32_t>(std::stoul(std::string(v))), kDay);
}

bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

ParsedRequest bad_request(int status) {
  ParsedRequest p;
  p.status = HeadParse::kBad;
  p.error_status = status;
  return p;
}

// Splits the header lines of a head (after its first line) into `out`.
bool parse_headers(std::string_view lines, std::vector<std::pair<std::string_view, std::string_view>>& out) {
  while (!lines.empty()) {
    const std::size_t eol = lines.find("\r\n");
    const std::string_view line = lines.substr(0, eol);
    lines.remove_prefix(eol == std::string_view::npos ? lines.size() : eol + 2);
    if (line.empty()) continue;
    const std::size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return false;
    const std::string_view name = line.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), is_tchar)) return false;  // also refuses obsolete line folding
    if (out.size() >= kMaxHeaders) return false;
    out.emplace_back(name, trim(line.substr(colon + 1)));
  }
  return true;
}

}  // namespace

std::string_view HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

bool HttpRequest::has_token(std::string_view name, std::string_view token) const {
  for (const auto& [k, v] : headers) {
    if (!iequals(k, name)) continue;
    std::string_view rest = v;
    while (!rest.empty()) {
      const std::size_t comma = rest.find(',');
      if (iequals(trim(rest.substr(0, comma)), token)) return true;
      rest.remove_prefix(comma == std::string_view::npos ? rest.size() : comma + 1);
    }
  }
  return false;
}

std::string_view HttpRequest::path() const {
  return target.substr(0, target.find('?'));
}

ParsedRequest parse_request(std::string_view in, std::size_t max_head) {
  // Refuse at once what cannot become a request line (a TLS ClientHello on a
  // plain port, binary noise) instead of waiting for the auth timeout.
  const std::size_t method_end = std::min(in.find(' '), in.size());
  if (!std::all_of(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(method_end), is_tchar))
    return bad_request(400);
  // Lines end with CRLF; a bare LF would leave us waiting for a blank line
  // that never comes.
  for (std::size_t lf = in.find('\n'); lf != std::string_view::npos && lf < max_head; lf = in.find('\n', lf + 1))
    if (lf == 0 || in[lf - 1] != '\r') return bad_request(400);
  const std::size_t end = in.substr(0, max_head).find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (in.size() >= max_head) return bad_request(431);
    return {};
  }
  const std::string_view head = in.substr(0, end + 2);
  const std::size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) return bad_request(400);
  ParsedRequest p;
  p.request.method = line.substr(0, sp1);
  p.request.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  p.request.version = line.substr(sp2 + 1);
  if (p.request.method.empty() || p.request.target.empty() || p.request.version.substr(0, 5) != "HTTP/")
    return bad_request(400);
  if (!parse_headers(head.substr(eol + 2), p.request.headers)) {
    return bad_request(p.request.headers.size() >= kMaxHeaders ? 431 : 400);
  }
  p.status = HeadParse::kDone;
  p.consumed = end + 4;
  return p;
}

std::string accept_key(std::string_view client_key) {
  std::string input(client_key);
  input.append(kGuid);
  std::array<unsigned char, SHA_DIGEST_LENGTH> digest;
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest.data());
  return base64_encode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

std::string http_response(int status, std::string_view content_type, std::string_view body, bool head_only,
                          std::string_view extra_headers) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", status, reason_phrase(status));
  if (!content_type.empty()) out += fmt::format("Content-Type: {}\r\n", content_type);
  out += fmt::format("Content-Length: {}\r\n", body.size());
  out += "Connection: close\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\n";
  out.append(extra_headers);
  out += "\r\n";
  if (!head_only) out.append(body);
  return out;
}

UpgradeAnswer answer_upgrade(const HttpRequest& req, const std::vector<std::string>& allowed_origins) {
  const bool head_only = req.method == "HEAD";
  auto refuse = [&](int status, std::string_view why, std::string_view extra = {}) {
    return UpgradeAnswer{status, http_response(status, "text/plain; charset=utf-8", fmt::format("{}\n", why),
                                               head_only, extra)};
  };
  if (req.method != "GET") return refuse(405, "a WebSocket upgrade is a GET", "Allow: GET\r\n");
  if (req.version != "HTTP/1.1") return refuse(400, "a WebSocket upgrade needs HTTP/1.1");
  if (req.header("Host").empty()) return refuse(400, "the Host header is required");
  if (!req.has_token("Upgrade", "websocket") || !req.has_token("Connection", "upgrade"))
    return refuse(400, "this path speaks WebSocket only: Upgrade: websocket and Connection: Upgrade are required");
  const std::string_view version = req.header("Sec-WebSocket-Version");
  if (version.empty()) return refuse(400, "Sec-WebSocket-Version: 13 is required");
  if (version != "13")
    return refuse(426, "only WebSocket version 13 is spoken", "Sec-WebSocket-Version: 13\r\n");
  const std::string_view key = req.header("Sec-WebSocket-Key");
  std::string raw;
  if (key.empty() || !base64_decode(key, raw) || raw.size() != 16)
    return refuse(400, "Sec-WebSocket-Key must be 16 bytes in base64");
  if (!allowed_origins.empty()) {
    const std::string_view origin = req.header("Origin");
    const bool allowed = std::any_of(allowed_origins.begin(), allowed_origins.end(),
                                     [&](const std::string& o) { return iequals(o, origin); });
    if (!allowed) return refuse(403, "this Origin is not allowed (server.ws_allowed_origins)");
  }
  return UpgradeAnswer{101, fmt::format("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                        "Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                                        accept_key(key))};
}

std::string client_request(std::string_view host, std::string_view path, std::string_view key,
                           std::string_view origin) {
  std::string out = fmt::format(
      "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
      path, host, key);
  if (!origin.empty()) out += fmt::format("Origin: {}\r\n", origin);
  out += "\r\n";
  return out;
}

std::string random_key() {
  std::array<unsigned char, 16> raw{};
  RAND_bytes(raw.data(), static_cast<int>(raw.size()));
  return base64_encode(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()));
}

ParsedAnswer parse_answer(std::string_view in, std::string_view key) {
  ParsedAnswer a;
  const std::size_t end = in.substr(0, kMaxRequestHead).find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (in.size() >= kMaxRequestHead) a.status = HeadParse::kBad;
    return a;
  }
  const std::string_view head = in.substr(0, end + 2);
  const std::size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  a.status = HeadParse::kBad;
  if (line.substr(0, 9) != "HTTP/1.1 " || line.size() < 12) return a;
  a.http_status = std::atoi(std::string(line.substr(9, 3)).c_str());
  HttpRequest fields;  // only its header list is used
  if (!parse_headers(head.substr(eol + 2), fields.headers)) return a;
  a.retry_after_s = retry_after_seconds(fields.header("Retry-After"));
  // RFC 6455, 4.1: the client fails the connection unless all three are there.
  if (a.http_status != 101 || !fields.has_token("Upgrade", "websocket") || !fields.has_token("Connection", "upgrade") ||
      fields.header("Sec-WebSocket-Accept") != accept_key(key))
    return a;
  a.status = HeadParse::kDone;
  a.consumed = end + 4;
  return a;
}

}  // namespace im::ws
