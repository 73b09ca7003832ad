#pragma once
// The canned texts of error answers: one place, so that a status reads the
// same whichever path refused the request. A handler adds its own text only
// where it names a limit or a field.

#include <string_view>

#include "im/protocol.h"

namespace im::core {

std::string_view error_text(StatusCode code);

}  // namespace im::core
