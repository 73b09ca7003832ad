#pragma once
// The HTTP side of WebSocket (RFC 6455, section 4): an HTTP/1.1 request-head
// parser that never throws and never reads past its limit, the opening
// handshake's checks and answers for the server, and the request and answer
// check for the client library.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace im::ws {

// Longest request head (request line + headers) a server reads.
inline constexpr std::size_t kMaxRequestHead = 8192;

struct HttpRequest {
  std::string_view method;
  std::string_view target;  // as sent: path and query
  std::string_view version;
  std::vector<std::pair<std::string_view, std::string_view>> headers;  // values trimmed

  // The first header of that name (case-insensitive), "" when none.
  std::string_view header(std::string_view name) const;
  // True when a header of that name lists `token` (comma-separated, case-insensitive).
  bool has_token(std::string_view name, std::string_view token) const;
  // The target's path, without the query.
  std::string_view path() const;
};

enum class HeadParse { kDone, kNeedMore, kBad };

struct ParsedRequest {
  HeadParse status = HeadParse::kNeedMore;
  std::size_t consumed = 0;  // the head's bytes, the blank line included
  HttpRequest request;       // views into the input
  int error_status = 0;      // kBad: 400, or 431 when the head is over the limit
};

// Parses the request head at the start of `in`.
ParsedRequest parse_request(std::string_view in, std::size_t max_head = kMaxRequestHead);

// base64(SHA-1(key + the RFC's GUID)): the Sec-WebSocket-Accept value.
std::string accept_key(std::string_view client_key);

struct UpgradeAnswer {
  int status = 0;        // 101 when the upgrade is accepted
  std::string response;  // the whole HTTP response to send
};

// Checks an upgrade request for /ws: 400 for a missing or malformed key or
// Upgrade/Connection headers, 426 for a version other than 13, 403 for an
// Origin not in `allowed_origins` (when that list is not empty).
UpgradeAnswer answer_upgrade(const HttpRequest& req, const std::vector<std::string>& allowed_origins);

// A complete HTTP/1.1 response that closes the connection. `head_only`
// (a HEAD request) leaves the body out but keeps its Content-Length.
std::string http_response(int status, std::string_view content_type, std::string_view body, bool head_only = false,
                          std::string_view extra_headers = {});

// Client side: the upgrade request for `path` on `host` with a random
// 16-byte `key` (base64), and the check of the server's answer head.
std::string client_request(std::string_view host, std::string_view path, std::string_view key,
                           std::string_view origin = {});
// The key for client_request: 16 random bytes, base64.
std::string random_key();
// kDone when `in` starts with a complete 101 answer whose accept value
// matches `key`; `consumed` is the head's length.
struct ParsedAnswer {
  HeadParse status = HeadParse::kNeedMore;
  std::size_t consumed = 0;
  int http_status = 0;
  // A refusal's Retry-After in seconds (RFC 9110, 10.2.3: the delay form
  // only), capped at one day; 0 when absent or not a number.
  std::uint32_t retry_after_s = 0;
};
ParsedAnswer parse_answer(std::string_view in, std::string_view key);

}  // namespace im::ws
