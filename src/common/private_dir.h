#pragma once
// A directory for data only this user may read (the store, its backups):
// made when missing with mode 0700 whatever the umask; one that exists keeps
// the mode its owner gave it.

#include <filesystem>
#include <system_error>

namespace im {

inline std::error_code make_private_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  const bool existed = std::filesystem::exists(dir, ec);
  if (ec) return ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || existed) return ec;
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, std::filesystem::perm_options::replace, ec);
  return ec;
}

}  // namespace im
