#include "http/json_body.h"

#include <algorithm>
#include <utility>

#include "common/base64.h"

namespace im::http {

Result<JsonBody> JsonBody::parse(const std::string& text) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return make_error(StatusCode::kBadRequest, "the body must be a JSON object");
  return JsonBody(std::move(doc));
}

const nlohmann::json* JsonBody::find(const char* key) const {
  auto it = doc_.find(key);
  return it == doc_.end() || it->is_null() ? nullptr : &*it;
}

void JsonBody::note(std::string why) {
  if (error_.empty()) error_ = std::move(why);
}

std::optional<std::string> JsonBody::str(const char* key, bool required) {
  const nlohmann::json* v = find(key);
  if (!v) {
    if (required) note(std::string(key) + " is required");
    return std::nullopt;
  }
  if (!v->is_string()) {
    note(std::string(key) + " must be a string");
    return std::nullopt;
  }
  return v->get<std::string>();
}

std::optional<std::int64_t> JsonBody::integer(const char* key) {
  const nlohmann::json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) {
    note(std::string(key) + " must be an integer");
    return std::nullopt;
  }
  return v->get<std::int64_t>();
}

bool JsonBody::boolean(const char* key) {
  const nlohmann::json* v = find(key);
  if (!v) return false;
  if (!v->is_boolean()) {
    note(std::string(key) + " must be true or false");
    return false;
  }
  return v->get<bool>();
}

std::vector<std::string> JsonBody::strings(const char* key) {
  std::vector<std::string> out;
  const nlohmann::json* v = find(key);
  if (!v) return out;
  const bool all_strings =
      v->is_array() && std::all_of(v->begin(), v->end(), [](const auto& e) { return e.is_string(); });
  if (!all_strings) {
    note(std::string(key) + " must be an array of strings");
    return out;
  }
  for (const auto& e : *v) out.push_back(e.get<std::string>());
  return out;
}

std::string JsonBody::bytes(const char* key) {
  std::string out;
  auto text = str(key, false);
  if (text && !base64_decode(*text, out)) note(std::string(key) + " must be base64");
  return out;
}

Result<Ok> JsonBody::status() const {
  if (error_.empty()) return Ok{};
  return make_error(StatusCode::kBadRequest, error_);
}

}  // namespace im::http
