#include "net/web_root.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <spdlog/spdlog.h>

namespace im::net {
namespace {

constexpr std::string_view kPlaceholder = R"(<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>imserver</title></head>
<body>
<h1>imserver is running</h1>
<p>The web chat client is not installed on this server yet. WebSocket clients
connect to <code>/ws</code> on this port; see docs/web.md.</p>
</body>
</html>
)";

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in`; false on a malformed escape or a NUL.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = hex_digit(in[i + 1]);
      const int lo = hex_digit(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0') return false;
    out.push_back(c);
  }
  return true;
}

// True when every segment of `path` (which starts with '/') is a plain name.
bool plain_segments(std::string_view path) {
  std::size_t pos = 1;
  while (pos <= path.size()) {
    const std::size_t slash = path.find('/', pos);
    const std::string_view seg = path.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    // Dot files and folders (.git, .env) are never served, nor . and ..
    if (seg.empty() || seg.front() == '.' || seg.find('\\') != std::string_view::npos) return false;
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  return true;
}

WebReply not_found() {
  return WebReply{404, "text/plain; charset=utf-8", "not found\n"};
}

}  // namespace

WebRoot::WebRoot(std::string dir) {
  if (dir.empty()) return;
  std::error_code ec;
  const auto canonical = std::filesystem::canonical(dir, ec);
  root_ = ec ? dir : canonical.string();
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::string_view WebRoot::content_type(std::string_view name) {
  const std::size_t dot = name.rfind('.');
  const std::string_view ext = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
  if (ext == "html" || ext == "htm") return "text/html; charset=utf-8";
  if (ext == "js" || ext == "mjs") return "text/javascript; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  if (ext == "json" || ext == "map") return "application/json";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "gif") return "image/gif";
  if (ext == "webp") return "image/webp";
  if (ext == "ico") return "image/x-icon";
  if (ext == "wasm") return "application/wasm";
  if (ext == "woff2") return "font/woff2";
  if (ext == "woff") return "font/woff";
  if (ext == "txt") return "text/plain; charset=utf-8";
  if (ext == "webmanifest") return "application/manifest+json";
  return "application/octet-stream";
}

WebReply WebRoot::get(std::string_view target) const {
  std::string path;
  if (target.empty() || target.front() != '/' || !percent_decode(target, path)) return not_found();
  if (path == "/") path = "/index.html";
  if (!plain_segments(path)) return not_found();
  if (root_.empty()) {
    if (path == "/index.html") return WebReply{200, content_type(path), std::string(kPlaceholder)};
    return not_found();
  }
  // The resolved file (symlinks followed) must still lie inside the root.
  std::error_code ec;
  const auto file = std::filesystem::canonical(root_ + path, ec);
  if (ec) return not_found();
  const std::string resolved = file.string();
  if (resolved.size() <= root_.size() + 1 || resolved.compare(0, root_.size(), root_) != 0 ||
      resolved[root_.size()] != '/')
    return not_found();
  if (!std::filesystem::is_regular_file(file, ec) || ec) return not_found();
  const auto size = std::filesystem::file_size(file, ec);
  if (ec) return not_found();
  if (size > kMaxFileBytes) {
    spdlog::warn("web_root: {} is over {} bytes; not served", resolved, kMaxFileBytes);
    return not_found();
  }
  std::ifstream in(file, std::ios::binary);
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.is_open() || in.bad()) return not_found();
  return WebReply{200, content_type(resolved), std::move(body)};
}

}  // namespace im::net
