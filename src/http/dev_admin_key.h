#pragma once
// The admin API's development key (docs/operations.md, "The admin key"):
// with admin.api_key empty and the admin listener on loopback only, the
// server makes a random key at its first start, keeps it in the data dir
// (mode 0600) and uses it from then on, so that a fresh checkout answers
// `/v1` calls on loopback without a secret shipped in the config. Never
// used for a listener reachable from elsewhere: there an empty key still
// admits nobody.

#include <string>

#include "im/result.h"

namespace im::http {

inline constexpr const char* kDevAdminKeyFile = "admin_api_key";

struct DevAdminKey {
  std::string key;   // 64 hex digits
  std::string path;  // <data_dir>/admin_api_key
  bool created = false;  // made by this call (its first start)
};

// Reads <data_dir>/admin_api_key, or makes it (32 random bytes as hex,
// written to a new file of mode 0600, synced). A file that holds anything
// but 64 hex digits is an error, not replaced: an operator may rely on it.
Result<DevAdminKey> load_or_create_dev_admin_key(const std::string& data_dir);

}  // namespace im::http
