#pragma once
// The canned texts of error answers: one place, so that a status reads the
// same whichever path refused the request. A handler adds its own text only
// where it names a limit or a field.

#include <string_view>

#include "im/protocol.h"
#include "im/result.h"

namespace im::core {

std::string_view error_text(StatusCode code);

// What a client is told of `error`: its own text, or the canned one when it
// has none. INTERNAL is always the canned text: the cause (a RocksDB
// status with paths in it) is for the log, not for clients.
std::string_view client_text(const Error& error);

}  // namespace im::core
