#pragma once
// UTF-8 checks shared by the WebSocket codec (close reasons, text frames)
// and the request checks (search_text, SEARCH queries).

#include <string_view>

namespace im {

// True when `s` is well-formed UTF-8: no overlong forms, surrogates or code
// points past U+10FFFF.
bool valid_utf8(std::string_view s);

}  // namespace im
