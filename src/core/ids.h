#pragma once
// The identifier rules of the protocol (docs/protocol.md, "Identifiers").

#include <string_view>

namespace im::core {

// A uid or gid: 1 to 64 bytes of A-Z a-z 0-9 . _ @ -
inline bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (unsigned char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// A client_msg_id or report_id: 1 to 64 bytes of printable ASCII.
inline bool valid_client_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (unsigned char c : id)
    if (c < 0x20 || c > 0x7E) return false;
  return true;
}

}  // namespace im::core
