#pragma once
// The JSON object body of an admin API request, read field by field into
// the types the core facade takes. Only the body's shape is checked here (a
// missing required field, a field of another JSON type, bad base64): the
// rules of the values are the core's (core/requests.h).
//
// A getter that finds a field in error records the first such error and
// answers empty; a handler reads every field, then checks status() once.
// Never throws.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "im/result.h"

namespace im::http {

class JsonBody {
 public:
  // BAD_REQUEST unless `text` is a JSON object.
  static Result<JsonBody> parse(const std::string& text);

  // A missing or null field is absent: nullopt, false, empty or "" (and
  // an error for a `required` str). `bytes` decodes a base64 string.
  std::optional<std::string> str(const char* key, bool required = true);
  std::optional<std::int64_t> integer(const char* key);
  bool boolean(const char* key);
  std::vector<std::string> strings(const char* key);
  std::string bytes(const char* key);

  // Ok, or BAD_REQUEST naming the first field in error.
  Result<Ok> status() const;

 private:
  explicit JsonBody(nlohmann::json doc) : doc_(std::move(doc)) {}
  // nullptr when the field is missing or null.
  const nlohmann::json* find(const char* key) const;
  void note(std::string why);

  nlohmann::json doc_;
  std::string error_;
};

}  // namespace im::http
