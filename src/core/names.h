#pragma once
// Enum values as the admin API and the webhook write them: lowercase names.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace im::core {

inline std::string device_type_name(std::uint8_t t) {
  switch (t) {
    case 1: return "ios";
    case 2: return "android";
    case 3: return "web";
    case 4: return "desktop";
    default: return "unspecified";
  }
}

inline std::string conv_type_name(int t) {
  switch (t) {
    case 1: return "c2c";
    case 2: return "group";
    case 3: return "system";
    default: return "unspecified";
  }
}

// "c2c" -> 1, "group" -> 2; nullopt for anything else.
inline std::optional<int> conv_type_of(std::string_view name) {
  if (name == "c2c") return 1;
  if (name == "group") return 2;
  return std::nullopt;
}

}  // namespace im::core
