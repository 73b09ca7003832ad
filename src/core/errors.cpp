#include "core/errors.h"

namespace im::core {

std::string_view error_text(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "";
    case StatusCode::kBadRequest: return "the request is malformed";
    case StatusCode::kUnauthenticated: return "log in first";
    case StatusCode::kForbidden: return "not allowed";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kRateLimited: return "too many requests";
    case StatusCode::kTooLarge: return "over a size limit";
    case StatusCode::kUnknownCommand: return "unknown command";
    case StatusCode::kConflict: return "already exists";
    case StatusCode::kUnsupportedVersion: return "unsupported protocol version";
    case StatusCode::kBadFrame: return "bad frame";
    case StatusCode::kFrameTooLarge: return "frame too large";
    case StatusCode::kUnavailable: return "the server is busy; retry later";
    case StatusCode::kInternal: return "the server failed; nothing was stored";
    case StatusCode::kGone: return "the message was recalled";
    case StatusCode::kExpired: return "the time window has passed";
    case StatusCode::kDisabled: return "the feature is off";
  }
  return "error";
}

std::string_view client_text(const Error& error) {
  if (error.code == StatusCode::kInternal || error.message.empty()) return error_text(error.code);
  return error.message;
}

}  // namespace im::core
