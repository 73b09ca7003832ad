#pragma once
// Base64 (RFC 4648): the standard alphabet with padding (JSON fields of the
// admin API and webhooks) and the URL alphabet without padding (JWT).

#include <string>
#include <string_view>

namespace im {

std::string base64_encode(std::string_view in);
// false on characters outside the alphabet or a bad length or padding.
bool base64_decode(std::string_view in, std::string& out);

std::string base64url_encode(std::string_view in);
bool base64url_decode(std::string_view in, std::string& out);

}  // namespace im
