#pragma once
// The static files of the web client, served at GET / of the WebSocket
// listener: `index.html` for `/`, content types by extension, 404 for
// anything that is not a regular file inside the root (no directory
// listing, no `..`, no symlink out of the root). Without a root configured
// a built-in page says the web client is not installed.
//
// Thread safe (const); reads the file on each request, on the I/O loop: the
// files are small and the page loads them once.

#include <cstdint>
#include <string>
#include <string_view>

namespace im::net {

struct WebReply {
  int status = 404;
  std::string_view content_type;
  std::string body;
};

class WebRoot {
 public:
  // Files larger than this are not served (the page's bundle is far smaller).
  static constexpr std::uintmax_t kMaxFileBytes = 8u << 20;

  // `dir` "" serves the built-in placeholder page only.
  explicit WebRoot(std::string dir);

  WebReply get(std::string_view path) const;

  static std::string_view content_type(std::string_view file_name);

 private:
  std::string root_;  // canonical, without a trailing slash; "" without a root
};

}  // namespace im::net
